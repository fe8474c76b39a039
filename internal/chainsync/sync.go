// Package chainsync keeps an internal/chain up to date over twister's
// blockchain P2P network: outgoing TCP connections to twisterd nodes
// (-connect, -addnode, -seednode, DNS seeds, an address book in the
// datadir), headers first (getheaders, which twisterd answers although it
// never sends it), then the bodies of the best header chain (getdata),
// several peers in parallel, misbehaving peers banned, stalling ones
// dropped. It serves nothing: it announces no services, so twisterd never
// asks it for blocks. docs/chain.md describes the behaviour.
package chainsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/twgroupd/twgroupd/internal/chain"
	"github.com/twgroupd/twgroupd/internal/chainwire"
)

// Defaults of Config.
const (
	DefaultMaxOutbound      = 4
	DefaultStallTimeout     = 60 * time.Second
	DefaultHandshakeTimeout = 15 * time.Second
	DefaultRetry            = 10 * time.Second
	DefaultBanTime          = 24 * time.Hour // twisterd -bantime
	DefaultPingInterval     = 2 * time.Minute
	// maxInFlight is how many blocks one peer is asked for at a time.
	maxInFlight = 16
	// userAgent is sent in version.
	userAgent = "/twgroupd:0.1/"
)

// Config configures a Syncer.
type Config struct {
	Chain *chain.Chain
	// Connect, if set, are the only peers (twisterd -connect): no address
	// book, no DNS seeds.
	Connect []string
	// AddNodes are always kept connected besides the others (-addnode).
	AddNodes []string
	// SeedNodes are tried first to learn addresses (-seednode).
	SeedNodes []string
	// DNSSeed resolves the network's DNS seeds when the address book has
	// nothing to try (twisterd -dnsseed, default on; tests turn it off).
	DNSSeed bool
	// DataDir holds peers.json (address book and bans); "" keeps it in
	// memory only.
	DataDir          string
	MaxOutbound      int
	StallTimeout     time.Duration
	HandshakeTimeout time.Duration
	RetryInterval    time.Duration
	BanTime          time.Duration
	PingInterval     time.Duration
	Logger           *slog.Logger
	Now              func() time.Time
	// Dial defaults to a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// LookupHost resolves DNS seeds; net.DefaultResolver if nil.
	LookupHost func(ctx context.Context, host string) ([]string, error)
}

// Syncer runs the chain's P2P client.
type Syncer struct {
	cfg   Config
	c     *chain.Chain
	log   *slog.Logger
	book  *addrBook
	fixed []netip.AddrPort // Connect or AddNodes

	mu        sync.Mutex
	peers     map[netip.AddrPort]*peer
	inflight  map[chainwire.Hash]*peer // block bodies asked for
	wake      chan struct{}
	lastLog   time.Time
	loggedTip int32
	// The start of the current catch-up (zero when synced): the sync rate
	// is the blocks connected since then over the time since then.
	behindAt     time.Time
	behindHeight int32
	seededAt     time.Time // of the last DNS seed round (Run's goroutine only)
	seedWG       sync.WaitGroup
}

// New checks cfg and returns a Syncer; Run starts it.
func New(cfg Config) (*Syncer, error) {
	if cfg.Chain == nil {
		return nil, errors.New("chainsync: no chain")
	}
	if cfg.MaxOutbound <= 0 {
		cfg.MaxOutbound = DefaultMaxOutbound
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = DefaultRetry
	}
	if cfg.BanTime <= 0 {
		cfg.BanTime = DefaultBanTime
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second}
		cfg.Dial = d.DialContext
	}
	if cfg.LookupHost == nil {
		cfg.LookupHost = net.DefaultResolver.LookupHost
	}
	s := &Syncer{cfg: cfg, c: cfg.Chain, log: cfg.Logger, peers: make(map[netip.AddrPort]*peer),
		inflight: make(map[chainwire.Hash]*peer), wake: make(chan struct{}, 1)}
	port := cfg.Chain.Params().DefaultPort
	parse := func(list []string, what string) ([]netip.AddrPort, error) {
		var out []netip.AddrPort
		for _, a := range list {
			ap, err := ParseAddr(a, port)
			if err != nil {
				return nil, fmt.Errorf("chainsync: %s %q: %w", what, a, err)
			}
			out = append(out, ap)
		}
		return out, nil
	}
	var err error
	if len(cfg.Connect) > 0 {
		s.fixed, err = parse(cfg.Connect, "-connect")
	} else {
		s.fixed, err = parse(cfg.AddNodes, "-addnode")
	}
	if err != nil {
		return nil, err
	}
	seeds, err := parse(cfg.SeedNodes, "-seednode")
	if err != nil {
		return nil, err
	}
	s.book = newAddrBook(bookPath(cfg.DataDir), cfg.Now)
	if len(cfg.Connect) == 0 {
		if err := s.book.load(); err != nil {
			s.log.Warn("chainsync: address book unreadable, starting empty", "err", err)
		}
		for _, ap := range seeds {
			s.book.add(ap, cfg.Now())
		}
	}
	for _, ap := range s.fixed {
		s.book.add(ap, time.Time{})
	}
	return s, nil
}

// ParseAddr parses host:port or a bare IP (default port); IP literals only.
func ParseAddr(s string, defPort uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, defPort), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("not an IP address (names are not resolved): %w", err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// PeerCount is the number of connected peers past the handshake.
func (s *Syncer) PeerCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.peers {
		if p.ready() {
			n++
		}
	}
	return n
}

// PeerHeight is the highest chain height a connected peer announced in its
// version message (0 without peers): how far the initial sync has to go
// even before its headers arrive.
func (s *Syncer) PeerHeight() int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var h int32
	for _, p := range s.peers {
		if p.ready() {
			h = max(h, p.startHeight.Load())
		}
	}
	return h
}

// KnownAddrs lists the P2P addresses known (connected first), for the DHT
// bootstrap (twister.cpp ThreadMaintainDHTNodes uses each with port+1000).
func (s *Syncer) KnownAddrs() []netip.AddrPort {
	s.mu.Lock()
	var out []netip.AddrPort
	seen := map[netip.AddrPort]bool{}
	for ap, p := range s.peers {
		if p.ready() {
			out = append(out, ap)
			seen[ap] = true
		}
	}
	s.mu.Unlock()
	for _, ap := range s.book.known() {
		if !seen[ap] {
			out = append(out, ap)
		}
	}
	return out
}

// AddNode keeps ap connected from now on, like twisterd's "addnode <ip>
// add" (also with -connect).
func (s *Syncer) AddNode(ap netip.AddrPort) {
	s.mu.Lock()
	s.fixed = append(s.fixed, ap)
	s.mu.Unlock()
	s.book.add(ap, time.Time{})
	s.poke()
}

// AddAddr adds a P2P address learned elsewhere (a DHT node's port-1000).
func (s *Syncer) AddAddr(ap netip.AddrPort) {
	if len(s.cfg.Connect) == 0 {
		s.book.add(ap, time.Time{})
		s.poke()
	}
}

func (s *Syncer) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run connects and syncs until ctx ends; it then closes every connection
// and saves the address book.
func (s *Syncer) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		s.seedWG.Wait()
		if err := s.book.save(); err != nil {
			s.log.Warn("chainsync: save address book", "err", err)
		}
	}()
	tick := time.NewTicker(min(s.cfg.RetryInterval, time.Second))
	defer tick.Stop()
	saveTick := time.NewTicker(5 * time.Minute)
	defer saveTick.Stop()
	for {
		for _, ap := range s.wanted(ctx) {
			p := newPeer(s, ap)
			s.mu.Lock()
			s.peers[ap] = p
			s.mu.Unlock()
			s.book.attempt(ap)
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := p.run(ctx)
				s.dropPeer(p, err)
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-s.wake:
		case <-saveTick.C:
			if err := s.book.save(); err != nil {
				s.log.Warn("chainsync: save address book", "err", err)
			}
		}
	}
}

// wanted picks the addresses to dial now.
func (s *Syncer) wanted(ctx context.Context) []netip.AddrPort {
	s.mu.Lock()
	connected := func(ap netip.AddrPort) bool { return s.peers[ap] != nil }
	var out []netip.AddrPort
	retryOK := func(ap netip.AddrPort) bool {
		// -connect/-addnode peers back off to at most 4 retry intervals.
		c := s.book.candidates(func(x netip.AddrPort) bool { return x != ap }, s.cfg.RetryInterval, 2, 1)
		return len(c) == 1
	}
	for _, ap := range s.fixed {
		if !connected(ap) && !s.book.banned(ap) && retryOK(ap) {
			out = append(out, ap)
		}
	}
	if len(s.cfg.Connect) > 0 {
		s.mu.Unlock()
		return out
	}
	free := s.cfg.MaxOutbound - len(s.peers) - len(out)
	s.mu.Unlock()
	if free <= 0 {
		return out
	}
	isFixed := func(ap netip.AddrPort) bool {
		for _, f := range s.fixed {
			if f == ap {
				return true
			}
		}
		return false
	}
	s.mu.Lock()
	cands := s.book.candidates(func(ap netip.AddrPort) bool { return connected(ap) || isFixed(ap) }, s.cfg.RetryInterval, 6, free)
	s.mu.Unlock()
	out = append(out, cands...)
	if len(cands) == 0 && s.cfg.DNSSeed && s.PeerCount() == 0 && s.cfg.Now().Sub(s.seededAt) > 5*time.Minute {
		s.seededAt = s.cfg.Now()
		s.seedWG.Add(1)
		go func() { // lookups may take seconds; dialing goes on meanwhile
			defer s.seedWG.Done()
			s.dnsSeed(ctx)
			s.poke()
		}()
	}
	return out
}

func (s *Syncer) dnsSeed(ctx context.Context) {
	p := s.c.Params()
	for _, host := range p.DNSSeeds {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		addrs, err := s.cfg.LookupHost(lctx, host)
		cancel()
		if err != nil {
			s.log.Debug("chainsync: DNS seed", "host", host, "err", err)
			continue
		}
		for _, a := range addrs {
			if ip, err := netip.ParseAddr(a); err == nil {
				s.book.add(netip.AddrPortFrom(ip.Unmap(), p.DefaultPort), time.Time{})
			}
		}
	}
}

func (s *Syncer) dropPeer(p *peer, err error) {
	s.mu.Lock()
	if s.peers[p.addr] == p {
		delete(s.peers, p.addr)
	}
	for h, q := range s.inflight {
		if q == p {
			delete(s.inflight, h)
		}
	}
	others := make([]*peer, 0, len(s.peers))
	for _, q := range s.peers {
		others = append(others, q)
	}
	s.mu.Unlock()
	var mis *misbehaving
	switch {
	case errors.As(err, &mis):
		s.log.Warn("chainsync: banning peer", "peer", p.addr, "err", err)
		s.book.ban(p.addr, s.cfg.BanTime)
	case err != nil && !errors.Is(err, context.Canceled):
		s.log.Info("chainsync: peer disconnected", "peer", p.addr, "err", err)
	}
	s.book.result(p.addr, p.wasReady)
	// Blocks it held are now free for the others.
	for _, q := range others {
		q.kick()
	}
	s.poke()
}

// claimBlocks reserves up to n missing blocks for p.
func (s *Syncer) claimBlocks(p *peer, n int) []chainwire.Hash {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs := s.c.MissingBlocks(n, func(h chainwire.Hash) bool { return s.inflight[h] != nil })
	for _, h := range hs {
		s.inflight[h] = p
	}
	return hs
}

func (s *Syncer) releaseBlock(h chainwire.Hash) {
	s.mu.Lock()
	delete(s.inflight, h)
	s.mu.Unlock()
}

// Status is the sync state for getinfo and the progress log.
type Status struct {
	Height     int32   // connected tip
	BestHeader int32   // most-work valid header
	Target     int32   // max(BestHeader, highest height a peer announced)
	Syncing    bool    // Height < Target
	Percent    float64 // 100 * Height / Target (100 when synced)
	BlocksPerS float64 // blocks connected per second since the catch-up began (0 when synced)
}

// Status reports the sync state.
func (s *Syncer) Status() Status {
	tip, best := s.c.Tip(), s.c.BestHeader()
	target := max(best.Height, s.PeerHeight())
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusLocked(tip.Height, best.Height, target, s.cfg.Now())
}

func (s *Syncer) statusLocked(tip, best, target int32, now time.Time) Status {
	st := Status{Height: tip, BestHeader: best, Target: target, Percent: 100}
	if tip >= target {
		s.behindAt = time.Time{}
		return st
	}
	st.Syncing = true
	if target > 0 {
		st.Percent = 100 * float64(tip) / float64(target)
	}
	if s.behindAt.IsZero() {
		s.behindAt, s.behindHeight = now, tip
	}
	if d := now.Sub(s.behindAt).Seconds(); d > 0 {
		st.BlocksPerS = float64(tip-s.behindHeight) / d
	}
	return st
}

// progress logs the sync state at most every 10 s while behind, and once
// per new tip when caught up.
func (s *Syncer) progress() {
	tip, best := s.c.Tip(), s.c.BestHeader()
	target := max(best.Height, s.PeerHeight())
	s.mu.Lock()
	now := s.cfg.Now()
	st := s.statusLocked(tip.Height, best.Height, target, now)
	if !st.Syncing {
		first := tip.Height != s.loggedTip
		s.loggedTip = tip.Height
		s.mu.Unlock()
		if first {
			s.log.Info("chainsync: synced", "height", tip.Height, "hash", tip.Hash.String())
		}
		return
	}
	due := now.Sub(s.lastLog) >= 10*time.Second
	if due {
		s.lastLog = now
	}
	s.mu.Unlock()
	if !due {
		return
	}
	s.log.Info("chainsync: sync progress", "height", st.Height, "target", st.Target, "best_header", st.BestHeader,
		"percent", fmt.Sprintf("%.1f", st.Percent), "blocks_per_s", fmt.Sprintf("%.1f", st.BlocksPerS))
}

// version is the version message we send: no services (we serve no
// blocks), no relay of transactions.
func (s *Syncer) version(remote netip.AddrPort) *chainwire.MsgVersion {
	return &chainwire.MsgVersion{
		Version:     chainwire.ProtocolVersion,
		Services:    0,
		Timestamp:   s.cfg.Now().Unix(),
		AddrRecv:    chainwire.NewNetAddr(1, remote),
		AddrFrom:    chainwire.NetAddr{IP: netip.AddrFrom4([4]byte{}).As16()},
		Nonce:       rand.Uint64(),
		UserAgent:   userAgent,
		StartHeight: s.c.Tip().Height,
		Relay:       false,
		HasRelay:    true,
	}
}
