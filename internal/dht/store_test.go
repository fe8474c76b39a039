package dht

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

func TestMultiStoreRules(t *testing.T) {
	reg := newTestRegistry(t, "alice")
	target := twproto.DHTTarget{N: "tag", R: "hashtag", T: "m"}
	s := newItemStore(defaultMaxStoreBytes)
	now := time.Now()
	add := func(v string, height int64) bool {
		p, sig := reg.signedP(t, "alice", target, v, -1, height, 1)
		pd, _ := twproto.ParseDHTP(p)
		return s.store(target.Hash(), newStoredItem(pd, sig, "alice"), now)
	}
	add("a", 10)
	add("b", 12)
	add("c", 11)
	add("d", 12) // same height as b: goes before it
	if add("a", 20) {
		t.Fatal("duplicate value stored")
	}
	var order string
	for _, it := range s.get(target.Hash()) {
		order += string(it.v()[2:])
	}
	if order != "dbca" {
		t.Fatalf("order %q, want dbca", order)
	}
	for i := 0; i < 40; i++ {
		add(fmt.Sprintf("v%d", i), int64(100+i))
	}
	l := s.get(target.Hash())
	if len(l) != maxEntriesPerMulti || l[0].height != 139 {
		t.Fatalf("%d entries, first height %d", len(l), l[0].height)
	}
}

func TestShouldExpire(t *testing.T) {
	for _, c := range []struct {
		r      string
		multi  bool
		height int64
		best   int64
		want   bool
	}{
		{"profile", false, 1, 0, false},    // no chain: nothing expires
		{"profile", false, 1, 2017, false}, // young
		{"mention", true, 1, 3000, true},   // old multi
		{"profile", false, 1, 3000, false}, // never
		{"profile2", false, 1, 3000, true}, // no number allowed
		{"following3", false, 1, 3000, false},
		{"following03", false, 1, 3000, true},
		{"following201", false, 1, 3000, true},
		{"post5", false, 1, 3000, false},
		{"post5", false, 1, 9000, true}, // older than 8640 blocks
		{"post", false, 1, 3000, true},
		{"status", false, 1, 3000, false},
		{"swarm", false, 1, 3000, true},
	} {
		if got := shouldExpire(c.r, c.multi, c.height, c.best); got != c.want {
			t.Errorf("%s multi=%v h=%d best=%d: %v", c.r, c.multi, c.height, c.best, got)
		}
	}
}

func TestStoreBounds(t *testing.T) {
	reg := newTestRegistry(t, "alice")
	now := time.Now()
	mk := func(r string, local bool) (*storedItem, [20]byte) {
		target := twproto.DHTTarget{N: "alice", R: r, T: "s"}
		p, sig := reg.signedP(t, "alice", target, "some value", 1, 1, 1)
		pd, _ := twproto.ParseDHTP(p)
		it := newStoredItem(pd, sig, "alice")
		if local {
			it.localAdd = now.Unix()
		}
		return it, target.Hash()
	}
	first, h := mk("a", false)
	s := newItemStore(2*len(first.raw) + 10)
	if !s.store(h, first, now) {
		t.Fatal("first not stored")
	}
	it, h := mk("b", false)
	if !s.store(h, it, now) {
		t.Fatal("second not stored")
	}
	it, h = mk("c", false)
	if s.store(h, it, now) {
		t.Fatal("stored past the byte limit")
	}
	it, h = mk("d", true)
	if !s.store(h, it, now) {
		t.Fatal("own item refused")
	}

	ps := newPeerStore()
	var ih [20]byte
	for i := 0; i < maxPeersPerTorrent+50; i++ {
		ps.add(ih, "", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(1000+i)), false, 0, now.Add(time.Duration(i)))
	}
	if got := len(ps.m[ih].peers); got != maxPeersPerTorrent {
		t.Fatalf("%d peers kept", got)
	}
	peers, _, _, _ := ps.lookup(ih, now)
	if len(peers) != maxPeersReply {
		t.Fatalf("lookup returned %d peers", len(peers))
	}
}

func TestPostThinning(t *testing.T) {
	s := newItemStore(defaultMaxStoreBytes)
	for k := 0; k < 300; k++ {
		s.notePost(&storedItem{user: "alice", resource: fmt.Sprintf("post%d", k)})
	}
	s.notePost(&storedItem{user: "alice", resource: "profile"})
	if st := s.posts["alice"]; st.total != 300 || st.last != 299 {
		t.Fatalf("stats %+v", st)
	}
	if s.thinOldPost(&storedItem{user: "alice", resource: "post250"}) {
		t.Fatal("recent post thinned")
	}
	if s.thinOldPost(&storedItem{user: "alice", resource: "status"}) {
		t.Fatal("non-post thinned")
	}
	skipped := 0
	for i := 0; i < 1000; i++ {
		if s.thinOldPost(&storedItem{user: "alice", resource: "post10"}) {
			skipped++
		}
	}
	// p(keep) = 25/275: about 909 of 1000 skipped.
	if skipped < 850 || skipped > 960 {
		t.Fatalf("old post skipped %d/1000 times", skipped)
	}
}
