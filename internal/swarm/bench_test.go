package swarm

import (
	"context"
	"testing"
	"time"
)

// BenchmarkFetch1000Posts: a fresh node follows a user whose 1000-post
// swarm one peer serves over TCP on 127.0.0.1; each piece is verified
// (signature recovery) on both sides and stored in bbolt.
func BenchmarkFetch1000Posts(b *testing.B) {
	const posts = 1000
	ctx := context.Background()
	keys := newTestKeys(posts) // bound 2*(1000-1)+20 covers k < 1000
	alice := newUser(b, keys, "alice")
	seed := startNode(b, b.TempDir(), keys)
	for k := int64(0); k < posts; k++ {
		if err := seed.Publish(ctx, "alice", k, publicPost(b, alice, k, "benchmark post")); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		n := startNode(b, b.TempDir(), keys, seed.Addr())
		b.StartTimer()
		if err := n.Follow(ctx, "alice"); err != nil {
			b.Fatal(err)
		}
		waitFor(b, "1000 posts", func() bool { return n.sink.total() == posts })
		b.StopTimer()
		n.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(posts*b.N)/time.Since(start).Seconds(), "posts/s")
}

// BenchmarkPublishToRemoteSink: latency from Publish on one node to the
// post reaching the sink of a connected follower (HAVE, REQUEST, PIECE,
// verify, store, deliver).
func BenchmarkPublishToRemoteSink(b *testing.B) {
	ctx := context.Background()
	keys := newTestKeys(1 << 20)
	alice := newUser(b, keys, "alice")
	a := startNode(b, b.TempDir(), keys)
	f := startNode(b, b.TempDir(), keys, a.Addr())
	if err := a.Publish(ctx, "alice", 0, publicPost(b, alice, 0, "warm up")); err != nil {
		b.Fatal(err)
	}
	f.Follow(ctx, "alice")
	waitFor(b, "connected", func() bool { return f.sink.has("alice", 0) == 1 })
	posts := make([][]byte, b.N)
	for i := range posts {
		posts[i] = publicPost(b, alice, int64(i+1), "latency")
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := int64(i + 1)
		if err := a.Publish(ctx, "alice", k, posts[i]); err != nil {
			b.Fatal(err)
		}
		for f.sink.has("alice", k) == 0 {
			time.Sleep(50 * time.Microsecond)
		}
	}
}
