package chainsync

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/twgroupd/twgroupd/internal/chain"
	"github.com/twgroupd/twgroupd/internal/chainwire"
)

// minProtoVersion is twisterd's MIN_PROTO_VERSION.
const minProtoVersion = 209

// maxOrphanAnswers is how many headers answers that do not connect we take
// from one peer before dropping it.
const maxOrphanAnswers = 3

var errStalled = errors.New("peer stalled")

// misbehaving marks an error that bans the peer (twisterd's Misbehaving).
type misbehaving struct{ err error }

func (m *misbehaving) Error() string { return "misbehaving: " + m.err.Error() }
func (m *misbehaving) Unwrap() error { return m.err }

func banIf(err error) error {
	if errors.Is(err, chain.ErrInvalid) || errors.Is(err, chainwire.ErrMalformed) || errors.Is(err, chainwire.ErrTooLarge) {
		return &misbehaving{err}
	}
	return err
}

type peer struct {
	s    *Syncer
	addr netip.AddrPort
	conn net.Conn
	bw   *bufio.Writer

	isReady     atomic.Bool
	wasReady    bool
	startHeight atomic.Int32 // the peer's height from its version message
	kickCh      chan struct{}

	// Owned by run's goroutine.
	headersSent time.Time // outstanding getheaders
	inflight    map[chainwire.Hash]time.Time
	pingSent    time.Time
	pingNonce   uint64
	lastSend    time.Time
	orphans     int
	held        []chainwire.BlockHeader // headers answers waiting for a checkpoint (hold)
	// pending are received blocks not stored yet: stored together in one
	// chain.db commit (a batch fills up, or the peer pauses).
	pending []*chainwire.Block
}

// Block batching: at most maxBatch blocks (≤ 50 kB each) wait, at most
// batchWait after the last message.
const (
	maxBatch  = 64
	batchWait = 10 * time.Millisecond
)

func newPeer(s *Syncer, ap netip.AddrPort) *peer {
	return &peer{s: s, addr: ap, kickCh: make(chan struct{}, 1), inflight: make(map[chainwire.Hash]time.Time)}
}

func (p *peer) ready() bool { return p.isReady.Load() }

// kick makes the peer look for blocks to request (another peer left).
func (p *peer) kick() {
	select {
	case p.kickCh <- struct{}{}:
	default:
	}
}

func (p *peer) send(m chainwire.Message) error {
	p.conn.SetWriteDeadline(time.Now().Add(p.s.cfg.StallTimeout))
	if err := chainwire.WriteMessage(p.bw, m); err != nil {
		return err
	}
	p.lastSend = p.s.cfg.Now()
	return p.bw.Flush()
}

type readResult struct {
	m   chainwire.Message
	err error
}

func (p *peer) run(ctx context.Context) error {
	cfg := &p.s.cfg
	dctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	conn, err := cfg.Dial(dctx, "tcp", p.addr.String())
	cancel()
	if err != nil {
		return fmt.Errorf("dial %s: %w", p.addr, err)
	}
	p.conn = conn
	p.bw = bufio.NewWriterSize(conn, 4096)
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	br := bufio.NewReaderSize(conn, 64<<10)
	if err := p.handshake(br); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	p.isReady.Store(true)
	p.wasReady = true
	p.s.log.Info("chainsync: connected", "peer", p.addr)
	conn.SetReadDeadline(time.Time{})

	msgs := make(chan readResult, 1)
	go func() {
		for {
			m, err := chainwire.ReadMessage(br, 0)
			select {
			case msgs <- readResult{m, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	// Like twisterd after verack: ask for addresses (unless -connect).
	if len(cfg.Connect) == 0 {
		if err := p.send(&chainwire.MsgGetAddr{}); err != nil {
			return err
		}
	}
	if err := p.getHeaders(); err != nil {
		return err
	}
	tick := time.NewTicker(min(cfg.StallTimeout/4, time.Second))
	defer tick.Stop()
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	defer flush.Stop()
	defer p.releasePending()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-flush.C:
			if err := p.flush(); err != nil {
				return err
			}
		case r := <-msgs:
			if len(p.pending) > 0 {
				flush.Reset(batchWait)
			}
			if r.err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return banIf(fmt.Errorf("read: %w", r.err))
			}
			if err := p.handle(r.m); err != nil {
				return err
			}
			if len(p.pending) > 0 {
				flush.Reset(batchWait)
			}
		case <-p.kickCh:
			if err := p.requestBlocks(); err != nil {
				return err
			}
		case <-tick.C:
			if err := p.checkStall(); err != nil {
				return err
			}
		}
	}
}

func (p *peer) handshake(br *bufio.Reader) error {
	cfg := &p.s.cfg
	p.conn.SetReadDeadline(time.Now().Add(cfg.HandshakeTimeout))
	ours := p.s.version(p.addr)
	if err := p.send(ours); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	gotVersion, gotVerack := false, false
	for !gotVersion || !gotVerack {
		m, err := chainwire.ReadMessage(br, 0)
		if err != nil {
			return banIf(fmt.Errorf("handshake: %w", err))
		}
		switch m := m.(type) {
		case *chainwire.MsgVersion:
			if gotVersion {
				return &misbehaving{errors.New("duplicate version")}
			}
			if m.Version < minProtoVersion {
				return fmt.Errorf("handshake: protocol version %d too old", m.Version)
			}
			if m.Nonce == ours.Nonce {
				return errors.New("handshake: connected to ourselves")
			}
			gotVersion = true
			p.startHeight.Store(m.StartHeight)
			if err := p.send(&chainwire.MsgVerack{}); err != nil {
				return err
			}
		case *chainwire.MsgVerack:
			gotVerack = true
		default:
			if !gotVersion {
				return fmt.Errorf("handshake: %s before version", m.Command())
			}
		}
	}
	return nil
}

func (p *peer) getHeaders() error {
	p.headersSent = p.s.cfg.Now()
	return p.send(&chainwire.MsgGetHeaders{Locator: chainwire.Locator{Version: chainwire.ProtocolVersion, Hashes: p.s.c.Locator()}})
}

// maxHeld bounds the headers held back per peer (2.7 MB): more than
// mainnet's widest gap between checkpoints (24500 to 55450).
const maxHeld = 32000

// hold reports whether hdrs (linked by hash, all of one peer's answers
// since the last AddHeaders) should wait for the next answer: a hard
// checkpoint lies above them within maxHeld of their start, and once a
// batch reaches it chain.AddHeaders skips their scrypt. A peer sending
// junk gains nothing: when the batch is added, every header it has not
// chained to a checkpoint is checked, and a failure bans it.
func (p *peer) hold(hdrs []chainwire.BlockHeader) bool {
	cp, ok := p.s.c.CheckpointAfter(hdrs[len(hdrs)-1].Height)
	if !ok || len(hdrs) >= maxHeld || cp-hdrs[0].Height >= maxHeld {
		return false
	}
	for i := 1; i < len(hdrs); i++ {
		if hdrs[i].PrevBlock != hdrs[i-1].Hash() {
			return false
		}
	}
	return true
}

func (p *peer) handle(m chainwire.Message) error {
	c := p.s.c
	switch m := m.(type) {
	case *chainwire.MsgPing:
		if m.HasNonce {
			return p.send(&chainwire.MsgPong{Nonce: m.Nonce})
		}
	case *chainwire.MsgPong:
		if m.Nonce == p.pingNonce {
			p.pingSent = time.Time{}
		}
	case *chainwire.MsgAddr:
		now := p.s.cfg.Now()
		for _, a := range m.Addrs {
			seen := time.Unix(int64(a.Time), 0)
			if seen.After(now) {
				seen = now
			}
			p.s.book.add(a.AddrPort(), seen)
		}
	case *chainwire.MsgHeaders:
		p.headersSent = time.Time{}
		hdrs := m.Headers
		if len(p.held) > 0 {
			hdrs = append(p.held, hdrs...)
			p.held = nil
		}
		if len(m.Headers) == chainwire.MaxHeaders && p.hold(hdrs) {
			p.held = hdrs
			p.headersSent = p.s.cfg.Now()
			return p.send(&chainwire.MsgGetHeaders{Locator: chainwire.Locator{Version: chainwire.ProtocolVersion, Hashes: []chainwire.Hash{hdrs[len(hdrs)-1].Hash()}}})
		}
		if len(hdrs) == 0 {
			return p.requestBlocks()
		}
		_, err := c.AddHeaders(hdrs)
		switch {
		case errors.Is(err, chain.ErrOrphan):
			p.orphans++
			if p.orphans > maxOrphanAnswers {
				return fmt.Errorf("headers do not connect: %w", err)
			}
			return p.getHeaders()
		case errors.Is(err, chain.ErrRejected):
			p.s.log.Info("chainsync: header rejected for now", "peer", p.addr, "err", err)
		case err != nil:
			return banIf(err)
		}
		p.s.progress() // the target may have moved: starts the rate's window
		if len(m.Headers) == chainwire.MaxHeaders {
			if err := p.getHeaders(); err != nil {
				return err
			}
		}
		return p.requestBlocks()
	case *chainwire.MsgInv:
		for _, it := range m.Items {
			if it.Type == chainwire.InvBlock && !c.HaveHeader(it.Hash) {
				if p.headersSent.IsZero() {
					return p.getHeaders()
				}
				break
			}
		}
	case *chainwire.MsgBlock:
		// It stays in the shared in-flight set until stored, so no other
		// peer is asked for it meanwhile; this peer may ask for more now.
		delete(p.inflight, m.Block.Header.Hash())
		p.pending = append(p.pending, m.Block)
		if len(p.pending) >= maxBatch {
			if err := p.flush(); err != nil {
				return err
			}
		}
		return p.requestBlocks()
	case *chainwire.MsgNotFound:
		for _, it := range m.Items {
			if _, ok := p.inflight[it.Hash]; ok {
				delete(p.inflight, it.Hash)
				p.s.releaseBlock(it.Hash)
			}
		}
	case *chainwire.MsgGetData:
		// We hold no blocks or transactions to serve.
		if len(m.Items) > 0 {
			return p.send(&chainwire.MsgNotFound{Items: m.Items})
		}
	case *chainwire.MsgVersion:
		return &misbehaving{errors.New("duplicate version")}
	}
	return nil
}

// flush stores the pending blocks in one commit.
func (p *peer) flush() error {
	if len(p.pending) == 0 {
		return nil
	}
	batch := p.pending
	p.pending = nil
	err := p.s.c.AddBlocks(batch)
	for _, b := range batch {
		p.s.releaseBlock(b.Header.Hash())
	}
	switch {
	case errors.Is(err, chain.ErrOrphan):
		if p.headersSent.IsZero() {
			return p.getHeaders()
		}
	case errors.Is(err, chain.ErrRejected):
	case err != nil:
		return banIf(err)
	}
	p.s.progress()
	return p.requestBlocks()
}

// releasePending frees, when the peer goes, blocks received but not stored.
func (p *peer) releasePending() {
	for _, b := range p.pending {
		p.s.releaseBlock(b.Header.Hash())
	}
	p.pending = nil
}

// requestBlocks asks for missing bodies of the best header chain.
func (p *peer) requestBlocks() error {
	free := maxInFlight - len(p.inflight)
	if free <= 0 {
		return nil
	}
	hs := p.s.claimBlocks(p, free)
	if len(hs) == 0 {
		return nil
	}
	now := p.s.cfg.Now()
	items := make([]chainwire.InvVect, len(hs))
	for i, h := range hs {
		items[i] = chainwire.InvVect{Type: chainwire.InvBlock, Hash: h}
		p.inflight[h] = now
	}
	return p.send(&chainwire.MsgGetData{Items: items})
}

// checkStall drops a peer that leaves a request unanswered, and pings an
// idle one.
func (p *peer) checkStall() error {
	cfg := &p.s.cfg
	now := cfg.Now()
	if !p.headersSent.IsZero() && now.Sub(p.headersSent) > cfg.StallTimeout {
		return fmt.Errorf("%w: no headers in %v", errStalled, cfg.StallTimeout)
	}
	for _, t := range p.inflight {
		if now.Sub(t) > cfg.StallTimeout {
			return fmt.Errorf("%w: no block in %v", errStalled, cfg.StallTimeout)
		}
	}
	if !p.pingSent.IsZero() && now.Sub(p.pingSent) > cfg.StallTimeout {
		return fmt.Errorf("%w: no pong in %v", errStalled, cfg.StallTimeout)
	}
	if p.pingSent.IsZero() && now.Sub(p.lastSend) > cfg.PingInterval {
		p.pingNonce = rand.Uint64()
		p.pingSent = now
		return p.send(&chainwire.MsgPing{Nonce: p.pingNonce, HasNonce: true})
	}
	if len(p.inflight) == 0 {
		return p.requestBlocks()
	}
	return nil
}
