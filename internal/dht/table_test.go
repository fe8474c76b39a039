package dht

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
)

func TestTableStrictIPRules(t *testing.T) {
	now := time.Now()
	own := GenerateID(netip.Addr{})
	tb := newTable(own, true, func() time.Time { return now })
	id1, id2, id3 := GenerateID(netip.Addr{}), GenerateID(netip.Addr{}), GenerateID(netip.Addr{})
	tb.nodeSeen(id1, netip.MustParseAddrPort("198.51.100.1:1000"))
	tb.nodeSeen(id2, netip.MustParseAddrPort("198.51.100.1:2000")) // same IP: refused
	if live, _ := tb.size(); live != 1 {
		t.Fatalf("one node per IP: %d live", live)
	}
	// Same /24 in one bucket: refused. Force same bucket by flipping the
	// first bit relative to own for both.
	a, b := own, own
	a[0] ^= 0x80
	b[0] ^= 0x80
	a[19] ^= 1
	b[19] ^= 2
	tb.nodeSeen(a, netip.MustParseAddrPort("203.0.113.1:1"))
	tb.nodeSeen(b, netip.MustParseAddrPort("203.0.113.2:1"))
	n := 0
	for _, e := range tb.buckets[0].live {
		if same24(e.Addr.Addr(), netip.MustParseAddr("203.0.113.0")) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d nodes of one /24 in a bucket", n)
	}
	// Relaxed: several nodes per IP.
	rt := newTable(own, false, func() time.Time { return now })
	rt.nodeSeen(id1, netip.MustParseAddrPort("127.0.0.1:1000"))
	rt.nodeSeen(id2, netip.MustParseAddrPort("127.0.0.1:2000"))
	rt.nodeSeen(id3, netip.MustParseAddrPort("127.0.0.1:2000")) // endpoint got a new id
	if live, confirmed := rt.size(); live != 2 || confirmed != 2 {
		t.Fatalf("relaxed: %d live %d confirmed", live, confirmed)
	}
}

func TestTableConfirmAndFail(t *testing.T) {
	now := time.Now()
	own := GenerateID(netip.Addr{})
	tb := newTable(own, false, func() time.Time { return now })
	var ids []krpc.ID
	for i := 0; i < 40; i++ {
		id := GenerateID(netip.Addr{})
		ids = append(ids, id)
		tb.heardAbout(id, netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", 1000+i)))
	}
	if got := tb.closest(own, 8, true); len(got) != 0 {
		t.Fatalf("unpinged nodes handed out: %d", len(got))
	}
	pingable := tb.toPing(100)
	for _, ni := range pingable[:10] {
		tb.nodeSeen(ni.ID, ni.Addr)
	}
	if got := tb.closest(ids[0], 8, true); len(got) != 8 {
		t.Fatalf("confirmed closest: %d", len(got))
	}
	got := tb.closest(ids[0], 100, false)
	for i := 1; i < len(got); i++ {
		if closer(ids[0], got[i].ID, got[i-1].ID) {
			t.Fatal("closest not sorted")
		}
	}
	// A never-answering node that fails is dropped.
	victim := pingable[20]
	live, _ := tb.size()
	tb.nodeFailed(victim.ID, victim.Addr)
	if after, _ := tb.size(); after != live-1 {
		t.Fatalf("failed unpinged node kept: %d -> %d", live, after)
	}
}
