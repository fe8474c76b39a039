package swarm

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// Per-torrent limits.
const (
	maxOutstandingRequests = 128 // our pipeline to one peer (below twisterd's reqq 250)
	maxPeerRequests        = 250 // twisterd's reqq, advertised in our extended handshake
	serveCheckTTL          = time.Minute
	maxServableCache       = 1 << 16
	maxCandidates          = 200 // known peer addresses per swarm
	maxSeenCount           = 63  // libtorrent's 6-bit max_seen
	// maxAvailIndex bounds piece-availability bookkeeping (getpiecemaxseen)
	// so a hostile bitfield cannot make us count a million pieces.
	maxAvailIndex = 1 << 16
	boundCacheTTL = 30 * time.Second
)

// candidate is a known listen address of a possible peer.
type candidate struct {
	static        bool
	self          bool
	saved         bool // from swarm.db: an earlier session's peer
	borrowed      bool // a peer of another swarm (borrowCandidates)
	lastAttempt   time.Time
	lastConnected time.Time
	failures      int
}

// torrent is one user's swarm. All fields are guarded by s.mu.
type torrent struct {
	s    *Swarm
	user string
	ih   [20]byte

	have     *bitset
	metas    map[int64]pieceMeta
	lastHave int64

	peers      map[*peer]struct{}
	candidates map[netip.AddrPort]*candidate
	banned     map[string]time.Time // peer id or banKey -> ban end
	inflight   map[int64]*peer
	avail      map[int64]int       // connected peers having k
	servable   map[int64]time.Time // when a stored piece last passed ValidatePost
	maxSeen    map[int64]int

	// twg_swarms (crossswarm.go)
	xinflight map[int64]*peer    // pieces requested over another swarm's connection
	xholders  map[*peer]struct{} // peers that announced pieces of t over twg_swarms
	xlow      int64              // no piece below it is missing
	xmaxLow   int64              // highest low a twg_swarms holder announced

	bound   int64 // highest k twisterd's validatePostNumberForUser allows
	boundAt time.Time

	dialingTo   map[netip.AddrPort]bool // dials in progress (budget.go)
	hotUntil    time.Time               // a piece arrived or was published recently
	pushLeft    int                     // push dials left while hot
	pushAt      time.Time               // start of the last push round
	pushPending bool                    // a new piece came within pushRound of the last round
	lastVisit   time.Time               // last rotation into this swarm
	visited     bool                    // had a connection since start
	borrowAt    time.Time               // last borrowLocked from reconnect
	savedPeers  string                  // what swarm.db holds, to skip unchanged saves

	// Discovery schedule (discover.go).
	discAt       time.Time
	discIdx      int // in s.discQ, -1 when not queued
	backoff      time.Duration
	lookedUp     time.Time
	lastAnnounce time.Time
	// announceFailures counts failed announces since the last success.
	announceFailures int
}

func newTorrent(s *Swarm, user string) *torrent {
	t := &torrent{
		s: s, user: user, ih: twproto.SwarmInfoHash(user),
		// Maps are made on first write: an idle swarm holds none (a
		// followed user whose swarm holds nothing costs a few hundred bytes).
		have: newBitset(), lastHave: -1,
		discIdx: -1, backoff: minLookupWait,
	}
	for _, a := range s.cfg.StaticPeers {
		if t.candidates == nil {
			t.candidates = map[netip.AddrPort]*candidate{}
		}
		t.candidates[a] = &candidate{static: true}
	}
	return t
}

// errPostBound marks a piece index twisterd would disconnect for.
var errPostBound = errors.New("piece index beyond the user's post-number bound")

// postBound returns the largest k validatePostNumberForUser accepts
// (spec §3.3 rule 5): 2*(best-reg)+20, unlimited while the best height is
// unknown. ErrUnknownUser passes through (twisterd rejects every index).
// The registry is asked outside the lock and cached briefly.
//
// An index above a cached bound asks again (at most once a second): the
// chain has moved since, and a user who just registered posts beyond the
// bound we cached a few blocks ago (a group invite to 100 members is over
// 100 posts).
func (t *torrent) postBound(ctx context.Context, k int64) (int64, error) {
	t.s.mu.Lock()
	if age := time.Since(t.boundAt); !t.boundAt.IsZero() && age < boundCacheTTL && (k <= t.bound || age < time.Second) {
		b := t.bound
		t.s.mu.Unlock()
		return b, nil
	}
	t.s.mu.Unlock()
	keys := t.s.cfg.Keys
	best, err := keys.BestHeight(ctx)
	if err != nil {
		return 0, err
	}
	uk, err := keys.UserKey(ctx, t.user, -1)
	if err != nil {
		return 0, err
	}
	b := int64(maxPieceIndex - 1)
	if best > 0 {
		b = min(b, 2*(best-uk.RegHeight)+20)
	}
	t.s.mu.Lock()
	t.bound, t.boundAt = b, time.Now()
	t.s.mu.Unlock()
	return b, nil
}

// addPiece stores a verified post, announces it and hands it to the sink:
// in the same transaction for a TxSink on a shared file, else through the
// delivery queue. It reports whether the piece was new.
func (t *torrent) addPiece(p *twproto.Post, batch bool) (bool, error) {
	s := t.s
	meta := pieceMeta{flags: byte(p.Flags), time: p.Time}
	st, inline := s.stage(p)
	var added bool
	var err error
	switch {
	case st != nil:
		added, err = s.store.putPieceWith(t.user, p.K, meta, p.Raw, st.apply, batch)
		if err != nil && !errors.Is(err, ErrPieceExists) {
			// The sink's part failed: keep the piece and let the delivery
			// queue retry the sink (it logs what goes wrong).
			s.log.Warn("post sink failed in the piece's transaction, queued", "user", t.user, "k", p.K, "err", err)
			st, inline = nil, false
			added, err = s.store.putPiece(t.user, p.K, meta, p.Raw, batch)
		}
	case inline:
		// Nothing for the sink (not a DM, or seen): store without queueing.
		added, err = s.store.putPieceQueued(t.user, p.K, meta, p.Raw, batch, false)
	default:
		added, err = s.store.putPiece(t.user, p.K, meta, p.Raw, batch)
	}
	if err != nil || !added {
		return false, err
	}
	t.announce(p.K, meta)
	if st != nil {
		st.committed(s.ctx)
	} else if !inline {
		s.kickDelivery()
	}
	return true, nil
}

// announce records a stored piece in memory and sends HAVE to the peers.
func (t *torrent) announce(k int64, meta pieceMeta) {
	s := t.s
	s.mu.Lock()
	if t.metas == nil {
		t.metas = map[int64]pieceMeta{}
	}
	t.metas[k] = meta
	t.xlow = t.have.nextClear(t.xlow)
	lowMoved := k == t.xlow
	t.have.set(k)
	// Validated just now (received, or built by the engine): serving it
	// needs no second check within serveCheckTTL.
	if len(t.servable) < maxServableCache {
		if t.servable == nil {
			t.servable = map[int64]time.Time{}
		}
		t.servable[k] = time.Now()
	}
	switch {
	case k > t.lastHave:
		t.lastHave = k
		t.xannounce()
	case lowMoved:
		t.xannounce() // a hole filled: peers may now ask for what is below
	}
	delete(t.inflight, k)
	if q := t.xinflight[k]; q != nil {
		delete(q.x.reqs, xkey{t, k}) // a late copy of it is dropped as unrequested
		delete(t.xinflight, k)
	}
	for q := range t.peers {
		delete(q.requests, k)
		delete(q.verifying, k)
		q.send(Message{ID: MsgHave, Index: uint32(k)})
	}
	// Where a new piece went first: for late deliveries (docs/swarm.md
	// "Open: late delivery").
	s.log.Debug("have sent", "user", t.user, "k", k, "peers", len(t.peers))
	for q := range t.peers {
		t.schedule(q)
	}
	s.mu.Unlock()
	t.markHot(time.Now())
}

// schedule updates our interest in p and pipelines requests (s.mu held).
func (t *torrent) schedule(p *peer) {
	if p.closing {
		return
	}
	limit := maxOutstandingRequests
	if p.reqq > 0 {
		limit = min(limit, p.reqq)
	}
	free := limit - len(p.requests)
	wanted := false
	p.has.each(func(k int64) bool {
		if t.have.has(k) {
			return true
		}
		if at, ok := p.failed[k]; ok {
			if time.Since(at) < 3*t.s.cfg.RequestTimeout {
				return true
			}
			delete(p.failed, k)
		}
		if _, busy := t.inflight[k]; busy {
			return true
		}
		if _, busy := t.xinflight[k]; busy {
			return true
		}
		wanted = true
		if !p.amInterested || free <= 0 {
			return false
		}
		if p.peerChoking && !p.allowedFast[uint32(k)] {
			return true
		}
		p.requests[k] = time.Now()
		if t.inflight == nil {
			t.inflight = map[int64]*peer{}
		}
		t.inflight[k] = p
		p.send(Message{ID: MsgRequest, Index: uint32(k), Begin: 0, Length: BlockSize})
		free--
		return true
	})
	switch {
	case wanted && !p.amInterested:
		p.amInterested = true
		p.send(Message{ID: MsgInterested})
		// Allowed-fast pieces may be requested right away (twisterd does:
		// wire README observation 3).
		t.schedule(p)
	case !wanted && p.amInterested && len(p.requests) == 0:
		p.amInterested = false
		p.send(Message{ID: MsgNotInterested})
	}
}

// releaseRequest forgets our request for k to p (s.mu held). A failed
// piece (rejected, not delivered in time, not verifiable) is not asked from
// p again for three request timeouts; other peers are asked meanwhile.
func (t *torrent) releaseRequest(p *peer, k int64, failed bool) {
	if _, ok := p.requests[k]; !ok {
		return
	}
	delete(p.requests, k)
	delete(p.verifying, k)
	if t.inflight[k] == p {
		delete(t.inflight, k)
	}
	if failed {
		p.failed[k] = time.Now()
	}
}

// expireRequests drops requests unanswered for RequestTimeout, then
// reschedules every peer, which also retries pieces whose failure mark
// has aged out.
func (t *torrent) expireRequests(now time.Time) {
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range t.peers {
		for k, at := range p.requests {
			if now.Sub(at) > s.cfg.RequestTimeout && !p.verifying[k] {
				// twisterd sends nothing for a piece that fails its
				// re-verification; ask someone else (§4.6).
				t.releaseRequest(p, k, true)
			}
		}
	}
	for p := range t.peers {
		t.schedule(p)
	}
	t.xexpire(now)
}

// addCandidates records peer addresses from the DHT or PEX (bounded).
func (t *torrent) addCandidates(addrs []netip.AddrPort) {
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range addrs {
		if !a.IsValid() || a.Port() == 0 || len(t.candidates) >= maxCandidates {
			continue
		}
		if _, ok := t.candidates[a]; !ok {
			if t.candidates == nil {
				t.candidates = map[netip.AddrPort]*candidate{}
			}
			t.candidates[a] = &candidate{}
			t.activate()
		}
	}
}

// addSaved adds the peers an earlier session saved (s.mu held).
func (t *torrent) addSaved(addrs []netip.AddrPort) {
	for _, a := range addrs {
		if !a.IsValid() || a.Port() == 0 {
			continue
		}
		if c := t.candidates[a]; c != nil {
			c.saved = true
		} else if len(t.candidates) < maxCandidates {
			if t.candidates == nil {
				t.candidates = map[netip.AddrPort]*candidate{}
			}
			t.candidates[a] = &candidate{saved: true}
			t.activate()
		}
	}
}

// swarmUserAdder is implemented by finders that need to know which user an
// info-hash belongs to before FindPeers/AnnouncePeer (*dht.Node does).
type swarmUserAdder interface {
	AddSwarmUser(user string) [20]byte
}

// banKey is what a ban applies to. twisterd bans the IP in the torrent's
// peer list; loopback and private addresses are keyed with the port too,
// so one misbehaving local node does not ban every node of a devnet.
func banKey(a netip.AddrPort) string {
	ip := a.Addr().Unmap()
	if ip.IsLoopback() || ip.IsPrivate() {
		return a.String()
	}
	return ip.String()
}

// dialSource is the local address outgoing connections bind to: the
// listen IP when it is a specific one, else nil (the kernel chooses).
// A peer records us as (source IP of our connection, the port in our
// extended handshake and PORT message); from any other source IP that
// address is one we do not listen on. A live twisterd did exactly that
// with a node bound to 127.0.0.1 that dialed twisterd's 192.0.2.2 address:
// its uTP SYNs and DHT pings to 192.0.2.2:<our port> went unanswered and
// each of those connects fell back to TCP only after 3 s (docs/interop.md).
func dialSource(listen net.Addr) *net.TCPAddr {
	a, ok := listen.(*net.TCPAddr)
	if !ok || a.IP == nil || a.IP.IsUnspecified() {
		return nil
	}
	return &net.TCPAddr{IP: a.IP, Zone: a.Zone}
}

// dial connects to a candidate for t's swarm.
func (s *Swarm) dial(t *torrent, addr netip.AddrPort) {
	d := net.Dialer{Timeout: s.cfg.DialTimeout}
	if s.dialFrom != nil {
		d.LocalAddr = s.dialFrom
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.DialTimeout)
	c, err := d.DialContext(ctx, "tcp", addr.String())
	cancel()
	defer t.dialDone(addr) // a no-op once runPeer has taken over the slot
	if err != nil {
		t.dialFailed(addr, false)
		return
	}
	hs := Handshake{Reserved: twisterReserved, InfoHash: t.ih, PeerID: s.peerID}
	c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	if _, err := c.Write(hs.AppendTo(nil)); err != nil {
		c.Close()
		t.dialFailed(addr, false)
		return
	}
	theirs, err := readHandshake(c)
	if err != nil || theirs.InfoHash != t.ih {
		c.Close()
		t.dialFailed(addr, false)
		return
	}
	if theirs.PeerID == s.peerID {
		// Our own address, e.g. from our tracker entry (README obs. 10).
		c.Close()
		t.dialFailed(addr, true)
		return
	}
	c.SetDeadline(time.Time{})
	s.runPeer(t, c, theirs, true, addr)
}

func (t *torrent) dialFailed(addr netip.AddrPort, self bool) {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	if c := t.candidates[addr]; c != nil {
		c.failures++
		c.self = c.self || self
	}
}

func (s *Swarm) handleIncoming(c net.Conn) {
	defer s.endPending(c)
	c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	theirs, err := readHandshake(c)
	if err != nil {
		c.Close()
		return
	}
	s.mu.Lock()
	t := s.byHash[theirs.InfoHash]
	s.mu.Unlock()
	// Unknown info-hash: twisterd disconnects (§4.3).
	if t == nil {
		c.Close()
		return
	}
	hs := Handshake{Reserved: twisterReserved, InfoHash: t.ih, PeerID: s.peerID}
	if theirs.PeerID == s.peerID {
		// We dialed ourselves: answer the handshake so the dialing side
		// sees its own id and stops, then close, as twisterd does
		// (README obs. 10).
		c.Write(hs.AppendTo(nil))
		c.Close()
		return
	}
	remote, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	s.mu.Lock()
	now := time.Now()
	banned := t.isBanned(banKey(remote), now) || t.isBanned(string(theirs.PeerID[:]), now)
	taken := t.ipTaken(remote.Addr(), theirs.PeerID)
	s.mu.Unlock()
	if banned || taken {
		c.Close()
		return
	}
	if _, err := c.Write(hs.AppendTo(nil)); err != nil {
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	// Handshake done: no longer counts against maxPendingHandshakes
	// (Close reaches the connection through the swarm's peers now).
	s.endPending(c)
	s.runPeer(t, c, theirs, false, remote)
}

func readHandshake(c net.Conn) (Handshake, error) {
	var b [HandshakeLen]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return Handshake{}, err
	}
	return ParseHandshake(b[:])
}
