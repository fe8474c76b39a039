package swarm

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"time"
)

// The connection budget (docs/swarm.md "Connection budget").
//
// Every connection belongs to one swarm (the handshake names one
// info-hash), so a node following S users holds S swarms and needs one
// connection per swarm just to hear HAVEs from each. A swarm keeps a small
// target (TargetPeers, 4) while the global cap (MaxConnections) allows
// it; when it does not, every swarm is cut to one connection and swarms
// left with none are rotated in one at a time, each evicting the oldest
// idle connection of a swarm that has more. A swarm in which a piece just
// arrived or was published is "hot" for HotPeriod and may open HotPeers
// connections, evicting idle ones: that pushes a new post through the
// swarm's mesh within a few round trips even when the mesh is sparse.
// Connections that still deliver pieces we lack are never evicted.

const (
	// maxRetryWait caps the redial backoff of a known address.
	maxRetryWait = 5 * time.Minute
	// maxDialFailures drops a learned (not saved, not static) address.
	maxDialFailures = 10
	// lookup backoff for a swarm without peers or usable addresses.
	minLookupWait = 2 * time.Second
	maxLookupWait = 2 * time.Minute
	// burstConns: incoming connections allowed over MaxConnections while
	// nothing can be evicted yet (docs/swarm.md: sockets stay <= 100).
	burstConns = 8
	// pushRound: the least time between two push rounds of one swarm.
	pushRound = 2 * time.Second
	// rotateFirst: swarms never connected since start rotated in a tick.
	rotateFirst = 4
	// maxBorrowed: addresses a starving swarm takes from other swarms.
	maxBorrowed = 3
	// maxLookups bounds concurrent DHT lookups of one node.
	maxLookups = 8
	// healthCheck is how often discoverLoop looks at a healthy swarm.
	healthCheck = 5 * time.Second
)

// hot reports whether t had a new piece within HotPeriod and may still
// dial to push it (s.mu held): a new piece allows HotPeers push dials,
// not a dial storm for the whole period.
func (t *torrent) hot(now time.Time) bool { return now.Before(t.hotUntil) && t.pushLeft > 0 }

// livePeers counts connections of t not being closed (s.mu held).
func (t *torrent) livePeers() int {
	n := 0
	for p := range t.peers {
		if !p.closing {
			n++
		}
	}
	return n
}

// liveConns is the global connection count without those being evicted,
// plus dials in progress (s.mu held).
func (s *Swarm) liveConns() int { return s.numPeers - s.evicting + s.dialing }

// target is how many connections t aims for now (s.mu held): HotPeers
// while hot; else TargetPeers scaled down so all swarms fit in 3/4 of the
// cap (the rest is headroom for incoming and hot swarms), at least one.
func (s *Swarm) target(t *torrent, now time.Time) int {
	if t.hot(now) {
		return s.cfg.HotPeers
	}
	if t.covered() {
		// Its news comes over twg_swarms (crossswarm.go). Dialing for it
		// anyway made each dial evict a connection at the far end, whose
		// swarm then dialed again: a churn of several connections a second
		// per node at N = 100.
		return 0
	}
	share := s.cfg.MaxConnections * 3 / 4 / max(len(s.byUser), 1)
	return max(1, min(s.cfg.TargetPeers, share))
}

// markHot makes t hot and starts a push round: up to HotPeers dials at
// once, to peers we are not connected to (they may lack the new piece;
// the connected ones got its HAVE). A burst of pieces (an invite is 100
// posts) gets one round every pushRound, not one per piece: a piece that
// comes after a round has used its dials but within pushRound marks a
// round pending, which the tick starts once pushRound has passed (without
// it, that piece reached only the peers connected at the time).
func (t *torrent) markHot(now time.Time) {
	s := t.s
	s.mu.Lock()
	wasHot := t.hot(now)
	t.hotUntil = now.Add(s.cfg.HotPeriod)
	round := !wasHot && t.pushRoundDue(now)
	s.mu.Unlock()
	if round {
		t.startPush()
	}
}

// pushRoundDue decides whether a push round starts now for a swarm not
// in one (s.mu held): not within pushRound of the last one (then it is
// left pending for the tick).
func (t *torrent) pushRoundDue(now time.Time) bool {
	s := t.s
	if s.closed || !s.started || !now.Before(t.hotUntil) {
		return false
	}
	if now.Sub(t.pushAt) < pushRound {
		t.pushPending = true
		return false
	}
	t.pushLeft, t.pushAt, t.pushPending = s.cfg.HotPeers, now, false
	s.log.Debug("push round", "user", t.user, "peers", t.livePeers(), "candidates", len(t.candidates))
	return true
}

// startPush dials for a round pushRoundDue started.
func (t *torrent) startPush() {
	s := t.s
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t.reconnect(time.Now())
	}()
}

// pendingPush starts a push round left pending by markHot once pushRound
// has passed (from the tick).
func (t *torrent) pendingPush(now time.Time) {
	s := t.s
	s.mu.Lock()
	round := t.pushPending && !t.hot(now) && t.pushRoundDue(now)
	s.mu.Unlock()
	if round {
		t.startPush()
	}
}

// evictOne closes the connection that costs least to lose, to make room
// for a swarm with fewer connections than its target (s.mu held): never
// one of except, younger than MinHold (time to exchange bitfields and
// deliver what we lack) or one we are still fetching from; of the rest,
// one of a swarm that is not hot, then one to a node we hold another
// connection with, then of the swarm with the most connections, then the
// oldest (that is the rotation); with coldOnly,
// only one of a swarm that is not hot (hot swarms must not push each
// other out). It reports whether it closed one.
func (s *Swarm) evictOne(except *torrent, coldOnly bool, now time.Time) bool {
	// Connections per node: of two to one node, one can go without
	// losing that node's twg_swarms news.
	perNode := map[[20]byte]int{}
	for _, t := range s.byUser {
		for p := range t.peers {
			if !p.closing {
				perNode[p.hs.PeerID]++
			}
		}
	}
	var best *peer
	bestHot, bestDup, bestN := false, false, 0
	for _, t := range s.byUser {
		if t == except {
			continue
		}
		hot, n := t.hot(now), t.livePeers()
		if hot && coldOnly {
			continue
		}
		for p := range t.peers {
			if p.closing || now.Sub(p.since) < s.cfg.MinHold || p.amInterested || len(p.requests) > 0 {
				continue
			}
			dup := perNode[p.hs.PeerID] > 1
			better := best == nil
			switch {
			case better:
			case hot != bestHot:
				better = !hot
			case dup != bestDup:
				better = dup
			case n != bestN:
				better = n > bestN
			default:
				better = p.since.Before(best.since)
			}
			if better {
				best, bestHot, bestDup, bestN = p, hot, dup, n
			}
		}
	}
	if best == nil {
		return false
	}
	best.closing = true
	best.evicted = true
	s.evicting++
	go best.close(errEvicted)
	return true
}

var errEvicted = errors.New("evicted for the connection budget")

// admit decides whether a handshaken connection for t fits the budget,
// evicting another if t is below its target (s.mu held).
// An incoming connection is admitted up to HotPeers in its swarm: the
// dialer is most likely a peer pushing a piece we do not have yet.
func (s *Swarm) admit(t *torrent, outgoing bool, now time.Time) bool {
	n := t.livePeers()
	if n >= s.cfg.MaxPeersPerSwarm {
		return false
	}
	if s.liveConns() < s.cfg.MaxConnections {
		return true
	}
	want := s.target(t, now)
	if !outgoing {
		want = max(want, s.cfg.HotPeers)
	}
	if n >= want {
		return false
	}
	// When every connection is young or busy, an incoming one or a push
	// of a hot swarm may still take one of burstConns slots over the cap;
	// trim gives them back.
	return s.evictOne(t, false, now) || ((!outgoing || t.hot(now)) && s.liveConns() < s.cfg.MaxConnections+burstConns)
}

// trim evicts one connection a tick while the count is over the cap
// (after a burst of incoming pushes).
func (s *Swarm) trim(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.liveConns() > s.cfg.MaxConnections {
		s.evictOne(nil, false, now)
	}
}

// retryWait is how long after its last attempt an address with f
// consecutive failures is dialed again: ReconnectInterval doubled per
// failure up to maxRetryWait; static peers always after ReconnectInterval.
func (s *Swarm) retryWait(c *candidate) time.Duration {
	if c.static || c.failures == 0 {
		return s.cfg.ReconnectInterval
	}
	return min(s.cfg.ReconnectInterval<<min(c.failures, 16), maxRetryWait)
}

// dialable lists the addresses of t that may be dialed now, in random
// order with never-failed ones first, skipping addresses (for public IPs:
// whole IPs, twisterd keeps one connection per IP per swarm) already
// connected (s.mu held).
func (t *torrent) dialable(now time.Time) []netip.AddrPort {
	s := t.s
	connected := make(map[string]bool, len(t.peers)+len(t.dialingTo))
	for p := range t.peers {
		connected[banKey(p.listen)] = true
		connected[banKey(p.remote)] = true
	}
	for a := range t.dialingTo {
		connected[banKey(a)] = true
	}
	var fresh, retry []netip.AddrPort
	for a, c := range t.candidates {
		if c.self || connected[banKey(a)] || t.isBanned(banKey(a), now) || t.ipTaken(a.Addr(), [20]byte{}) {
			continue
		}
		if !c.lastAttempt.IsZero() && now.Sub(c.lastAttempt) < s.retryWait(c) {
			continue
		}
		if c.borrowed && c.failures > 0 {
			delete(t.candidates, a) // it does not run this swarm
			continue
		}
		if !c.static && !c.saved && c.failures >= maxDialFailures {
			delete(t.candidates, a)
			continue
		}
		if c.failures == 0 {
			fresh = append(fresh, a)
		} else {
			retry = append(retry, a)
		}
	}
	rand.Shuffle(len(fresh), func(i, j int) { fresh[i], fresh[j] = fresh[j], fresh[i] })
	rand.Shuffle(len(retry), func(i, j int) { retry[i], retry[j] = retry[j], retry[i] })
	return append(fresh, retry...)
}

// canDial reports whether dialable would list an address (s.mu held),
// without building the list.
func (t *torrent) canDial(now time.Time) bool {
	for a, c := range t.candidates {
		if c.self || t.dialingTo[a] || t.isBanned(banKey(a), now) || t.ipTaken(a.Addr(), [20]byte{}) {
			continue
		}
		if c.lastAttempt.IsZero() || now.Sub(c.lastAttempt) >= t.s.retryWait(c) {
			return true
		}
	}
	return false
}

// starving: no connection and no address that has not failed twice in a
// row: time to ask the DHT again (s.mu held). A covered swarm
// (crossswarm.go) is not: it has no connection by design, and asking the
// DHT every few seconds for each such swarm was wasted work at N = 100.
func (t *torrent) starving() bool {
	if t.covered() || t.livePeers() > 0 || len(t.dialingTo) > 0 {
		return false
	}
	for _, c := range t.candidates {
		if !c.self && c.failures < 2 {
			return false
		}
	}
	return true
}

// reconnect dials addresses of t until it reaches its target. Past the
// global cap only a hot swarm dials, and only by evicting another
// connection.
func (t *torrent) reconnect(now time.Time) {
	s := t.s
	s.mu.Lock()
	if s.closed || !s.started {
		s.mu.Unlock()
		return
	}
	need := s.target(t, now) - t.livePeers() - len(t.dialingTo)
	if t.hot(now) {
		// A push round dials peers not connected yet, however many are:
		// topping up to HotPeers dialed nobody in a swarm that had them.
		need = min(t.pushLeft, s.cfg.MaxPeersPerSwarm-t.livePeers()) - len(t.dialingTo)
	}
	if need > 0 && s.liveConns() >= s.cfg.MaxConnections && !t.hot(now) {
		need = 0 // rotate's turn; this runs every tick for every swarm
	}
	var dial []netip.AddrPort
	if need > 0 {
		addrs := t.dialable(now)
		if t.hot(now) {
			addrs = s.withoutXNodes(addrs)
		}
		if len(addrs) == 0 && t.livePeers() == 0 && now.Sub(t.borrowAt) >= time.Second {
			t.borrowAt = now
			t.borrowLocked()
			addrs = t.dialable(now)
		}
		for _, a := range addrs {
			if len(dial) == need {
				break
			}
			if s.liveConns() >= s.cfg.MaxConnections {
				// Swarms without connections wait for rotate (one a
				// tick); evicting for each at once would churn them all.
				if !t.hot(now) || (!s.evictOne(t, true, now) && s.liveConns() >= s.cfg.MaxConnections+burstConns) {
					break
				}
			}
			if t.hot(now) {
				t.pushLeft--
			}
			t.candidates[a].lastAttempt = now
			if t.dialingTo == nil {
				t.dialingTo = map[netip.AddrPort]bool{}
			}
			t.dialingTo[a] = true
			s.dialing++
			dial = append(dial, a)
		}
	}
	s.mu.Unlock()
	for _, a := range dial {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.dial(t, a)
		}()
	}
}

// withoutXNodes drops addresses of nodes we hold a twg_swarms connection
// with (s.mu held): they hear of a new piece over it, a push dial to them
// only costs a socket.
func (s *Swarm) withoutXNodes(addrs []netip.AddrPort) []netip.AddrPort {
	x := map[netip.AddrPort]bool{}
	for t := range s.active {
		for p := range t.peers {
			if p.x.id != 0 && p.listenKnown && !p.closing {
				x[p.listen] = true
			}
		}
	}
	if len(x) == 0 {
		return addrs
	}
	return slices.DeleteFunc(addrs, func(a netip.AddrPort) bool { return x[a] })
}

// dialDone releases the dial slot taken in reconnect.
func (t *torrent) dialDone(a netip.AddrPort) {
	s := t.s
	s.mu.Lock()
	if t.dialingTo[a] {
		delete(t.dialingTo, a)
		s.dialing--
	}
	s.mu.Unlock()
}

// rotate runs once a tick: at the cap, swarms without connections (and
// not covered over twg_swarms) get one by evicting an idle
// connection elsewhere, those that have waited
// longest first: up to rotateFirst a tick of swarms not connected once
// since start (a restarted node catches up on every swarm within seconds),
// and one a second of the others (the steady rotation, cheap enough for
// 100 nodes on 2 cores). Under the cap reconnect gives every swarm its
// share.
func (s *Swarm) rotate(now time.Time) {
	s.mu.Lock()
	if s.liveConns() < s.cfg.MaxConnections {
		s.mu.Unlock()
		return
	}
	var waiting []*torrent
	for t := range s.active { // a swarm with no known address cannot dial
		// A covered swarm hears of new pieces over twg_swarms
		// (crossswarm.go): no need to take a connection from another.
		if len(t.dialingTo) == 0 && t.livePeers() == 0 && !t.covered() {
			waiting = append(waiting, t)
		}
	}
	sort.Slice(waiting, func(i, j int) bool { return waiting[i].lastVisit.Before(waiting[j].lastVisit) })
	first, steady := rotateFirst, 0
	if now.Sub(s.lastRotate) >= time.Second {
		steady = 1
	}
	var picks []*torrent
	for _, t := range waiting {
		if first == 0 && steady == 0 {
			break
		}
		if !t.canDial(now) || (t.visited && steady == 0) || (!t.visited && first == 0) {
			continue
		}
		if !s.evictOne(t, false, now) {
			break
		}
		if t.visited {
			steady--
			s.lastRotate = now
		} else {
			first--
		}
		t.lastVisit = now
		picks = append(picks, t)
	}
	s.mu.Unlock()
	// Each evicted connection no longer counts (s.evicting): its slot
	// goes to a rotated swarm.
	for _, t := range picks {
		t.reconnectOne(now)
	}
}

// reconnectOne dials one address of t regardless of the cap (its slot was
// freed by the caller).
func (t *torrent) reconnectOne(now time.Time) {
	s := t.s
	s.mu.Lock()
	addrs := t.dialable(now)
	if len(addrs) == 0 || s.closed {
		s.mu.Unlock()
		return
	}
	a := addrs[0]
	t.candidates[a].lastAttempt = now
	if t.dialingTo == nil {
		t.dialingTo = map[netip.AddrPort]bool{}
	}
	t.dialingTo[a] = true
	s.dialing++
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.dial(t, a)
	}()
}

// lookupSlot waits for one of the maxLookups DHT slots.
func (s *Swarm) lookupSlot(ctx context.Context) bool {
	select {
	case s.lookups <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// borrowCandidates gives a swarm with no connection and no usable
// address up to maxBorrowed listen addresses of peers connected in other
// swarms. Such an address that fails (the peer does not run this swarm:
// the handshake is refused) is dropped at once.
func (t *torrent) borrowCandidates() {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	if t.starving() {
		t.borrowLocked()
	}
}

// borrowLocked is borrowCandidates with s.mu held, whatever t's state.
func (t *torrent) borrowLocked() {
	s := t.s
	var pool []netip.AddrPort
	for _, o := range s.byUser {
		if o == t {
			continue
		}
		for p := range o.peers {
			if p.listenKnown && !p.closing {
				pool = append(pool, p.listen)
			}
		}
	}
	rand.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	n := 0
	for _, a := range pool {
		if n == maxBorrowed || len(t.candidates) >= maxCandidates {
			break
		}
		if _, ok := t.candidates[a]; !ok {
			if t.candidates == nil {
				t.candidates = map[netip.AddrPort]*candidate{}
			}
			t.candidates[a] = &candidate{borrowed: true}
			t.activate()
			n++
		}
	}
}
