package dht

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	bolt "go.etcd.io/bbolt"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// DefaultPort is twisterd's libtorrent port: P2P 28333 + 1000, shared by
// the UDP DHT and the TCP swarm (dht-swarm §1).
const DefaultPort = 29333

// Signer signs a message with the wallet key of a local user (a 65-byte
// compact signature, twproto.Sign). Put uses it for sig_user.
type Signer interface {
	SignAs(user string, msg []byte) (sig []byte, err error)
}

// Config configures a Node. Zero values take twisterd's defaults.
type Config struct {
	// Listen is the UDP address, "host:port"; default "0.0.0.0:29333".
	Listen string
	// Bootstrap lists known nodes as host:port.
	Bootstrap []string
	// DataDir holds dht.db (node id, routing table, stored items).
	// Empty: nothing is persisted.
	DataDir string
	// Keys is the user registry: signature checks and the best height.
	// Without it every putData is refused, as by a twisterd without chain.
	Keys twproto.KeySource
	// Signer signs our own puts.
	Signer Signer
	// Logger receives diagnostics; default slog.Default().
	Logger *slog.Logger
	// RelaxIPRules lets several nodes share an IP address in the routing
	// table and lookups (loopback test networks). twisterd keeps one node
	// per IP and one per /24 in a bucket.
	RelaxIPRules bool

	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// TickInterval paces table maintenance, republishing and expiry;
	// default 5 s as twisterd's dht tick.
	TickInterval time.Duration
	// FlushInterval paces writes of dht.db; default 30 s (and on Close).
	FlushInterval time.Duration
	// SoftTimeout widens a lookup when a query is slow (default 1 s);
	// QueryTimeout abandons it (default 8 s).
	SoftTimeout, QueryTimeout time.Duration
	// ReplyRateLimit caps our replies in bytes/s (default 16000, as
	// twisterd); negative disables the cap.
	ReplyRateLimit int
	// FloodLimit is one source IP's packet budget: a token bucket of
	// FloodLimit packets refilled at FloodLimit per 5 s (default 1000, as
	// twisterd's 1000 in 5 s, which bans for 5 minutes instead); packets
	// beyond it are dropped. Answers to our own queries never count.
	// Negative disables.
	FloodLimit int
	// NonDHT, when set, receives the datagrams on our port that are not
	// DHT packets (twisterd's uTP shares the socket); it must not block or
	// keep pkt. Node.WriteTo answers them from the same socket.
	NonDHT func(pkt []byte, from netip.AddrPort)
	// Followers, when set, tells how many peers our own swarm of an
	// info-hash knows; tracker answers carry it as followers, which
	// twisterd's dhtget shows (its list_peers). Without it: 0.
	Followers func(infoHash [20]byte) int
	// MaxStoreBytes bounds the signed items we keep for others (default
	// 64 MiB); past it new items are not stored, like a non-neighbour's.
	MaxStoreBytes int
}

// Node is a twister DHT node.
type Node struct {
	cfg         Config
	log         *slog.Logger
	now         func() time.Time
	keys        twproto.KeySource
	conn        *net.UDPConn
	table       *table
	tokens      *tokens
	items       *itemStore
	peers       *peerStore
	txns        transactions
	replyLimit  *rateLimiter
	guard       *sourceGuard
	contacts    *contactQueue
	db          *bolt.DB
	inbound     chan datagram
	replies     chan datagram
	softTimeout time.Duration
	hardTimeout time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once

	mu          sync.Mutex
	users       map[[20]byte]string // swarm info-hash -> user, for FindPeers
	extIP       netip.Addr
	votes       map[netip.Addr]map[netip.Addr]bool // our ip -> voters
	lastBoot    time.Time
	lastPurge   time.Time
	lastFlush   time.Time
	republishes chan struct{}
}

// Open binds the UDP socket, loads dht.db, starts serving and bootstraps
// in the background. Close releases everything.
func Open(cfg Config) (*Node, error) {
	if cfg.Listen == "" {
		cfg.Listen = fmt.Sprintf("0.0.0.0:%d", DefaultPort)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 5 * time.Second
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 30 * time.Second
	}
	if cfg.SoftTimeout <= 0 {
		cfg.SoftTimeout = defaultSoftTimeout
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = defaultHardTimeout
	}
	if cfg.ReplyRateLimit == 0 {
		cfg.ReplyRateLimit = defaultReplyRate
	}
	if cfg.FloodLimit == 0 {
		cfg.FloodLimit = defaultFloodLimit
	}
	if cfg.MaxStoreBytes <= 0 {
		cfg.MaxStoreBytes = defaultMaxStoreBytes
	}
	laddr, err := net.ResolveUDPAddr("udp4", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("dht: listen address %q: %w", cfg.Listen, err)
	}
	n := &Node{
		cfg:         cfg,
		log:         cfg.Logger,
		now:         cfg.Now,
		keys:        cfg.Keys,
		tokens:      newTokens(cfg.Now),
		items:       newItemStore(cfg.MaxStoreBytes),
		peers:       newPeerStore(),
		txns:        transactions{calls: make(map[uint16]*call), perIP: make(map[netip.Addr]int)},
		replyLimit:  newRateLimiter(cfg.ReplyRateLimit, cfg.Now()),
		guard:       newSourceGuard(cfg.FloodLimit, cfg.ReplyRateLimit, cfg.RelaxIPRules),
		contacts:    newContactQueue(cfg.RelaxIPRules),
		inbound:     make(chan datagram, inboundQueue),
		replies:     make(chan datagram, replyQueue),
		softTimeout: cfg.SoftTimeout,
		hardTimeout: cfg.QueryTimeout,
		users:       make(map[[20]byte]string),
		votes:       make(map[netip.Addr]map[netip.Addr]bool),
		republishes: make(chan struct{}, 8),
	}
	var saved *savedState
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("dht: datadir: %w", err)
		}
		n.db, err = openDB(filepath.Join(cfg.DataDir, "dht.db"))
		if err != nil {
			return nil, err
		}
		if saved, err = n.loadState(); err != nil {
			n.db.Close()
			return nil, err
		}
	}
	var id krpc.ID
	if saved != nil && saved.hasID && (!saved.extIP.IsValid() || VerifyID(saved.id, saved.extIP)) {
		id = saved.id
		n.extIP = saved.extIP
	} else {
		ext := netip.Addr{}
		if saved != nil {
			ext = saved.extIP
		}
		id = GenerateID(ext)
		n.extIP = ext
	}
	n.table = newTable(id, !cfg.RelaxIPRules, cfg.Now)
	n.conn, err = net.ListenUDP("udp4", laddr)
	if err != nil {
		if n.db != nil {
			n.db.Close()
		}
		return nil, fmt.Errorf("dht: listen on %s: %w", cfg.Listen, err)
	}
	// A deeper socket buffer rides out bursts (the kernel caps it).
	_ = n.conn.SetReadBuffer(socketBuffer)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if saved != nil {
		n.loadItems(saved)
	}
	workers := max(4, runtime.GOMAXPROCS(0))
	n.wg.Add(3 + workers + contactPingers)
	go n.readLoop()
	go n.replyLoop()
	for range workers {
		go n.worker()
	}
	for range contactPingers {
		go n.contactPinger()
	}
	go n.maintain()
	seeds := []nodeInfo(nil)
	if saved != nil {
		seeds = saved.nodes
	}
	n.goBootstrap(seeds)
	n.log.Info("dht: listening", "addr", n.LocalAddr(), "id", fmt.Sprintf("%x", id[:]))
	return n, nil
}

// LocalAddr is the bound UDP address.
func (n *Node) LocalAddr() netip.AddrPort {
	ap := n.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// ErrRateLimited: WriteTo dropped a datagram over the reply budget.
var ErrRateLimited = errors.New("dht: reply budget exhausted")

// WriteTo sends a raw datagram from the DHT socket (answers to NonDHT
// traffic, e.g. uTP resets). It spends the same budgets as our DHT
// replies (the destination's share and the global rate), so answering
// uTP cannot amplify a flood past them.
func (n *Node) WriteTo(pkt []byte, to netip.AddrPort) error {
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	now := n.now()
	if !n.guard.allowReply(to, len(pkt), now) || !n.replyLimit.allow(len(pkt), now) {
		return ErrRateLimited
	}
	if _, err := n.conn.WriteToUDPAddrPort(pkt, to); err != nil {
		return fmt.Errorf("dht: write to %s: %w", to, err)
	}
	return nil
}

// ID is our node id.
func (n *Node) ID() [20]byte { return n.table.ownID() }

// Stats reports routing table size (live, confirmed), stored items, and
// what the limits on remotes did.
type Stats struct {
	Nodes, ConfirmedNodes int
	Targets, Items        int
	// ContactPings: pings sent for AddContact; ContactsDropped: contacts
	// not pinged (seen within a minute, or the queue full).
	ContactPings, ContactsDropped int64
	// FloodDropped: datagrams over their source's budget; RepliesDropped:
	// replies over the per-source share or the global budget.
	FloodDropped, RepliesDropped int64
}

// Stats returns a snapshot of the node's state.
func (n *Node) Stats() Stats {
	var s Stats
	s.Nodes, s.ConfirmedNodes = n.table.size()
	s.Targets, s.Items = n.items.count()
	s.ContactPings, s.ContactsDropped = n.contacts.pinged.Load(), n.contacts.dropped.Load()
	s.FloodDropped, s.RepliesDropped = n.guard.droppedPkts.Load(), n.guard.droppedReplies.Load()+n.replyLimit.dropped.Load()
	return s
}

// Close stops the node and writes dht.db.
func (n *Node) Close() error {
	var err error
	n.closed.Do(func() {
		n.cancel()
		n.conn.Close()
		n.wg.Wait()
		if n.db != nil {
			err = errors.Join(n.flush(), n.db.Close())
		}
	})
	return err
}

func (n *Node) bestHeight(ctx context.Context) int64 {
	if n.keys == nil {
		return 0
	}
	h, err := n.keys.BestHeight(ctx)
	if err != nil {
		n.log.Debug("dht: best height unavailable", "err", err)
		return 0
	}
	return h
}

// voteExternalIP counts what the nodes that refused our id say our
// address is. Two distinct voters (or one while we know almost nobody)
// settle it; then our id is regenerated to match, as twisterd restarts
// its DHT on a new external address.
func (n *Node) voteExternalIP(ip, voter netip.Addr) {
	if isLocalAddr(voter) || !ip.IsValid() {
		return
	}
	n.mu.Lock()
	v := n.votes[ip]
	if v == nil {
		if len(n.votes) > 64 {
			clear(n.votes)
		}
		v = make(map[netip.Addr]bool)
		n.votes[ip] = v
	}
	v[voter] = true
	live, _ := n.table.size()
	settled := len(v) >= 2 || live < 2
	changed := settled && ip != n.extIP
	if changed {
		n.extIP = ip
	}
	n.mu.Unlock()
	if changed && !VerifyID(n.table.ownID(), ip) {
		id := GenerateID(ip)
		n.log.Info("dht: external address learned, new node id", "ip", ip, "id", fmt.Sprintf("%x", id[:]))
		n.table.setOwn(id)
		// Nodes refused us under the old id: look ourselves up again now.
		n.goBootstrap(nil)
	}
}

// maintain runs the periodic work of twisterd's dht tick.
func (n *Node) maintain() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.tick()
		}
	}
}

func (n *Node) tick() {
	now := n.now()
	live, _ := n.table.size()
	n.mu.Lock()
	reboot := live == 0 && now.Sub(n.lastBoot) > 30*time.Second
	purge := now.Sub(n.lastPurge) >= 2*time.Minute
	if purge {
		n.lastPurge = now
	}
	flush := n.db != nil && now.Sub(n.lastFlush) >= n.cfg.FlushInterval
	if flush {
		n.lastFlush = now
	}
	n.mu.Unlock()
	if reboot {
		n.goBootstrap(nil)
	}
	if target, ok := n.table.needRefresh(); ok {
		n.goTraverse(func(ctx context.Context) { n.findNodes(ctx, target, bucketK, nil) })
	}
	for _, ni := range n.table.toPing(4) {
		ni := ni
		n.goTraverse(func(ctx context.Context) {
			if _, err := n.query(ctx, ni.Addr, methodPing, &Args{}); errors.Is(err, ErrTimeout) {
				n.table.nodeFailed(ni.ID, ni.Addr)
			}
		})
	}
	if purge {
		n.peers.purge(now)
	}
	n.republish(now)
	if flush {
		if err := n.flush(); err != nil {
			n.log.Warn("dht: save dht.db", "err", err)
		}
	}
}

// goTraverse runs f in the background, bounded by the node's lifetime.
func (n *Node) goTraverse(f func(ctx context.Context)) {
	if n.ctx.Err() != nil {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f(n.ctx)
	}()
}

func (n *Node) goBootstrap(seeds []nodeInfo) {
	n.mu.Lock()
	n.lastBoot = n.now()
	n.mu.Unlock()
	n.goTraverse(func(ctx context.Context) {
		if err := n.bootstrap(ctx, seeds); err != nil {
			n.log.Debug("dht: bootstrap", "err", err)
		}
	})
}
