// Package msgstore is twgroupd's durable message store (messages.db, bbolt):
// per local user, the conversations (keyed by peer username or group alias)
// with the fields getdirectmsgs returns, the following list, the ignored
// groups; per group, its description and members; and every DM post seen,
// so that posts can be processed again when a key arrives (rescan).
//
// It stores what the dm engine decides; it knows nothing of keys or crypto.
//
// Message ids are stable: a conversation is append-only and the id of a
// message is its arrival number in that conversation (0, 1, 2, ...), never
// reused, not even after leavegroup drops the history. twisterd's ids are
// positions in a time-sorted vector that shift when an older message arrives
// late (spec §5.4); ours keep getdirectmsgs' count/max_id/since_id
// arithmetic (spec §8.4) while a poller holding since_id never misses a
// late message. See docs/engine.md.
//
// Deduplication is by a caller-given key per conversation (the engine uses
// the author and k of the post plus the kind of message), so processing the
// same post twice never stores twice.
//
// All writes of one operation run in one bbolt transaction (Store.Update),
// committed before it returns.
package msgstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrLocked means another process holds messages.db.
var ErrLocked = errors.New("file locked")

// ErrCorrupt is returned for a stored record that does not decode.
var ErrCorrupt = errors.New("corrupt message record")

// Message is one stored direct or group message, as getdirectmsgs shows it.
type Message struct {
	ID     int64  // stable, per conversation
	Time   int64  // post time (unix seconds)
	Text   string // decrypted text, raw bytes
	FromMe bool
	From   string // author, own name for sent messages
	K      int64  // the author's post number carrying it, -1 if none
}

// Query selects messages of one conversation (getdirectmsgs, spec §8.4).
type Query struct {
	Username string
	MaxID    int64 // default math.MaxInt32
	SinceID  int64 // default -1
}

// NewQuery returns a Query with twisterd's defaults.
func NewQuery(username string) Query {
	return Query{Username: username, MaxID: math.MaxInt32, SinceID: -1}
}

// Options tune Open; nil means defaults.
type Options struct {
	OpenTimeout time.Duration // lock wait, 1s if 0
	NoSync      bool          // benchmarks only: skip fsync
}

// Store is an open messages.db.
type Store struct {
	db *bolt.DB
}

var (
	bktUsers   = []byte("users")
	bktGroups  = []byte("groups")
	bktPosts   = []byte("posts")
	bktPending = []byte("pending")
	bktPendQ   = []byte("pendingq")
	bktRetry   = []byte("retry")

	bktFollow  = []byte("follow")
	bktIgnore  = []byte("ignore")
	bktConv    = []byte("conv")
	bktMsgs    = []byte("m")
	bktDedup   = []byte("d")
	bktMembers = []byte("members")
	keyDesc    = []byte("desc")
)

// Open opens or creates the store file (mode 0600).
func Open(path string, opts *Options) (*Store, error) {
	bo := &bolt.Options{Timeout: time.Second}
	if opts != nil {
		if opts.OpenTimeout > 0 {
			bo.Timeout = opts.OpenTimeout
		}
		bo.NoSync = opts.NoSync
	}
	db, err := bolt.Open(path, 0o600, bo)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("message store %s is in use by another process (%w)", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open message store %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("open message store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bktUsers, bktGroups, bktPosts, bktPending, bktPendQ, bktRetry} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return queueLegacyPending(tx, time.Now().Unix())
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open message store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close message store: %w", err)
	}
	return nil
}

// Tx is a store transaction. Its methods must not be used after fn returns.
type Tx struct {
	tx *bolt.Tx
}

// Bolt is the underlying transaction, for a store sharing the file.
func (t *Tx) Bolt() *bolt.Tx { return t.tx }

// Update runs fn in one read-write transaction, committed (fsynced) before
// Update returns; an error from fn rolls everything back.
func (s *Store) Update(fn func(*Tx) error) error {
	return s.db.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// Bolt is the store's bbolt file. Another store may keep its own top-level
// buckets in it (internal/swarm's "swarm" bucket) so that a post and what it
// causes commit together: one fsync pair per post (docs/architecture.md,
// "One commit per post").
func (s *Store) Bolt() *bolt.DB { return s.db }

// ErrForeignTx is returned by In for a transaction of another file.
var ErrForeignTx = errors.New("message store: transaction of another file")

// In runs fn on the message store's buckets inside tx, a writable
// transaction of s.Bolt() opened by another store sharing the file. The
// caller commits.
func (s *Store) In(tx *bolt.Tx, fn func(*Tx) error) error {
	if tx.DB() != s.db || !tx.Writable() {
		return ErrForeignTx
	}
	return fn(&Tx{tx: tx})
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(*Tx) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// ---- local users -------------------------------------------------------

// HasUser reports whether user has an entry (twisterd's m_users.count):
// created by following, storing a message, or leaving a group.
func (t *Tx) HasUser(user string) bool {
	return t.tx.Bucket(bktUsers).Bucket([]byte(user)) != nil
}

// Users lists local users with an entry, sorted.
func (t *Tx) Users() []string {
	return bucketKeys(t.tx.Bucket(bktUsers))
}

func (t *Tx) userBucket(user string, create bool) (*bolt.Bucket, error) {
	if !create {
		return t.tx.Bucket(bktUsers).Bucket([]byte(user)), nil
	}
	if user == "" {
		return nil, errors.New("empty local user")
	}
	ub, err := t.tx.Bucket(bktUsers).CreateBucketIfNotExists([]byte(user))
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", user, err)
	}
	for _, b := range [][]byte{bktFollow, bktIgnore, bktConv} {
		if _, err := ub.CreateBucketIfNotExists(b); err != nil {
			return nil, fmt.Errorf("user %q: %w", user, err)
		}
	}
	return ub, nil
}

// EnsureUser creates user's entry.
func (t *Tx) EnsureUser(user string) error {
	_, err := t.userBucket(user, true)
	return err
}

// Follow adds peers to user's following list.
func (t *Tx) Follow(user string, peers ...string) error {
	ub, err := t.userBucket(user, true)
	if err != nil {
		return err
	}
	fb := ub.Bucket(bktFollow)
	for _, p := range peers {
		if p == "" {
			continue
		}
		if err := fb.Put([]byte(p), nil); err != nil {
			return fmt.Errorf("follow %q: %w", p, err)
		}
	}
	return nil
}

// Unfollow removes peers from user's following list.
func (t *Tx) Unfollow(user string, peers ...string) error {
	ub, err := t.userBucket(user, false)
	if err != nil || ub == nil {
		return err
	}
	fb := ub.Bucket(bktFollow)
	for _, p := range peers {
		if err := fb.Delete([]byte(p)); err != nil {
			return fmt.Errorf("unfollow %q: %w", p, err)
		}
	}
	return nil
}

// Following lists whom user follows, sorted (empty if no entry).
func (t *Tx) Following(user string) []string {
	ub, _ := t.userBucket(user, false)
	if ub == nil {
		return []string{}
	}
	return bucketKeys(ub.Bucket(bktFollow))
}

// IsFollowing reports whether user follows peer.
func (t *Tx) IsFollowing(user, peer string) bool {
	ub, _ := t.userBucket(user, false)
	return ub != nil && ub.Bucket(bktFollow).Get([]byte(peer)) != nil
}

// SetIgnored adds or removes alias from user's ignored groups.
func (t *Tx) SetIgnored(user, alias string, ignored bool) error {
	ub, err := t.userBucket(user, ignored)
	if err != nil || ub == nil {
		return err
	}
	ib := ub.Bucket(bktIgnore)
	if ignored {
		err = ib.Put([]byte(alias), nil)
	} else {
		err = ib.Delete([]byte(alias))
	}
	if err != nil {
		return fmt.Errorf("ignore group %q: %w", alias, err)
	}
	return nil
}

// IsIgnored reports whether user ignores the group alias.
func (t *Tx) IsIgnored(user, alias string) bool {
	ub, _ := t.userBucket(user, false)
	return ub != nil && ub.Bucket(bktIgnore).Get([]byte(alias)) != nil
}

// Ignored lists user's ignored groups, sorted.
func (t *Tx) Ignored(user string) []string {
	ub, _ := t.userBucket(user, false)
	if ub == nil {
		return []string{}
	}
	return bucketKeys(ub.Bucket(bktIgnore))
}

// ---- conversations ------------------------------------------------------

// AddMessage appends m to the conversation (user, peer) unless a message
// with the same dedup key is already there. It returns the stored message
// (with its id) and whether it was added. m.ID is ignored.
func (t *Tx) AddMessage(user, peer, dedup string, m Message) (Message, bool, error) {
	if peer == "" {
		return Message{}, false, errors.New("add message: empty peer")
	}
	ub, err := t.userBucket(user, true)
	if err != nil {
		return Message{}, false, err
	}
	cb, err := ub.Bucket(bktConv).CreateBucketIfNotExists([]byte(peer))
	if err != nil {
		return Message{}, false, fmt.Errorf("conversation %q: %w", peer, err)
	}
	mb, err := cb.CreateBucketIfNotExists(bktMsgs)
	if err != nil {
		return Message{}, false, err
	}
	db, err := cb.CreateBucketIfNotExists(bktDedup)
	if err != nil {
		return Message{}, false, err
	}
	if dedup != "" && db.Get([]byte(dedup)) != nil {
		return Message{}, false, nil
	}
	// The conversation bucket's sequence survives DropConversation, so ids
	// are never reused.
	seq, err := cb.NextSequence()
	if err != nil {
		return Message{}, false, err
	}
	m.ID = int64(seq - 1)
	id := idKey(m.ID)
	if err := mb.Put(id[:], encodeMessage(m)); err != nil {
		return Message{}, false, err
	}
	if dedup != "" {
		if err := db.Put([]byte(dedup), id[:]); err != nil {
			return Message{}, false, err
		}
	}
	return m, true, nil
}

// DeleteMessage removes message id of (user, peer) and its dedup key; the
// engine uses it to undo a local copy when publishing fails.
func (t *Tx) DeleteMessage(user, peer, dedup string, id int64) error {
	mb := t.msgBucket(user, peer)
	if mb == nil {
		return nil
	}
	key := idKey(id)
	if err := mb.Delete(key[:]); err != nil {
		return fmt.Errorf("delete message %d: %w", id, err)
	}
	if db := t.tx.Bucket(bktUsers).Bucket([]byte(user)).Bucket(bktConv).Bucket([]byte(peer)).Bucket(bktDedup); db != nil && dedup != "" {
		return db.Delete([]byte(dedup))
	}
	return nil
}

// HasConversation reports whether user has stored messages with peer.
func (t *Tx) HasConversation(user, peer string) bool {
	mb := t.msgBucket(user, peer)
	if mb == nil {
		return false
	}
	k, _ := mb.Cursor().First()
	return k != nil
}

func (t *Tx) msgBucket(user, peer string) *bolt.Bucket {
	ub, _ := t.userBucket(user, false)
	if ub == nil {
		return nil
	}
	cb := ub.Bucket(bktConv).Bucket([]byte(peer))
	if cb == nil {
		return nil
	}
	return cb.Bucket(bktMsgs)
}

// Conversations lists the peers and aliases user has a conversation with.
func (t *Tx) Conversations(user string) []string {
	ub, _ := t.userBucket(user, false)
	if ub == nil {
		return []string{}
	}
	return bucketKeys(ub.Bucket(bktConv))
}

// Messages returns up to count messages of (user, q.Username) with
// q.SinceID < id <= q.MaxID, the newest ones, in ascending id order
// (getdirectmsgs, spec §8.4). It costs O(count), whatever the size.
func (t *Tx) Messages(user string, q Query, count int) ([]Message, error) {
	if count <= 0 || q.MaxID < 0 || q.MaxID <= q.SinceID {
		return nil, nil
	}
	mb := t.msgBucket(user, q.Username)
	if mb == nil {
		return nil, nil
	}
	c := mb.Cursor()
	start := idKey(q.MaxID)
	k, v := c.Seek(start[:])
	if k == nil || !bytes.Equal(k, start[:]) {
		// Seek lands on the first id > MaxID (or nothing): step back.
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	}
	var out []Message
	for ; k != nil && len(out) < count; k, v = c.Prev() {
		id := int64(binary.BigEndian.Uint64(k))
		if id <= q.SinceID {
			break
		}
		m, err := decodeMessage(v)
		if err != nil {
			return nil, fmt.Errorf("conversation %q id %d: %w", q.Username, id, err)
		}
		m.ID = id
		out = append(out, m)
	}
	slices.Reverse(out)
	return out, nil
}

// DropConversation deletes the history of (user, peer) and its dedup keys,
// keeping the id counter (leavegroup, spec §6.5).
func (t *Tx) DropConversation(user, peer string) error {
	ub, _ := t.userBucket(user, false)
	if ub == nil {
		return nil
	}
	cb := ub.Bucket(bktConv).Bucket([]byte(peer))
	if cb == nil {
		return nil
	}
	for _, b := range [][]byte{bktMsgs, bktDedup} {
		if cb.Bucket(b) == nil {
			continue
		}
		if err := cb.DeleteBucket(b); err != nil {
			return fmt.Errorf("drop conversation %q: %w", peer, err)
		}
	}
	return nil
}

// ---- groups --------------------------------------------------------------

// Group is what the store knows of a group.
type Group struct {
	Alias       string
	Description string
	Members     []string // sorted
}

// Group returns the group record of alias.
func (t *Tx) Group(alias string) (Group, bool) {
	gb := t.tx.Bucket(bktGroups).Bucket([]byte(alias))
	if gb == nil {
		return Group{}, false
	}
	g := Group{Alias: alias, Description: string(gb.Get(keyDesc)), Members: bucketKeys(gb.Bucket(bktMembers))}
	return g, true
}

func (t *Tx) groupBucket(alias string) (*bolt.Bucket, error) {
	if alias == "" {
		return nil, errors.New("empty group alias")
	}
	gb, err := t.tx.Bucket(bktGroups).CreateBucketIfNotExists([]byte(alias))
	if err != nil {
		return nil, fmt.Errorf("group %q: %w", alias, err)
	}
	if _, err := gb.CreateBucketIfNotExists(bktMembers); err != nil {
		return nil, fmt.Errorf("group %q: %w", alias, err)
	}
	return gb, nil
}

// SetGroupDescription creates the group if needed and sets its description
// (creategroup), unless a post's description is set (SetGroupDescriptionAt):
// any post's is newer than a local one.
func (t *Tx) SetGroupDescription(alias, desc string) error {
	gb, err := t.groupBucket(alias)
	if err != nil {
		return err
	}
	if gb.Get(keyDescRank) != nil {
		return nil
	}
	if err := gb.Put(keyDesc, []byte(desc)); err != nil {
		return fmt.Errorf("group %q description: %w", alias, err)
	}
	return nil
}

// AddGroupMember adds member; added is false if it was already there.
func (t *Tx) AddGroupMember(alias, member string) (added bool, err error) {
	gb, err := t.groupBucket(alias)
	if err != nil {
		return false, err
	}
	mb := gb.Bucket(bktMembers)
	if mb.Get([]byte(member)) != nil {
		return false, nil
	}
	if err := mb.Put([]byte(member), nil); err != nil {
		return false, fmt.Errorf("group %q member: %w", alias, err)
	}
	return true, nil
}

// RemoveGroupMember removes member from the group.
func (t *Tx) RemoveGroupMember(alias, member string) error {
	gb := t.tx.Bucket(bktGroups).Bucket([]byte(alias))
	if gb == nil {
		return nil
	}
	return gb.Bucket(bktMembers).Delete([]byte(member))
}

// IsGroupMember reports whether member is in the group.
func (t *Tx) IsGroupMember(alias, member string) bool {
	gb := t.tx.Bucket(bktGroups).Bucket([]byte(alias))
	return gb != nil && gb.Bucket(bktMembers).Get([]byte(member)) != nil
}

// Groups lists the aliases of all group records, sorted.
func (t *Tx) Groups() []string {
	return bucketKeys(t.tx.Bucket(bktGroups))
}

// ---- seen DM posts ------------------------------------------------------

// PostRef names a post: its author and k.
type PostRef struct {
	Author string
	K      int64
}

// PutPost records a DM post; isNew is false if (author, k) was already
// recorded (the first copy wins, as a swarm piece does).
func (t *Tx) PutPost(ref PostRef, raw []byte) (isNew bool, err error) {
	key := postKey(ref)
	b := t.tx.Bucket(bktPosts)
	if b.Get(key) != nil {
		return false, nil
	}
	if err := b.Put(key, raw); err != nil {
		return false, fmt.Errorf("record post %s/%d: %w", ref.Author, ref.K, err)
	}
	return true, nil
}

// DeletePost forgets a recorded post (a post we built but failed to
// publish), so its k is free again.
func (t *Tx) DeletePost(ref PostRef) error {
	if err := t.unpend(postKey(ref)); err != nil {
		return err
	}
	return t.tx.Bucket(bktPosts).Delete(postKey(ref))
}

// LastPostK is the highest k recorded for author, and false if none.
func (t *Tx) LastPostK(author string) (int64, bool) {
	prefix := postPrefix(author)
	c := t.tx.Bucket(bktPosts).Cursor()
	last := postKey(PostRef{Author: author, K: math.MaxInt64})
	k, _ := c.Seek(last)
	if k == nil || !bytes.Equal(k, last) {
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
	}
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return 0, false
	}
	ref, ok := parsePostKey(k)
	if !ok || ref.Author != author {
		return 0, false
	}
	return ref.K, true
}

// HasPost reports whether (author, k) was recorded.
func (t *Tx) HasPost(ref PostRef) bool {
	return t.tx.Bucket(bktPosts).Get(postKey(ref)) != nil
}

// Post returns a recorded post (a copy).
func (t *Tx) Post(ref PostRef) ([]byte, bool) {
	v := t.tx.Bucket(bktPosts).Get(postKey(ref))
	return bytes.Clone(v), v != nil
}

// PostsBy calls fn for each recorded post of author, in k order.
func (t *Tx) PostsBy(author string, fn func(k int64, raw []byte) error) error {
	prefix := postPrefix(author)
	c := t.tx.Bucket(bktPosts).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		ref, ok := parsePostKey(k)
		if !ok || ref.Author != author {
			continue
		}
		if err := fn(ref.K, bytes.Clone(v)); err != nil {
			return err
		}
	}
	return nil
}

// SetPending marks a recorded post as not decrypted by any wallet key (or
// clears the mark), so a new key can be tried on just those. A post marked
// this way has no arrival time and is never evicted; the engine uses
// MarkPending.
func (t *Tx) SetPending(ref PostRef, pending bool) error {
	if pending {
		return t.MarkPending(ref, PendingLimits{})
	}
	return t.unpend(postKey(ref))
}

// PendingLimits bound the pending set: entries that arrived before MinTime
// (unix seconds) are dropped, and beyond Max entries the oldest arrivals
// go first. Zero values mean no bound.
type PendingLimits struct {
	Now     int64 // arrival time of the entry being added
	MinTime int64
	Max     int
}

// Pending entries are indexed twice: pending/<post key> -> seq, and the
// arrival queue pendingq/<seq> -> arrival time (8 bytes BE) | post key, so
// the bound is kept from the queue's head and a retry scans it in order.
var keyPendCount = []byte("count")

// MarkPending marks a recorded post pending and drops from the head of the
// arrival queue what lim puts out of bounds. A post already pending keeps
// its place.
func (t *Tx) MarkPending(ref PostRef, lim PendingLimits) error {
	pk := postKey(ref)
	b, q := t.tx.Bucket(bktPending), t.tx.Bucket(bktPendQ)
	if b.Get(pk) == nil {
		seq, err := q.NextSequence()
		if err != nil {
			return err
		}
		sk := binary.BigEndian.AppendUint64(nil, seq)
		v := binary.BigEndian.AppendUint64(nil, uint64(lim.Now))
		if err := q.Put(sk, append(v, pk...)); err != nil {
			return err
		}
		if err := b.Put(pk, sk); err != nil {
			return err
		}
		if err := t.addPendCount(1); err != nil {
			return err
		}
	}
	c := q.Cursor()
	for k, v := c.First(); k != nil; k, v = c.First() {
		if len(k) != 8 || len(v) < 8 {
			break
		}
		old := lim.MinTime != 0 && int64(binary.BigEndian.Uint64(v)) < lim.MinTime
		full := lim.Max > 0 && t.pendCount() > lim.Max
		if !old && !full {
			break
		}
		if err := t.unpend(v[8:]); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tx) pendCount() int {
	v := t.tx.Bucket(bktPendQ).Get(keyPendCount)
	if len(v) != 8 {
		return 0
	}
	return int(binary.BigEndian.Uint64(v))
}

func (t *Tx) addPendCount(d int) error {
	n := max(t.pendCount()+d, 0)
	return t.tx.Bucket(bktPendQ).Put(keyPendCount, binary.BigEndian.AppendUint64(nil, uint64(n)))
}

// unpend removes a post from both pending indexes.
func (t *Tx) unpend(pk []byte) error {
	b := t.tx.Bucket(bktPending)
	sk := b.Get(pk)
	if sk == nil {
		return nil
	}
	if len(sk) == 8 {
		if err := t.tx.Bucket(bktPendQ).Delete(bytes.Clone(sk)); err != nil {
			return err
		}
		if err := t.addPendCount(-1); err != nil {
			return err
		}
	}
	return b.Delete(bytes.Clone(pk))
}

// queueLegacyPending gives pending entries of an older store (no queue
// entry) an arrival time of now.
func queueLegacyPending(tx *bolt.Tx, now int64) error {
	var legacy [][]byte
	_ = tx.Bucket(bktPending).ForEach(func(k, v []byte) error {
		if len(v) != 8 {
			legacy = append(legacy, bytes.Clone(k))
		}
		return nil
	})
	t := &Tx{tx: tx}
	for _, pk := range legacy {
		if err := tx.Bucket(bktPending).Delete(pk); err != nil {
			return err
		}
		ref, ok := parsePostKey(pk)
		if !ok {
			continue
		}
		if err := t.MarkPending(ref, PendingLimits{Now: now}); err != nil {
			return err
		}
	}
	return nil
}

// PendingCount is the number of pending posts.
func (t *Tx) PendingCount() int { return t.pendCount() }

// Pending lists the posts marked pending, in arrival order.
func (t *Tx) Pending() []PostRef {
	var out []PostRef
	_ = t.PendingAfter(0, -1, func(_ uint64, ref PostRef) bool {
		out = append(out, ref)
		return true
	})
	return out
}

// PendingAfter calls fn for up to n pending posts (n < 0: all) that
// arrived after queue position seq, in arrival order, until fn returns
// false. It returns the position of the last one given.
func (t *Tx) PendingAfter(seq uint64, n int, fn func(seq uint64, ref PostRef) bool) uint64 {
	c := t.tx.Bucket(bktPendQ).Cursor()
	for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, seq+1)); k != nil && n != 0; k, v = c.Next() {
		if len(k) != 8 || len(v) < 8 {
			continue
		}
		ref, ok := parsePostKey(v[8:])
		if !ok {
			continue
		}
		seq = binary.BigEndian.Uint64(k)
		n--
		if !fn(seq, ref) {
			break
		}
	}
	return seq
}

// IsPending reports whether a post is marked pending.
func (t *Tx) IsPending(ref PostRef) bool {
	return t.tx.Bucket(bktPending).Get(postKey(ref)) != nil
}

// ---- retry jobs ----------------------------------------------------------

// AddRetry records that the pending posts are to be tried with the wallet
// key named name; it survives a restart until DeleteRetry.
func (t *Tx) AddRetry(name string) error {
	if name == "" {
		return errors.New("empty retry key name")
	}
	return t.tx.Bucket(bktRetry).Put([]byte(name), nil)
}

// Retries lists the recorded retry jobs, sorted.
func (t *Tx) Retries() []string { return bucketKeys(t.tx.Bucket(bktRetry)) }

// DeleteRetry forgets a retry job.
func (t *Tx) DeleteRetry(name string) error {
	return t.tx.Bucket(bktRetry).Delete([]byte(name))
}

// post key: uvarint(len(author)) | author | k+2^63 (8 bytes BE, so k sorts).
func postPrefix(author string) []byte {
	b := binary.AppendUvarint(nil, uint64(len(author)))
	return append(b, author...)
}

func postKey(ref PostRef) []byte {
	b := postPrefix(ref.Author)
	return binary.BigEndian.AppendUint64(b, uint64(ref.K)^(1<<63))
}

func parsePostKey(k []byte) (PostRef, bool) {
	n, w := binary.Uvarint(k)
	// Only the canonical length prefix postPrefix writes is a key of ours.
	if w <= 0 || w != len(binary.AppendUvarint(nil, n)) || n > uint64(len(k)) || uint64(len(k)-w) != n+8 {
		return PostRef{}, false
	}
	author := string(k[w : w+int(n)])
	kk := int64(binary.BigEndian.Uint64(k[w+int(n):]) ^ (1 << 63))
	return PostRef{Author: author, K: kk}, true
}

// ---- encoding ----------------------------------------------------------

func idKey(id int64) [8]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(id))
	return b
}

// message record: version(1)=1 | fromMe(1) | varint time | varint k |
// uvarint len(from) | from | text.
func encodeMessage(m Message) []byte {
	b := make([]byte, 0, 2+2*binary.MaxVarintLen64+1+len(m.From)+len(m.Text))
	b = append(b, 1)
	if m.FromMe {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendVarint(b, m.Time)
	b = binary.AppendVarint(b, m.K)
	b = binary.AppendUvarint(b, uint64(len(m.From)))
	b = append(b, m.From...)
	return append(b, m.Text...)
}

func decodeMessage(b []byte) (Message, error) {
	if len(b) < 2 || b[0] != 1 || b[1] > 1 {
		return Message{}, ErrCorrupt
	}
	m := Message{FromMe: b[1] == 1}
	b = b[2:]
	var n int
	if m.Time, n = binary.Varint(b); n <= 0 {
		return Message{}, ErrCorrupt
	}
	b = b[n:]
	if m.K, n = binary.Varint(b); n <= 0 {
		return Message{}, ErrCorrupt
	}
	b = b[n:]
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return Message{}, ErrCorrupt
	}
	b = b[n:]
	m.From = string(b[:l])
	m.Text = string(b[l:])
	return m, nil
}

func bucketKeys(b *bolt.Bucket) []string {
	out := []string{}
	if b == nil {
		return out
	}
	_ = b.ForEach(func(k, _ []byte) error {
		out = append(out, string(k))
		return nil
	})
	return out
}
