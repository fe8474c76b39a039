package dm

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/wallet"
)

// System message texts, byte for byte as twisterd writes them (spec §6.2,
// §6.3; "temporary hack" texts, never localized).
func invitedText(invitedBy, desc string) string {
	return fmt.Sprintf("*** Invited by '%s' to group: %s", invitedBy, desc)
}

func newMemberText(member, invitedBy string) string {
	return fmt.Sprintf("*** New member '%s' invited by '%s'", member, invitedBy)
}

func descChangedText(by, desc string) string {
	return fmt.Sprintf("*** '%s' changed group description to: %s", by, desc)
}

// dedupKey names one message carried by post (author, k): "msg" for the
// text itself, other kinds for the system messages a post produces.
func dedupKey(author string, k int64, kind string) string {
	return fmt.Sprintf("%s/%d/%s", author, k, kind)
}

// apply is processReceivedDM after decryption (spec §5.3 steps 3-8): to is
// the wallet name of the key that opened the post.
func (e *Engine) apply(tx *msgstore.Tx, p *twproto.Post, to string, plain []byte, fx *effects) error {
	from, k, utcTime := p.N, p.K, p.Time
	fromMe := from == to
	isGroup := wallet.IsGroupAlias(to)

	// Step 5, the not-following rule: evaluated before the payload, so it
	// also drops invites and copy_self copies (pitfall 6).
	if !isGroup && tx.HasUser(to) && !tx.IsFollowing(to, from) {
		e.log.Debug("dm dropped: not following", "to", to, "from", from, "k", k)
		return nil
	}

	pl := twproto.DecodePayload(plain)
	msg, payloadTo := pl.Msg, to
	switch pl.Kind {
	case twproto.PayloadGroupInvite:
		if pl.InviteValid {
			if err := e.registerGroup(tx, pl.InviteKey, pl.InviteDesc, to, from, utcTime, k, fx); err != nil {
				return err
			}
			return e.linkMovedGroup(tx, pl, to, from)
		}
		return nil
	case twproto.PayloadGroupMembers:
		if isGroup {
			for _, m := range pl.Members {
				if err := e.notifyNewGroupMember(tx, to, m, from, utcTime, k, fx); err != nil {
					return err
				}
			}
			// Swarms only for a group a local user takes part in; the
			// registry check and the cap are followGroupMember's.
			if groupHeld(tx, to) {
				for _, m := range pl.Members {
					fx.follow = append(fx.follow, groupMember{group: to, user: m})
				}
			}
			return nil
		}
		// For a user key the whole plaintext is stored as text (step 6).
	default:
		if pl.NewFormat {
			payloadTo = pl.To
		}
	}
	if msg == "" || payloadTo == "" {
		return nil
	}
	m := msgstore.Message{Time: utcTime, Text: msg, FromMe: fromMe, From: from, K: k}
	dedup := dedupKey(from, k, "msg")
	if isGroup {
		// The payload's "to" is the sender's alias: ignored (pitfall 7).
		return e.storeGroupDM(tx, to, dedup, m, fx)
	}
	peer := from
	if fromMe {
		peer = payloadTo
	}
	return e.storeNewDM(tx, to, peer, dedup, m, fx)
}

// registerGroup is registerNewGroup (spec §6.2) with one change: a key the
// wallet already holds no longer ends the processing (twisterd's
// AddKeyPubKey fails and it returns): the description is updated (the
// newest post's wins), a description change sent to the group is
// announced, and an invited member is re-added (inviteMember says when it
// is announced; quietly if it had left). The one case kept as twisterd
// is the inviter's own copy of its self-invite (member == invitedBy on a
// known key), which twisterd's newgroupinvite produces on the creator's node
// and shows nothing for.
func (e *Engine) registerGroup(tx *msgstore.Tx, wif, desc, member, invitedBy string, utcTime, k int64, fx *effects) error {
	key, err := twproto.ParseWIF(wif)
	if err != nil {
		e.log.Info("group invite with an invalid key ignored", "from", invitedBy, "k", k)
		return nil
	}
	alias, created, err := e.wallet.AddGroupKey(key)
	if errors.Is(err, wallet.ErrNotGroupKey) {
		e.log.Info("group invite ignored: Invalid group alias (key belongs to a local user)", "from", invitedBy, "k", k)
		return nil
	}
	if err != nil {
		return err
	}
	_, recorded := tx.Group(alias)
	if created || !recorded {
		// A key in the wallet without a group record is one whose first
		// registration did not commit (the wallet is a separate file):
		// retry the pending posts for it as for a new key.
		if err := tx.AddRetry(alias); err != nil {
			return err
		}
		fx.retry = true
		e.log.Info("new group", "alias", alias, "invited_by", invitedBy)
	}
	if !created && member == invitedBy {
		return nil
	}
	// The newest description-bearing post wins, whatever the arrival
	// order; creategroup's own description is older than any post's.
	if invitedBy == "" {
		err = tx.SetGroupDescription(alias, desc)
	} else {
		_, err = tx.SetGroupDescriptionAt(alias, desc, msgstore.Rank{Time: utcTime, Author: invitedBy, K: k})
	}
	if err != nil {
		return err
	}
	if member == "" {
		if invitedBy == "" {
			// creategroup: no invite brings this node the key, so every
			// invite of a local user is announced.
			if _, ok := tx.GroupFirstInvite(alias); !ok {
				if err := tx.SetGroupFirstInvite(alias, msgstore.FirstInvite{Rank: msgstore.Rank{Time: math.MinInt64}}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	m := msgstore.Message{Time: utcTime, From: invitedBy, K: k}
	if member == alias {
		m.Text = descChangedText(invitedBy, desc)
		return e.storeGroupDM(tx, alias, dedupKey(invitedBy, k, "desc"), m, fx)
	}
	if tx.IsIgnored(member, alias) {
		// A re-invite of a member who left (ignores the group): it wants
		// back in, quietly.
		if err := tx.SetIgnored(member, alias, false); err != nil {
			return err
		}
		if _, err := tx.AddGroupMember(alias, member); err != nil {
			return err
		}
	} else if err := e.inviteMember(tx, alias, member, msgstore.Rank{Time: utcTime, Author: invitedBy, K: k}, fx); err != nil {
		return err
	}
	if tx.HasUser(member) && !tx.IsIgnored(member, alias) {
		m.Text = invitedText(invitedBy, desc)
		return e.storeNewDM(tx, member, alias, dedupKey(invitedBy, k, "invite"), m, fx)
	}
	return nil
}

// inviteMember adds a local user invited to the group. The earliest such
// invite on this node (post time, author, k) is the one that brought the
// key, as twisterd sees it: its member joins without a "New member" line
// (the member list that follows finds it present). Any later invite is
// announced here, since its member list finds the member present too
// (twisterd drops such an invite and its member list announces the
// member; checked against a live twisterd, docs/interop.md). An earlier
// invite arriving late takes the first place, so the end state does not
// depend on the arrival order.
func (e *Engine) inviteMember(tx *msgstore.Tx, alias, member string, r msgstore.Rank, fx *effects) error {
	fi, ok := tx.GroupFirstInvite(alias)
	if ok && fi.Rank.Compare(r) <= 0 {
		return e.notifyNewGroupMember(tx, alias, member, r.Author, r.Time, r.K, fx)
	}
	if err := tx.SetGroupFirstInvite(alias, msgstore.FirstInvite{Rank: r, Member: member}); err != nil {
		return err
	}
	if prev, has := tx.MemberAnnouncer(alias, member); has {
		if err := tx.RemoveGroupMessage(alias, prev.Dedup); err != nil {
			return err
		}
		if err := tx.ClearMemberAnnouncer(alias, member); err != nil {
			return err
		}
	}
	added, err := tx.AddGroupMember(alias, member)
	if err != nil {
		return err
	}
	if added {
		if err := e.memberJoined(tx, alias, member, fx); err != nil {
			return err
		}
	}
	if ok && fi.Member != "" && fi.Member != member {
		// The invite that was first is an ordinary one now.
		return e.notifyNewGroupMember(tx, alias, fi.Member, fi.Rank.Author, fi.Rank.Time, fi.Rank.K, fx)
	}
	return nil
}

// notifyNewGroupMember (spec §6.3): the member is inserted first, so a local
// new member gets the message too. Whatever the order the posts naming a
// member arrive in, the line comes from the earliest of them (post time,
// author, k): a later line is replaced when an earlier post shows up. The
// member of the group's first invite gets no line (inviteMember).
func (e *Engine) notifyNewGroupMember(tx *msgstore.Tx, alias, member, invitedBy string, utcTime, k int64, fx *effects) error {
	added, err := tx.AddGroupMember(alias, member)
	if err != nil {
		return err
	}
	if added {
		if err := e.memberJoined(tx, alias, member, fx); err != nil {
			return err
		}
	}
	if fi, ok := tx.GroupFirstInvite(alias); ok && fi.Member == member {
		return nil
	}
	r := msgstore.Rank{Time: utcTime, Author: invitedBy, K: k}
	prev, hasPrev := tx.MemberAnnouncer(alias, member)
	if hasPrev {
		if prev.Rank.Compare(r) <= 0 {
			return nil
		}
		if err := tx.RemoveGroupMessage(alias, prev.Dedup); err != nil {
			return err
		}
	}
	dedup := dedupKey(invitedBy, k, "member/"+member)
	if err := tx.SetMemberAnnouncer(alias, member, msgstore.Announcer{Rank: r, Dedup: dedup}); err != nil {
		return err
	}
	m := msgstore.Message{Time: utcTime, Text: newMemberText(member, invitedBy), From: invitedBy, K: k}
	return e.storeGroupDM(tx, alias, dedup, m, fx)
}

// memberJoined gives a local user who has just become a member every
// group-level message this node holds, so a message that arrived before
// the post adding the user is not lost (it is kept in the group log).
func (e *Engine) memberJoined(tx *msgstore.Tx, alias, member string, fx *effects) error {
	if !tx.HasUser(member) || tx.IsIgnored(member, alias) {
		return nil
	}
	log, err := tx.GroupLog(alias)
	if err != nil {
		return err
	}
	for _, le := range log {
		if err := e.storeNewDM(tx, member, alias, le.Dedup, le.Msg, fx); err != nil {
			return err
		}
	}
	return nil
}

// storeGroupDM stores m for every local member with an entry that does not
// ignore the group (spec §6.4), and in the group log for users who join
// later.
func (e *Engine) storeGroupDM(tx *msgstore.Tx, alias, dedup string, m msgstore.Message, fx *effects) error {
	if err := tx.LogGroupMessage(alias, dedup, m); err != nil {
		return err
	}
	g, _ := tx.Group(alias)
	for _, member := range g.Members {
		if !tx.HasUser(member) || tx.IsIgnored(member, alias) {
			continue
		}
		if err := e.storeNewDM(tx, member, alias, dedup, m, fx); err != nil {
			return err
		}
	}
	return nil
}

// storeNewDM appends m to (local, peer) unless its dedup key is there.
func (e *Engine) storeNewDM(tx *msgstore.Tx, local, peer, dedup string, m msgstore.Message, fx *effects) error {
	stored, added, err := tx.AddMessage(local, peer, dedup, m)
	if err != nil || !added || stored.FromMe {
		return err
	}
	ev := Event{Type: "DM", K: m.K, Time: m.Time, From: m.From, To: local, Msg: m.Text}
	if wallet.IsGroupAlias(peer) {
		ev.Type, ev.Group = "GROUP", peer
	}
	fx.events = append(fx.events, ev)
	return nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
