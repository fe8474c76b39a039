package swarm

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// BenchmarkFetch1000Posts: a fresh node follows a user whose 1000-post
// swarm one peer serves over TCP on 127.0.0.1; each piece is verified
// (signature recovery) on both sides and stored in bbolt. Sub-benchmarks:
// queue is swarm.db with the durable delivery queue (own unit tests);
// txsink/solo and txsink/batch keep the pieces in a file shared with a
// TxSink (the node's messages.db) and commit each (piece, sink work) pair
// alone (before) or several pairs per transaction (after). B/op and
// allocs/op count both nodes (one process); /post divides by 1000.
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
	run := func(b *testing.B, start func(b *testing.B) (*Swarm, func() int)) {
		var ms0, ms1 runtime.MemStats
		var allocBytes uint64
		var elapsed time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			n, got := start(b)
			runtime.ReadMemStats(&ms0)
			t0 := time.Now()
			b.StartTimer()
			if err := n.Follow(ctx, "alice"); err != nil {
				b.Fatal(err)
			}
			waitFor(b, "1000 posts", func() bool { return got() == posts })
			b.StopTimer()
			elapsed += time.Since(t0)
			runtime.ReadMemStats(&ms1)
			allocBytes += ms1.TotalAlloc - ms0.TotalAlloc
			n.Close()
			b.StartTimer()
		}
		b.ReportMetric(float64(posts*b.N)/elapsed.Seconds(), "posts/s")
		b.ReportMetric(float64(allocBytes)/float64(posts*b.N), "B/post")
	}
	b.Run("queue", func(b *testing.B) {
		run(b, func(b *testing.B) (*Swarm, func() int) {
			n := startNode(b, b.TempDir(), keys, seed.Addr())
			return n.Swarm, n.sink.total
		})
	})
	for _, mode := range []string{"solo", "batch"} {
		b.Run("txsink/"+mode, func(b *testing.B) {
			run(b, func(b *testing.B) (*Swarm, func() int) {
				dir := b.TempDir()
				db := openShared(b, filepath.Join(dir, "messages.db"))
				cfg := fastConfig(dir, keys, seed.Addr())
				cfg.DB = db
				s, err := New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				s.store.soloApply = mode == "solo"
				sink := newTxSink(b, db)
				s.SetSink(sink)
				if err := s.Start(); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				return s, func() int {
					sink.mu.Lock()
					defer sink.mu.Unlock()
					return len(sink.done)
				}
			})
		})
	}
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
