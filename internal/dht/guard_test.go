package dht

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// silentUDP listens on ip and counts the datagrams it gets, answering
// none (a PORT message naming a port nobody serves).
func silentUDP(t *testing.T, ip string) (netip.AddrPort, *atomic.Int64) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	done := make(chan struct{})
	t.Cleanup(func() { conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			if _, _, err := conn.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	return conn.LocalAddr().(*net.UDPAddr).AddrPort(), &got
}

// Many AddContact calls for one address (a PORT flood) give one ping;
// many addresses are bounded by the queue; goroutines do not grow.
func TestContactPingsBounded(t *testing.T) {
	reg := newTestRegistry(t)
	n := openNode(t, testConfig(t, reg))
	target, pings := silentUDP(t, "127.0.0.2")
	before := runtime.NumGoroutine()
	for range 20000 {
		n.AddContact(target)
	}
	waitFor(t, 5*time.Second, "the one ping", func() bool { return pings.Load() >= 1 })
	for i := range 5000 {
		n.AddContact(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), uint16(1000+i)))
	}
	if g := runtime.NumGoroutine(); g > before+10 {
		t.Fatalf("goroutines %d -> %d", before, g)
	}
	time.Sleep(200 * time.Millisecond)
	if p := pings.Load(); p != 1 {
		t.Fatalf("%d pings to one address, want 1", p)
	}
	st := n.Stats()
	if st.ContactPings > contactQueueLen+contactPingers+1 {
		t.Fatalf("%d contact pings for 5001 addresses", st.ContactPings)
	}
	if st.ContactsDropped < 20000 {
		t.Fatalf("only %d contacts dropped", st.ContactsDropped)
	}
}

// Queries for remotes cannot take the whole transaction id space.
func TestRemoteTransactionsReserved(t *testing.T) {
	tx := transactions{calls: map[uint16]*call{}, perIP: map[netip.Addr]int{}}
	ip := netip.MustParseAddr("127.0.0.2")
	for i := range maxRemoteTxns {
		if _, _, err := tx.register(ip, true); err != nil {
			t.Fatalf("remote query %d refused: %v", i, err)
		}
	}
	if _, _, err := tx.register(ip, true); err == nil {
		t.Fatal("remote share exceeded")
	}
	for i := range 1000 {
		if _, _, err := tx.register(ip, false); err != nil {
			t.Fatalf("own query %d refused: %v", i, err)
		}
	}
	tid, c, _ := tx.register(netip.MustParseAddr("127.0.0.9"), false)
	if !tx.expecting(c.ip) {
		t.Fatal("not expecting")
	}
	tx.forget(tid, c)
	if tx.expecting(c.ip) {
		t.Fatal("still expecting after forget")
	}
}

// A flooding source loses its excess, not its service: it is answered
// again a moment later, and answers to our own queries from its IP are
// read throughout the flood (twisterd banned the IP for 5 minutes).
func TestFloodBucketNotBan(t *testing.T) {
	reg := newTestRegistry(t)
	cfg := testConfig(t, reg)
	cfg.FloodLimit = 50 // 50 packets burst, 10/s
	v := openNode(t, cfg)
	bcfg := testConfig(t, reg)
	bcfg.Listen = "127.0.0.2:0"
	b := openNode(t, bcfg)

	flooder, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	defer flooder.Close()
	var answered atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := flooder.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			answered.Add(1)
		}
	}()
	id := GenerateID(netip.Addr{})
	ping, _ := (&Msg{Z: "q", Q: methodPing, T: []byte("fl"), X: &Args{ID: id[:]}, V: clientVersion}).Marshal()
	if _, err := v.query(context.Background(), b.LocalAddr(), methodPing, &Args{}); err != nil {
		t.Fatalf("ping before the flood: %v", err)
	}
	stop := make(chan struct{})
	flooded := make(chan int)
	go func() {
		sent := 0
		defer func() { flooded <- sent }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			flooder.WriteToUDPAddrPort(ping, v.LocalAddr())
			sent++
			if sent%2 == 0 { // a rate a loaded test machine reads (kernel drops beyond)
				time.Sleep(time.Millisecond)
			}
		}
	}()
	waitFor(t, 10*time.Second, "the flooder's budget spent", func() bool { return v.Stats().FloodDropped > 100 })
	// Our own queries to the flooder's IP are answered during the flood.
	for i := range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := v.query(ctx, b.LocalAddr(), methodPing, &Args{})
		cancel()
		if err != nil {
			t.Fatalf("own ping %d to the flooded IP: %v (stats %+v, answered %d)", i, err, v.Stats(), answered.Load())
		}
	}
	close(stop)
	sent := <-flooded
	if a := answered.Load(); a >= int64(sent) {
		t.Fatalf("all %d flood pings answered", sent)
	}
	// No ban: once its bucket refills the source is served again.
	c := newRawClient(t) // 127.0.0.1: never limited by the flooder
	if m := c.ask(v.LocalAddr(), methodPing, &Args{}); m.R == nil {
		t.Fatalf("other source not answered: %+v", m)
	}
	before := answered.Load()
	waitFor(t, 10*time.Second, "flooder answered again", func() bool {
		flooder.WriteToUDPAddrPort(ping, v.LocalAddr())
		time.Sleep(100 * time.Millisecond)
		return answered.Load() > before
	})
	t.Logf("flood: %d sent, %d answered, %d dropped", sent, answered.Load(), v.Stats().FloodDropped)
}

// uTP datagrams spend the source's packet budget and the answers sent
// with WriteTo (uTP resets) spend the reply budget.
func TestUTPCountsAgainstBudgets(t *testing.T) {
	reg := newTestRegistry(t)
	cfg := testConfig(t, reg)
	cfg.FloodLimit = 100
	cfg.ReplyRateLimit = 2000 // per source: 500 B/s, 3000 B burst
	var seen atomic.Int64
	var v *Node
	ready := make(chan struct{})
	cfg.NonDHT = func(pkt []byte, from netip.AddrPort) {
		seen.Add(1)
		<-ready
		v.WriteTo(make([]byte, 20), from)
	}
	v = openNode(t, cfg)
	close(ready)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var resets atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			resets.Add(1)
		}
	}()
	syn := append([]byte{0x41, 0}, make([]byte, 18)...)
	start := time.Now()
	for i := range 2000 {
		c.WriteToUDPAddrPort(syn, v.LocalAddr())
		if i%100 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	time.Sleep(300 * time.Millisecond)
	el := time.Since(start).Seconds()
	if s := seen.Load(); float64(s) > 100+20*el+5 {
		t.Fatalf("%d uTP datagrams passed a 100-packet budget in %.1f s", s, el)
	}
	if r := resets.Load(); float64(r) > (3000+500*el)/20+5 {
		t.Fatalf("%d resets (20 B) over a 3000 B share in %.1f s", r, el)
	}
	if resets.Load() == 0 {
		t.Fatal("no reset at all")
	}
	t.Logf("uTP: %d seen, %d resets in %.1f s", seen.Load(), resets.Load(), el)
}
