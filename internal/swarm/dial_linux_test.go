package swarm

import (
	"context"
	"net"
	"net/netip"
	"testing"
)

// TestDialLeavesFromListenIP: a node listening on one loopback address
// dials a peer on another; the peer must see the connection come from the
// address we listen on. Linux routes all of 127/8 to lo, and the kernel
// picks 127.0.0.1 as the source for 127.0.0.2 unless the socket is bound,
// as a twisterd's 192.0.2.2 address got our bound node a 192.0.2.2 source
// in the live run (docs/interop.md).
func TestDialLeavesFromListenIP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	from := make(chan netip.Addr, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			from <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
			c.Close()
		}
	}()
	cfg := fastConfig(t.TempDir(), newTestKeys(100), ln.Addr().(*net.TCPAddr).AddrPort())
	cfg.ListenAddr = "127.0.0.2:0"
	n := startNodeConfig(t, cfg)
	if err := n.Follow(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	if got := <-from; got != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("dial came from %v, we listen on 127.0.0.2", got)
	}
}
