package swarm

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/internal/dht"
)

// The DHT node is the production PeerFinder; the swarm is the DM engine's
// network, and the engine its sink.
var (
	_ PeerFinder      = (*dht.Node)(nil)
	_ swarmUserAdder  = (*dht.Node)(nil)
	_ dm.Network      = (*Swarm)(nil)
	_ dm.PieceChecker = (*Swarm)(nil)
	_ PostSink        = (*dm.Engine)(nil)
)

func openDHT(t testing.TB, keys *testKeys, bootstrap ...string) *dht.Node {
	t.Helper()
	n, err := dht.Open(dht.Config{
		Listen:       "127.0.0.1:0",
		Bootstrap:    bootstrap,
		DataDir:      t.TempDir(),
		Keys:         keys,
		Logger:       slog.New(slog.DiscardHandler),
		RelaxIPRules: true,
		TickInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// TestDiscoveryThroughRealDHT: no static peers; the follower finds the
// seeder only through twister DHT getData/announcePeer on the user's
// tracker target, over UDP on 127.0.0.1.
func TestDiscoveryThroughRealDHT(t *testing.T) {
	ctx := context.Background()
	keys := newTestKeys(100)
	alice, bob := newUser(t, keys, "alice"), newUser(t, keys, "bob")
	da := openDHT(t, keys)
	db := openDHT(t, keys, da.LocalAddr().String())

	cfgA := fastConfig(t.TempDir(), keys)
	cfgA.Finder = da
	cfgA.AnnounceInterval = 200 * time.Millisecond
	a := startNodeConfig(t, cfgA)
	if err := a.Publish(ctx, "alice", 1, dmPost(t, alice, 1, bob, "found via the DHT")); err != nil {
		t.Fatal(err)
	}
	cfgB := fastConfig(t.TempDir(), keys)
	cfgB.Finder = db
	cfgB.AnnounceInterval = 200 * time.Millisecond
	b := startNodeConfig(t, cfgB)
	if err := b.Follow(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "post from a peer found through the DHT", func() bool { return b.sink.has("alice", 1) == 1 })
	// Either side may have dialed: a's starving swarm asks the DHT again
	// after 2 s and finds b's announce too (a loaded machine gets there).
	peers := b.Swarms()[0].Peers
	aPeers := a.Swarms()[0].Peers
	if len(peers) != 1 || (peers[0] != a.Addr() && !slices.Contains(aPeers, b.Addr())) {
		t.Fatalf("peers %v (a's %v), want %v or a dialing %v", peers, aPeers, a.Addr(), b.Addr())
	}
}
