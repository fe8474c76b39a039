package chainsync

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/chain"
	"github.com/twgroupd/twgroupd/internal/chain/chaintest"
	"github.com/twgroupd/twgroupd/internal/chainwire"
)

// BenchmarkSyncFromOnePeer: a fresh chain.db syncing N blocks (default
// 1000; CHAIN_BENCH_BLOCKS=10000 for the figure) over TCP from one
// local peer. Reports blocks/s; building the chain is not timed. pow: every
// header's scrypt computed (no checkpoint); checkpoint: a hard checkpoint
// at the tip, so the headers skip scrypt (chain.AddHeaders).
func BenchmarkSyncFromOnePeer(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("CHAIN_BENCH_BLOCKS")); err == nil && v > 0 {
		n = v
	}
	p := chaintest.Params(0)
	bld := chaintest.NewBuilder(p)
	bld.Extend(n)
	peer := chaintest.NewPeer(b, bld.Blocks, chaintest.Serve)
	b.Run("pow", func(b *testing.B) { benchSync(b, p, n, peer) })
	cp := *p
	cp.Checkpoints = map[int32]chainwire.Hash{int32(n): bld.Tip().Header.Hash()}
	b.Run("checkpoint", func(b *testing.B) { benchSync(b, &cp, n, peer) })
}

func benchSync(b *testing.B, p *chain.Params, n int, peer *chaintest.Peer) {
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		c, err := chain.Open(dir+"/chain.db", p, chain.Options{Now: func() time.Time { return time.Unix(chaintest.GenesisTime+int64(n)*600+1e6, 0) }, Logger: quietLog()})
		if err != nil {
			b.Fatal(err)
		}
		s, err := New(Config{Chain: c, Connect: []string{peer.Addr()}, Logger: quietLog()})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.Run(ctx) }()
		for c.Tip().Height != int32(n) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		<-done
		c.Close()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "blocks/s")
}
