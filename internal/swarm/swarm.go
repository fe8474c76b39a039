// Package swarm runs twister's per-user swarms: the peer wire over TCP
// (dht-swarm §4) byte-compatible with twisterd, piece storage in bbolt
// (swarm.db), peer discovery through a PeerFinder (the DHT), and delivery
// of every newly verified post to a PostSink (the DM engine). It
// implements dm.Network.
//
// It owns the pieces (exact post bytes) and the connections. It must not
// decrypt or interpret posts beyond twproto.ValidatePost and the per-piece
// flags getposts needs, and it does not own the UDP socket (the DHT does;
// see UTPReset).
package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

// PeerFinder is the DHT as the swarm uses it; *dht.Node satisfies it.
type PeerFinder interface {
	// FindPeers runs getData on the user's "tracker" target.
	FindPeers(ctx context.Context, infoHash [20]byte) ([]netip.AddrPort, error)
	// AnnouncePeer announces our TCP port to the closest token holders.
	AnnouncePeer(ctx context.Context, infoHash [20]byte, port int) error
	// AddContact adds a peer learned from the PORT message as a DHT node.
	AddContact(addr netip.AddrPort)
}

// PostSink receives every newly verified piece once; *dm.Engine satisfies it.
type PostSink interface {
	HandlePost(ctx context.Context, p *twproto.Post) error
}

// TxSink is a PostSink whose store lives in Config.DB: a received piece is
// stored and handed to it in one transaction instead of through the
// delivery queue (one commit per post instead of three). *dm.Engine
// satisfies it.
type TxSink interface {
	PostSink
	// PreparePost does the work on p that needs no transaction (trial
	// decryption). apply runs once, inside the transaction that stores the
	// piece (its error rolls the piece back too); committed runs after that
	// commit. apply is nil when p needs nothing from the sink.
	PreparePost(ctx context.Context, p *twproto.Post) (apply func(*bolt.Tx) error, committed func(context.Context), err error)
}

// stagedPost is a TxSink's work on one piece.
type stagedPost struct {
	apply     func(*bolt.Tx) error
	committed func(context.Context)
}

// Config configures a Swarm. Zero durations take twisterd's values.
type Config struct {
	// DataDir holds swarm.db (unless DB is set).
	DataDir string
	// DB, when set, is a bbolt file shared with the post sink's store (the
	// node passes messages.db): the swarm keeps its buckets under "swarm"
	// in it, and a piece commits together with what a TxSink makes of it
	// (docs/architecture.md, "One commit per post"). The caller closes it.
	// A swarm.db left in DataDir is moved in once.
	DB *bolt.DB
	// ListenAddr is the TCP peer-wire address, e.g. "0.0.0.0:29333" or
	// "127.0.0.1:0". twisterd expects the DHT on the same port number
	// (dht-swarm §7.23).
	ListenAddr string
	// Listener, when set, is used instead of listening on ListenAddr: the
	// node binds TCP first so that the DHT can take the same port number
	// for UDP. The swarm closes it.
	Listener net.Listener
	// AnnouncePort is the port announced to the DHT and sent as `p`;
	// 0 means the TCP listen port.
	AnnouncePort int
	// DHTPort is sent in the PORT message; 0 means the announce port,
	// negative disables the PORT message.
	DHTPort int
	// Keys validates posts (registry).
	Keys twproto.KeySource
	// Finder discovers peers; nil runs on StaticPeers only.
	Finder PeerFinder
	// StaticPeers are dialed for every swarm (tests, devnet).
	StaticPeers []netip.AddrPort
	// Logger; nil discards.
	Logger *slog.Logger
	// Version is sent as "v" in the extended handshake.
	Version string

	// AnnounceInterval: twisterd's dht_announce_interval, 15 min.
	AnnounceInterval time.Duration
	// ReconnectInterval: how often known but unconnected peers are redialed.
	ReconnectInterval time.Duration
	// KeepAliveInterval: idle time before a keep-alive, 30 s (§4.8).
	KeepAliveInterval time.Duration
	// PeerTimeout: a peer silent this long is dropped (twisterd 60 s
	// inactivity, we allow two missed keep-alives: 120 s).
	PeerTimeout time.Duration
	// HandshakeTimeout: twisterd's handshake_timeout, 10 s.
	HandshakeTimeout time.Duration
	// RequestTimeout: twisterd's request_timeout, 20 s.
	RequestTimeout time.Duration
	// DialTimeout for outgoing TCP connections, 5 s.
	DialTimeout time.Duration
	// TargetPeers: connections a swarm keeps while MaxConnections allows
	// (docs/swarm.md "Connection budget"), 4.
	TargetPeers int
	// HotPeers: connections a swarm may open for HotPeriod after a new
	// piece arrived or was published, 6.
	HotPeers int
	// HotPeriod, 30 s.
	HotPeriod time.Duration
	// MinHold: a connection is not evicted for the budget before this, 5 s.
	MinHold time.Duration
	// MaxPeersPerSwarm bounds connections per swarm, 16.
	MaxPeersPerSwarm int
	// MaxConnections bounds peer connections over all swarms, 72
	// (twisterd's connections_limit is 800; docs/swarm.md says why less).
	MaxConnections int
	// MultiConnPerIP allows several connections from one IP in a swarm
	// (twisterd's -multiconnperip; needed when several nodes share an IP,
	// e.g. a devnet on 127.0.0.1). Default: one per IP per swarm.
	MultiConnPerIP bool
	// NoCrossSwarm turns off twg_swarms, the cross-swarm HAVE between
	// twgroupd nodes (crossswarm.go); for comparisons in tests.
	NoCrossSwarm bool
	// MaxPendingPerIP bounds one IP's accepted connections still in the
	// handshake (default 8 of the 256 slots).
	MaxPendingPerIP int
	// MaxConnsPerIP bounds one IP's connections over all swarms unless
	// MultiConnPerIP (default MaxConnections/8: 9), so one host joining
	// every swarm cannot take all MaxConnections.
	MaxConnsPerIP int
	// BanTime is how long a peer that sent an invalid piece stays banned
	// (default 24 h, twisterd's -bantime).
	BanTime time.Duration
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.AnnounceInterval, 15*time.Minute)
	def(&c.ReconnectInterval, time.Second)
	def(&c.HotPeriod, 30*time.Second)
	def(&c.MinHold, 5*time.Second)
	def(&c.KeepAliveInterval, 30*time.Second)
	def(&c.PeerTimeout, 120*time.Second)
	def(&c.HandshakeTimeout, 10*time.Second)
	def(&c.RequestTimeout, 20*time.Second)
	def(&c.DialTimeout, 5*time.Second)
	def(&c.BanTime, defaultBanTime)
	if c.TargetPeers <= 0 {
		c.TargetPeers = 4
	}
	if c.HotPeers <= 0 {
		c.HotPeers = 6
	}
	if c.MaxPeersPerSwarm <= 0 {
		c.MaxPeersPerSwarm = 16
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 72
	}
	if c.MaxConnsPerIP <= 0 {
		c.MaxConnsPerIP = max(1, c.MaxConnections/8)
	}
	if c.MaxPendingPerIP <= 0 {
		c.MaxPendingPerIP = defaultMaxPendingPerIP
	}
	if c.Version == "" {
		c.Version = "twgroupd/0.1"
	}
}

// Swarm is the set of user swarms this node runs.
type Swarm struct {
	cfg    Config
	log    *slog.Logger
	store  *store
	peerID [20]byte

	ln      net.Listener
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	kick    chan struct{}
	lookups chan struct{} // DHT lookups in flight (maxLookups)
	// discWake tells discoverLoop that discQ changed.
	discWake chan struct{}

	// dialFrom is the listen IP when it is a specific address: outgoing
	// connections leave from it. Set once in Start before any dial.
	dialFrom *net.TCPAddr

	mu    sync.Mutex
	discQ discHeap // swarms by next discovery time (discover.go)
	// active: swarms with a connection, a dial or a known address; the
	// tick, rotation and peer saving visit these only, so an idle swarm
	// (nothing known) costs no periodic work.
	active      map[*torrent]struct{}
	started     bool
	closed      bool
	sink        PostSink
	byHash      map[[20]byte]*torrent
	byUser      map[string]*torrent
	incoming    map[net.Conn]struct{} // accepted, handshake not done
	pendingByIP map[netip.Addr]int    // len(incoming) per remote IP
	connsByIP   map[netip.Addr]int    // registered peers per remote IP
	numPeers    int
	unsaved     map[string]bool       // swarms joined but not yet in the store (saveSwarms)
	evicting    int                   // peers closing for the budget, still in numPeers
	dialing     int                   // outgoing dials not yet registered
	lastRotate  time.Time             // last steady rotation (budget.go)
	xpending    map[*torrent]struct{} // new highest pieces for twg_swarms peers
	xwake       chan struct{}
	xnodes      int // nodes with a twg_swarms connection, as of the last tick

	stats stats
}

type stats struct {
	totalDown, totalUp     atomic.Int64
	payloadDown, payloadUp atomic.Int64
	mu                     sync.Mutex
	last                   [4]int64
	rates                  [4]int64
}

// New opens swarm.db in cfg.DataDir. Call SetSink and then Start.
func New(cfg Config) (*Swarm, error) {
	cfg.setDefaults()
	if cfg.Keys == nil {
		return nil, errors.New("swarm: config needs a KeySource")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("swarm: config needs a data directory")
	}
	var st *store
	var err error
	if cfg.DB != nil {
		st, err = sharedStore(cfg.DB, filepath.Join(cfg.DataDir, "swarm.db"))
	} else {
		st, err = openStore(filepath.Join(cfg.DataDir, "swarm.db"))
	}
	if err != nil {
		return nil, err
	}
	id, err := newPeerID()
	if err != nil {
		st.close()
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Swarm{
		cfg: cfg, log: log.With("pkg", "swarm"), store: st, peerID: id,
		ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1), lookups: make(chan struct{}, maxLookups), discWake: make(chan struct{}, 1),
		xwake:  make(chan struct{}, 1),
		byHash: make(map[[20]byte]*torrent), byUser: make(map[string]*torrent), active: make(map[*torrent]struct{}),
		unsaved:  map[string]bool{},
		incoming: make(map[net.Conn]struct{}), pendingByIP: make(map[netip.Addr]int), connsByIP: make(map[netip.Addr]int),
	}
	users, err := st.swarms()
	if err != nil {
		st.close()
		return nil, fmt.Errorf("swarm: %w", err)
	}
	for _, u := range users {
		if _, err := s.loadTorrent(u); err != nil {
			st.close()
			return nil, err
		}
	}
	return s, nil
}

// SetSink sets where verified posts go; call before Start.
func (s *Swarm) SetSink(sink PostSink) {
	s.mu.Lock()
	s.sink = sink
	s.mu.Unlock()
	s.kickDelivery()
}

// Start listens for peers and starts every stored swarm.
func (s *Swarm) Start() error {
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.ListenAddr); err != nil {
			return fmt.Errorf("swarm: listen %s: %w", s.cfg.ListenAddr, err)
		}
	}
	s.mu.Lock()
	if s.started || s.closed {
		s.mu.Unlock()
		ln.Close()
		return errors.New("swarm: already started or closed")
	}
	s.started = true
	s.ln = ln
	s.dialFrom = dialSource(ln.Addr())
	if s.cfg.AnnouncePort == 0 {
		s.cfg.AnnouncePort = ln.Addr().(*net.TCPAddr).Port
	}
	if s.cfg.DHTPort == 0 {
		s.cfg.DHTPort = s.cfg.AnnouncePort
	}
	torrents := make([]*torrent, 0, len(s.byUser))
	for _, t := range s.byUser {
		torrents = append(torrents, t)
	}
	s.mu.Unlock()
	s.wg.Add(4)
	go s.acceptLoop()
	go s.deliverLoop()
	go s.tickLoop()
	go s.xflushLoop()
	if s.cfg.Finder != nil {
		s.wg.Add(1)
		go s.discoverLoop()
	}
	for _, t := range torrents {
		s.startTorrent(t)
	}
	s.kickDelivery()
	s.log.Info("swarm listening", "addr", ln.Addr().String(), "swarms", len(torrents))
	return nil
}

// Addr is the TCP listen address (after Start).
func (s *Swarm) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return netip.AddrPort{}
	}
	return s.ln.Addr().(*net.TCPAddr).AddrPort()
}

// Close stops all connections, saves piece availability and closes swarm.db.
func (s *Swarm) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	if s.ln != nil {
		s.ln.Close()
	} else if s.cfg.Listener != nil {
		s.cfg.Listener.Close() // handed over but never started
	}
	var peers []*peer
	seen := make(map[string]map[int64]int)
	for user, t := range s.byUser {
		for p := range t.peers {
			peers = append(peers, p)
		}
		seen[user] = t.maxSeen
	}
	for c := range s.incoming {
		c.Close()
	}
	peersToSave := s.peersToSave()
	s.mu.Unlock()
	for _, p := range peers {
		p.close(errors.New("shutting down"))
	}
	s.wg.Wait()
	s.saveSwarms()
	err := s.store.saveMaxSeen(seen)
	if perr := s.store.savePeers(peersToSave); err == nil {
		err = perr
	}
	if cerr := s.store.close(); err == nil {
		err = cerr
	}
	return err
}

// Follow joins user's swarm (dm.Network): its posts are fetched, verified,
// stored and handed to the sink once each.
func (s *Swarm) Follow(ctx context.Context, user string) error {
	_, err := s.join(user, false)
	return err
}

// Publish stores post as piece k of user's swarm after the checks twisterd
// applies to its own posts, sends HAVE(k) to the swarm's peers, and hands
// the post to the sink like any received piece (dm.Network).
func (s *Swarm) Publish(ctx context.Context, user string, k int64, post []byte) error {
	p, err := twproto.ValidatePost(ctx, post, user, k, s.cfg.Keys)
	if err != nil {
		return err
	}
	t, err := s.join(user, true)
	if err != nil {
		return err
	}
	_, err = t.addPiece(p, false)
	return err
}

// ErrForeignTx is returned by StagePublish for a transaction of a file
// other than Config.DB.
var ErrForeignTx = errors.New("swarm: transaction of another file")

// Bolt is the shared file of Config.DB, nil when the swarm has its own.
func (s *Swarm) Bolt() *bolt.DB {
	if !s.store.shared {
		return nil
	}
	return s.store.db
}

// StagePublish stores p, a post the caller built and validated, as piece
// p.K of p.N's swarm inside tx, a writable transaction of Config.DB (the
// engine's send transaction: the k reservation, the sender's copy and the
// piece commit together). announce, run after the commit, joins the swarm
// if needed and sends HAVE; a crash before it loses nothing, the piece is
// served from the store after a restart. p is not handed to the sink: the
// caller processes its own posts in the same transaction.
func (s *Swarm) StagePublish(tx *bolt.Tx, p *twproto.Post) (announce func(), err error) {
	if !s.store.shared || tx.DB() != s.store.db || !tx.Writable() {
		return nil, ErrForeignTx
	}
	if p.N == "" || len(p.N) > 64 {
		return nil, fmt.Errorf("swarm: invalid username %q", p.N)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, errors.New("swarm: closed")
	}
	if err := s.store.addSwarmTx(tx, p.N); err != nil {
		return nil, fmt.Errorf("swarm: join %s: %w", p.N, err)
	}
	meta := pieceMeta{flags: byte(p.Flags), time: p.Time}
	added, err := s.store.putPieceTx(tx, p.N, p.K, meta, p.Raw, false)
	if err != nil {
		return nil, fmt.Errorf("store piece %s/%d: %w", p.N, p.K, err)
	}
	if !added {
		return func() {}, nil
	}
	user, k := p.N, p.K
	return func() {
		t, err := s.join(user, false) // StagePublish recorded it in tx
		if err != nil {
			s.log.Warn("announce published piece", "user", user, "k", k, "err", err)
			return
		}
		t.announce(k, meta)
	}, nil
}

// stage asks a TxSink for its work on p; inline is false when pieces go
// through the delivery queue instead (no TxSink on a shared file yet).
func (s *Swarm) stage(p *twproto.Post) (st *stagedPost, inline bool) {
	if !s.store.shared {
		return nil, false
	}
	s.mu.Lock()
	sink, _ := s.sink.(TxSink)
	s.mu.Unlock()
	if sink == nil {
		return nil, false
	}
	apply, committed, err := sink.PreparePost(s.ctx, p)
	if err != nil {
		s.log.Warn("post sink cannot prepare piece, queued", "user", p.N, "k", p.K, "err", err)
		return nil, false
	}
	if apply == nil {
		return nil, true
	}
	if committed == nil {
		committed = func(context.Context) {}
	}
	return &stagedPost{apply, committed}, true
}

// join returns user's torrent, creating, persisting and starting it;
// unless durable (Publish), a running swarm records it at the next tick.
func (s *Swarm) join(user string, durable bool) (*torrent, error) {
	if user == "" || len(user) > 64 {
		return nil, fmt.Errorf("swarm: invalid username %q", user)
	}
	s.mu.Lock()
	t := s.byUser[user]
	closed, started := s.closed, s.started
	s.mu.Unlock()
	if closed {
		return nil, errors.New("swarm: closed")
	}
	if t != nil {
		return t, nil
	}
	if started && !durable {
		// Recorded by the next tick, with every other swarm joined since,
		// in one commit: following 100 users is not 100 fsyncs. A crash
		// before it loses nothing: the engine follows its users again at
		// start (dm.Engine.Resume).
		s.mu.Lock()
		s.unsaved[user] = true
		s.mu.Unlock()
	} else if err := s.store.addSwarm(user); err != nil {
		return nil, fmt.Errorf("swarm: join %s: %w", user, err)
	}
	t, err := s.loadTorrent(user)
	if err != nil {
		return nil, err
	}
	if started {
		s.startTorrent(t)
	}
	return t, nil
}

func (s *Swarm) loadTorrent(user string) (*torrent, error) {
	metas, seen, err := s.store.loadPieces(user)
	if err != nil {
		return nil, fmt.Errorf("swarm: %w", err)
	}
	saved, err := s.store.loadPeers(user)
	if err != nil {
		return nil, fmt.Errorf("swarm: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.byUser[user]; t != nil {
		return t, nil
	}
	t := newTorrent(s, user)
	t.metas = metas
	t.maxSeen = seen
	t.addSaved(saved)
	t.savedPeers = peersText(saved)
	if len(t.candidates) > 0 {
		t.activate()
	}
	for k := range metas {
		t.have.set(k)
		t.lastHave = max(t.lastHave, k)
	}
	s.byUser[user] = t
	s.byHash[t.ih] = t
	return t, nil
}

func (s *Swarm) startTorrent(t *torrent) {
	t.reconnect(time.Now())
	if s.cfg.Finder == nil {
		return
	}
	// The tracker target is {n:user, r:"tracker", t:"m"}: a finder that
	// cannot invert the info-hash (*dht.Node) is told the user first.
	if r, ok := s.cfg.Finder.(swarmUserAdder); ok {
		r.AddSwarmUser(t.user)
	}
	s.mu.Lock()
	if !s.closed && t.discIdx < 0 && t.lookedUp.IsZero() {
		s.scheduleDiscovery(t, time.Now())
	}
	s.mu.Unlock()
}

// LastHave is the highest piece index held for user, -1 when none or when
// the swarm is not running (getlasthave).
func (s *Swarm) LastHave(user string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.byUser[user]; t != nil {
		return t.lastHave
	}
	return -1
}

// HasPiece reports whether piece k of user is stored (dm.PieceChecker: the
// engine refuses a k that is already taken, e.g. by a public post).
func (s *Swarm) HasPiece(user string, k int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.byUser[user]
	return t != nil && t.have.has(k)
}

// NumPieces is the number of pieces held for user, -1 when the swarm is
// not running (getnumpieces: torrent_status.num_pieces = num_have).
func (s *Swarm) NumPieces(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.byUser[user]; t != nil {
		return len(t.metas)
	}
	return -1
}

// PieceMaxSeen is the most peers seen at once having piece k of user,
// saturated at 63 like libtorrent's 6-bit counter (getpiecemaxseen).
func (s *Swarm) PieceMaxSeen(user string, k int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.byUser[user]; t != nil {
		return t.maxSeen[k]
	}
	return 0
}

// Posts implements getposts: for each query the newest held pieces with
// since_id < k <= min(max_id, lastHave) whose flags pass the filters (at
// most count per user), then all of them newest time first, at most count
// [src/twister.cpp: getposts; lt/src/torrent.cpp: get_pieces].
func (s *Swarm) Posts(ctx context.Context, count int, queries []msgstore.Query, allowedFlags, requiredFlags int) ([][]byte, error) {
	type item struct {
		user string
		k    int64
		time int64
	}
	var items []item
	s.mu.Lock()
	for _, q := range queries {
		t := s.byUser[q.Username]
		if t == nil {
			continue
		}
		n := 0
		for k := min(q.MaxID, t.lastHave); k >= 0 && k > q.SinceID && n < count; k-- {
			m, ok := t.metas[k]
			if !ok {
				continue
			}
			f := int(m.flags)
			if f&allowedFlags == f && f&requiredFlags == requiredFlags {
				items = append(items, item{q.Username, k, m.time})
				n++
			}
		}
	}
	s.mu.Unlock()
	// twisterd inserts into a multimap by time and walks it backwards:
	// newest first, and among equal times the last inserted first.
	sort.SliceStable(items, func(i, j int) bool { return items[i].time < items[j].time })
	var out [][]byte
	for i := len(items) - 1; i >= 0 && len(out) < count; i-- {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		raw, err := s.store.piece(items[i].user, items[i].k)
		if err != nil {
			return nil, err
		}
		if raw != nil {
			out = append(out, raw)
		}
	}
	return out, nil
}

// Status is the swarm part of getinfo (getLibtorrentSessionStatus).
type Status struct {
	ListenPort           int
	Swarms               int // dht_torrents
	NumPeers             int
	PeerlistSize         int
	NumActiveRequests    int
	DownloadRate         int64 // bytes/s, last second
	UploadRate           int64
	PayloadDownloadRate  int64
	PayloadUploadRate    int64
	TotalDownload        int64
	TotalUpload          int64
	TotalPayloadDownload int64
	TotalPayloadUpload   int64
}

// Status returns counters for getinfo.
func (s *Swarm) Status() Status {
	var st Status
	s.mu.Lock()
	st.Swarms = len(s.byUser)
	for _, t := range s.byUser {
		st.NumPeers += len(t.peers)
		st.PeerlistSize += len(t.candidates)
		st.NumActiveRequests += len(t.inflight)
	}
	if s.ln != nil {
		st.ListenPort = s.ln.Addr().(*net.TCPAddr).Port
	}
	s.mu.Unlock()
	st.TotalDownload = s.stats.totalDown.Load()
	st.TotalUpload = s.stats.totalUp.Load()
	st.TotalPayloadDownload = s.stats.payloadDown.Load()
	st.TotalPayloadUpload = s.stats.payloadUp.Load()
	s.stats.mu.Lock()
	st.DownloadRate, st.UploadRate, st.PayloadDownloadRate, st.PayloadUploadRate = s.stats.rates[0], s.stats.rates[1], s.stats.rates[2], s.stats.rates[3]
	s.stats.mu.Unlock()
	return st
}

// Followers is the size of our peer list for the swarm with infoHash, 0
// when we do not run it: what twisterd reports as "followers" in tracker
// replies (dht-swarm §4.1); meant for the DHT's announce table.
func (s *Swarm) Followers(infoHash [20]byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.byHash[infoHash]
	if t == nil {
		return 0
	}
	known := len(t.candidates)
	for p := range t.peers {
		if _, ok := t.candidates[p.listen]; !ok {
			known++
		}
	}
	return known
}

// SwarmStatus is torrent-status detail for one user's swarm.
type SwarmStatus struct {
	User      string
	InfoHash  [20]byte
	LastHave  int64
	NumPieces int
	Peers     []netip.AddrPort
	Banned    int
}

// Swarms lists the running swarms, sorted by user.
func (s *Swarm) Swarms() []SwarmStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SwarmStatus, 0, len(s.byUser))
	for u, t := range s.byUser {
		st := SwarmStatus{User: u, InfoHash: t.ih, LastHave: t.lastHave, NumPieces: len(t.metas), Banned: t.liveBans(time.Now())}
		for p := range t.peers {
			st.Peers = append(st.Peers, p.remote)
		}
		sort.Slice(st.Peers, func(i, j int) bool { return st.Peers[i].String() < st.Peers[j].String() })
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out
}

func (s *Swarm) kickDelivery() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// deliverLoop hands stored-but-undelivered pieces to the sink in arrival
// order. The queue lives in swarm.db, so a crash between storing and
// delivering re-delivers on restart instead of losing the post.
func (s *Swarm) deliverLoop() {
	defer s.wg.Done()
	failed := make(map[string]bool)
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
		}
		s.mu.Lock()
		sink := s.sink
		s.mu.Unlock()
		if sink == nil {
			continue
		}
		for s.ctx.Err() == nil {
			batch, err := s.store.pending(64 + len(failed))
			if err != nil {
				s.log.Error("read delivery queue", "err", err)
				break
			}
			progressed := false
			var done [][]byte
			for _, pp := range batch {
				if failed[string(pp.seq)] {
					continue
				}
				progressed = true
				if pp.post != nil {
					post, err := twproto.DecodePost(pp.post)
					if err == nil {
						err = sink.HandlePost(s.ctx, post)
					}
					if err != nil {
						if s.ctx.Err() != nil {
							break
						}
						// Kept queued: retried on the next start.
						s.log.Warn("post sink refused piece", "user", pp.user, "k", pp.k, "err", err)
						failed[string(pp.seq)] = true
						continue
					}
				}
				done = append(done, pp.seq)
			}
			if err := s.store.donePending(done); err != nil {
				s.log.Error("dequeue delivered pieces", "err", err)
				return
			}
			if !progressed {
				break
			}
		}
	}
}

// tickLoop does the periodic work: request timeouts, reconnects and rates.
func (s *Swarm) tickLoop() {
	defer s.wg.Done()
	tick := min(time.Second, s.cfg.ReconnectInterval/2, s.cfg.RequestTimeout/4)
	tk := time.NewTicker(tick)
	defer tk.Stop()
	lastRate := time.Now()
	lastSave := lastRate
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tk.C:
			s.mu.Lock()
			s.countXNodes()
			torrents := make([]*torrent, 0, len(s.active))
			for t := range s.active {
				torrents = append(torrents, t)
			}
			s.mu.Unlock()
			for _, t := range torrents {
				t.expireRequests(now)
				t.pendingPush(now)
				t.reconnect(now)
			}
			s.mu.Lock()
			for _, t := range torrents {
				t.deactivateIfIdle()
			}
			s.mu.Unlock()
			s.saveSwarms()
			s.rotate(now)
			s.trim(now)
			if now.Sub(lastSave) >= savePeersInterval {
				s.mu.Lock()
				save := s.peersToSave()
				s.mu.Unlock()
				if err := s.store.savePeers(save); err != nil {
					s.log.Warn("save peers", "err", err)
				}
				lastSave = now
			}
			if el := now.Sub(lastRate); el >= time.Second {
				cur := [4]int64{s.stats.totalDown.Load(), s.stats.totalUp.Load(), s.stats.payloadDown.Load(), s.stats.payloadUp.Load()}
				s.stats.mu.Lock()
				for i := range cur {
					s.stats.rates[i] = (cur[i] - s.stats.last[i]) * int64(time.Second) / int64(el)
				}
				s.stats.last = cur
				s.stats.mu.Unlock()
				lastRate = now
			}
		}
	}
}

func (s *Swarm) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Warn("accept", "err", err)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		// The connection budget is applied after the handshake names the
		// swarm (admit); here the handshakes in flight are bounded.
		// Sockets stay within MaxConnections + 2*burstConns: burstConns
		// handshakes in flight on top of the burst (docs/swarm.md); admit
		// decides after the handshake, evicting if it can.
		if s.numPeers-s.evicting+len(s.incoming) >= s.cfg.MaxConnections+2*burstConns || !s.admitPending(c) {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handleIncoming(c)
		}()
	}
}
