package msgstore

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
)

// What makes a group's state independent of the order its posts arrive in
// (the posts of one group live in one swarm per author): the description
// of the newest description-bearing post, a log of the group-level
// messages for members who join later, and for each member the earliest
// post that announced it. See docs/engine.md "Order-independent groups".
var (
	keyDescRank  = []byte("descrank")
	bktLog       = []byte("log")
	bktAnnounced = []byte("announced")
)

// Rank orders the posts of a group: post time, then author, then k.
type Rank struct {
	Time   int64
	Author string
	K      int64
}

// Compare is -1, 0 or +1 as r is older than, equal to or newer than o.
func (r Rank) Compare(o Rank) int {
	return cmp.Or(cmp.Compare(r.Time, o.Time), cmp.Compare(r.Author, o.Author), cmp.Compare(r.K, o.K))
}

func encodeRank(r Rank) []byte {
	b := binary.AppendVarint(nil, r.Time)
	b = binary.AppendVarint(b, r.K)
	return append(b, r.Author...)
}

func decodeRank(b []byte) (Rank, bool) {
	t, n := binary.Varint(b)
	if n <= 0 {
		return Rank{}, false
	}
	k, m := binary.Varint(b[n:])
	if m <= 0 {
		return Rank{}, false
	}
	return Rank{Time: t, K: k, Author: string(b[n+m:])}, true
}

// named rank record: uvarint len(name) | name | rank.
func encodeNamedRank(name string, r Rank) []byte {
	v := binary.AppendUvarint(nil, uint64(len(name)))
	v = append(v, name...)
	return append(v, encodeRank(r)...)
}

func decodeNamedRank(v []byte) (string, Rank, bool) {
	l, n := binary.Uvarint(v)
	if n <= 0 || l > uint64(len(v)-n) {
		return "", Rank{}, false
	}
	r, ok := decodeRank(v[n+int(l):])
	return string(v[n : n+int(l)]), r, ok
}

// SetGroupDescriptionAt sets the description carried by the post r unless
// a newer post's is already set; set reports whether it took. A
// description set without a rank (SetGroupDescription) is older than any
// post's.
func (t *Tx) SetGroupDescriptionAt(alias, desc string, r Rank) (set bool, err error) {
	gb, err := t.groupBucket(alias)
	if err != nil {
		return false, err
	}
	if old, ok := decodeRank(gb.Get(keyDescRank)); ok && old.Compare(r) > 0 {
		return false, nil
	}
	if err := gb.Put(keyDesc, []byte(desc)); err != nil {
		return false, fmt.Errorf("group %q description: %w", alias, err)
	}
	if err := gb.Put(keyDescRank, encodeRank(r)); err != nil {
		return false, fmt.Errorf("group %q description: %w", alias, err)
	}
	return true, nil
}

// LogEntry is one group-level message of the group log.
type LogEntry struct {
	Dedup string
	Msg   Message
}

// LogGroupMessage records a group-level message (a text, a "New member"
// or "changed description" line) with its dedup key, whoever of this
// node's users it was stored for, so that a local user who joins later
// gets it too.
func (t *Tx) LogGroupMessage(alias, dedup string, m Message) error {
	gb, err := t.groupBucket(alias)
	if err != nil {
		return err
	}
	lb, err := gb.CreateBucketIfNotExists(bktLog)
	if err != nil {
		return fmt.Errorf("group %q log: %w", alias, err)
	}
	if lb.Get([]byte(dedup)) != nil {
		return nil
	}
	return lb.Put([]byte(dedup), encodeMessage(m))
}

// GroupLog returns the group log in post order (time, author, k, then
// dedup key).
func (t *Tx) GroupLog(alias string) ([]LogEntry, error) {
	gb := t.tx.Bucket(bktGroups).Bucket([]byte(alias))
	if gb == nil || gb.Bucket(bktLog) == nil {
		return nil, nil
	}
	var out []LogEntry
	err := gb.Bucket(bktLog).ForEach(func(k, v []byte) error {
		m, err := decodeMessage(v)
		if err != nil {
			return fmt.Errorf("group %q log %q: %w", alias, k, err)
		}
		out = append(out, LogEntry{Dedup: string(k), Msg: m})
		return nil
	})
	slices.SortFunc(out, func(a, b LogEntry) int {
		return cmp.Or(Rank{a.Msg.Time, a.Msg.From, a.Msg.K}.Compare(Rank{b.Msg.Time, b.Msg.From, b.Msg.K}), cmp.Compare(a.Dedup, b.Dedup))
	})
	return out, err
}

// Announcer is the post whose "New member" line stands for a member, and
// the dedup key of that line.
type Announcer struct {
	Rank  Rank
	Dedup string
}

// MemberAnnouncer returns the announcer recorded for member.
func (t *Tx) MemberAnnouncer(alias, member string) (Announcer, bool) {
	gb := t.tx.Bucket(bktGroups).Bucket([]byte(alias))
	if gb == nil || gb.Bucket(bktAnnounced) == nil {
		return Announcer{}, false
	}
	v := gb.Bucket(bktAnnounced).Get([]byte(member))
	if v == nil {
		return Announcer{}, false
	}
	dedup, r, ok := decodeNamedRank(v)
	return Announcer{Rank: r, Dedup: dedup}, ok
}

// SetMemberAnnouncer records a as the announcer of member.
func (t *Tx) SetMemberAnnouncer(alias, member string, a Announcer) error {
	gb, err := t.groupBucket(alias)
	if err != nil {
		return err
	}
	ab, err := gb.CreateBucketIfNotExists(bktAnnounced)
	if err != nil {
		return fmt.Errorf("group %q announced: %w", alias, err)
	}
	return ab.Put([]byte(member), encodeNamedRank(a.Dedup, a.Rank))
}

// RemoveGroupMessage takes a group-level message out of the group log and
// out of every local user's conversation with the group (a "New member"
// line that an earlier post now makes).
func (t *Tx) RemoveGroupMessage(alias, dedup string) error {
	if gb := t.tx.Bucket(bktGroups).Bucket([]byte(alias)); gb != nil && gb.Bucket(bktLog) != nil {
		if err := gb.Bucket(bktLog).Delete([]byte(dedup)); err != nil {
			return err
		}
	}
	for _, user := range t.Users() {
		cb := t.tx.Bucket(bktUsers).Bucket([]byte(user)).Bucket(bktConv).Bucket([]byte(alias))
		if cb == nil || cb.Bucket(bktDedup) == nil {
			continue
		}
		id := cb.Bucket(bktDedup).Get([]byte(dedup))
		if id == nil {
			continue
		}
		id = bytes.Clone(id)
		if mb := cb.Bucket(bktMsgs); mb != nil {
			if err := mb.Delete(id); err != nil {
				return err
			}
		}
		if err := cb.Bucket(bktDedup).Delete([]byte(dedup)); err != nil {
			return err
		}
	}
	return nil
}

var keyFirstInvite = []byte("firstinvite")

// FirstInvite is the earliest invite of a local user to the group (the one
// that brought the key: its member joins without a "New member" line, as in
// twisterd), or the group's local creation (Member "").
type FirstInvite struct {
	Rank   Rank
	Member string
}

// GroupFirstInvite returns the group's first invite.
func (t *Tx) GroupFirstInvite(alias string) (FirstInvite, bool) {
	gb := t.tx.Bucket(bktGroups).Bucket([]byte(alias))
	if gb == nil {
		return FirstInvite{}, false
	}
	v := gb.Get(keyFirstInvite)
	if v == nil {
		return FirstInvite{}, false
	}
	member, r, ok := decodeNamedRank(v)
	return FirstInvite{Rank: r, Member: member}, ok
}

// SetGroupFirstInvite records the group's first invite.
func (t *Tx) SetGroupFirstInvite(alias string, fi FirstInvite) error {
	gb, err := t.groupBucket(alias)
	if err != nil {
		return err
	}
	return gb.Put(keyFirstInvite, encodeNamedRank(fi.Member, fi.Rank))
}

// ClearMemberAnnouncer forgets member's announcer.
func (t *Tx) ClearMemberAnnouncer(alias, member string) error {
	gb := t.tx.Bucket(bktGroups).Bucket([]byte(alias))
	if gb == nil || gb.Bucket(bktAnnounced) == nil {
		return nil
	}
	return gb.Bucket(bktAnnounced).Delete([]byte(member))
}
