package swarm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// txSink is a TxSink keeping what it sees in its own bucket of the shared
// file, failing the transaction for the ks in fail.
type txSink struct {
	*recordingSink
	db   *bolt.DB
	mu   sync.Mutex
	fail map[int64]bool
	done map[string]int // committed, by user/k
}

var bucketSink = []byte("sink")

func newTxSink(t testing.TB, db *bolt.DB) *txSink {
	t.Helper()
	err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists(bucketSink); return err })
	if err != nil {
		t.Fatal(err)
	}
	return &txSink{recordingSink: newSink(), db: db, fail: map[int64]bool{}, done: map[string]int{}}
}

func (s *txSink) PreparePost(_ context.Context, p *twproto.Post) (func(*bolt.Tx) error, func(context.Context), error) {
	key := fmt.Sprintf("%s/%d", p.N, p.K)
	s.mu.Lock()
	fail := s.fail[p.K]
	s.mu.Unlock()
	apply := func(tx *bolt.Tx) error {
		if tx.DB() != s.db {
			return errors.New("foreign transaction")
		}
		if err := tx.Bucket(bucketSink).Put([]byte(key), p.Raw); err != nil {
			return err
		}
		if fail {
			return errors.New("sink refuses")
		}
		return nil
	}
	committed := func(context.Context) {
		s.mu.Lock()
		s.done[key]++
		s.mu.Unlock()
	}
	return apply, committed, nil
}

func (s *txSink) committed(user string, k int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done[fmt.Sprintf("%s/%d", user, k)]
}

func openShared(t testing.TB, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// The swarm in a file shared with its sink: an old swarm.db is moved in;
// a received piece and the sink's work commit together (no delivery queue)
// and fall back to the queue when the sink's part fails; StagePublish
// stores a piece inside the caller's transaction, announced after the
// commit and still there after a restart.
func TestSharedFile(t *testing.T) {
	ctx := context.Background()
	keys := newTestKeys(100)
	alice, bob := newUser(t, keys, "alice"), newUser(t, keys, "bob")

	// A datadir of the old layout: alice/1 in swarm.db.
	dirA := t.TempDir()
	old, err := New(fastConfig(dirA, keys))
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Publish(ctx, "alice", 1, dmPost(t, alice, 1, bob, "old")); err != nil {
		t.Fatal(err)
	}
	old.Close()

	dbA := openShared(t, filepath.Join(dirA, "messages.db"))
	cfgA := fastConfig(dirA, keys)
	cfgA.DB = dbA
	a := startNodeConfig(t, cfgA)
	if a.LastHave("alice") != 1 || a.Bolt() != dbA {
		t.Fatalf("after migration: last have %d", a.LastHave("alice"))
	}
	if _, err := os.Stat(filepath.Join(dirA, "swarm.db.migrated")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dirA, "swarm.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("swarm.db still there: %v", err)
	}
	// The migrated piece is offered to the (plain) sink again.
	waitFor(t, "migrated piece delivered", func() bool { return a.sink.has("alice", 1) == 1 })

	// StagePublish: alice/2 in the caller's transaction, with the caller's
	// own write; a transaction of another file is refused.
	p2, err := twproto.ValidatePost(ctx, dmPost(t, alice, 2, bob, "staged"), "alice", 2, keys)
	if err != nil {
		t.Fatal(err)
	}
	var announce func()
	err = dbA.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("caller"))
		if err != nil {
			return err
		}
		if err := b.Put([]byte("k"), []byte("2")); err != nil {
			return err
		}
		announce, err = a.StagePublish(tx, p2)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if a.HasPiece("alice", 2) {
		t.Error("piece shown before its announce")
	}
	announce()
	if !a.HasPiece("alice", 2) || a.LastHave("alice") != 2 {
		t.Error("staged piece not held after announce")
	}
	if a.sink.has("alice", 2) != 0 {
		t.Error("a staged piece went to the sink: the caller processes its own posts")
	}
	other := openShared(t, filepath.Join(t.TempDir(), "other.db"))
	err = other.Update(func(tx *bolt.Tx) error { _, err := a.StagePublish(tx, p2); return err })
	if !errors.Is(err, ErrForeignTx) {
		t.Errorf("foreign transaction: %v", err)
	}

	// Bob's node: a TxSink on its shared file.
	dirB := t.TempDir()
	dbB := openShared(t, filepath.Join(dirB, "messages.db"))
	sinkB := newTxSink(t, dbB)
	sinkB.fail[3] = true
	cfgB := fastConfig(dirB, keys, a.Addr())
	cfgB.DB = dbB
	b, err := New(cfgB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	b.SetSink(sinkB)
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	if err := b.Follow(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := a.Follow(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice 1, 2 committed with the sink's work", func() bool {
		return sinkB.committed("alice", 1) == 1 && sinkB.committed("alice", 2) == 1
	})
	// Live, through HAVE; k=3's sink part fails: stored alone, queued.
	if err := a.Publish(ctx, "alice", 3, dmPost(t, alice, 3, bob, "sink fails")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice/3 through the delivery queue", func() bool { return sinkB.has("alice", 3) == 1 })
	if sinkB.committed("alice", 3) != 0 || sinkB.has("alice", 1)+sinkB.has("alice", 2) != 0 {
		t.Error("a piece went both ways")
	}
	err = dbB.View(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketSink)
		if sb.Get([]byte("alice/1")) == nil || sb.Get([]byte("alice/2")) == nil || sb.Get([]byte("alice/3")) != nil {
			t.Error("the sink's writes do not match the pieces committed with them")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The entry leaves the queue just after the sink took the post.
	waitFor(t, "an empty delivery queue after delivery", func() bool {
		pend, err := b.store.pending(10)
		return err == nil && len(pend) == 0
	})

	// Restart alice's swarm on the same file: the staged piece is there.
	a.Close()
	a2, err := New(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	if a2.LastHave("alice") != 3 || !a2.HasPiece("alice", 2) {
		t.Errorf("after restart: last have %d", a2.LastHave("alice"))
	}
}
