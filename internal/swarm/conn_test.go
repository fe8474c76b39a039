package swarm

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// rawClient opens a peer-wire connection to n for user's swarm and reads
// the node's handshake.
func rawClient(t *testing.T, n *testNode, user string, reserved [8]byte) (net.Conn, *messageReader) {
	t.Helper()
	return rawClientID(t, n, user, reserved, [20]byte{'-', 'R', 'C'})
}

// rawClientID is rawClient with peer id id.
func rawClientID(t *testing.T, n *testNode, user string, reserved [8]byte, id [20]byte) (net.Conn, *messageReader) {
	t.Helper()
	c, err := net.Dial("tcp", n.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(Handshake{Reserved: reserved, InfoHash: twproto.SwarmInfoHash(user), PeerID: id}.AppendTo(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := readHandshake(c); err != nil {
		t.Fatal(err)
	}
	return c, newMessageReader(c)
}

// readUntilClosed reads messages until the node closes the connection.
func readUntilClosed(t *testing.T, mr *messageReader) {
	t.Helper()
	for {
		if _, _, err := mr.next(); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
				return
			}
			t.Fatalf("want close by node, got %v", err)
		}
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

func TestKeepAliveAndInactivityTimeout(t *testing.T) {
	keys := newTestKeys(100)
	newUser(t, keys, "alice")
	cfg := fastConfig(t.TempDir(), keys)
	cfg.KeepAliveInterval = 200 * time.Millisecond
	cfg.PeerTimeout = 1500 * time.Millisecond
	n := startNodeConfig(t, cfg)
	n.Follow(context.Background(), "alice")
	_, mr := rawClient(t, n, "alice", twisterReserved)
	sawKeepAlive := false
	start := time.Now()
	for {
		m, _, err := mr.next()
		if err != nil {
			if !sawKeepAlive {
				t.Fatalf("closed before any keep-alive: %v", err)
			}
			break
		}
		if m.KeepAlive {
			sawKeepAlive = true
		}
	}
	// We never sent anything after the handshake: dropped after PeerTimeout.
	if el := time.Since(start); el < cfg.PeerTimeout/2 {
		t.Fatalf("dropped after %v", el)
	} else {
		t.Logf("dropped after %v", el)
	}
}

func TestHostileMessagesDisconnect(t *testing.T) {
	keys := newTestKeys(100)
	newUser(t, keys, "alice")
	n := startNode(t, t.TempDir(), keys)
	n.Follow(context.Background(), "alice")
	noFast := twisterReserved
	noFast[7] &^= 0x04
	cases := []struct {
		name     string
		reserved [8]byte
		send     []byte
	}{
		{"unknown id 12", twisterReserved, []byte{0, 0, 0, 1, 12}},
		{"FAST message without FAST", noFast, Message{ID: MsgHaveNone}.AppendTo(nil)},
		{"oversized frame", twisterReserved, []byte{0, 0x10, 0, 0, MsgBitfield}},
		{"two bitfields", twisterReserved, Message{ID: MsgBitfield, Data: []byte{0x40}}.AppendTo(Message{ID: MsgBitfield, Data: []byte{0x40}}.AppendTo(nil))},
		{"two hashcash nonces", twisterReserved, Message{ID: MsgHashcashNonce, Data: []byte{1}}.AppendTo(Message{ID: MsgHashcashNonce, Data: []byte{1}}.AppendTo(nil))},
		{"bad extended handshake", twisterReserved, Message{ID: MsgExtended, ExtID: 0, Data: []byte("not bencode")}.AppendTo(nil)},
		{"choke with payload", twisterReserved, []byte{0, 0, 0, 2, MsgChoke, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, mr := rawClient(t, n, "alice", c.reserved)
			if _, err := conn.Write(c.send); err != nil {
				t.Fatal(err)
			}
			readUntilClosed(t, mr)
		})
	}
	// Unknown swarm: closed right after our handshake is read.
	c, err := net.Dial("tcp", n.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(Handshake{Reserved: twisterReserved, InfoHash: twproto.SwarmInfoHash("nobody")}.AppendTo(nil))
	if _, err := readHandshake(c); err == nil {
		t.Fatal("node answered a handshake for a swarm it does not run")
	}
	// Not the twister protocol.
	c2, err := net.Dial("tcp", n.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	bt := append([]byte("\x13BitTorrent protocol"), make([]byte, 48)...)
	c2.Write(bt)
	if _, err := readHandshake(c2); err == nil {
		t.Fatal("node answered a BitTorrent handshake")
	}
	// The node still works.
	_, mr := rawClient(t, n, "alice", twisterReserved)
	if _, _, err := mr.next(); err != nil {
		t.Fatal(err)
	}
}

// TestSelfConnectionDropped: a node finding its own address (its tracker
// entry, README obs. 10) recognises its peer id and stops dialing it.
func TestSelfConnectionDropped(t *testing.T) {
	keys := newTestKeys(100)
	newUser(t, keys, "alice")
	n := startNode(t, t.TempDir(), keys)
	n.Follow(context.Background(), "alice")
	self := n.Addr()
	n.byUser["alice"].addCandidates([]netip.AddrPort{self})
	waitFor(t, "self marked", func() bool {
		n.Swarm.mu.Lock()
		defer n.Swarm.mu.Unlock()
		c := n.byUser["alice"].candidates[self]
		return c != nil && c.self
	})
	if st := n.Swarms()[0]; len(st.Peers) != 0 {
		t.Fatalf("connected to itself: %v", st.Peers)
	}
}

// recordingFinder is a PeerFinder returning fixed peers.
type recordingFinder struct {
	mu        sync.Mutex
	users     map[[20]byte]string
	peers     []netip.AddrPort
	finds     map[[20]byte]int
	announces map[[20]byte]int
	port      int
	contacts  []netip.AddrPort
}

// AddSwarmUser mirrors *dht.Node: FindPeers needs the user behind ih.
func (f *recordingFinder) AddSwarmUser(user string) [20]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	ih := twproto.SwarmInfoHash(user)
	f.users[ih] = user
	return ih
}

func (f *recordingFinder) FindPeers(_ context.Context, ih [20]byte) ([]netip.AddrPort, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[ih]; !ok {
		return nil, errors.New("unknown swarm")
	}
	f.finds[ih]++
	return f.peers, nil
}

func (f *recordingFinder) AnnouncePeer(_ context.Context, ih [20]byte, port int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.announces[ih]++
	f.port = port
	return nil
}

func (f *recordingFinder) AddContact(a netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.contacts = append(f.contacts, a)
}

// TestPeerFinderDiscovery: peers come from FindPeers on the user's
// info-hash, we announce our listen port, and the PORT message of a peer
// becomes a DHT contact.
func TestPeerFinderDiscovery(t *testing.T) {
	ctx := context.Background()
	keys := newTestKeys(100)
	alice := newUser(t, keys, "alice")
	bob := newUser(t, keys, "bob")
	a := startNode(t, t.TempDir(), keys)
	if err := a.Publish(ctx, "alice", 1, dmPost(t, alice, 1, bob, "via dht")); err != nil {
		t.Fatal(err)
	}
	f := &recordingFinder{peers: []netip.AddrPort{a.Addr()}, users: map[[20]byte]string{}, finds: map[[20]byte]int{}, announces: map[[20]byte]int{}}
	cfg := fastConfig(t.TempDir(), keys)
	cfg.Finder = f
	b := startNodeConfig(t, cfg)
	if err := b.Follow(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "post via discovered peer", func() bool { return b.sink.has("alice", 1) == 1 })
	ih := twproto.SwarmInfoHash("alice")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.finds[ih] == 0 || f.announces[ih] == 0 || f.port != int(b.Addr().Port()) {
		t.Fatalf("finds %v announces %v port %d", f.finds, f.announces, f.port)
	}
	if len(f.contacts) == 0 || f.contacts[0] != a.Addr() {
		t.Fatalf("PORT contacts %v, want %v", f.contacts, a.Addr())
	}
	if n := b.Followers(ih); n != 1 {
		t.Errorf("followers %d", n)
	}
	if n := b.Followers([20]byte{}); n != 0 {
		t.Errorf("followers of no swarm %d", n)
	}
}

// TestPexIntroducesPeers: B and C each know only A; A's ut_pex tells the
// later one about the other, and they connect directly.
func TestPexIntroducesPeers(t *testing.T) {
	ctx := context.Background()
	keys := newTestKeys(100)
	newUser(t, keys, "alice")
	a := startNode(t, t.TempDir(), keys)
	a.Follow(ctx, "alice")
	b := startNode(t, t.TempDir(), keys, a.Addr())
	b.Follow(ctx, "alice")
	waitFor(t, "b connected to a", func() bool { return len(a.Swarms()[0].Peers) == 1 })
	c := startNode(t, t.TempDir(), keys, a.Addr())
	c.Follow(ctx, "alice")
	has := func(n *testNode, addr netip.AddrPort) bool {
		for _, p := range n.Swarms()[0].Peers {
			if p == addr {
				return true
			}
		}
		return false
	}
	waitFor(t, "b and c connected through pex", func() bool { return has(c, b.Addr()) || has(b, c.Addr()) })
}

func TestPexBytesRoundTrip(t *testing.T) {
	in := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:31001"), netip.MustParseAddrPort("[::1]:5"), netip.MustParseAddrPort("10.1.2.3:29333")}
	b, err := PexBytes(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParsePex(b)
	if err != nil || len(out) != 2 || out[0] != in[0] || out[1] != in[2] {
		t.Fatalf("%v %v", out, err)
	}
}
