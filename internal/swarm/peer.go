package swarm

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// sendQueueLen bounds what we queue for one peer: enough for a full
// pipeline of served pieces (reqq 250) plus control messages. A peer that
// lets it fill up is too slow and is dropped.
const sendQueueLen = 512

// peer is one connection in one swarm. Fields after the marker are
// guarded by s.mu; the rest are set once.
type peer struct {
	t        *torrent
	conn     net.Conn
	hs       Handshake
	outgoing bool
	remote   netip.AddrPort
	out      chan []byte
	done     chan struct{}
	once     sync.Once

	// guarded by s.mu
	listen         netip.AddrPort // where the peer accepts connections
	listenKnown    bool           // listen is a real listen address (dialed, or `p`)
	closing        bool
	has            *bitset
	gotBitfield    bool
	amInterested   bool
	peerChoking    bool
	peerInterested bool
	allowedFast    map[uint32]bool
	requests       map[int64]time.Time // ours to them
	verifying      map[int64]bool      // requested pieces received, being verified
	failed         map[int64]time.Time // pieces this peer did not deliver, and when
	reqq           int                 // the peer's request queue size, from its extended handshake
	pexSent        bool
	nonceSeen      bool
	portAt         time.Time // last PORT passed to the finder
	since          time.Time // registered
	evicted        bool      // closing for the budget, counted in s.evicting
	x              xstate    // twg_swarms (crossswarm.go)
}

// send queues a framed message without blocking (s.mu may be held).
func (p *peer) send(m Message) {
	select {
	case <-p.done:
		return
	default:
	}
	select {
	case p.out <- m.AppendTo(nil):
	default:
		go p.close(errors.New("send queue full"))
	}
}

func (p *peer) isClosed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// close ends the connection; err says why.
func (p *peer) close(err error) {
	p.once.Do(func() {
		p.t.s.log.Debug("closing peer", "user", p.t.user, "peer", p.remote.String(), "why", err)
		close(p.done)
		p.conn.Close()
	})
}

// runPeer registers a connection that completed the handshake and serves
// it until it ends.
func (s *Swarm) runPeer(t *torrent, c net.Conn, hs Handshake, outgoing bool, addr netip.AddrPort) {
	remote, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	p := &peer{
		t: t, conn: c, hs: hs, outgoing: outgoing, remote: remote,
		out: make(chan []byte, sendQueueLen), done: make(chan struct{}),
		listen: addr, listenKnown: outgoing, has: newBitset(), peerChoking: true,
		allowedFast: map[uint32]bool{}, requests: map[int64]time.Time{}, failed: map[int64]time.Time{},
		verifying: map[int64]bool{},
	}
	if !s.register(t, p) {
		c.Close()
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		p.writeLoop(s)
	}()
	err := p.readLoop(s)
	p.close(err)
	s.unregister(t, p)
	s.log.Debug("peer gone", "user", t.user, "peer", p.remote.String(), "err", err)
}

// register adds p to t unless a connection with the same peer id exists;
// of two such connections both sides keep the one opened by the lower
// peer id, so simultaneous dials do not kill each other.
func (s *Swarm) register(t *torrent, p *peer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.outgoing && t.dialingTo[p.listen] {
		// The dial's budget slot becomes this connection's.
		delete(t.dialingTo, p.listen)
		s.dialing--
	}
	now := time.Now()
	if s.closed || t.isBanned(string(p.hs.PeerID[:]), now) || t.isBanned(banKey(p.listen), now) {
		return false
	}
	if t.ipTaken(p.remote.Addr(), p.hs.PeerID) {
		return false
	}
	if !s.admit(t, p.outgoing, now) {
		s.log.Debug("connection refused by the budget", "user", t.user, "peer", p.remote.String(), "outgoing", p.outgoing, "conns", s.liveConns())
		return false
	}
	for q := range t.peers {
		if q.hs.PeerID != p.hs.PeerID || q.isClosed() {
			continue
		}
		if string(initiator(q, s.peerID)) <= string(initiator(p, s.peerID)) {
			return false
		}
		q.closing = true
		go q.close(errors.New("duplicate connection"))
	}
	if t.peers == nil {
		t.peers = map[*peer]struct{}{}
	}
	t.peers[p] = struct{}{}
	t.activate()
	s.numPeers++
	s.countConn(p.remote.Addr(), 1)
	p.since = now
	t.visited = true
	s.log.Debug("peer connected", "user", t.user, "peer", p.remote.String(), "outgoing", p.outgoing, "conns", s.liveConns())
	if c := t.candidates[p.listen]; c != nil && p.outgoing {
		c.failures = 0
		c.lastConnected = now
	}
	s.greet(t, p)
	return true
}

func initiator(p *peer, ours [20]byte) []byte {
	if p.outgoing {
		return ours[:]
	}
	return p.hs.PeerID[:]
}

// greet sends what twisterd sends after the handshake, in its order
// (§4.4): extended handshake, BITFIELD or HAVE_NONE, ALLOWED_FAST, PORT,
// HASHCASH_NBITS. s.mu held.
func (s *Swarm) greet(t *torrent, p *peer) {
	if p.hs.SupportsExtensions() {
		ago := -1
		eh := ExtHandshake{
			M:           map[string]int{"ut_pex": int(extUTPex), "lt_donthave": int(extLTDonthave)},
			Version:     s.cfg.Version,
			Reqq:        maxPeerRequests,
			CompleteAgo: &ago,
		}
		if p.outgoing {
			// Only the initiator sends p, like twisterd (README obs. 8).
			eh.Port = s.cfg.AnnouncePort
		}
		if ip := p.remote.Addr().Unmap(); ip.Is4() {
			b := ip.As4()
			eh.YourIP = string(b[:])
		}
		if !s.cfg.NoCrossSwarm {
			eh.M[xswarmName] = int(extTwgSwarms)
		}
		if body, err := eh.Bytes(); err == nil {
			p.send(Message{ID: MsgExtended, ExtID: extHandshake, Data: body})
		}
	}
	switch {
	case t.lastHave >= 0:
		p.send(Message{ID: MsgBitfield, Data: t.have.bytes(bitfieldBytes(t.lastHave))})
	case p.hs.SupportsFast():
		p.send(Message{ID: MsgHaveNone})
	}
	if p.hs.SupportsFast() {
		for _, k := range allowedFastSet(p.remote.Addr(), t.ih, int(max(t.lastHave+2, 0))) {
			p.send(Message{ID: MsgAllowedFast, Index: k})
		}
	}
	if p.hs.SupportsDHT() && s.cfg.DHTPort > 0 && s.cfg.DHTPort < 65536 {
		p.send(Message{ID: MsgPort, Port: uint16(s.cfg.DHTPort)})
	}
	if p.hs.Reserved[7]&0x10 != 0 {
		// We never demand hashcash: nbits 0, as node2 sent (README obs. 5).
		p.send(Message{ID: MsgHashcashNBits, NBits: 0})
	}
}

func (s *Swarm) unregister(t *torrent, p *peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := t.peers[p]; !ok {
		return
	}
	delete(t.peers, p)
	s.numPeers--
	s.countConn(p.remote.Addr(), -1)
	if p.evicted {
		s.evicting--
	}
	p.closing = true
	for k := range p.requests {
		t.releaseRequest(p, k, false)
	}
	s.xdrop(p)
	p.has.each(func(k int64) bool {
		t.loseAvail(k)
		return true
	})
	for q := range t.peers {
		t.schedule(q)
	}
}

func (p *peer) writeLoop(s *Swarm) {
	ka := time.NewTimer(s.cfg.KeepAliveInterval)
	defer ka.Stop()
	keepAlive := Message{KeepAlive: true}.AppendTo(nil)
	write := func(b []byte) bool {
		p.conn.SetWriteDeadline(time.Now().Add(s.cfg.PeerTimeout))
		n, err := p.conn.Write(b)
		s.stats.totalUp.Add(int64(n))
		if err != nil {
			p.close(fmt.Errorf("write: %w", err))
			return false
		}
		return true
	}
	for {
		select {
		case <-p.done:
			return
		case b := <-p.out:
			// Coalesce what is queued into one write (no Nagle games).
			buf := b
			for more := true; more && len(buf) < 64<<10; {
				select {
				case b2 := <-p.out:
					buf = append(buf, b2...)
				default:
					more = false
				}
			}
			if !write(buf) {
				return
			}
			ka.Reset(s.cfg.KeepAliveInterval)
		case <-ka.C:
			if !write(keepAlive) {
				return
			}
			ka.Reset(s.cfg.KeepAliveInterval)
		}
	}
}

// errBanned ends a connection whose peer sent an invalid piece.
var errBanned = errors.New("peer sent an invalid piece: banned")

func (p *peer) readLoop(s *Swarm) error {
	mr := newMessageReader(p.conn)
	t := p.t
	for {
		p.conn.SetReadDeadline(time.Now().Add(s.cfg.PeerTimeout))
		m, n, err := mr.next()
		s.stats.totalDown.Add(int64(n))
		if err != nil {
			return err
		}
		if m.KeepAlive {
			continue
		}
		if needsFast(m.ID) && !p.hs.SupportsFast() {
			return fmt.Errorf("message %d without FAST", m.ID)
		}
		if err := p.handle(s, t, m); err != nil {
			return err
		}
	}
}

func (p *peer) handle(s *Swarm, t *torrent, m Message) error {
	switch m.ID {
	case MsgChoke:
		s.mu.Lock()
		p.peerChoking = true
		if !p.hs.SupportsFast() {
			// Without FAST a choke silently drops pending requests.
			for k := range p.requests {
				t.releaseRequest(p, k, false)
			}
		}
		s.mu.Unlock()
	case MsgUnchoke:
		s.mu.Lock()
		p.peerChoking = false
		t.schedule(p)
		s.mu.Unlock()
	case MsgInterested:
		s.mu.Lock()
		p.peerInterested = true
		p.send(Message{ID: MsgUnchoke})
		s.mu.Unlock()
	case MsgNotInterested:
		s.mu.Lock()
		if p.peerInterested {
			p.peerInterested = false
			p.send(Message{ID: MsgChoke})
		}
		s.mu.Unlock()
	case MsgHave:
		return p.onHave(s, t, int64(m.Index))
	case MsgBitfield:
		return p.onBitfield(s, t, m.Data)
	case MsgRequest:
		return p.onRequest(s, t, m)
	case MsgPiece:
		return p.onPiece(s, t, m)
	case MsgCancel, MsgSuggest, MsgHaveAll, MsgHaveNone, MsgHashcashNBits:
		// HAVE_ALL cannot mean anything with a growing piece count; like
		// SUGGEST and CANCEL (we answer at once) it changes nothing.
	case MsgReject:
		s.mu.Lock()
		k := int64(m.Index)
		if _, ok := p.requests[k]; ok {
			t.releaseRequest(p, k, true)
			for q := range t.peers {
				t.schedule(q)
			}
		}
		s.mu.Unlock()
	case MsgAllowedFast:
		s.mu.Lock()
		if len(p.allowedFast) < 64 {
			p.allowedFast[m.Index] = true
		}
		t.schedule(p)
		s.mu.Unlock()
	case MsgPort:
		// A remote sets the pace here: pass one PORT a minute on (the
		// DHT also limits pings per address).
		if s.cfg.Finder != nil && m.Port != 0 {
			now := time.Now()
			s.mu.Lock()
			due := p.portAt.IsZero() || now.Sub(p.portAt) >= portInterval
			if due {
				p.portAt = now
			}
			s.mu.Unlock()
			if due {
				s.cfg.Finder.AddContact(netip.AddrPortFrom(p.remote.Addr(), m.Port))
			}
		}
	case MsgHashcashNonce:
		s.mu.Lock()
		second := p.nonceSeen
		p.nonceSeen = true
		s.mu.Unlock()
		if second {
			return errors.New("second hashcash nonce")
		}
	case MsgExtended:
		return p.onExtended(s, t, m)
	}
	return nil
}

func (p *peer) onHave(s *Swarm, t *torrent, k int64) error {
	bound, err := t.postBound(s.ctx, k)
	if errors.Is(err, twproto.ErrUnknownUser) {
		return fmt.Errorf("have %d: %w", k, err)
	}
	// Registry unreachable: take the index on trust; the piece itself is
	// verified before it is stored.
	if err == nil && k > bound {
		return fmt.Errorf("have %d: %w", k, errPostBound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !p.has.has(k) && p.has.set(k) {
		t.gainAvail(k)
	}
	t.schedule(p)
	return nil
}

// gainAvail counts one more connected peer having k (s.mu held).
func (t *torrent) gainAvail(k int64) {
	if k >= maxAvailIndex {
		return
	}
	if t.avail == nil {
		t.avail = map[int64]int{}
	}
	t.avail[k]++
	if n := min(t.avail[k], maxSeenCount); n > t.maxSeen[k] {
		if t.maxSeen == nil {
			t.maxSeen = map[int64]int{}
		}
		t.maxSeen[k] = n
	}
}

func (t *torrent) loseAvail(k int64) {
	if n := t.avail[k] - 1; n > 0 {
		if t.avail == nil {
			t.avail = map[int64]int{}
		}
		t.avail[k] = n
	} else {
		delete(t.avail, k)
	}
}

func (p *peer) onBitfield(s *Swarm, t *torrent, bits []byte) error {
	b := &bitset{b: append([]byte(nil), bits...)}
	// twisterd checks validatePostNumberForUser(U, nbits-7) for a bitfield
	// longer than its piece count; we check the highest set bit, which is
	// what matters (README obs. 7: lengths vary).
	if hi := b.highest(); hi >= 0 {
		bound, err := t.postBound(s.ctx, hi)
		if errors.Is(err, twproto.ErrUnknownUser) {
			return fmt.Errorf("bitfield: %w", err)
		}
		if err == nil && hi > bound {
			return fmt.Errorf("bitfield bit %d: %w", hi, errPostBound)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.gotBitfield {
		return errors.New("second bitfield")
	}
	p.gotBitfield = true
	b.each(func(k int64) bool {
		if !p.has.has(k) && p.has.set(k) {
			t.gainAvail(k)
		}
		return true
	})
	t.schedule(p)
	return nil
}

// onRequest serves REQUEST(k, 0, len) with the exact post bytes after
// re-verifying it, as twisterd does before every upload (§4.6). A
// verification is reused for serveCheckTTL: what could make a stored post
// invalid is chain state (best height, the key of record), which does not
// change faster, and it keeps a peer re-requesting one piece from making
// us recover a signature each time.
func (p *peer) onRequest(s *Swarm, t *torrent, m Message) error {
	k := int64(m.Index)
	s.mu.Lock()
	interested := p.peerInterested
	s.mu.Unlock()
	reject := func(why string) error {
		s.log.Debug("request rejected", "user", t.user, "k", k, "peer", p.remote.String(), "why", why)
		if p.hs.SupportsFast() {
			s.mu.Lock()
			p.send(Message{ID: MsgReject, Index: m.Index, Begin: m.Begin, Length: m.Length})
			s.mu.Unlock()
		}
		return nil
	}
	if !interested || m.Begin != 0 || m.Length == 0 || m.Length > BlockSize {
		return reject(fmt.Sprintf("interested %v, begin %d, length %d", interested, m.Begin, m.Length))
	}
	raw, why := t.pieceToServe(k)
	if raw == nil {
		return reject(why)
	}
	s.mu.Lock()
	p.send(Message{ID: MsgPiece, Index: m.Index, Begin: 0, Data: raw})
	s.mu.Unlock()
	s.stats.payloadUp.Add(int64(len(raw)))
	s.log.Debug("piece served", "user", t.user, "k", k, "peer", p.remote.String())
	return nil
}

// onPiece verifies a requested piece with twproto.ValidatePost before
// storing it; one invalid piece bans the sender from this swarm, as
// twisterd's single-peer piece failure does (§4.6).
func (p *peer) onPiece(s *Swarm, t *torrent, m Message) error {
	k := int64(m.Index)
	s.mu.Lock()
	_, requested := p.requests[k]
	requested = requested && !p.verifying[k]
	if requested && (m.Begin != 0 || len(m.Data) == 0) {
		// An empty piece is a reject (twisterd's incoming_piece).
		t.releaseRequest(p, k, true)
		t.schedule(p)
		requested = false
	}
	if requested {
		p.verifying[k] = true
	}
	s.mu.Unlock()
	if !requested {
		return nil // unwanted: dropped, like libtorrent
	}
	s.stats.payloadDown.Add(int64(len(m.Data)))
	data := append([]byte(nil), m.Data...)
	// Verify and store off the read loop: signature recovery dominates and
	// pieces of one pipeline then verify in parallel and share a commit.
	// The request stays in flight until this is done. At most
	// maxOutstandingRequests run per peer.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := p.verifyAndStore(s, t, k, data); err != nil {
			p.close(err)
		}
	}()
	return nil
}

// checkPiece validates data as piece k of t (spec §3.3). A refusal that is
// the sender's fault comes back as bad (ban it); registry trouble, or a
// refusal that only reflects our view of the chain, as neither a post nor
// bad: ask again later.
func (t *torrent) checkPiece(k int64, data []byte) (post *twproto.Post, bad error) {
	post, err := twproto.ValidatePost(t.s.ctx, data, t.user, k, t.s.cfg.Keys)
	if err != nil {
		var pe *twproto.PostError
		if errors.As(err, &pe) && !chainViewDependent(pe) {
			return nil, err
		}
		return nil, nil
	}
	return post, nil
}

func (p *peer) verifyAndStore(s *Swarm, t *torrent, k int64, data []byte) error {
	post, bad := t.checkPiece(k, data)
	if bad != nil {
		s.ban(t, p)
		s.log.Warn("banned peer for an invalid piece", "user", t.user, "k", k, "peer", p.remote.String(), "err", bad)
		return fmt.Errorf("%w: %v", errBanned, bad)
	}
	if post == nil {
		s.mu.Lock()
		t.releaseRequest(p, k, true)
		for q := range t.peers {
			t.schedule(q)
		}
		s.mu.Unlock()
		return nil
	}
	if _, err := t.addPiece(post, true); err != nil {
		s.log.Error("store piece", "user", t.user, "k", k, "err", err)
		s.mu.Lock()
		t.releaseRequest(p, k, true)
		s.mu.Unlock()
		if errors.Is(err, ErrPieceExists) {
			return nil
		}
		return err
	}
	s.mu.Lock()
	t.releaseRequest(p, k, false)
	t.schedule(p)
	s.mu.Unlock()
	return nil
}

// chainViewDependent reports refusals that depend on our best height
// rather than on the post: "post from future" and the post-number bound
// (spec §3.3 rules 5, 6). twisterd bans for them too, but our registry can
// lag behind the peer's chain (a cached or upstream view), and banning an
// honest peer for that would cut us off from the swarm. The texts are
// twisterd's acceptSignedPost messages, which twproto keeps verbatim.
func chainViewDependent(pe *twproto.PostError) bool {
	return strings.HasPrefix(pe.Msg, "post from future") || strings.HasPrefix(pe.Msg, "too much posts")
}

// banPeer bans p's peer id and addresses from t (s.mu held).
func (t *torrent) banPeer(p *peer) {
	now := time.Now()
	t.addBan(string(p.hs.PeerID[:]), now)
	t.addBan(banKey(p.listen), now)
	t.addBan(banKey(p.remote), now)
}

func (s *Swarm) ban(t *torrent, p *peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.banPeer(p)
	for k := range p.requests {
		t.releaseRequest(p, k, false)
	}
	p.closing = true
}

func (p *peer) onExtended(s *Swarm, t *torrent, m Message) error {
	switch m.ExtID {
	case extHandshake:
		eh, err := ParseExtHandshake(m.Data)
		if err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		p.reqq = eh.Reqq
		s.onXHandshake(p, eh.M[xswarmName])
		if id := eh.M["ut_pex"]; id > 0 && id < 256 && !p.pexSent {
			// One ut_pex per connection with the other peers we know, under
			// the peer's id for it; libtorrent disconnects peers sending
			// PEX more than once a minute [lt/src/ut_pex.cpp].
			p.pexSent = true
			var others []netip.AddrPort
			for q := range t.peers {
				if q != p && q.listenKnown {
					others = append(others, q.listen)
				}
			}
			if len(others) > 0 {
				if body, err := PexBytes(others); err == nil {
					p.send(Message{ID: MsgExtended, ExtID: byte(id), Data: body})
				}
			}
		}
		if eh.Port > 0 && !p.outgoing {
			// The peer's listen port (§4.5): reconnect and ban by it.
			p.listen = netip.AddrPortFrom(p.remote.Addr(), uint16(eh.Port))
			p.listenKnown = true
			if t.isBanned(banKey(p.listen), time.Now()) {
				return errBanned
			}
			if c := t.candidates[p.listen]; c != nil {
				c.lastConnected = time.Now()
			} else if len(t.candidates) < maxCandidates {
				if t.candidates == nil {
					t.candidates = map[netip.AddrPort]*candidate{}
				}
				t.candidates[p.listen] = &candidate{lastConnected: time.Now()}
				t.activate()
			}
		}
	case extUTPex:
		peers, err := ParsePex(m.Data)
		if err != nil {
			return err
		}
		t.addCandidates(peers)
	case extTwgSwarms:
		xm, err := ParseXMessage(m.Data)
		if err != nil {
			return err
		}
		return p.onX(s, xm)
	case extLTDonthave:
		if len(m.Data) != 4 {
			return fmt.Errorf("%w: lt_donthave of %d bytes", ErrBadMessage, len(m.Data))
		}
		k := int64(uint32(m.Data[0])<<24 | uint32(m.Data[1])<<16 | uint32(m.Data[2])<<8 | uint32(m.Data[3]))
		s.mu.Lock()
		if p.has.has(k) {
			p.has.clear(k)
			t.loseAvail(k)
		}
		s.mu.Unlock()
	default:
		// twisterd disconnects for ids it did not advertise; we just
		// ignore them, nothing we do depends on them.
	}
	return nil
}
