package dht

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
)

// closestRef is the pre-#15 closest: collect every live node and sort the
// lot by int160 distance. It is the reference for the property test and
// the "old" side of the benchmarks.
func closestRef(t *table, target krpc.ID, count int, onlyConfirmed bool) []nodeInfo {
	t.mu.Lock()
	all := make([]nodeInfo, 0, 64)
	for i := range t.buckets {
		for _, e := range t.buckets[i].live {
			if !onlyConfirmed || e.confirmed() {
				all = append(all, e.nodeInfo)
			}
		}
	}
	t.mu.Unlock()
	slices.SortFunc(all, func(a, b nodeInfo) int {
		return distance(a.ID, target).Cmp(distance(b.ID, target))
	})
	if len(all) > count {
		all = all[:count]
	}
	return all
}

func randID(r *rand.Rand) krpc.ID {
	var id krpc.ID
	for i := range id {
		id[i] = byte(r.Uint32())
	}
	return id
}

// filledTable builds a relaxed (loopback) table of up to n contacts,
// about two in three confirmed. Some ids share long prefixes with own or
// with each other so that deep buckets and near ties are exercised.
func filledTable(r *rand.Rand, n int) *table {
	now := time.Unix(1795483617, 0)
	own := randID(r)
	tb := newTable(own, false, func() time.Time { return now })
	var prev krpc.ID
	for i := 0; i < n; i++ {
		id := randID(r)
		switch r.IntN(6) {
		case 0: // near own
			copy(id[:1+r.IntN(19)], own[:])
		case 1: // near the previous id
			copy(id[:1+r.IntN(19)], prev[:])
		}
		prev = id
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(1000+i%60000))
		if r.IntN(3) == 0 {
			tb.heardAbout(id, addr)
		} else {
			tb.nodeSeen(id, addr)
		}
	}
	return tb
}

func TestClosestMatchesFullSort(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 23))
	for round := 0; round < 40; round++ {
		tb := filledTable(r, r.IntN(1200))
		live, _ := tb.size()
		targets := []krpc.ID{randID(r), tb.own}
		if all := tb.all(); len(all) > 0 {
			near := all[r.IntN(len(all))].ID // a contact itself
			targets = append(targets, near)
			near[19] ^= 1 // and right next to it
			targets = append(targets, near)
		}
		for _, target := range targets {
			for _, count := range []int{0, 1, 2, bucketK, 2 * bucketK, maxSelect, maxSelect + 1, live, 1 << 30} {
				for _, conf := range []bool{true, false} {
					got := tb.closest(target, count, conf)
					want := closestRef(tb, target, count, conf)
					if !slices.Equal(got, want) {
						t.Fatalf("round %d, %d live, count %d, confirmed %v: got %d nodes, want %d\ngot  %v\nwant %v",
							round, live, count, conf, len(got), len(want), got, want)
					}
				}
			}
		}
	}
}

func TestXorDistOrderMatchesInt160(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		target, a, b := randID(r), randID(r), randID(r)
		if i%3 == 0 {
			copy(b[:r.IntN(21)], a[:])
		}
		if got, want := xorDist(a, target).cmp(xorDist(b, target)), distance(a, target).Cmp(distance(b, target)); got != want {
			t.Fatalf("%x vs %x to %x: cmp %d, int160 %d", a, b, target, got, want)
		}
	}
}

// Selection alone, new against the reference sort, on tables of 100 and
// 1000 contacts (docs/dht.md "Query cost").
func BenchmarkClosest(b *testing.B) {
	for _, size := range []int{100, 1000} {
		r := rand.New(rand.NewPCG(uint64(size), 7))
		tb := filledTable(r, size)
		targets := make([]krpc.ID, 256)
		for i := range targets {
			targets[i] = randID(r)
		}
		live, _ := tb.size()
		for _, impl := range []struct {
			name string
			f    func(krpc.ID) []nodeInfo
		}{
			{"old", func(x krpc.ID) []nodeInfo { return closestRef(tb, x, bucketK, true) }},
			{"new", func(x krpc.ID) []nodeInfo { return tb.closest(x, bucketK, true) }},
		} {
			b.Run(fmt.Sprintf("live=%d/%s", live, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if len(impl.f(targets[i%len(targets)])) != bucketK {
						b.Fatal("short result")
					}
				}
			})
		}
	}
}

// Whole find_node handling (decode, handle, encode) with a filled table;
// getData and announce replies run the same closest selection.
func BenchmarkHandleFindNodeTable(b *testing.B) {
	for _, size := range []int{100, 1000} {
		n := openNode(b, testConfig(b, newTestRegistry(b)))
		r := rand.New(rand.NewPCG(uint64(size), 9))
		for i := 0; i < size; i++ {
			addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)}), uint16(2000+i))
			n.table.nodeSeen(randID(r), addr)
		}
		live, _ := n.table.size()
		pkts := make([][]byte, 64)
		for i := range pkts {
			tg := randID(r)
			pkts[i] = benchQuery(b, methodFindNode, &Args{Target: encodeString(tg[:])})
		}
		ctx := context.Background()
		if m, err := DecodeMsg(n.handleDatagram(ctx, pkts[0], benchSrc)); err != nil || len(m.R.Nodes) != 26*bucketK {
			b.Fatalf("find_node reply: %v", err)
		}
		b.Run(fmt.Sprintf("live=%d", live), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if n.handleDatagram(ctx, pkts[i%len(pkts)], benchSrc) == nil {
					b.Fatal("no reply")
				}
			}
			reportRate(b)
		})
	}
}

// encodeNodesRef and decodeNodesRef are the pre-#15 codecs through
// anacrolix's CompactIPv4NodeInfo.
func encodeNodesRef(nodes []nodeInfo) []byte {
	var c krpc.CompactIPv4NodeInfo
	for _, n := range nodes {
		if !n.Addr.Addr().Is4() {
			continue
		}
		var ni krpc.NodeInfo
		ni.ID = n.ID
		ni.Addr.FromAddrPort(n.Addr)
		c = append(c, ni)
	}
	if len(c) == 0 {
		return []byte{}
	}
	b, err := c.MarshalBinary()
	if err != nil {
		return []byte{}
	}
	return b
}

func decodeNodesRef(b []byte) []nodeInfo {
	b = b[:len(b)-len(b)%26]
	var c krpc.CompactIPv4NodeInfo
	if err := c.UnmarshalBinary(b); err != nil {
		return nil
	}
	out := make([]nodeInfo, 0, len(c))
	for _, ni := range c {
		ap := ni.Addr.ToNodeAddrPort().AddrPort
		if !ap.IsValid() || ap.Port() == 0 {
			continue
		}
		out = append(out, nodeInfo{ID: ni.ID, Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())})
	}
	return out
}

func TestNodesCodecMatchesAnacrolix(t *testing.T) {
	r := rand.New(rand.NewPCG(26, 15))
	addrs := []netip.Addr{
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("203.0.113.9"),
		netip.MustParseAddr("::ffff:198.51.100.7"), netip.MustParseAddr("2001:db8::1"),
	}
	for round := 0; round < 2000; round++ {
		nodes := make([]nodeInfo, r.IntN(20))
		for i := range nodes {
			a := addrs[r.IntN(len(addrs))]
			if r.IntN(2) == 0 {
				a = netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
			}
			nodes[i] = nodeInfo{ID: randID(r), Addr: netip.AddrPortFrom(a, uint16(r.IntN(3)*r.IntN(65536)))}
		}
		enc, want := encodeNodes(nodes), encodeNodesRef(nodes)
		if !bytes.Equal(enc, want) || enc == nil {
			t.Fatalf("encode %v:\n got %x\nwant %x", nodes, enc, want)
		}
		raw := append(enc, make([]byte, r.IntN(26))...)
		if got, want := decodeNodes(raw), decodeNodesRef(raw); !slices.Equal(got, want) || got == nil {
			t.Fatalf("decode %x:\n got %v\nwant %v", raw, got, want)
		}
	}
}
