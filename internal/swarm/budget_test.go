package swarm

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// mapFinder is a PeerFinder answering from a table the test fills.
type mapFinder struct {
	mu    sync.Mutex
	peers map[[20]byte][]netip.AddrPort
	calls map[[20]byte]int
	// emptyFirst: answer nothing to the first n lookups of each swarm.
	emptyFirst int
}

func newMapFinder() *mapFinder {
	return &mapFinder{peers: map[[20]byte][]netip.AddrPort{}, calls: map[[20]byte]int{}}
}

func (f *mapFinder) set(user string, addrs ...netip.AddrPort) {
	f.mu.Lock()
	f.peers[twproto.SwarmInfoHash(user)] = addrs
	f.mu.Unlock()
}

func (f *mapFinder) FindPeers(_ context.Context, ih [20]byte) ([]netip.AddrPort, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[ih]++
	if f.calls[ih] <= f.emptyFirst {
		return nil, nil
	}
	return f.peers[ih], nil
}

func (f *mapFinder) numCalls(user string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[twproto.SwarmInfoHash(user)]
}

func (f *mapFinder) AnnouncePeer(context.Context, [20]byte, int) error { return nil }
func (f *mapFinder) AddContact(netip.AddrPort)                         {}

// live is the connection count the budget enforces.
func (s *Swarm) live() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.numPeers - s.evicting
}

// TestBudgetRotatesSwarmsUnderTheCap: a follower of 6 swarms with room
// for 2 connections stays within 2 (plus the burst slots for incoming
// connections) and still fetches every swarm: idle connections are
// evicted in turn for swarms that have none.
func TestBudgetRotatesSwarmsUnderTheCap(t *testing.T) {
	ctx := context.Background()
	keys := newTestKeys(100)
	bob := newUser(t, keys, "bob")
	finder := newMapFinder()
	const swarms = 6
	var users []string
	for i := range swarms {
		name := fmt.Sprintf("seed%d", i)
		u := newUser(t, keys, name)
		seeder := startNode(t, t.TempDir(), keys)
		if err := seeder.Publish(ctx, name, 1, dmPost(t, u, 1, bob, "hello from "+name)); err != nil {
			t.Fatal(err)
		}
		finder.set(name, seeder.Addr())
		users = append(users, name)
	}
	cfg := fastConfig(t.TempDir(), keys)
	cfg.Finder = finder
	cfg.MaxConnections = 2
	cfg.MinHold = 200 * time.Millisecond
	f := startNodeConfig(t, cfg)

	var peak atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if n := int64(f.live()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	for _, u := range users {
		if err := f.Follow(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a post from every swarm", func() bool {
		for _, u := range users {
			if f.sink.has(u, 1) != 1 {
				return false
			}
		}
		return true
	})
	close(stop)
	<-done
	// Dials are held to the cap; incoming connections (here the seeders
	// redialing the swarms f evicted) may take the burst slots while
	// nothing is old enough to evict.
	if p := peak.Load(); p > 2+burstConns {
		t.Errorf("peak connections %d over the cap of 2 + %d burst", p, burstConns)
	}
}

// TestRestartedPairReconnectsFromSavedPeers (issue 11 item 4): two nodes
// that found each other once are both restarted 20 times with no DHT and
// no static peers; each time they reconnect from the peers saved in
// swarm.db, within 10 s.
func TestRestartedPairReconnectsFromSavedPeers(t *testing.T) {
	ctx := context.Background()
	keys := newTestKeys(100)
	alice, bob := newUser(t, keys, "alice"), newUser(t, keys, "bob")
	dirA, dirB := t.TempDir(), t.TempDir()
	cfg := func(dir, listen string, static ...netip.AddrPort) Config {
		c := fastConfig(dir, keys, static...)
		c.ListenAddr = listen
		c.ReconnectInterval = 0 // the default backoff
		return c
	}
	a := startNodeConfig(t, cfg(dirA, "127.0.0.1:0"))
	b := startNodeConfig(t, cfg(dirB, "127.0.0.1:0", a.Addr()))
	addrA, addrB := a.Addr().String(), b.Addr().String()
	if err := a.Publish(ctx, "alice", 1, dmPost(t, alice, 1, bob, "first")); err != nil {
		t.Fatal(err)
	}
	if err := b.Follow(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first connection", func() bool { return b.sink.has("alice", 1) == 1 })
	connected := func(n *testNode) bool {
		for _, st := range n.Swarms() {
			if st.User == "alice" && len(st.Peers) > 0 {
				return true
			}
		}
		return false
	}
	waitFor(t, "alice's node sees bob's", func() bool { return connected(a) })
	a.Close()
	b.Close()
	for i := range 20 {
		// Alternate which side comes up first.
		first, second := cfg(dirA, addrA), cfg(dirB, addrB)
		if i%2 == 1 {
			first, second = second, first
		}
		n1 := startNodeConfig(t, first)
		n2 := startNodeConfig(t, second)
		start := time.Now()
		for !connected(n1) || !connected(n2) {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("restart %d: not reconnected within 10 s", i+1)
			}
			time.Sleep(20 * time.Millisecond)
		}
		n1.Close()
		n2.Close()
	}
}

// TestStarvingSwarmAsksTheDHTAgainWithinSeconds: the first lookup finds
// nobody; the swarm asks again after about 2 s (not after the 15 min
// announce interval) and connects. A connected swarm does not ask again.
func TestStarvingSwarmAsksTheDHTAgainWithinSeconds(t *testing.T) {
	ctx := context.Background()
	keys := newTestKeys(100)
	alice, bob := newUser(t, keys, "alice"), newUser(t, keys, "bob")
	a := startNode(t, t.TempDir(), keys)
	if err := a.Publish(ctx, "alice", 1, dmPost(t, alice, 1, bob, "found later")); err != nil {
		t.Fatal(err)
	}
	finder := newMapFinder()
	finder.emptyFirst = 1
	finder.set("alice", a.Addr())
	cfg := fastConfig(t.TempDir(), keys)
	cfg.Finder = finder
	b := startNodeConfig(t, cfg)
	if err := b.Follow(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "post after a second lookup", func() bool { return b.sink.has("alice", 1) == 1 })
	if n := finder.numCalls("alice"); n != 2 {
		t.Errorf("%d lookups before connecting, want 2", n)
	}
	time.Sleep(3 * time.Second)
	if n := finder.numCalls("alice"); n != 2 {
		t.Errorf("%d lookups while connected, want still 2", n)
	}
}

// TestStarvingSwarmBorrowsPeersOfOtherSwarms: the DHT knows a peer only
// for alice's swarm; the same peer also runs bob's, and the follower's
// swarm for bob, finding nobody, tries it and fetches bob's post.
func TestStarvingSwarmBorrowsPeersOfOtherSwarms(t *testing.T) {
	ctx := context.Background()
	keys := newTestKeys(100)
	alice, bob, carol := newUser(t, keys, "alice"), newUser(t, keys, "bob"), newUser(t, keys, "carol")
	seeder := startNode(t, t.TempDir(), keys)
	if err := seeder.Publish(ctx, "alice", 1, dmPost(t, alice, 1, carol, "from alice")); err != nil {
		t.Fatal(err)
	}
	if err := seeder.Publish(ctx, "bob", 1, dmPost(t, bob, 1, carol, "from bob")); err != nil {
		t.Fatal(err)
	}
	finder := newMapFinder()
	finder.set("alice", seeder.Addr())
	cfg := fastConfig(t.TempDir(), keys)
	cfg.Finder = finder
	f := startNodeConfig(t, cfg)
	for _, u := range []string{"alice", "bob"} {
		if err := f.Follow(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "bob's post through a peer of alice's swarm", func() bool { return f.sink.has("bob", 1) == 1 })
}

// TestSavedPeersRoundTrip: saved peers survive in both store layouts
// (swarm.db, and the swarm's root bucket of a file shared with messages);
// a damaged line is skipped.
func TestSavedPeersRoundTrip(t *testing.T) {
	own, err := openStore(filepath.Join(t.TempDir(), "swarm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer own.close()
	shared, err := sharedStore(openShared(t, filepath.Join(t.TempDir(), "messages.db")), "")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.10:4000"), netip.MustParseAddrPort("[2001:db8::1]:29333")}
	for name, st := range map[string]*store{"own": own, "shared": shared} {
		if err := st.savePeers(map[string]string{"alice": peersText(want) + "garbage\n"}); err != nil {
			t.Fatal(name, err)
		}
		got, err := st.loadPeers("alice")
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: loaded %v %v, want %v", name, got, err, want)
		}
		if none, err := st.loadPeers("bob"); err != nil || len(none) != 0 {
			t.Errorf("%s: bob %v %v", name, none, err)
		}
	}
}

// FuzzParsePeers: a saved peer list from swarm.db, whatever its bytes,
// yields at most maxSavedPeers valid addresses and round-trips them.
func FuzzParsePeers(f *testing.F) {
	f.Add([]byte("127.0.0.10:4000\n[2001:db8::1]:29333\n"))
	f.Add([]byte("garbage\n1.2.3.4:0\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := parsePeers(b)
		if len(got) > maxSavedPeers {
			t.Fatalf("%d addresses", len(got))
		}
		for _, a := range got {
			if !a.IsValid() || a.Port() == 0 {
				t.Fatalf("invalid %v", a)
			}
		}
		if again := parsePeers([]byte(peersText(got))); !slices.Equal(again, got) {
			t.Fatalf("round trip %v -> %v", got, again)
		}
	})
}
