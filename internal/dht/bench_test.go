package dht

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

var benchSrc = netip.MustParseAddrPort("127.0.0.1:6881")

func benchQuery(b *testing.B, q string, x *Args) []byte {
	id := GenerateID(netip.Addr{})
	x.ID = id[:]
	pkt, err := (&Msg{Z: "q", Q: q, T: []byte("bb"), X: x, V: clientVersion}).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return pkt
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
}

// Packet handler throughput for ping (decode, handle, encode).
func BenchmarkHandlePing(b *testing.B) {
	n := openNode(b, testConfig(b, newTestRegistry(b)))
	pkt := benchQuery(b, methodPing, &Args{})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n.handleDatagram(ctx, pkt, benchSrc) == nil {
			b.Fatal("no reply")
		}
	}
	reportRate(b)
}

// getData on a multi target holding 32 items (the reply is capped under
// 9000 bytes).
func BenchmarkHandleGetData32Multi(b *testing.B) {
	reg := newTestRegistry(b, "alice")
	n := openNode(b, testConfig(b, reg))
	target := twproto.DHTTarget{N: "alice", R: "mention", T: "m"}
	for i := 0; i < maxEntriesPerMulti; i++ {
		p, sig := reg.signedP(b, "alice", target, fmt.Sprintf("mention number %03d from a benchmark", i), -1, int64(i), 1795483617)
		pd, _ := twproto.ParseDHTP(p)
		n.items.store(target.Hash(), newStoredItem(pd, sig, "alice"), n.now())
	}
	if got := len(n.items.get(target.Hash())); got != 32 {
		b.Fatalf("%d items stored", got)
	}
	pkt := benchQuery(b, methodGetData, &Args{Target: target.Bencode()})
	ctx := context.Background()
	reply := n.handleDatagram(ctx, pkt, benchSrc)
	m, err := DecodeMsg(reply)
	if err != nil || len(m.R.Data) != 32 {
		b.Fatalf("reply carries %d items (%d bytes): %v", len(m.R.Data), len(reply), err)
	}
	b.SetBytes(int64(len(reply)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n.handleDatagram(ctx, pkt, benchSrc)
	}
	reportRate(b)
}

// Round trips over a real loopback socket, one outstanding ping at a time.
func BenchmarkUDPPingRoundTrip(b *testing.B) {
	n := openNode(b, testConfig(b, newTestRegistry(b)))
	c := newRawClient(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.ask(n.LocalAddr(), methodPing, &Args{})
	}
	reportRate(b)
}

// Heap bytes per stored item: 10000 single items of about 200 bytes
// (p with a short profile value, 65-byte signature, user name).
func BenchmarkStoredItemMemory(b *testing.B) {
	reg := newTestRegistry(b, "alice")
	const count = 10000
	type prepared struct {
		hash [20]byte
		p    *twproto.DHTP
		sig  []byte
	}
	items := make([]prepared, count)
	key := reg.keys["alice"]
	for i := range items {
		target := twproto.DHTTarget{N: "alice", R: fmt.Sprintf("post%d", i), T: "s"}
		p := twproto.BuildDHTP(target, encodeString([]byte("hello world, this is a post")), 1, 100, 1795483617)
		sig, err := twproto.Sign(key, p)
		if err != nil {
			b.Fatal(err)
		}
		pd, _ := twproto.ParseDHTP(p)
		items[i] = prepared{target.Hash(), pd, sig}
	}
	now := time.Now()
	b.ResetTimer()
	var perItem, rawLen float64
	for i := 0; i < b.N; i++ {
		s := newItemStore(defaultMaxStoreBytes)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, it := range items {
			s.store(it.hash, newStoredItem(it.p, it.sig, "alice"), now)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perItem = float64(after.HeapAlloc-before.HeapAlloc) / count
		rawLen = float64(len(s.get(items[0].hash)[0].raw))
		runtime.KeepAlive(s)
	}
	b.ReportMetric(perItem, "heapbytes/item")
	b.ReportMetric(rawLen, "itembytes")
}
