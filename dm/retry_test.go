package dm

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/twgroupd/twgroupd/dm/dmtest"
	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/wallet"
)

func pendingCount(n *node) int {
	var c int
	n.s.View(func(tx *msgstore.Tx) error { c = tx.PendingCount(); return nil })
	return c
}

// TestOwnPostsNotPending: a DM this node sent to a remote user is not kept
// pending (we know whom it is encrypted to), while the same kind of post
// received from someone else is.
func TestOwnPostsNotPending(t *testing.T) {
	ctx := context.Background()
	a, b, _ := twoNodes(t)
	for k := range int64(3) {
		if _, err := a.e.NewDirectMsg(ctx, "alice", k+1, "bob", "hi", k == 2); err != nil {
			t.Fatal(err)
		}
	}
	if n := pendingCount(a); n != 0 {
		t.Fatalf("sender keeps %d own posts pending", n)
	}
	// A third party's DM to bob reaches alice's node too: that one stays.
	carol, _ := twproto.NewPrivateKey()
	a.keys.Add("carol", carol.PubKey(), 1)
	p := buildPost(t, a.keys, carol, "carol", 1, mustPub(t, b, "bob"), twproto.EncodeMessage("x", "bob"))
	if err := a.e.HandlePost(ctx, p); err != nil {
		t.Fatal(err)
	}
	if n := pendingCount(a); n != 1 {
		t.Fatalf("pending %d, want 1", n)
	}
	a.checkNoErrs()
}

func mustPub(t *testing.T, n *node, name string) []byte {
	t.Helper()
	k, err := n.w.Key(name)
	if err != nil {
		t.Fatal(err)
	}
	return k.PubKey()
}

func buildPost(t testing.TB, keys *dmtest.Keys, from *twproto.PrivateKey, name string, k int64, to, payload []byte) *twproto.Post {
	t.Helper()
	env, err := twproto.Encrypt(to, payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := twproto.BuildDMPost(from, name, k, 99, 1_800_000_000+k, env)
	if err != nil {
		t.Fatal(err)
	}
	p, err := twproto.ValidatePost(context.Background(), raw, name, k, keys)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRetryResumesAfterRestart: a group key whose retry job was recorded
// but not run (the daemon stopped) is retried after the restart, and the
// message that arrived before the key appears.
func TestRetryResumesAfterRestart(t *testing.T) {
	ctx := context.Background()
	a, b, _ := twoNodes(t)
	gk, _ := twproto.NewPrivateKey()
	aliasA, err := a.e.RegisterGroup(ctx, gk, "g")
	if err != nil {
		t.Fatal(err)
	}
	b.close() // bob receives the group message while offline: replay it below
	if _, err := a.e.NewDirectMsg(ctx, "alice", 1, aliasA, "early", false); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	a.s.View(func(tx *msgstore.Tx) error { raw, _ = tx.Post(msgstore.PostRef{Author: "alice", K: 1}); return nil })
	b.open()
	p, err := twproto.ValidatePost(ctx, raw, "alice", 1, b.keys)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.e.HandlePost(ctx, p); err != nil {
		t.Fatal(err)
	}
	if n := pendingCount(b); n != 1 {
		t.Fatalf("pending %d", n)
	}
	// Stop the worker first: the key and its job are recorded, the retry
	// does not run.
	b.e.Close()
	aliasB, err := b.e.RegisterGroup(ctx, gk, "g")
	if err != nil {
		t.Fatal(err)
	}
	var jobs []string
	b.s.View(func(tx *msgstore.Tx) error { jobs = tx.Retries(); return nil })
	if len(jobs) != 1 || pendingCount(b) != 1 {
		t.Fatalf("jobs %v pending %d before restart", jobs, pendingCount(b))
	}
	b.restart(ctx)
	var got []string
	for _, m := range b.thread("bob", aliasB) {
		got = append(got, m.Text)
	}
	// bob is no member: the message is stored for no one, but it was
	// opened (not pending any more) and the job is done.
	if pendingCount(b) != 0 {
		t.Fatalf("pending %d after restart, thread %q", pendingCount(b), got)
	}
	b.s.View(func(tx *msgstore.Tx) error { jobs = tx.Retries(); return nil })
	if len(jobs) != 0 {
		t.Fatalf("jobs %v after restart", jobs)
	}
}

// TestPendingBounded: the pending set keeps at most Config.PendingMax
// posts, the latest arrivals.
func TestPendingBounded(t *testing.T) {
	ctx := context.Background()
	keys := dmtest.NewKeys(100)
	hub := dmtest.NewHub(keys)
	b := newNode(t, hub, keys, "bob", newClock(1_800_000_000))
	b.user("bob")
	b.close()
	b.open()
	b.e.pendMax = 3
	carol, _ := twproto.NewPrivateKey()
	keys.Add("carol", carol.PubKey(), 1)
	stranger, _ := twproto.NewPrivateKey()
	for k := range int64(5) {
		p := buildPost(t, keys, carol, "carol", k+1, stranger.PubKey(), twproto.EncodeMessage("x", "dave"))
		if err := b.e.HandlePost(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	var pending []msgstore.PostRef
	b.s.View(func(tx *msgstore.Tx) error { pending = tx.Pending(); return nil })
	if fmt.Sprint(pending) != "[{carol 3} {carol 4} {carol 5}]" {
		t.Fatalf("pending %v", pending)
	}
}

// BenchmarkPendingHotPaths: creategroup (RegisterGroup) and a received
// group invite, with 0 and with 10,000 pending posts; both stores hold the
// same 10,000 DM posts (64 real posts to someone else, each stored under
// many refs; the retry decodes and tries each), marked pending or not. The
// retry of the pending posts with each new key runs in the background and
// the calls do not wait for it, so both counts take the same time
// (compare within a run; what remains is the worker's share of the CPU).
func BenchmarkPendingHotPaths(b *testing.B) {
	for _, op := range []string{"creategroup", "invite"} {
		for _, n := range []int{0, 10_000} {
			b.Run(fmt.Sprintf("%s/pending=%d", op, n), func(b *testing.B) { benchHotPath(b, op, n) })
		}
	}
}

func benchHotPath(b *testing.B, op string, pending int) {
	const stored = 10_000
	ctx := context.Background()
	dir := b.TempDir()
	w, err := wallet.Open(filepath.Join(dir, "wallet.db"), &wallet.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	spath := filepath.Join(dir, "messages.db")
	s, err := msgstore.Open(spath, &msgstore.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	keys := dmtest.NewKeys(1_000_000)
	bob, err := w.CreateUser("bob")
	if err != nil {
		b.Fatal(err)
	}
	keys.Add("bob", bob.PubKey(), 1)
	alice, _ := twproto.NewPrivateKey()
	keys.Add("alice", alice.PubKey(), 1)
	stranger, _ := twproto.NewPrivateKey()
	var raws [][]byte
	for k := range int64(64) {
		p := buildPost(b, keys, alice, "alice", k, stranger.PubKey(), twproto.EncodeMessage("a direct message to someone else", "dave"))
		raws = append(raws, p.Raw)
	}
	err = s.Update(func(tx *msgstore.Tx) error {
		for i := range stored {
			ref := msgstore.PostRef{Author: fmt.Sprintf("u%d", i%157), K: int64(i)}
			if _, err := tx.PutPost(ref, raws[i%len(raws)]); err != nil {
				return err
			}
			if i < pending {
				if err := tx.MarkPending(ref, msgstore.PendingLimits{Now: 1}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	// As a daemon would find it after a restart.
	s.Close()
	if s, err = msgstore.Open(spath, &msgstore.Options{NoSync: true}); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	net := dmtest.NewHub(keys).Node("bench")
	e, err := New(Config{Wallet: w, Store: s, Keys: keys, Net: net})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	net.SetSink(e)
	if err := e.Follow(ctx, "bob", []string{"alice"}); err != nil {
		b.Fatal(err)
	}
	k := int64(1000)
	step := func() {
		gk, _ := twproto.NewPrivateKey()
		switch op {
		case "creategroup":
			if _, err := e.RegisterGroup(ctx, gk, "g"); err != nil {
				b.Fatal(err)
			}
		case "invite":
			b.StopTimer()
			k++
			p := buildPost(b, keys, alice, "alice", k, bob.PubKey(), twproto.EncodeGroupInvite("g", gk.WIF()))
			b.StartTimer()
			if err := e.HandlePost(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
	}
	for range 3 { // warm up the files
		step()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		step()
	}
	b.StopTimer()
	var jobs int
	s.View(func(tx *msgstore.Tx) error { jobs = len(tx.Retries()); return nil })
	b.ReportMetric(float64(jobs), "jobs-left")
}
