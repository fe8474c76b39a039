package swarm

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// handshakeFrom dials n from srcIP (another "host" on loopback) for
// user's swarm with peer id id; it reports whether n answered the
// handshake, and returns the connection (closed at cleanup).
func handshakeFrom(t *testing.T, n *testNode, srcIP, user string, id [20]byte) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(srcIP)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", n.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(Handshake{Reserved: twisterReserved, InfoHash: twproto.SwarmInfoHash(user), PeerID: id}.AppendTo(nil)); err != nil {
		return c, false
	}
	_, err = readHandshake(c)
	c.SetDeadline(time.Time{})
	return c, err == nil
}

func strictNode(t *testing.T, cfg func(*Config)) *testNode {
	t.Helper()
	keys := newTestKeys(100)
	newUser(t, keys, "alice")
	c := fastConfig(t.TempDir(), keys)
	c.MultiConnPerIP = false
	if cfg != nil {
		cfg(&c)
	}
	n := startNodeConfig(t, c)
	if err := n.Follow(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	return n
}

// Without MultiConnPerIP a second peer from the same IP is refused in a
// swarm (twisterd's one connection per IP), other IPs are not.
func TestOneConnectionPerIPPerSwarm(t *testing.T) {
	n := strictNode(t, nil)
	if _, ok := handshakeFrom(t, n, "127.0.0.2", "alice", [20]byte{'-', 'A'}); !ok {
		t.Fatal("first peer of 127.0.0.2 refused")
	}
	waitFor(t, "first peer registered", func() bool { return len(n.Swarms()[0].Peers) == 1 })
	if _, ok := handshakeFrom(t, n, "127.0.0.2", "alice", [20]byte{'-', 'B'}); ok {
		t.Fatal("second peer of 127.0.0.2 answered")
	}
	if _, ok := handshakeFrom(t, n, "127.0.0.3", "alice", [20]byte{'-', 'C'}); !ok {
		t.Fatal("peer of 127.0.0.3 refused")
	}
	waitFor(t, "two peers", func() bool { return len(n.Swarms()[0].Peers) == 2 })
}

// One IP holding half-open connections gets MaxPendingPerIP handshake
// slots; peers from other IPs still get answered.
func TestPendingHandshakesPerIP(t *testing.T) {
	n := strictNode(t, func(c *Config) { c.HandshakeTimeout = 30 * time.Second })
	attacker := netip.MustParseAddr("127.0.0.2")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: attacker.AsSlice()}}
	for range 300 {
		c, err := d.Dial("tcp", n.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitFor(t, "attacker's slots taken", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.pendingByIP[attacker] == defaultMaxPendingPerIP
	})
	for i := range 10 {
		ip := netip.AddrFrom4([4]byte{127, 0, 0, byte(3 + i)})
		if _, ok := handshakeFrom(t, n, ip.String(), "alice", [20]byte{'-', 'L', byte(i)}); !ok {
			t.Fatalf("legit peer %s refused", ip)
		}
	}
	n.mu.Lock()
	pending := n.pendingByIP[attacker]
	n.mu.Unlock()
	if pending > defaultMaxPendingPerIP {
		t.Fatalf("attacker holds %d handshake slots", pending)
	}
}

// A ban ends after BanTime.
func TestBansExpire(t *testing.T) {
	n := strictNode(t, func(c *Config) { c.BanTime = 500 * time.Millisecond })
	id := [20]byte{'-', 'E', 'V'}
	n.mu.Lock()
	n.byUser["alice"].addBan(string(id[:]), time.Now())
	n.mu.Unlock()
	if _, ok := handshakeFrom(t, n, "127.0.0.2", "alice", id); ok {
		t.Fatal("banned peer answered")
	}
	if b := n.Swarms()[0].Banned; b != 1 {
		t.Fatalf("banned %d", b)
	}
	waitFor(t, "ban expired", func() bool { return n.Swarms()[0].Banned == 0 })
	if _, ok := handshakeFrom(t, n, "127.0.0.2", "alice", id); !ok {
		t.Fatal("peer still refused after its ban ended")
	}
}

// The ban list is bounded.
func TestBanListBounded(t *testing.T) {
	n := strictNode(t, nil)
	n.mu.Lock()
	defer n.mu.Unlock()
	tr := n.byUser["alice"]
	now := time.Now()
	for i := range 3 * maxBansPerSwarm {
		tr.addBan(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String(), now.Add(time.Duration(i)))
	}
	if len(tr.banned) > maxBansPerSwarm {
		t.Fatalf("%d bans kept", len(tr.banned))
	}
}

// A PORT flood on one connection reaches the finder once a minute.
func TestPortMessagesThrottled(t *testing.T) {
	f := &recordingFinder{users: map[[20]byte]string{}, finds: map[[20]byte]int{}, announces: map[[20]byte]int{}}
	n := strictNode(t, func(c *Config) { c.Finder = f })
	c, ok := handshakeFrom(t, n, "127.0.0.2", "alice", [20]byte{'-', 'P'})
	if !ok {
		t.Fatal("handshake refused")
	}
	var flood []byte
	for i := range 5000 {
		flood = Message{ID: MsgPort, Port: uint16(1000 + i)}.AppendTo(flood)
	}
	if _, err := c.Write(flood); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first contact", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.contacts) > 0
	})
	time.Sleep(200 * time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.contacts) != 1 || f.contacts[0] != netip.MustParseAddrPort("127.0.0.2:1000") {
		t.Fatalf("contacts %v", f.contacts)
	}
}

// One IP's connections over all swarms are capped (MaxConnsPerIP), so
// joining every swarm does not take all MaxConnections.
func TestConnectionsPerIPOverSwarms(t *testing.T) {
	n := strictNode(t, func(c *Config) { c.MaxConnsPerIP = 2 })
	for _, u := range []string{"bob", "carol"} {
		if err := n.Follow(context.Background(), u); err != nil {
			t.Fatal(err)
		}
	}
	for i, u := range []string{"alice", "bob"} {
		if _, ok := handshakeFrom(t, n, "127.0.0.2", u, [20]byte{'-', 'X', byte(i)}); !ok {
			t.Fatalf("%s refused", u)
		}
	}
	waitFor(t, "two peers", func() bool { return n.Status().NumPeers == 2 })
	if _, ok := handshakeFrom(t, n, "127.0.0.2", "carol", [20]byte{'-', 'X', 9}); ok {
		t.Fatal("third connection of 127.0.0.2 answered")
	}
	if _, ok := handshakeFrom(t, n, "127.0.0.3", "carol", [20]byte{'-', 'Y'}); !ok {
		t.Fatal("127.0.0.3 refused")
	}
}
