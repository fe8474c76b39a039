package swarm

import (
	"errors"
	"fmt"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// Cross-swarm HAVE (docs/swarm.md "Cross-swarm HAVE"), the twg_swarms
// extension between twgroupd nodes.
//
// The budget gives a node following 100 users 72 connections: on average
// under one per swarm, so a swarm's own mesh does not carry a new post to
// every follower, and push rounds reach the last followers only by chance.
// But two twgroupd nodes connected in any swarm usually hold many swarms in
// common. Over twg_swarms each tells the other the highest piece it holds
// of every swarm (all on connect, then each change), and the other fetches
// pieces it lacks over that same connection, verified exactly as a piece of
// the swarm's own connections. A node's connections reach tens of distinct
// nodes, so a post crosses the network in two or three such hops.

const (
	// maxXRequests bounds our twg_swarms requests in flight to one peer.
	maxXRequests = 32
	// xRequestTimeout: a request unanswered this long is asked elsewhere.
	xRequestTimeout = 5 * time.Second
	// A piece a peer refused is asked of it again after xRejectWait: its
	// HAVE names its highest piece, and while it fetches a burst (an
	// invite) it lacks some below that for a moment. One it did not send
	// in time, after xTimeoutWait.
	xRejectWait  = time.Second
	xTimeoutWait = 10 * time.Second
	// maxXScan bounds missing pieces looked at per schedule of one peer.
	maxXScan = 256
	// maxXServe bounds pieces served to one peer per second over
	// twg_swarms; beyond it requests are refused (work per remote).
	maxXServe = 512
	// maxXHaveMsgs bounds HAVE-bearing messages taken from one peer a
	// second; more are ignored. An honest node sends at most 1/xFlushEvery
	// (10) plus its summary (maxXSummary/maxXEntries, 8) when it connects.
	maxXHaveMsgs = 32
	// xMinNodes: while we hold twg_swarms connections with at least this
	// many nodes, a swarm one of them holds needs no connection of its own
	// (target 0, no rotation). Fewer, and the budget dials as without it,
	// so a node just started meets more than its first few nodes.
	xMinNodes = 12
	// maxXSummary bounds the swarms listed when a connection opens.
	maxXSummary = 2048
	// HAVEs go out xFlushDelay after a new piece, and at most once per
	// xFlushEvery: a burst of pieces (an invite stores ~N in a row) sends
	// one message per peer per xFlushEvery, not one per piece; at N = 100
	// every flush is ~60 messages, at every node.
	xFlushDelay = 10 * time.Millisecond
	xFlushEvery = 100 * time.Millisecond
)

// xkey names a piece of one swarm in a peer's twg_swarms bookkeeping.
type xkey struct {
	t *torrent
	k int64
}

// xhave is what a peer announced of one swarm: its highest piece, and
// that it holds every piece below low.
type xhave struct{ top, low int64 }

// xstate is a peer's twg_swarms state, guarded by s.mu.
type xstate struct {
	id      int                // the peer's id for twg_swarms; 0: not offered
	has     map[*torrent]xhave // what it announced, per swarm of ours
	reqs    map[xkey]time.Time // our requests in flight to it
	failed  map[xkey]time.Time // not to be asked of it again before then
	serveAt time.Time          // start of the current serving second
	served  int                // pieces served in it
	haveAt  time.Time          // start of the current second of HAVEs taken
	haves   int                // HAVE messages taken in it
}

// xsend queues a twg_swarms message to p (s.mu held).
func (p *peer) xsend(m XMessage) {
	body, err := m.Bytes()
	if err != nil {
		p.t.s.log.Error("twg_swarms encode", "err", err)
		return
	}
	p.send(Message{ID: MsgExtended, ExtID: byte(p.x.id), Data: body})
}

// xsendHaves sends refs as HAVE messages of at most maxXEntries (s.mu held).
func (p *peer) xsendHaves(refs []XRef) {
	for len(refs) > 0 {
		n := min(len(refs), maxXEntries)
		p.xsend(XMessage{Have: refs[:n]})
		refs = refs[n:]
	}
}

// onXHandshake records that p speaks twg_swarms under id and, unless
// another connection to the same node does already, sends it the summary
// of our swarms (s.mu held).
func (s *Swarm) onXHandshake(p *peer, id int) {
	if s.cfg.NoCrossSwarm || id <= 0 || id > 255 || p.x.id != 0 {
		return
	}
	p.x.id = id
	for _, t := range s.byUser {
		for q := range t.peers {
			if q != p && q.x.id != 0 && !q.closing && q.hs.PeerID == p.hs.PeerID {
				return // that connection carries the node's news already
			}
		}
	}
	// Swarms with pieces first; then those we run and hold nothing of
	// (-1): the peer then knows it will hear of their first piece from us,
	// and needs no connection of its own for them (target).
	var refs, empty []XRef
	for _, t := range s.byUser {
		if t.lastHave >= 0 {
			refs = append(refs, t.xref())
		} else if len(empty) < maxXSummary {
			empty = append(empty, XRef{IH: t.ih, K: -1})
		}
		if len(refs) == maxXSummary {
			break
		}
	}
	refs = append(refs, empty[:min(len(empty), maxXSummary-len(refs))]...)
	p.xsendHaves(refs)
}

// covered reports whether t's news comes over twg_swarms: a peer holds
// it and we hold twg_swarms connections with xMinNodes nodes (s.mu held).
// Such a swarm needs no connection of its own and no DHT lookup when it
// has none; it still announces every AnnounceInterval.
func (t *torrent) covered() bool { return len(t.xholders) > 0 && t.s.xnodes >= xMinNodes }

// countXNodes counts the nodes we hold a twg_swarms connection with, for
// target (s.mu held; from the tick).
func (s *Swarm) countXNodes() {
	nodes := map[[20]byte]bool{}
	for t := range s.active {
		for p := range t.peers {
			if p.x.id != 0 && !p.closing {
				nodes[p.hs.PeerID] = true
			}
		}
	}
	s.xnodes = len(nodes)
}

// xref is t's HAVE: its highest piece and its first missing one (s.mu
// held).
func (t *torrent) xref() XRef {
	t.xlow = t.have.nextClear(t.xlow)
	return XRef{IH: t.ih, K: t.lastHave, Low: min(t.xlow, t.lastHave+1)}
}

// xannounce queues t's new highest or first missing piece for the
// twg_swarms peers (s.mu held).
func (t *torrent) xannounce() {
	s := t.s
	if s.cfg.NoCrossSwarm {
		return
	}
	if s.xpending == nil {
		s.xpending = map[*torrent]struct{}{}
	}
	s.xpending[t] = struct{}{}
	select {
	case s.xwake <- struct{}{}:
	default:
	}
}

// xflushLoop sends queued HAVEs to one connection of each node that
// speaks twg_swarms.
func (s *Swarm) xflushLoop() {
	defer s.wg.Done()
	var last time.Time
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.xwake:
		}
		wait := max(xFlushDelay, time.Until(last.Add(xFlushEvery)))
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(wait):
		}
		last = time.Now()
		s.mu.Lock()
		var refs []XRef
		for t := range s.xpending {
			if t.lastHave >= 0 {
				refs = append(refs, t.xref())
			}
		}
		clear(s.xpending)
		nodes := map[[20]byte]bool{}
		for _, t := range s.byUser {
			for p := range t.peers {
				if p.x.id == 0 || p.closing || nodes[p.hs.PeerID] {
					continue
				}
				nodes[p.hs.PeerID] = true
				p.xsendHaves(refs)
			}
		}
		s.mu.Unlock()
	}
}

// onX handles a twg_swarms message from p.
func (p *peer) onX(s *Swarm, m XMessage) error {
	if s.cfg.NoCrossSwarm {
		return nil
	}
	s.mu.Lock()
	if p.x.id == 0 {
		s.mu.Unlock()
		return errors.New("twg_swarms from a peer that did not offer it")
	}
	if len(m.Have) > 0 {
		now := time.Now()
		if now.Sub(p.x.haveAt) >= time.Second {
			p.x.haveAt, p.x.haves = now, 0
		}
		if p.x.haves++; p.x.haves > maxXHaveMsgs {
			m.Have = nil // a flood: each entry can start a schedule
		}
	}
	for _, r := range m.Have {
		t := s.byHash[r.IH]
		if t == nil {
			continue // not a swarm we hold
		}
		if old, ok := p.x.has[t]; ok && old.top >= r.K && old.low >= r.Low {
			continue
		}
		if p.x.has == nil {
			p.x.has = map[*torrent]xhave{}
		}
		p.x.has[t] = xhave{top: r.K, low: r.Low}
		t.xmaxLow = max(t.xmaxLow, r.Low)
		if t.xholders == nil {
			t.xholders = map[*peer]struct{}{}
		}
		t.xholders[p] = struct{}{}
		t.xschedule(p)
	}
	for _, r := range m.Reject {
		if t := s.byHash[r.IH]; t != nil {
			t.xrelease(p, r.K, xRejectWait)
			t.xscheduleAll()
		}
	}
	var piece *torrent
	if m.Piece != nil {
		t := s.byHash[m.Piece.IH]
		if t != nil {
			if at, ok := p.x.reqs[xkey{t, m.Piece.K}]; ok && !at.IsZero() {
				p.x.reqs[xkey{t, m.Piece.K}] = time.Time{} // verifying
				piece = t
			}
		}
	}
	s.mu.Unlock()
	if len(m.Req) > 0 {
		p.xserve(s, m.Req)
	}
	if piece != nil {
		// Verified off the read loop, as a piece of the swarm's own
		// connections (onPiece); at most maxXRequests run per peer.
		k, data := m.Piece.K, m.Data
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := p.xstore(s, piece, k, data); err != nil {
				p.close(err)
			}
		}()
	}
	return nil
}

// xschedule requests from p pieces of t it holds and we lack (s.mu held).
// A piece p may lack (between its low and its top) is asked of it only
// when no holder has announced it for sure: without that rule, at N = 100
// an invite of 112 pieces drew 47,000 refusals (peers announce their top
// while they still fetch the pieces below it).
func (t *torrent) xschedule(p *peer) {
	h, ok := p.x.has[t]
	if !ok || p.closing || p.x.id == 0 {
		return
	}
	top := h.top
	free := maxXRequests - len(p.x.reqs)
	if free <= 0 {
		return
	}
	now := time.Now()
	t.xlow = t.have.nextClear(t.xlow)
	var reqs []XRef
	for k, seen := t.xlow, 0; k <= top && free > 0 && seen < maxXScan; k = t.have.nextClear(k + 1) {
		seen++
		if _, busy := t.inflight[k]; busy {
			continue
		}
		if _, busy := t.xinflight[k]; busy {
			continue
		}
		if k >= h.low && k != top && k < t.xmaxLow {
			continue // another holder has it for sure
		}
		key := xkey{t, k}
		if until, ok := p.x.failed[key]; ok {
			if now.Before(until) {
				continue
			}
			delete(p.x.failed, key)
		}
		if p.x.reqs == nil {
			p.x.reqs = map[xkey]time.Time{}
		}
		p.x.reqs[key] = now
		if t.xinflight == nil {
			t.xinflight = map[int64]*peer{}
		}
		t.xinflight[k] = p
		reqs = append(reqs, XRef{IH: t.ih, K: k})
		free--
	}
	if len(reqs) > 0 {
		p.xsend(XMessage{Req: reqs})
	}
}

// xscheduleAll asks every twg_swarms holder of t (s.mu held).
func (t *torrent) xscheduleAll() {
	for q := range t.xholders {
		t.xschedule(q)
	}
}

// xrelease forgets our request for piece k of t to p and, with wait > 0,
// does not ask p for it again within wait (s.mu held).
func (t *torrent) xrelease(p *peer, k int64, wait time.Duration) {
	key := xkey{t, k}
	if _, ok := p.x.reqs[key]; !ok {
		return
	}
	delete(p.x.reqs, key)
	if t.xinflight[k] == p {
		delete(t.xinflight, k)
	}
	if wait > 0 {
		if p.x.failed == nil {
			p.x.failed = map[xkey]time.Time{}
		}
		if len(p.x.failed) < maxXScan*4 {
			p.x.failed[key] = time.Now().Add(wait)
		}
	}
}

// xexpire drops twg_swarms requests of t unanswered for xRequestTimeout,
// then asks the holders again: for those and for refused pieces whose
// wait is over (s.mu held, from the tick).
func (t *torrent) xexpire(now time.Time) {
	for k, p := range t.xinflight {
		at, ok := p.x.reqs[xkey{t, k}]
		if ok && !at.IsZero() && now.Sub(at) > xRequestTimeout {
			t.xrelease(p, k, xTimeoutWait)
		}
	}
	t.xscheduleAll()
}

// xdrop forgets a closed peer's twg_swarms state (s.mu held).
func (s *Swarm) xdrop(p *peer) {
	for key := range p.x.reqs {
		key.t.xrelease(p, key.k, 0)
	}
	for t := range p.x.has {
		delete(t.xholders, p)
		t.xmaxLow = 0
		for q := range t.xholders {
			t.xmaxLow = max(t.xmaxLow, q.x.has[t].low)
		}
		t.xscheduleAll()
	}
	p.x.has = nil
}

// xserve answers twg_swarms requests with pieces checked as for an upload
// (pieceToServe), refusing what we do not hold, what fails the check, and
// everything past maxXServe a second or while p's send queue is half full.
func (p *peer) xserve(s *Swarm, reqs []XRef) {
	var reject []XRef
	for _, r := range reqs {
		s.mu.Lock()
		t := s.byHash[r.IH]
		now := time.Now()
		if now.Sub(p.x.serveAt) >= time.Second {
			p.x.serveAt, p.x.served = now, 0
		}
		ok := t != nil && p.x.served < maxXServe && len(p.out) < sendQueueLen/2
		if ok {
			p.x.served++
		}
		s.mu.Unlock()
		if !ok {
			reject = append(reject, r)
			continue
		}
		raw, why := t.pieceToServe(r.K)
		if raw == nil {
			s.log.Debug("twg_swarms request rejected", "user", t.user, "k", r.K, "peer", p.remote.String(), "why", why)
			reject = append(reject, r)
			continue
		}
		s.mu.Lock()
		p.xsend(XMessage{Piece: &XRef{IH: r.IH, K: r.K}, Data: raw})
		s.mu.Unlock()
		s.stats.payloadUp.Add(int64(len(raw)))
	}
	if len(reject) > 0 {
		s.mu.Lock()
		p.xsend(XMessage{Reject: reject})
		s.mu.Unlock()
	}
}

// xstore verifies and stores a piece p sent over twg_swarms for t. An
// invalid one bans p from t and ends the connection, as a bad piece of
// t's own connections does (verifyAndStore).
func (p *peer) xstore(s *Swarm, t *torrent, k int64, data []byte) error {
	s.stats.payloadDown.Add(int64(len(data)))
	post, bad := t.checkPiece(k, data)
	if bad != nil {
		s.mu.Lock()
		t.banPeer(p)
		t.xrelease(p, k, 0)
		p.closing = true
		s.mu.Unlock()
		s.log.Warn("banned peer for an invalid twg_swarms piece", "user", t.user, "k", k, "peer", p.remote.String(), "err", bad)
		return fmt.Errorf("%w: %v", errBanned, bad)
	}
	if post == nil {
		s.mu.Lock()
		t.xrelease(p, k, xTimeoutWait)
		t.xscheduleAll()
		s.mu.Unlock()
		return nil
	}
	if _, err := t.addPiece(post, true); err != nil && !errors.Is(err, ErrPieceExists) {
		s.log.Error("store piece", "user", t.user, "k", k, "err", err)
	}
	s.mu.Lock()
	t.xrelease(p, k, 0)
	t.xschedule(p)
	s.mu.Unlock()
	return nil
}

// pieceToServe returns stored piece k after the check twisterd makes before
// every upload (§4.6), or why it will not be served. A check is reused for
// serveCheckTTL (see onRequest).
func (t *torrent) pieceToServe(k int64) ([]byte, string) {
	s := t.s
	s.mu.Lock()
	have := t.have.has(k)
	verified := time.Since(t.servable[k]) < serveCheckTTL
	s.mu.Unlock()
	if !have {
		return nil, "not held"
	}
	raw, err := s.store.piece(t.user, k)
	if err != nil || raw == nil {
		return nil, "not in the store"
	}
	if verified {
		return raw, ""
	}
	if _, err := twproto.ValidatePost(s.ctx, raw, t.user, k, s.cfg.Keys); err != nil {
		s.log.Warn("not serving a stored post twisterd would reject", "user", t.user, "k", k, "err", err)
		return nil, "invalid"
	}
	s.mu.Lock()
	if _, seen := t.servable[k]; seen || len(t.servable) < maxServableCache {
		if t.servable == nil {
			t.servable = map[int64]time.Time{}
		}
		t.servable[k] = time.Now()
	}
	s.mu.Unlock()
	return raw, ""
}
