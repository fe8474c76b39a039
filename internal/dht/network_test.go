package dht

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

const netSize = 12

// startNet opens netSize nodes on 127.0.0.1 bootstrapping from the first,
// then has every node bootstrap again so that tables fill.
func startNet(t *testing.T, reg *testRegistry) []*Node {
	t.Helper()
	first := openNode(t, testConfig(t, reg))
	nodes := []*Node{first}
	for i := 1; i < netSize; i++ {
		nodes = append(nodes, openNode(t, testConfig(t, reg, first.LocalAddr())))
	}
	waitFor(t, 10*time.Second, "first node to confirm everyone", func() bool {
		_, confirmed := first.table.size()
		return confirmed >= netSize-1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "routing tables to fill", func() bool {
		for _, n := range nodes {
			if _, c := n.table.size(); c < bucketK {
				return false
			}
		}
		return true
	})
	return nodes
}

func getItems(t *testing.T, n *Node, user, res string, multi bool) []*twproto.DHTItem {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raws, err := n.Get(ctx, user, res, multi, 2*time.Second, 100*time.Millisecond, 3)
	if err != nil {
		t.Fatalf("get %s/%s: %v", user, res, err)
	}
	var out []*twproto.DHTItem
	for _, raw := range raws {
		it, err := twproto.DecodeDHTItem(raw)
		if err != nil {
			t.Fatalf("get returned a bad item: %v", err)
		}
		out = append(out, it)
	}
	return out
}

func holders(nodes []*Node, target twproto.DHTTarget) int {
	c := 0
	for _, n := range nodes {
		if len(n.items.get(target.Hash())) > 0 {
			c++
		}
	}
	return c
}

func TestNetwork(t *testing.T) {
	reg := newTestRegistry(t, "alice", "bob", "carol")
	reg.best = 50
	nodes := startNet(t, reg)
	ctx := context.Background()
	// One probe for all subtests: nodes learn it, and a closed probe would
	// be a dead node slowing every later lookup by a timeout.
	c := newRawClient(t)

	profile := twproto.DHTTarget{N: "alice", R: "profile", T: "s"}
	t.Run("single put and get", func(t *testing.T) {
		if err := nodes[1].Put(ctx, "alice", "profile", false, json.RawMessage(`{"fullname":"Alice","bio":"hi"}`), "alice", 1); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "item on the closest nodes", func() bool { return holders(nodes, profile) >= bucketK })
		items := getItems(t, nodes[netSize-1], "alice", "profile", false)
		if len(items) != 1 || items[0].P.Seq != 1 || items[0].SigUser != "alice" || items[0].P.Height != 49 {
			t.Fatalf("got %+v", items)
		}
		js, err := twproto.HexcapeDHTItem(items[0].Raw)
		if err != nil || !bytes.Contains(js, []byte(`"v":{"bio":"hi","fullname":"Alice"}`)) {
			t.Fatalf("json %s %v", js, err)
		}
	})

	t.Run("higher seq replaces", func(t *testing.T) {
		if err := nodes[2].Put(ctx, "alice", "profile", false, json.RawMessage(`{"fullname":"Alice 2"}`), "alice", 2); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "seq 2 to spread", func() bool {
			c := 0
			for _, n := range nodes {
				if l := n.items.get(profile.Hash()); len(l) == 1 && l[0].seq == 2 {
					c++
				}
			}
			return c >= bucketK
		})
		items := getItems(t, nodes[5], "alice", "profile", false)
		if len(items) != 1 || items[0].P.Seq != 2 {
			t.Fatalf("got %+v", items)
		}
		// A lower seq is accepted on the wire but replaces nothing.
		var holder *Node
		for _, n := range nodes {
			if l := n.items.get(profile.Hash()); len(l) == 1 && l[0].seq == 2 {
				holder = n
				break
			}
		}
		p, sig := reg.signedP(t, "alice", profile, "old", 1, 49, time.Now().Unix())
		m := c.on(t).ask(holder.LocalAddr(), methodPutData, &Args{Token: c.on(t).token(holder.LocalAddr(), profile), P: p, SigP: sig, SigUser: []byte("alice")})
		if m.Z != "r" {
			t.Fatalf("lower seq put: %s", errMsg(m))
		}
		if l := holder.items.get(profile.Hash()); l[0].seq != 2 {
			t.Fatalf("lower seq replaced: %d", l[0].seq)
		}
	})

	t.Run("stale token refused", func(t *testing.T) {
		target := twproto.DHTTarget{N: "bob", R: "status", T: "s"}
		tok := c.on(t).token(nodes[3].LocalAddr(), target)
		nodes[3].tokens.rotate()
		nodes[3].tokens.rotate()
		p, sig := reg.signedP(t, "bob", target, "x", 1, 49, time.Now().Unix())
		m := c.on(t).ask(nodes[3].LocalAddr(), methodPutData, &Args{Token: tok, P: p, SigP: sig, SigUser: []byte("bob")})
		if errMsg(m) != "invalid token" {
			t.Fatalf("stale token: %+v", m)
		}
		if len(nodes[3].items.get(target.Hash())) != 0 {
			t.Fatal("stored with a stale token")
		}
	})

	t.Run("multi put and get", func(t *testing.T) {
		mention := twproto.DHTTarget{N: "carol", R: "mention", T: "m"}
		for i, u := range []string{"alice", "bob", "carol"} {
			v := json.RawMessage(`{"msg":"hello from ` + u + `"}`)
			if err := nodes[i+3].Put(ctx, "carol", "mention", true, v, u, -1); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 10*time.Second, "three mentions on the closest nodes", func() bool {
			c := 0
			for _, n := range nodes {
				if len(n.items.get(mention.Hash())) == 3 {
					c++
				}
			}
			return c >= bucketK
		})
		items := getItems(t, nodes[0], "carol", "mention", true)
		signers := map[string]bool{}
		for _, it := range items {
			signers[it.SigUser] = true
		}
		if len(items) != 3 || len(signers) != 3 {
			t.Fatalf("got %d items from %v", len(items), signers)
		}
	})

	t.Run("announce and find peers", func(t *testing.T) {
		if err := nodes[4].AnnounceUser(ctx, "alice", 4242); err != nil {
			t.Fatal(err)
		}
		if err := nodes[6].AnnounceUser(ctx, "alice", 4343); err != nil {
			t.Fatal(err)
		}
		peers, err := nodes[9].FindUserPeers(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		want := map[netip.AddrPort]bool{
			netip.MustParseAddrPort("127.0.0.1:4242"): true,
			netip.MustParseAddrPort("127.0.0.1:4343"): true,
		}
		for _, p := range peers {
			delete(want, p)
		}
		if len(want) != 0 {
			t.Fatalf("peers %v miss %v", peers, want)
		}
		if _, err := nodes[9].FindPeers(ctx, twproto.SwarmInfoHash("nobody")); err == nil {
			t.Fatal("FindPeers on an unregistered info-hash succeeded")
		}
	})

	t.Run("restart keeps items", func(t *testing.T) {
		var idx int = -1
		for i, n := range nodes[1:] {
			if len(n.items.get(profile.Hash())) > 0 {
				idx = i + 1
				break
			}
		}
		if idx < 0 {
			t.Fatal("no holder")
		}
		old := nodes[idx]
		want := old.items.get(profile.Hash())[0].raw
		id := old.ID()
		cfg := old.cfg
		cfg.Listen = old.LocalAddr().String()
		if err := old.Close(); err != nil {
			t.Fatal(err)
		}
		reopened := openNode(t, cfg)
		nodes[idx] = reopened
		if reopened.ID() != id {
			t.Fatal("node id not kept")
		}
		if live, _ := reopened.table.size(); live == 0 {
			waitFor(t, 5*time.Second, "routing table after restart", func() bool { l, _ := reopened.table.size(); return l > 0 })
		}
		m := c.on(t).ask(reopened.LocalAddr(), methodGetData, &Args{Target: profile.Bencode()})
		if len(m.R.Data) != 1 || !bytes.Equal(m.R.Data[0], want) {
			t.Fatalf("after restart served %q", m.R.Data)
		}
	})
}

// A node in a user's swarm answers tracker lookups with its followers
// count and the user's name; dhtget on "tracker" then shows twisterd's
// unsigned followers item.
func TestTrackerFollowersItem(t *testing.T) {
	reg := newTestRegistry(t, "alice")
	cfg := testConfig(t, reg)
	cfg.Followers = func(ih [20]byte) int {
		if ih == twproto.SwarmInfoHash("alice") {
			return 3
		}
		return 0
	}
	a := openNode(t, cfg)
	b := openNode(t, testConfig(t, reg, a.LocalAddr()))
	waitFor(t, 5*time.Second, "b knows a", func() bool { _, c := b.table.size(); return c == 1 })
	ctx := context.Background()
	if err := a.AnnounceUser(ctx, "alice", 4242); err != nil {
		t.Fatal(err)
	}
	raws, err := b.Get(ctx, "alice", "tracker", true, 2*time.Second, 100*time.Millisecond, 3)
	if err != nil || len(raws) != 1 {
		t.Fatalf("get tracker: %d items, %v", len(raws), err)
	}
	js, err := twproto.HexcapeDHTItem(raws[0])
	if err != nil {
		t.Fatal(err)
	}
	want := `{"p":{"target":{"n":"alice","r":"tracker","t":"m"},"v":{"followers":3,"values":["` + "\x7f\\u0000\\u0000\\u0001\\u0010\x92" + `"],"values_size":1}}}`
	if string(js) != want {
		t.Fatalf("tracker item\n%q\nwant\n%q", js, want)
	}
}
