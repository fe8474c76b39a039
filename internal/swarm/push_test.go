package swarm

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestSecondPieceWithinPushRoundReachesUnconnectedFollower: the author
// keeps one connection in its swarm (TargetPeers 1) and pushes with one
// dial a round (HotPeers 1); three followers know nobody and only learn
// of posts through the author. Piece 1 starts a round (one dial); piece 2
// comes within pushRound, so its round must run once the throttle has
// passed, not be dropped: the third follower, connected to no one, gets
// it only from that round (before the fix it never did).
func TestSecondPieceWithinPushRoundReachesUnconnectedFollower(t *testing.T) {
	ctx := context.Background()
	keys := newTestKeys(100)
	alice, bob := newUser(t, keys, "alice"), newUser(t, keys, "bob")
	var followers []*testNode
	var addrs []netip.AddrPort
	for range 3 {
		f := startNode(t, t.TempDir(), keys)
		if err := f.Follow(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		followers = append(followers, f)
		addrs = append(addrs, f.Addr())
	}
	finder := newMapFinder()
	finder.set("alice", addrs...)
	cfg := fastConfig(t.TempDir(), keys)
	cfg.Finder = finder
	cfg.TargetPeers, cfg.HotPeers = 1, 1
	a := startNodeConfig(t, cfg)
	if err := a.Follow(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the author's one connection", func() bool { return a.live() == 1 })
	time.Sleep(300 * time.Millisecond) // no second dial comes while cold
	if n := a.live(); n != 1 {
		t.Fatalf("author has %d connections while cold, want 1", n)
	}
	for k := int64(1); k <= 2; k++ {
		if err := a.Publish(ctx, "alice", k, dmPost(t, alice, k, bob, fmt.Sprint("post ", k))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "piece 2 at all three followers", func() bool {
		for _, f := range followers {
			if f.sink.has("alice", 2) != 1 {
				return false
			}
		}
		return true
	})
}
