package groupchat

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/dm/dmtest"
	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/swarm"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/wallet"
)

// node is one daemon with real wallet and store files. Its network is the
// in-memory hub (net), or the real swarm over TCP on 127.0.0.1 (sw) when made
// by newSwarmNode.
type node struct {
	t    testing.TB
	dir  string
	user string
	keys *dmtest.Keys
	now  func() time.Time

	net   *dmtest.Node     // hub network, nil over the swarm
	peers []netip.AddrPort // swarm peers, when over the swarm
	sw    *swarm.Swarm
	// separate: the swarm keeps its own swarm.db (not messages.db's file)
	separate bool
	// ks, when set, is the key source of the engine and swarm (keys still
	// registers the users)
	ks twproto.KeySource

	w  *wallet.Wallet
	s  *msgstore.Store
	e  *dm.Engine
	gc *Service
}

func newNode(t testing.TB, hub *dmtest.Hub, keys *dmtest.Keys, user string, now func() time.Time) *node {
	return startNode(&node{t: t, dir: t.TempDir(), user: user, keys: keys, net: hub.Node(user), now: now})
}

// newSwarmNode is a node whose network is internal/swarm on 127.0.0.1,
// dialing peers.
func newSwarmNode(t testing.TB, keys *dmtest.Keys, user string, peers []netip.AddrPort) *node {
	return startNode(&node{t: t, dir: t.TempDir(), user: user, keys: keys, peers: peers, now: time.Now})
}

// newSeparateSwarmNode is a swarm node whose pieces are in their own
// swarm.db: the send path of a Network apart from the message store
// (commit, publish, delivery queue), for comparison in benchmarks.
func newSeparateSwarmNode(t testing.TB, keys *dmtest.Keys, user string, peers []netip.AddrPort) *node {
	return startNode(&node{t: t, dir: t.TempDir(), user: user, keys: keys, peers: peers, now: time.Now, separate: true})
}

func startNode(n *node) *node {
	n.t.Helper()
	n.open()
	n.t.Cleanup(n.close)
	k, err := n.w.CreateUser(n.user)
	if err != nil {
		n.t.Fatal(err)
	}
	n.keys.Add(n.user, k.PubKey(), 1)
	return n
}

func (n *node) open() {
	n.t.Helper()
	var err error
	if n.w, err = wallet.Open(filepath.Join(n.dir, "wallet.db"), nil); err != nil {
		n.t.Fatal(err)
	}
	if n.s, err = msgstore.Open(filepath.Join(n.dir, "messages.db"), nil); err != nil {
		n.t.Fatal(err)
	}
	var network dm.Network = n.net
	if n.net == nil {
		cfg := swarm.Config{
			DataDir: n.dir, DB: n.s.Bolt(), ListenAddr: "127.0.0.1:0", DHTPort: -1, Keys: n.keySource(),
			StaticPeers: n.peers, ReconnectInterval: 100 * time.Millisecond, MultiConnPerIP: true,
		}
		if n.separate {
			cfg.DB = nil
		}
		n.sw, err = swarm.New(cfg)
		if err != nil {
			n.t.Fatal(err)
		}
		network = n.sw
	}
	if n.e, err = dm.New(dm.Config{Wallet: n.w, Store: n.s, Keys: n.keySource(), Net: network, Now: n.now}); err != nil {
		n.t.Fatal(err)
	}
	if n.gc, err = New(Config{Engine: n.e, Wallet: n.w, Store: n.s}); err != nil {
		n.t.Fatal(err)
	}
	if n.net != nil {
		n.net.SetSink(n.e)
		return
	}
	n.sw.SetSink(n.e)
	if err := n.sw.Start(); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) keySource() twproto.KeySource {
	if n.ks != nil {
		return n.ks
	}
	return n.keys
}

func (n *node) close() {
	if n.e == nil {
		return
	}
	if n.net != nil {
		n.net.SetSink(nil)
	} else {
		n.sw.Close()
	}
	n.e.Close()
	n.w.Close()
	n.s.Close()
	n.e = nil
}

func (n *node) restart() {
	n.t.Helper()
	n.close()
	n.open()
	if err := n.e.Resume(context.Background()); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) follow(users ...string) {
	n.t.Helper()
	if err := n.e.Follow(context.Background(), n.user, users); err != nil {
		n.t.Fatal(err)
	}
}

// alias is this node's alias for the (single) group it knows.
func (n *node) alias() string {
	n.t.Helper()
	n.settle()
	as, err := n.gc.List("", false)
	if err != nil || len(as) != 1 {
		n.t.Fatalf("%s: groups %v %v", n.user, as, err)
	}
	return as[0]
}

// settle waits for the background retry of pending posts.
func (n *node) settle() {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.e.WaitRetries(ctx); err != nil {
		n.t.Fatal(err)
	}
}

// texts returns the node user's group thread as "from: text" lines.
func (n *node) texts(alias string) []string {
	n.t.Helper()
	n.settle()
	th, err := n.e.GetDirectMsgs(n.user, 1000, []msgstore.Query{msgstore.NewQuery(alias)})
	if err != nil {
		n.t.Fatal(err)
	}
	out := []string{}
	if len(th) == 0 {
		return out
	}
	prev := int64(-1)
	for i, m := range th[0].Messages {
		if m.ID <= prev {
			n.t.Errorf("%s: message %d has id %d after %d", n.user, i, m.ID, prev)
		}
		prev = m.ID
		me := ""
		if m.FromMe {
			me = " (me)"
		}
		out = append(out, fmt.Sprintf("%s/%d%s: %s", m.From, m.K, me, m.Text))
	}
	return out
}

func (n *node) noErrs() {
	n.t.Helper()
	for _, err := range n.net.Errs() {
		n.t.Errorf("%s: %v", n.user, err)
	}
}

func ticker(start int64) func() time.Time {
	var t atomic.Int64
	t.Store(start)
	return func() time.Time { return time.Unix(t.Add(1), 0) }
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestThreeMemberGroup(t *testing.T) {
	ctx := context.Background()
	keys := dmtest.NewKeys(100)
	hub := dmtest.NewHub(keys)
	now := ticker(1_800_000_000)
	a := newNode(t, hub, keys, "alice", now)
	b := newNode(t, hub, keys, "bob", now)
	c := newNode(t, hub, keys, "carol", now)
	for _, n := range []*node{a, b, c} {
		n.follow("alice", "bob", "carol")
	}

	alias, err := a.gc.Create(ctx, "trio", "")
	must(t, err)
	if info, err := a.gc.Info(alias); err != nil || info.Description != "trio" || len(info.Members) != 0 {
		t.Fatalf("new group: %+v %v", info, err)
	}
	// Invites k=1..3 in array order, then one member-list post, k=4.
	must(t, a.gc.Invite(ctx, "alice", 1, alias, []string{"bob", "carol", "alice"}))
	if got := len(hub.Pieces("alice")); got != 4 {
		t.Fatalf("alice has %d pieces, want 4", got)
	}
	aB, aC := b.alias(), c.alias()
	if aB == alias && aC == alias {
		t.Log("aliases happen to coincide") // they are random per node
	}
	for _, n := range []*node{a, b, c} {
		info, err := n.gc.Info(n.alias())
		if err != nil || info.Description != "trio" || !slices.Equal(info.Members, []string{"alice", "bob", "carol"}) {
			t.Fatalf("%s: %+v %v", n.user, info, err)
		}
		if l, _ := n.gc.List(n.user, false); !slices.Equal(l, []string{n.alias()}) {
			t.Fatalf("%s: listgroups %v", n.user, l)
		}
	}

	_, err = a.e.NewDirectMsg(ctx, "alice", 5, alias, "hi all", false)
	must(t, err)
	_, err = b.e.NewDirectMsg(ctx, "bob", 1, aB, "hi from bob", false)
	must(t, err)
	_, err = c.e.NewDirectMsg(ctx, "carol", 1, aC, "carol here", false)
	must(t, err)
	must(t, b.gc.SetDescription(ctx, "bob", 2, aB, "trio v2"))
	for _, n := range []*node{a, b, c} {
		if info, _ := n.gc.Info(n.alias()); info.Description != "trio v2" {
			t.Errorf("%s: description %q", n.user, info.Description)
		}
	}
	must(t, c.gc.Leave(ctx, "carol", aC))
	_, err = a.e.NewDirectMsg(ctx, "alice", 6, alias, "carol left?", false)
	must(t, err)

	common := []string{
		"alice/5: hi all",
		"bob/1: hi from bob",
		"carol/1: carol here",
		"bob/2: *** 'bob' changed group description to: trio v2",
		"alice/6: carol left?",
	}
	mark := func(lines []string, me string) []string {
		out := slices.Clone(lines)
		for i, l := range out {
			if strings.HasPrefix(l, me+"/") && !strings.Contains(l, "***") {
				out[i] = strings.Replace(l, ":", " (me):", 1)
			}
		}
		return out
	}
	wantA := append([]string{
		"alice/4: *** New member 'alice' invited by 'alice'",
		"alice/4: *** New member 'bob' invited by 'alice'",
		"alice/4: *** New member 'carol' invited by 'alice'",
	}, mark(common, "alice")...)
	wantB := append([]string{
		"alice/1: *** Invited by 'alice' to group: trio",
		"alice/4: *** New member 'alice' invited by 'alice'",
		"alice/4: *** New member 'carol' invited by 'alice'",
	}, mark(common, "bob")...)
	if got := a.texts(alias); !reflect.DeepEqual(got, wantA) {
		t.Errorf("alice's thread:\n%s", strings.Join(got, "\n"))
	}
	if got := b.texts(aB); !reflect.DeepEqual(got, wantB) {
		t.Errorf("bob's thread:\n%s", strings.Join(got, "\n"))
	}
	// carol left: history gone, later messages not stored, group ignored.
	if got := c.texts(aC); len(got) != 0 {
		t.Errorf("carol's thread after leaving: %v", got)
	}
	if l, _ := c.gc.List("carol", true); !slices.Equal(l, []string{aC}) {
		t.Errorf("carol's ignored groups: %v", l)
	}
	if info, _ := c.gc.Info(aC); slices.Contains(info.Members, "carol") {
		t.Errorf("carol still a member on her node: %v", info.Members)
	}

	// alice invites carol back. carol's node knows the key: twisterd would
	// drop the invite; here carol is back, sees the invite and what follows,
	// and her ids continue after the dropped history.
	must(t, a.gc.Invite(ctx, "alice", 7, alias, []string{"carol"})) // k=7 invite, k=8 list
	_, err = a.e.NewDirectMsg(ctx, "alice", 9, alias, "welcome back carol", false)
	must(t, err)
	wantC := []string{
		"alice/7: *** Invited by 'alice' to group: trio v2",
		"alice/9: welcome back carol",
	}
	if got := c.texts(aC); !reflect.DeepEqual(got, wantC) {
		t.Errorf("carol's thread after the re-invite:\n%s", strings.Join(got, "\n"))
	}
	th, _ := c.e.GetDirectMsgs("carol", 10, []msgstore.Query{msgstore.NewQuery(aC)})
	if len(th) != 1 || th[0].Messages[0].ID == 0 {
		t.Errorf("carol's ids restarted: %+v", th)
	}
	if l, _ := c.gc.List("carol", true); len(l) != 0 {
		t.Errorf("carol still ignores: %v", l)
	}
	if got := b.texts(aB); got[len(got)-1] != "alice/9: welcome back carol" || len(got) != len(wantB)+1 {
		t.Errorf("bob's thread after the re-invite:\n%s", strings.Join(got, "\n"))
	}
	for _, n := range []*node{a, b, c} {
		n.noErrs()
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	keys := dmtest.NewKeys(100)
	hub := dmtest.NewHub(keys)
	a := newNode(t, hub, keys, "alice", ticker(1_800_000_000))
	if _, err := a.gc.Info("*nosuchgp"); !errors.Is(err, ErrUnknownGroup) || err.Error() != "unknown group alias '*nosuchgp'" {
		t.Errorf("Info: %v", err)
	}
	if _, err := a.gc.List("nobody", false); !errors.Is(err, ErrUnknownUser) || err.Error() != "unknown user 'nobody'" {
		t.Errorf("List: %v", err)
	}
	if err := a.gc.Invite(ctx, "alice", 1, "alice", []string{"bob"}); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("Invite to a user name: %v", err)
	}
	alias, err := a.gc.Create(ctx, "g", "")
	must(t, err)
	if err := a.gc.Leave(ctx, "nobody", alias); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("Leave: %v", err)
	}
	if err := a.gc.Invite(ctx, "alice", 1, alias, []string{"ghost"}); !errors.Is(err, dm.ErrEncryptToDest) {
		t.Errorf("Invite of an unknown user: %v", err)
	}
	if n := len(hub.Pieces("alice")); n != 0 {
		t.Errorf("failed invite published %d pieces", n)
	}
	if err := a.gc.Invite(ctx, "alice", 1, alias, []string{}); !errors.Is(err, ErrNoMembers) {
		t.Errorf("Invite of nobody: %v", err)
	}
	// Bad WIF and a user's own key are refused (twisterd: "", no error).
	if got, err := a.gc.Create(ctx, "x", "not a wif"); got != "" || !errors.Is(err, wallet.ErrInvalidKey) {
		t.Errorf("bad WIF: %q %v", got, err)
	}
	own, _ := a.w.Key("alice")
	if got, err := a.gc.Create(ctx, "x", own.WIF()); got != "" || !errors.Is(err, wallet.ErrInvalidKey) {
		t.Errorf("user key as group key: %q %v", got, err)
	}
	// Importing a held group key returns its alias, description untouched.
	gk, _ := a.w.Key(alias)
	if got, err := a.gc.Create(ctx, "whatever", gk.WIF()); got != alias || err != nil {
		t.Errorf("re-import: %q %v", got, err)
	}
	if info, _ := a.gc.Info(alias); info.Description != "g" {
		t.Errorf("re-import changed the description to %q", info.Description)
	}
	if l, _ := a.gc.List("", false); !slices.Equal(l, []string{alias}) {
		t.Errorf("groups %v", l)
	}
}

func TestMemberChunks(t *testing.T) {
	// Ten-letter names cost 13 each: the counter passes 150 at the 12th.
	var names []string
	for i := range 20 {
		names = append(names, fmt.Sprintf("member%04d", i))
	}
	chunks := memberChunks(names)
	if len(chunks) != 2 || len(chunks[0]) != 12 || len(chunks[1]) != 8 {
		t.Fatalf("chunk sizes %d", len(chunks))
	}
	if len(memberChunks(nil)) != 0 || len(memberChunks([]string{"a"})) != 1 {
		t.Fatal("edge cases")
	}

	// Through the whole flow: 20 invitees -> 20 invites + 2 list posts, and
	// the lists carry every name once.
	ctx := context.Background()
	keys := dmtest.NewKeys(100)
	hub := dmtest.NewHub(keys)
	a := newNode(t, hub, keys, "alice", ticker(1_800_000_000))
	for _, nm := range names {
		k, err := twproto.NewPrivateKey()
		must(t, err)
		keys.Add(nm, k.PubKey(), 1)
	}
	alias, err := a.gc.Create(ctx, "big", "")
	must(t, err)
	must(t, a.gc.Invite(ctx, "alice", 10, alias, names))
	pieces := hub.Pieces("alice")
	if len(pieces) != 22 || pieces[0].K != 10 || pieces[21].K != 31 {
		t.Fatalf("%d pieces", len(pieces))
	}
	info, _ := a.gc.Info(alias)
	if !slices.Equal(info.Members, names) {
		t.Fatalf("members %v", info.Members)
	}
}

// TestOutOfOrderAndRestarts: bob's node gets alice's pieces in reverse
// order (messages and member list before the invite), then all of them
// again, then again after a restart that also missed a message; alice's
// node restarts too. Nothing is lost, nothing is stored twice.
func TestOutOfOrderAndRestarts(t *testing.T) {
	ctx := context.Background()
	keys := dmtest.NewKeys(100)
	hub := dmtest.NewHub(keys)
	now := ticker(1_800_000_000)
	a := newNode(t, hub, keys, "alice", now)
	b := newNode(t, hub, keys, "bob", now)
	a.follow("alice", "bob")
	b.follow("alice", "bob")

	b.net.Hold(true)
	alias, err := a.gc.Create(ctx, "late", "")
	must(t, err)
	must(t, a.gc.Invite(ctx, "alice", 1, alias, []string{"bob", "alice"})) // k=1,2 invites, k=3 list
	_, err = a.e.NewDirectMsg(ctx, "alice", 4, alias, "first", false)
	must(t, err)
	_, err = a.e.NewDirectMsg(ctx, "alice", 5, alias, "second", false)
	must(t, err)
	if q := b.net.Queued(); len(q) != 5 {
		t.Fatalf("bob holds %d pieces", len(q))
	}
	b.net.Hold(false)
	b.net.Flush(ctx, func(q []dmtest.Delivery) []dmtest.Delivery { slices.Reverse(q); return q })

	want := []string{
		"alice/1: *** Invited by 'alice' to group: late",
		"alice/3: *** New member 'alice' invited by 'alice'",
		"alice/4: first",
		"alice/5: second",
	}
	aB := b.alias()
	if got := b.texts(aB); !reflect.DeepEqual(got, want) {
		t.Fatalf("bob after reverse delivery:\n%s", strings.Join(got, "\n"))
	}
	// Everything again: nothing new.
	must(t, b.net.Follow(ctx, "alice"))
	must(t, b.e.Rescan(ctx, "bob"))
	if got := b.texts(aB); !reflect.DeepEqual(got, want) {
		t.Fatalf("bob after redelivery:\n%s", strings.Join(got, "\n"))
	}

	// bob's node is down while alice writes; then it restarts.
	b.close()
	_, err = a.e.NewDirectMsg(ctx, "alice", 6, alias, "while you were out", false)
	must(t, err)
	b.restart()
	want = append(want, "alice/6: while you were out")
	if got := b.texts(aB); !reflect.DeepEqual(got, want) {
		t.Fatalf("bob after restart:\n%s", strings.Join(got, "\n"))
	}

	// alice's node restarts: her ks stay used, bob's reply reaches her.
	a.close()
	_, err = b.e.NewDirectMsg(ctx, "bob", 1, aB, "reply from bob", false)
	must(t, err)
	a.restart()
	if _, err := a.e.NewDirectMsg(ctx, "alice", 6, alias, "dup k", false); !errors.Is(err, dm.ErrKUsed) {
		t.Fatalf("k=6 after restart: %v", err)
	}
	_, err = a.e.NewDirectMsg(ctx, "alice", 7, alias, "welcome back", false)
	must(t, err)
	want = append(want, "bob/1: reply from bob", "alice/7: welcome back")
	bWant := slices.Clone(want)
	bWant[len(bWant)-2] = "bob/1 (me): reply from bob"
	if got := b.texts(aB); !reflect.DeepEqual(got, bWant) {
		t.Fatalf("bob at the end:\n%s", strings.Join(got, "\n"))
	}
	aGot := a.texts(alias)
	aWant := []string{
		"alice/3: *** New member 'alice' invited by 'alice'",
		"alice/3: *** New member 'bob' invited by 'alice'",
		"alice/4 (me): first",
		"alice/5 (me): second",
		"alice/6 (me): while you were out",
		"bob/1: reply from bob",
		"alice/7 (me): welcome back",
	}
	if !reflect.DeepEqual(aGot, aWant) {
		t.Fatalf("alice at the end:\n%s", strings.Join(aGot, "\n"))
	}
	a.noErrs()
	b.noErrs()
}
