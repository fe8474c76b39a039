package swarm

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkSparseDelivery times one new post reaching 7 followers when the
// budget cannot mesh its swarm: 8 nodes follow 16 users each under a cap of
// 4 connections (target 1, most swarms with no connection at a time). The
// two sub-benchmarks run in one invocation, so their ns/op ratio is the
// gain of twg_swarms over the swarm's own connections, push rounds and
// rotation alone:
//
//	go test -run '^$' -bench SparseDelivery -benchtime 20x -count 3 ./internal/swarm/
func BenchmarkSparseDelivery(b *testing.B) {
	for _, mode := range []struct {
		name string
		off  bool
	}{{"twg_swarms", false}, {"swarm-only", true}} {
		b.Run(mode.name, func(b *testing.B) {
			ctx := context.Background()
			keys := newTestKeys(100_000)
			var users []string
			for i := range 16 {
				users = append(users, fmt.Sprintf("u%02d", i))
			}
			author := newUser(b, keys, users[0])
			reader := newUser(b, keys, "reader")
			for _, u := range users[1:] {
				newUser(b, keys, u)
			}
			finder := newMapFinder()
			var nodes []*testNode
			var addrs []netip.AddrPort
			for range 8 {
				cfg := fastConfig(b.TempDir(), keys)
				cfg.Finder = finder
				cfg.MaxConnections = 4
				cfg.NoCrossSwarm = mode.off
				n := startNodeConfig(b, cfg)
				nodes = append(nodes, n)
				addrs = append(addrs, n.Addr())
			}
			for _, u := range users {
				finder.set(u, addrs...)
			}
			for _, n := range nodes {
				for _, u := range users {
					if err := n.Follow(ctx, u); err != nil {
						b.Fatal(err)
					}
				}
			}
			time.Sleep(2 * time.Second) // connections settle under the cap
			b.ResetTimer()
			for i := range b.N {
				k := int64(i)
				if err := nodes[0].Publish(ctx, users[0], k, dmPost(b, author, k, reader, "sparse")); err != nil {
					b.Fatal(err)
				}
				deadline := time.Now().Add(2 * time.Minute)
				for _, n := range nodes[1:] {
					for !n.HasPiece(users[0], k) {
						if time.Now().After(deadline) {
							b.Fatalf("post %d not at every follower after 2 min", k)
						}
						time.Sleep(2 * time.Millisecond)
					}
				}
			}
		})
	}
}
