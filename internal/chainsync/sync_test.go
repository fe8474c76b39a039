package chainsync

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/chain"
	"github.com/twgroupd/twgroupd/internal/chain/chaintest"
	"github.com/twgroupd/twgroupd/internal/chainwire"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openChain(t *testing.T, dir string, p *chain.Params, now time.Time) *chain.Chain {
	t.Helper()
	c, err := chain.Open(filepath.Join(dir, "chain.db"), p, chain.Options{Now: func() time.Time { return now }, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startSync runs a Syncer until the test ends (or stop is called).
func startSync(t *testing.T, cfg Config) (*Syncer, func()) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLog()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return s, func() { cancel(); <-done }
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustAddr(t *testing.T, s string) netip.AddrPort {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// The recorded twisterd chain, served by a Go peer over TCP, syncs into a
// fresh chain.db with every user's keys; a restart downloads nothing again.
func TestSyncRecordedChain(t *testing.T) {
	blocks := chaintest.LoadBlocks(t, "testdata/blocks.jsonl")
	now := time.Unix(int64(blocks[len(blocks)-1].Header.Time)+600, 0)
	peer := chaintest.NewPeer(t, blocks, chaintest.Serve)
	dir := t.TempDir()
	c := openChain(t, dir, chain.Mainnet(), now)
	s, stop := startSync(t, Config{Chain: c, Connect: []string{peer.Addr()}, DataDir: dir})
	waitFor(t, "tip 70", func() bool { return c.Tip().Height == 70 })
	if c.Tip().Hash != blocks[70].Header.Hash() {
		t.Fatal("wrong tip")
	}
	waitFor(t, "a ready peer", func() bool { return s.PeerCount() == 1 })
	var users map[string][]struct {
		PubKey string `json:"pubkey"`
		From   int32  `json:"from"`
	}
	raw, _ := os.ReadFile("testdata/users.json")
	if err := json.Unmarshal(raw, &users); err != nil {
		t.Fatal(err)
	}
	for name, keys := range users {
		es, err := c.UserEntries(name)
		if err != nil || len(es) != len(keys) {
			t.Fatalf("%s: %v", name, err)
		}
		for i := range keys {
			if es[i].Height != keys[i].From || hex.EncodeToString(es[i].PubKey) != keys[i].PubKey {
				t.Fatalf("%s key %d", name, i)
			}
		}
	}
	served := peer.TotalServed()
	if served != 70 {
		t.Fatalf("%d blocks served for 70", served)
	}
	stop()
	c.Close()

	c2 := openChain(t, dir, chain.Mainnet(), now)
	defer c2.Close()
	s2, _ := startSync(t, Config{Chain: c2, Connect: []string{peer.Addr()}, DataDir: dir})
	waitFor(t, "reconnect", func() bool { return s2.PeerCount() == 1 && peer.Accepted() == 2 })
	time.Sleep(200 * time.Millisecond) // let a getheaders round trip happen
	if peer.TotalServed() != served || c2.Tip().Height != 70 {
		t.Fatalf("after restart: %d blocks served, tip %d", peer.TotalServed()-served, c2.Tip().Height)
	}
}

// A peer switching to a heavier fork makes the client reorganize (inv of
// the new tip -> getheaders -> getdata of the new branch only).
func TestSyncReorg(t *testing.T) {
	p := chaintest.Params(0)
	a := chaintest.NewBuilder(p)
	a.Extend(8)
	b := a.Fork(4)
	b.Extend(6)
	peer := chaintest.NewPeer(t, a.Blocks, chaintest.Serve)
	c := openChain(t, t.TempDir(), p, time.Unix(chaintest.GenesisTime+1e6, 0))
	defer c.Close()
	startSync(t, Config{Chain: c, Connect: []string{peer.Addr()}})
	waitFor(t, "tip of A", func() bool { return c.Tip().Hash == a.Tip().Header.Hash() })
	peer.SetBlocks(b.Blocks)
	waitFor(t, "tip of B", func() bool { return c.Tip().Hash == b.Tip().Header.Hash() })
	for i := 1; i <= 4; i++ {
		if n := peer.Served(a.Blocks[i].Header.Hash()); n != 1 {
			t.Fatalf("shared block %d served %d times", i, n)
		}
	}
}

// Peers feeding invalid proof of work, a wrong difficulty or an oversized
// message are banned; a stalling peer is dropped; the chain syncs from the
// honest peer regardless.
func TestSyncBadPeers(t *testing.T) {
	p := chaintest.Params(0)
	good := chaintest.NewBuilder(p)
	good.Extend(6)

	badPoW := good.Fork(2)
	forged := *good.Blocks[3]
	forged.Header = chaintest.BadPoW(forged.Header, p)
	badPoW.Blocks = append(badPoW.Blocks, &forged)

	wrongDiff := good.Fork(2)
	wrongDiff.Add(600, 0x2000ffff) // harder than required: valid PoW, wrong nBits
	wrongDiff.Extend(8)            // more blocks than the honest chain

	pPoW := chaintest.NewPeer(t, badPoW.Blocks, chaintest.Serve)
	pDiff := chaintest.NewPeer(t, wrongDiff.Blocks, chaintest.Serve)
	pBig := chaintest.NewPeer(t, good.Blocks, chaintest.Oversize)
	pStall := chaintest.NewPeer(t, good.Blocks, chaintest.StallBlocks)

	c := openChain(t, t.TempDir(), p, time.Unix(chaintest.GenesisTime+1e6, 0))
	defer c.Close()
	s, _ := startSync(t, Config{Chain: c, Connect: []string{pPoW.Addr(), pDiff.Addr(), pBig.Addr(), pStall.Addr()},
		StallTimeout: time.Second, RetryInterval: 100 * time.Millisecond})
	for _, bad := range []*chaintest.Peer{pPoW, pDiff, pBig} {
		ap := mustAddr(t, bad.Addr())
		waitFor(t, "ban of "+bad.Addr(), func() bool { return s.book.banned(ap) })
	}
	// (Under heavy load a slow bad peer may first be dropped as stalling
	// and redialled; once banned it is never dialled again.)
	acceptedAtBan := []int{pPoW.Accepted(), pDiff.Accepted(), pBig.Accepted()}
	// Only the staller is left: it gives headers but no block.
	waitFor(t, "headers from the staller", func() bool { return c.BestHeader().Height == 6 })
	if c.Tip().Height > 3 {
		t.Fatalf("tip %d without bodies", c.Tip().Height)
	}
	waitFor(t, "staller dropped and retried", func() bool { return pStall.Accepted() >= 2 })
	if s.book.banned(mustAddr(t, pStall.Addr())) {
		t.Fatal("staller banned")
	}
	pGood := chaintest.NewPeer(t, good.Blocks, chaintest.Serve)
	s.AddNode(mustAddr(t, pGood.Addr()))
	waitFor(t, "sync from the honest peer", func() bool { return c.Tip().Hash == good.Tip().Header.Hash() })
	for i, bad := range []*chaintest.Peer{pPoW, pDiff, pBig} {
		if bad.Accepted() != acceptedAtBan[i] {
			t.Fatalf("banned peer %s redialled", bad.Addr())
		}
	}
}

// The address book keeps addr entries and bans across restarts.
func TestAddrBookPersists(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1796000000, 0)
	b := newAddrBook(bookPath(dir), func() time.Time { return now })
	good, bad := mustAddr(t, "127.0.0.2:28333"), mustAddr(t, "127.0.0.3:28333")
	b.add(good, now)
	b.ban(bad, time.Hour)
	for i := 0; i < maxBookSize+10; i++ {
		b.add(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 28333), now)
	}
	if len(b.entries) != maxBookSize {
		t.Fatalf("book grew to %d", len(b.entries))
	}
	if err := b.save(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(bookPath(dir))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("peers.json: %v %v", fi, err)
	}
	b2 := newAddrBook(bookPath(dir), func() time.Time { return now })
	if err := b2.load(); err != nil {
		t.Fatal(err)
	}
	if !b2.banned(bad) || b2.banned(good) {
		t.Fatal("bans not kept")
	}
	if c := b2.candidates(func(netip.AddrPort) bool { return false }, time.Second, 6, 5000); len(c) != maxBookSize-1 {
		t.Fatalf("%d candidates", len(c))
	}
}

// Two peers serving the same chain share the download: each block is
// fetched once, from one of them.
func TestSyncParallelPeers(t *testing.T) {
	p := chaintest.Params(0)
	b := chaintest.NewBuilder(p)
	b.Extend(200)
	p1 := chaintest.NewPeer(t, b.Blocks, chaintest.Serve)
	p2 := chaintest.NewPeer(t, b.Blocks, chaintest.Serve)
	c := openChain(t, t.TempDir(), p, time.Unix(chaintest.GenesisTime+1e6, 0))
	defer c.Close()
	s, _ := startSync(t, Config{Chain: c, Connect: []string{p1.Addr(), p2.Addr()}})
	waitFor(t, "tip 200", func() bool { return c.Tip().Height == 200 })
	if n := p1.TotalServed() + p2.TotalServed(); n != 200 {
		t.Fatalf("%d blocks served for 200", n)
	}
	if p1.TotalServed() == 0 || p2.TotalServed() == 0 {
		t.Logf("one peer served everything (%d/%d): the other was slower to connect", p1.TotalServed(), p2.TotalServed())
	}
	waitFor(t, "both peers connected", func() bool { return s.PeerCount() == 2 })
}

// With no peer given, the DNS seeds (resolved through LookupHost) are
// tried at the network's default port; -dnsseed=0 means none.
func TestDNSSeeds(t *testing.T) {
	p := chaintest.Params(0)
	b := chaintest.NewBuilder(p)
	b.Extend(3)
	peer := chaintest.NewPeer(t, b.Blocks, chaintest.Serve)
	p.DefaultPort = mustAddr(t, peer.Addr()).Port()
	p.DNSSeeds = []string{"seed.chaintest.invalid"}
	lookups := make(chan string, 10)
	lookup := func(_ context.Context, host string) ([]string, error) {
		lookups <- host
		return []string{"127.0.0.1"}, nil
	}
	c := openChain(t, t.TempDir(), p, time.Unix(chaintest.GenesisTime+1e6, 0))
	defer c.Close()
	startSync(t, Config{Chain: c, DNSSeed: true, LookupHost: lookup, DataDir: t.TempDir()})
	waitFor(t, "sync through the DNS seed", func() bool { return c.Tip().Height == 3 })
	if h := <-lookups; h != "seed.chaintest.invalid" {
		t.Fatalf("looked up %q", h)
	}

	c2 := openChain(t, t.TempDir(), p, time.Unix(chaintest.GenesisTime+1e6, 0))
	defer c2.Close()
	none := func(_ context.Context, host string) ([]string, error) {
		t.Errorf("DNS seed %s looked up with DNSSeed off", host)
		return nil, nil
	}
	startSync(t, Config{Chain: c2, DNSSeed: false, LookupHost: none})
	time.Sleep(300 * time.Millisecond)
}

// Status tells the initial sync: a peer that gives headers but no bodies
// leaves the client at 0 of 70; a serving peer takes it to 70, synced.
func TestStatusWhileSyncing(t *testing.T) {
	blocks := chaintest.LoadBlocks(t, "testdata/blocks.jsonl")
	now := time.Unix(int64(blocks[len(blocks)-1].Header.Time)+600, 0)
	dir := t.TempDir()
	c := openChain(t, dir, chain.Mainnet(), now)
	defer c.Close()
	stall := chaintest.NewPeer(t, blocks, chaintest.StallBlocks)
	s, stop := startSync(t, Config{Chain: c, Connect: []string{stall.Addr()}, DataDir: dir})
	waitFor(t, "headers", func() bool { return c.BestHeader().Height == 70 })
	st := s.Status()
	if !st.Syncing || st.Height != 0 || st.BestHeader != 70 || st.Target != 70 || st.Percent != 0 {
		t.Fatalf("stalled: %+v", st)
	}
	stop()

	peer := chaintest.NewPeer(t, blocks, chaintest.Serve)
	s2, _ := startSync(t, Config{Chain: c, Connect: []string{peer.Addr()}, DataDir: dir})
	waitFor(t, "tip 70", func() bool { return c.Tip().Height == 70 })
	if st := s2.Status(); st.Syncing || st.Height != 70 || st.Percent != 100 || st.BlocksPerS != 0 {
		t.Fatalf("synced: %+v", st)
	}
}

// The rate is the blocks connected since the catch-up began over the time
// since then, and starts again after the chain caught up.
func TestStatusRate(t *testing.T) {
	s := &Syncer{}
	t0 := time.Unix(1800000000, 0)
	if st := s.statusLocked(10, 100, 100, t0); !st.Syncing || st.Percent != 10 || st.BlocksPerS != 0 {
		t.Fatalf("start: %+v", st)
	}
	if st := s.statusLocked(30, 100, 100, t0.Add(2*time.Second)); st.BlocksPerS != 10 || st.Percent != 30 {
		t.Fatalf("after 2 s: %+v", st)
	}
	if st := s.statusLocked(100, 100, 100, t0.Add(4*time.Second)); st.Syncing || st.Percent != 100 || st.BlocksPerS != 0 {
		t.Fatalf("synced: %+v", st)
	}
	s.statusLocked(100, 150, 150, t0.Add(10*time.Second))
	if st := s.statusLocked(120, 150, 150, t0.Add(14*time.Second)); st.BlocksPerS != 5 {
		t.Fatalf("second catch-up: %+v", st)
	}
}

// Below a hard checkpoint the syncer holds getheaders answers until one
// reaches it, so chain.AddHeaders skips the scrypt of all of them: a chain
// whose block 1 fails its proof of work syncs, because the checkpoint at
// its tip (three answers later) commits to it.
func TestSyncHoldsHeadersForCheckpoint(t *testing.T) {
	p := chaintest.Params(0)
	p.ScryptN = 2 // cheap mining for 4500 blocks
	b := chaintest.NewBuilder(p)
	b.Extend(1)
	b.Blocks[1].Header = chaintest.BadPoW(b.Blocks[1].Header, p)
	b.Extend(4499)
	p.Checkpoints = map[int32]chainwire.Hash{4500: b.Tip().Header.Hash()}
	peer := chaintest.NewPeer(t, b.Blocks, chaintest.Serve)
	dir := t.TempDir()
	c := openChain(t, dir, p, time.Unix(int64(b.Tip().Header.Time)+600, 0))
	defer c.Close()
	startSync(t, Config{Chain: c, Connect: []string{peer.Addr()}, DataDir: dir})
	waitFor(t, "tip 4500", func() bool { return c.Tip().Height == 4500 })

	// Under a checkpoint it does not reach, the same chain is held, then
	// checked in full when added: the bad PoW at 1 bans the peer.
	p2 := *p
	p2.Checkpoints = map[int32]chainwire.Hash{4500: {1}}
	dir2 := t.TempDir()
	c2 := openChain(t, dir2, &p2, time.Unix(int64(b.Tip().Header.Time)+600, 0))
	defer c2.Close()
	s2, _ := startSync(t, Config{Chain: c2, Connect: []string{peer.Addr()}, DataDir: dir2})
	waitFor(t, "ban", func() bool { return s2.book.banned(mustAddr(t, peer.Addr())) })
	if n := c2.BestHeader().Height; n != 0 {
		t.Fatalf("%d junk headers kept", n)
	}
}
