package groupchat

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/dm/dmtest"
	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/wallet"
)

// groupState is what a node ends with for one group: its description,
// members, and each local user's conversation with it as lines (ids left
// out: they are arrival numbers).
type groupState struct {
	desc    string
	members string
	convs   map[string][]string
}

func (g groupState) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "description %q, members %s\n", g.desc, g.members)
	for _, u := range slices.Sorted(func(yield func(string) bool) {
		for u := range g.convs {
			if !yield(u) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "%s:\n  %s\n", u, strings.Join(g.convs[u], "\n  "))
	}
	return b.String()
}

// factory makes a group's posts on a sender node of the hub, with a clock
// that moves one second per post, and hands out the posts and the keys of
// the receiving node's users.
type factory struct {
	t      *testing.T
	keys   *dmtest.Keys
	hub    *dmtest.Hub
	sender *node
	local  map[string]*twproto.PrivateKey // users of the receiving node
	tmpl   string                         // template datadir of the receiving node
}

func newFactory(t *testing.T, authors []string, local ...string) *factory {
	t.Helper()
	keys := dmtest.NewKeys(100)
	hub := dmtest.NewHub(keys)
	var clock atomic.Int64
	clock.Store(1795483000)
	now := func() time.Time { return time.Unix(clock.Add(1), 0) }
	f := &factory{t: t, keys: keys, hub: hub, sender: newNode(t, hub, keys, authors[0], now), local: map[string]*twproto.PrivateKey{}}
	for _, a := range authors[1:] {
		k, err := f.sender.w.CreateUser(a)
		must(t, err)
		keys.Add(a, k.PubKey(), 1)
	}
	for _, u := range local {
		k, err := twproto.NewPrivateKey()
		must(t, err)
		keys.Add(u, k.PubKey(), 1)
		f.local[u] = k
	}
	return f
}

// posts returns every post of the authors, in k order per author.
func (f *factory) posts(authors ...string) []*twproto.Post {
	var out []*twproto.Post
	for _, a := range authors {
		for _, d := range f.hub.Pieces(a) {
			p, err := twproto.DecodePost(d.Raw)
			must(f.t, err)
			out = append(out, p)
		}
	}
	return out
}

// template makes, once, the files of a receiving node holding the local
// users (who follow the authors); receive starts each run from a copy.
func (f *factory) template(authors []string) string {
	f.t.Helper()
	if f.tmpl != "" {
		return f.tmpl
	}
	ctx := context.Background()
	dir := f.t.TempDir()
	w, err := wallet.Open(filepath.Join(dir, "wallet.db"), &wallet.Options{NoSync: true})
	must(f.t, err)
	s, err := msgstore.Open(filepath.Join(dir, "messages.db"), &msgstore.Options{NoSync: true})
	must(f.t, err)
	net := dmtest.NewHub(f.keys).Node("receiver")
	e, err := dm.New(dm.Config{Wallet: w, Store: s, Keys: f.keys, Net: net})
	must(f.t, err)
	net.SetSink(e)
	for u, k := range f.local {
		must(f.t, w.ImportUserKey(u, k))
		must(f.t, e.Follow(ctx, u, authors))
	}
	net.SetSink(nil)
	must(f.t, e.Close())
	must(f.t, w.Close())
	must(f.t, s.Close())
	f.tmpl = dir
	return dir
}

// receive hands posts in the given order to a fresh receiving node and
// returns its state for the one group.
func (f *factory) receive(posts []*twproto.Post, order []int, authors []string) groupState {
	f.t.Helper()
	ctx := context.Background()
	tmpl := f.template(authors)
	dir, err := os.MkdirTemp(tmpl, "run")
	must(f.t, err)
	defer os.RemoveAll(dir)
	for _, name := range []string{"wallet.db", "messages.db"} {
		b, err := os.ReadFile(filepath.Join(tmpl, name))
		must(f.t, err)
		must(f.t, os.WriteFile(filepath.Join(dir, name), b, 0o600))
	}
	w, err := wallet.Open(filepath.Join(dir, "wallet.db"), &wallet.Options{NoSync: true})
	must(f.t, err)
	defer w.Close()
	s, err := msgstore.Open(filepath.Join(dir, "messages.db"), &msgstore.Options{NoSync: true})
	must(f.t, err)
	defer s.Close()
	net := dmtest.NewHub(f.keys).Node("receiver")
	e, err := dm.New(dm.Config{Wallet: w, Store: s, Keys: f.keys, Net: net})
	must(f.t, err)
	defer e.Close() // stops the retry worker before the store and wallet close
	net.SetSink(e)
	defer net.SetSink(nil)
	for _, i := range order {
		must(f.t, e.HandlePost(ctx, posts[i]))
	}
	// The retry of pending posts with a new key runs in the background,
	// interleaved with the posts above: only its end is waited for.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	must(f.t, e.WaitRetries(wctx))
	aliases, err := w.GroupAliases()
	must(f.t, err)
	st := groupState{convs: map[string][]string{}}
	if len(aliases) != 1 {
		f.t.Fatalf("order %v: %d groups", order, len(aliases))
	}
	alias := aliases[0]
	must(f.t, s.View(func(tx *msgstore.Tx) error {
		g, _ := tx.Group(alias)
		st.desc, st.members = g.Description, strings.Join(g.Members, ",")
		for u := range f.local {
			msgs, err := tx.Messages(u, msgstore.NewQuery(alias), 1000)
			if err != nil {
				return err
			}
			var lines []string
			for _, m := range msgs {
				lines = append(lines, fmt.Sprintf("%d %s/%d %v: %s", m.Time, m.From, m.K, m.FromMe, m.Text))
			}
			slices.Sort(lines)
			st.convs[u] = lines
		}
		return nil
	}))
	return st
}

// permutations calls fn with every order of 0..n-1 (Heap's algorithm).
func permutations(n int, fn func([]int)) {
	a := make([]int, n)
	for i := range a {
		a[i] = i
	}
	c := make([]int, n)
	fn(a)
	for i := 0; i < n; {
		if c[i] < i {
			if i%2 == 0 {
				a[0], a[i] = a[i], a[0]
			} else {
				a[c[i]], a[i] = a[i], a[c[i]]
			}
			fn(a)
			c[i]++
			i = 0
		} else {
			c[i] = 0
			i++
		}
	}
}

func natural(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// Every order of a small group's posts ends in the same state on a
// node with two local users, bob (invited first) and dave (invited later):
// the message sent before dave's invite is dave's too, the description is
// the newest one (an older invite arriving last does not bring the old one
// back), and each "New member" line comes from the earliest member list
// naming the member. twisterd, and twgroupd before, lost the message for
// dave or kept the old description in some of these orders.
func TestGroupStateEveryOrder(t *testing.T) {
	ctx := context.Background()
	f := newFactory(t, []string{"alice"}, "bob", "dave")
	a := f.sender
	alias, err := a.gc.Create(ctx, "first", "")
	must(t, err)
	must(t, a.gc.Invite(ctx, "alice", 0, alias, []string{"bob"})) // 0 invite bob, 1 list [bob]
	_, err = a.e.NewDirectMsg(ctx, "alice", 2, alias, "hello", false)
	must(t, err)
	must(t, a.gc.SetDescription(ctx, "alice", 3, alias, "second"))
	must(t, a.gc.Invite(ctx, "alice", 4, alias, []string{"dave"})) // 4 invite dave, 5 list [bob, dave]
	all := f.posts("alice")
	if len(all) != 6 {
		t.Fatalf("%d posts", len(all))
	}
	authors := []string{"alice"}
	check := func(posts []*twproto.Post, orders func(func([]int))) int {
		want := f.receive(posts, natural(len(posts)), authors)
		if want.desc != "second" || want.members != "bob,dave" {
			t.Fatalf("natural order: %s", want)
		}
		for _, u := range []string{"bob", "dave"} {
			if !slices.ContainsFunc(want.convs[u], func(l string) bool { return strings.HasSuffix(l, "alice/2 false: hello") }) {
				t.Fatalf("%s lacks the message: %s", u, want)
			}
		}
		n := 0
		orders(func(order []int) {
			n++
			if got := f.receive(posts, order, authors); got.String() != want.String() {
				t.Fatalf("order %v:\n%s\nnatural order:\n%s", order, got, want)
			}
		})
		return n
	}
	// Every order of five of them (bob's member list never arrives)...
	five := slices.Delete(slices.Clone(all), 1, 2)
	n := check(five, func(fn func([]int)) { permutations(len(five), fn) })
	// ... and random orders of all six.
	rng := rand.New(rand.NewPCG(6, 6))
	m := check(all, func(fn func([]int)) {
		for range 100 {
			order := natural(len(all))
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			fn(order)
		}
	})
	t.Logf("%d orders of 5 posts, %d of 6: one state", n, m)
}

// Many random orders of a 16-member group (alice, 14 others, and the
// receiving node's two users named in different chunks of the member
// list), with messages and description changes from several members, end
// in one state.
func TestGroupStateRandomOrders16(t *testing.T) {
	ctx := context.Background()
	var authors []string
	authors = append(authors, "alice")
	for i := 1; i <= 13; i++ {
		authors = append(authors, fmt.Sprintf("member%02d", i))
	}
	f := newFactory(t, authors, "bob", "zed") // bob in the first chunk, zed in the last
	a := f.sender
	alias, err := a.gc.Create(ctx, "sixteen", "")
	must(t, err)
	members := append(slices.Clone(authors), "bob", "zed")
	must(t, a.gc.Invite(ctx, "alice", 0, alias, members)) // 16 invites, then the chunked list
	k := a.lastK(t, "alice") + 1
	_, err = a.e.NewDirectMsg(ctx, "alice", k, alias, "welcome all", false)
	must(t, err)
	// Other members write (their posts are made on the same sender node,
	// which holds their keys and the group's).
	for i, m := range []string{"member03", "member07", "member13"} {
		_, err := a.e.NewDirectMsg(ctx, m, 0, alias, "hi from "+m, false)
		must(t, err)
		if i == 1 {
			must(t, a.gc.SetDescription(ctx, m, 1, alias, "renamed by "+m))
		}
	}
	must(t, a.gc.SetDescription(ctx, "alice", k+1, alias, "final name"))
	posts := f.posts(authors...)
	want := f.receive(posts, natural(len(posts)), authors)
	if want.desc != "final name" || strings.Count(want.members, ",") != 15 {
		t.Fatalf("natural order (%d posts): %s", len(posts), want)
	}
	chunks := 0
	for _, l := range want.convs["bob"] {
		if strings.Contains(l, "New member 'zed'") {
			chunks++
		}
	}
	if chunks != 1 || len(want.convs["zed"]) != len(want.convs["bob"]) {
		t.Fatalf("natural order: %s", want)
	}
	rng := rand.New(rand.NewPCG(10, 16))
	const orders = 60
	for range orders {
		order := natural(len(posts))
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		if got := f.receive(posts, order, authors); got.String() != want.String() {
			t.Fatalf("order %v:\n%s\nnatural order:\n%s", order, got, want)
		}
	}
	t.Logf("%d posts, %d random orders, one state", len(posts), orders)
}

// lastK is the highest k of user on the hub.
func (n *node) lastK(t *testing.T, user string) int64 {
	t.Helper()
	k, err := n.e.NextK(user)
	must(t, err)
	return k - 1
}
