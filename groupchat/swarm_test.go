package groupchat

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/dm/dmtest"
	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

func (n *node) lines(t *testing.T, peer string) []string {
	t.Helper()
	th, err := n.e.GetDirectMsgs(n.user, 100, []msgstore.Query{msgstore.NewQuery(peer)})
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, tt := range th {
		for _, m := range tt.Messages {
			out = append(out, m.From+": "+m.Text)
		}
	}
	return out
}

// waitLines polls until the thread holds exactly want, or fails after a
// deadline. The swarm fetches pieces in parallel, so arrival order (and so
// id order) may differ from k order: lines compare as multisets here; the
// hub tests pin the order.
func waitLines(t *testing.T, n *node, peer string, want []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	want = slices.Sorted(slices.Values(want))
	for {
		got := n.lines(t, peer)
		if reflect.DeepEqual(slices.Sorted(slices.Values(got)), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's thread with %s:\n%s\nwant:\n%s", n.user, peer, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGroupOverRealSwarm runs the group flow between two engines whose
// network is internal/swarm over TCP on 127.0.0.1: invites, member list,
// messages both ways, a DM, a description change.
func TestGroupOverRealSwarm(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	ctx := context.Background()
	keys := dmtest.NewKeys(100)
	a := newSwarmNode(t, keys, "alice", nil)
	b := newSwarmNode(t, keys, "bob", []netip.AddrPort{a.sw.Addr()})
	for _, n := range []*node{a, b} {
		if err := n.e.Follow(ctx, n.user, []string{"alice", "bob"}); err != nil {
			t.Fatal(err)
		}
	}

	alias, err := a.gc.Create(ctx, "over tcp", "")
	must(t, err)
	must(t, a.gc.Invite(ctx, "alice", 1, alias, []string{"bob", "alice"})) // k=1,2 invites, k=3 list
	_, err = a.e.NewDirectMsg(ctx, "alice", 4, alias, "hello over tcp", false)
	must(t, err)

	var aliasB string
	deadline := time.Now().Add(30 * time.Second)
	for aliasB == "" {
		if l, _ := b.gc.List("", false); len(l) == 1 {
			aliasB = l[0]
		} else if time.Now().After(deadline) {
			t.Fatal("bob never learned the group")
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLines(t, b, aliasB, []string{
		"alice: *** Invited by 'alice' to group: over tcp",
		"alice: *** New member 'alice' invited by 'alice'",
		"alice: hello over tcp",
	})
	_, err = b.e.NewDirectMsg(ctx, "bob", 1, aliasB, "bob answers", false)
	must(t, err)
	must(t, b.gc.SetDescription(ctx, "bob", 2, aliasB, "still tcp"))
	_, err = a.e.NewDirectMsg(ctx, "alice", 5, "bob", "a private word", true) // k=5,6
	must(t, err)

	waitLines(t, a, alias, []string{
		"alice: *** New member 'alice' invited by 'alice'",
		"alice: *** New member 'bob' invited by 'alice'",
		"alice: hello over tcp",
		"bob: bob answers",
		"bob: *** 'bob' changed group description to: still tcp",
	})
	waitLines(t, b, "alice", []string{"alice: a private word"})
	waitLines(t, a, "bob", []string{"alice: a private word"}) // the copy_self copy
	if info, _ := a.gc.Info(alias); info.Description != "still tcp" {
		t.Fatalf("alice's description %q", info.Description)
	}

	// bob's daemon is down while alice writes; it catches up on restart.
	b.close()
	_, err = a.e.NewDirectMsg(ctx, "alice", 7, alias, "while you were down", false)
	must(t, err)
	b.restart()
	waitLines(t, b, aliasB, []string{
		"alice: *** Invited by 'alice' to group: over tcp",
		"alice: *** New member 'alice' invited by 'alice'",
		"alice: hello over tcp",
		"bob: bob answers",
		"bob: *** 'bob' changed group description to: still tcp",
		"alice: while you were down",
	})
}

// Concurrent sends with k = auto over the real swarm (one transaction per
// send on the shared file) never collide and use exactly the ks they need:
// a DM 1, a copy_self DM 2, an invite of one member 1 + 1 list, a
// description 1; an explicit k already used is still refused.
func TestAutoKOverRealSwarm(t *testing.T) {
	ctx := context.Background()
	keys := dmtest.NewKeys(100)
	a := newSwarmNode(t, keys, "alice", nil)
	b := newSwarmNode(t, keys, "bob", []netip.AddrPort{a.sw.Addr()})
	for _, n := range []*node{a, b} {
		must(t, n.e.Follow(ctx, n.user, []string{"alice", "bob"}))
	}
	alias, err := a.gc.Create(ctx, "auto", "")
	must(t, err)
	const dms = 6
	errs := make(chan error, dms+3)
	for i := range dms {
		go func() {
			_, err := a.e.NewDirectMsg(ctx, "alice", dm.AutoK, "bob", fmt.Sprintf("auto %d", i), i%2 == 0)
			errs <- err
		}()
	}
	go func() { errs <- a.gc.Invite(ctx, "alice", dm.AutoK, alias, []string{"bob"}) }()
	go func() { errs <- a.gc.SetDescription(ctx, "alice", dm.AutoK, alias, "auto desc") }()
	for range dms + 2 {
		must(t, <-errs)
	}
	want := int64(dms/2*2 + dms/2 + 2 + 1) // ks 0..want-1
	if got := a.sw.LastHave("alice"); got != want-1 {
		t.Fatalf("last have %d, want %d", got, want-1)
	}
	next, err := a.e.NextK("alice")
	must(t, err)
	if next != want {
		t.Fatalf("next k %d, want %d", next, want)
	}
	if _, err := a.e.NewDirectMsg(ctx, "alice", want-1, "bob", "taken", false); !errors.Is(err, dm.ErrKUsed) {
		t.Fatalf("used k: %v", err)
	}
	var lines []string
	for i := range dms {
		lines = append(lines, fmt.Sprintf("alice: auto %d", i))
	}
	waitLines(t, b, "alice", lines)
}

// BenchmarkDMOverRealSwarm: one DM from NewDirectMsg on alice's engine to
// the message in bob's store, two engines over internal/swarm on
// 127.0.0.1 with fsync on. "shared": pieces in messages.db, one commit per
// DM on each side; "separate": the swarm in its own swarm.db, the path of
// a Network apart from the store (a reservation commit, the piece's commit
// with its delivery queue entry, the dequeue commit; the old path had one
// commit more, for the pending mark). Compare the two in one run.
func BenchmarkDMOverRealSwarm(b *testing.B) {
	for _, mode := range []string{"shared", "separate"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			keys := dmtest.NewKeys(100)
			mk := newSwarmNode
			if mode == "separate" {
				mk = newSeparateSwarmNode
			}
			a := mk(b, keys, "alice", nil)
			bob := mk(b, keys, "bob", []netip.AddrPort{a.sw.Addr()})
			for _, n := range []*node{a, bob} {
				if err := n.e.Follow(ctx, n.user, []string{"alice", "bob"}); err != nil {
					b.Fatal(err)
				}
			}
			send := func(text string) {
				if _, err := a.e.NewDirectMsg(ctx, "alice", dm.AutoK, "bob", text, false); err != nil {
					b.Fatal(err)
				}
				deadline := time.Now().Add(30 * time.Second)
				for {
					th, err := bob.e.GetDirectMsgs("bob", 1, []msgstore.Query{msgstore.NewQuery("alice")})
					if err != nil {
						b.Fatal(err)
					}
					if len(th) == 1 && len(th[0].Messages) == 1 && th[0].Messages[0].Text == text {
						return
					}
					if time.Now().After(deadline) {
						b.Fatalf("%q never reached bob", text)
					}
					time.Sleep(100 * time.Microsecond)
				}
			}
			send("warm-up")
			for i := 0; b.Loop(); i++ {
				send(fmt.Sprintf("message %d", i))
			}
		})
	}
}

// countingKeys counts the key lookups of one user: each signature check
// of one of its posts (twproto.ValidatePost) asks for its key once.
type countingKeys struct {
	*dmtest.Keys
	user string
	n    atomic.Int64
}

func (c *countingKeys) UserKey(ctx context.Context, user string, height int64) (twproto.UserKey, error) {
	if user == c.user {
		c.n.Add(1)
	}
	return c.Keys.UserKey(ctx, user, height)
}

// A DM is verified once on the sending node: built, signed and validated
// by the engine, stored by the swarm without a second check, and served
// to the receiver from the mark the engine's validation left.
func TestSenderVerifiesOnce(t *testing.T) {
	ctx := context.Background()
	keys := dmtest.NewKeys(100)
	ck := &countingKeys{Keys: keys, user: "alice"}
	a := startNode(&node{t: t, dir: t.TempDir(), user: "alice", keys: keys, ks: ck, now: time.Now})
	b := newSwarmNode(t, keys, "bob", []netip.AddrPort{a.sw.Addr()})
	for _, n := range []*node{a, b} {
		must(t, n.e.Follow(ctx, n.user, []string{"alice", "bob"}))
	}
	_, err := a.e.NewDirectMsg(ctx, "alice", dm.AutoK, "bob", "warm-up", false)
	must(t, err)
	waitLines(t, b, "alice", []string{"alice: warm-up"})
	before := ck.n.Load()
	raw, err := a.e.NewDirectMsg(ctx, "alice", dm.AutoK, "bob", "counted", false)
	must(t, err)
	waitLines(t, b, "alice", []string{"alice: warm-up", "alice: counted"})
	got := ck.n.Load() - before
	// What one verification costs in lookups.
	before = ck.n.Load()
	p, err := twproto.DecodePost(raw)
	must(t, err)
	_, err = twproto.ValidatePost(ctx, raw, "alice", p.K, ck)
	must(t, err)
	if one := ck.n.Load() - before; got != one {
		t.Fatalf("alice's node looked up alice's key %d times for one DM; one verification does %d", got, one)
	}
}
