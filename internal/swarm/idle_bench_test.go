package swarm

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/dht"
)

// countingFinder counts the DHT work the swarm asks for.
type countingFinder struct {
	*dht.Node
	finds, announces atomic.Int64
}

func (c *countingFinder) FindPeers(ctx context.Context, ih [20]byte) ([]netip.AddrPort, error) {
	c.finds.Add(1)
	return c.Node.FindPeers(ctx, ih)
}

func (c *countingFinder) AnnouncePeer(ctx context.Context, ih [20]byte, port int) error {
	c.announces.Add(1)
	return c.Node.AnnouncePeer(ctx, ih, port)
}

// vmRSS is this process's resident set (kB, /proc/self/status).
func vmRSS(tb testing.TB) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Skip("no /proc/self/status")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleSwarms follows 1,000 and 10,000 users whose swarms hold
// nothing (no peer anywhere) on a swarm node with a real DHT node on
// 127.0.0.1 (bootstrapped from a second one), once discovery has settled:
// memory per swarm (Go heap + stacks, and the process's VmRSS; both nodes
// are in this process, the DHT's per-swarm state included), goroutines
// per swarm, and over an idle window of 5 s the process CPU time and the
// DHT lookups and announces started. Run with -benchtime 1x.
func BenchmarkIdleSwarms(b *testing.B) {
	for _, follows := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("follows=%d", follows), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				idleSwarms(b, follows)
			}
		})
	}
}

// idleSettle bounds the wait for the first lookups (SWARM_IDLE_SETTLE, a
// Go duration, default 30 s; each lookup here takes about 0.6 s on 8 slots).
func idleSettle() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("SWARM_IDLE_SETTLE")); err == nil {
		return d
	}
	return 30 * time.Second
}

func idleSwarms(b *testing.B, follows int) {
	ctx := context.Background()
	keys := newTestKeys(100)
	d0 := openDHT(b, keys)
	d1 := openDHT(b, keys, d0.LocalAddr().String())
	finder := &countingFinder{Node: d1}
	cfg := fastConfig(b.TempDir(), keys)
	cfg.ReconnectInterval = 0 // production values: only the DHT is fast here
	cfg.RequestTimeout, cfg.KeepAliveInterval, cfg.PeerTimeout, cfg.HandshakeTimeout = 0, 0, 0, 0
	cfg.Finder = finder
	n := startNodeConfig(b, cfg)

	settle := func() (heap, rss int64, g int) {
		time.Sleep(200 * time.Millisecond)
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapInuse + ms.StackInuse), vmRSS(b), runtime.NumGoroutine()
	}
	heap0, rss0, g0 := settle()
	for i := range follows {
		if err := n.Follow(ctx, fmt.Sprintf("idle%05d", i)); err != nil {
			b.Fatal(err)
		}
	}
	// Discovery settles: every swarm had its first lookup (or 30 s passed).
	deadline := time.Now().Add(idleSettle()) // 10,000 first lookups take minutes; the window then sees them spread
	for finder.finds.Load() < int64(follows) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	heap1, rss1, g1 := settle()
	f0, a0, c0 := finder.finds.Load(), finder.announces.Load(), cpuTime()
	const window = 5 * time.Second
	time.Sleep(window)
	f1, a1, c1 := finder.finds.Load(), finder.announces.Load(), cpuTime()
	b.ReportMetric(float64(heap1-heap0)/float64(follows), "heapB/swarm")
	b.ReportMetric(float64(rss1-rss0)*1024/float64(follows), "rssB/swarm")
	b.ReportMetric(float64(g1-g0)/float64(follows), "goroutines/swarm")
	b.ReportMetric(100*float64(c1-c0)/float64(window), "idleCPU%")
	b.ReportMetric(float64(f1-f0+a1-a0)/window.Seconds(), "dht-ops/s")
	b.ReportMetric(float64(f0)/float64(follows), "lookups/swarm") // < 1: not all had their first yet
}

// emptyFinder is a PeerFinder that knows nobody.
type emptyFinder struct{ finds atomic.Int64 }

func (f *emptyFinder) FindPeers(context.Context, [20]byte) ([]netip.AddrPort, error) {
	f.finds.Add(1)
	return nil, nil
}
func (f *emptyFinder) AnnouncePeer(context.Context, [20]byte, int) error { return nil }
func (f *emptyFinder) AddContact(netip.AddrPort)                         {}

// TestIdleSwarmsCostNothingPeriodic: 2,000 followed users with nobody in
// their swarms add no goroutine per swarm, stay out of the tick's set,
// and each gets its first DHT lookup through the shared scheduler.
func TestIdleSwarmsCostNothingPeriodic(t *testing.T) {
	const follows = 2000
	ctx := context.Background()
	f := &emptyFinder{}
	cfg := fastConfig(t.TempDir(), newTestKeys(100))
	cfg.Finder = f
	n := startNodeConfig(t, cfg)
	g0 := runtime.NumGoroutine()
	for i := range follows {
		if err := n.Follow(ctx, fmt.Sprintf("idle%05d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "first lookups", func() bool { return f.finds.Load() >= follows })
	if g := runtime.NumGoroutine() - g0; g > maxLookups+10 {
		t.Fatalf("%d goroutines more for %d idle swarms", g, follows)
	}
	n.mu.Lock()
	active, queued := len(n.active), len(n.discQ)
	n.mu.Unlock()
	if active != 0 {
		t.Fatalf("%d idle swarms in the tick's set", active)
	}
	if queued < follows-maxLookups {
		t.Fatalf("%d swarms queued for discovery, want about %d", queued, follows)
	}
}
