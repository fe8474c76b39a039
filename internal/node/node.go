// Package node assembles one twgroupd daemon from a config.Config: it opens
// the wallet, the message store and the user registry, starts the DHT, the
// swarms, the DM engine and the RPC server, and shuts them down in reverse
// order. It wires packages together and owns no protocol rule.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/groupchat"
	"github.com/twgroupd/twgroupd/internal/config"
	"github.com/twgroupd/twgroupd/internal/dht"
	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/registry"
	"github.com/twgroupd/twgroupd/internal/swarm"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/internal/upstream"
	"github.com/twgroupd/twgroupd/rpc"
	"github.com/twgroupd/twgroupd/wallet"
)

// Node is one running daemon.
type Node struct {
	cfg      config.Config
	log      *slog.Logger
	wallet   *wallet.Wallet
	store    *msgstore.Store
	keys     registry.Registry
	file     *registry.File // nil unless a local registry file is used
	chain    *chainSource   // nil unless the registry is the blockchain (chain.go)
	upstream *upstream.Client
	dht      *dht.Node
	swarm    *swarm.Swarm
	engine   *dm.Engine
	groups   *groupchat.Service
	feed     *rpc.Feed
	rpc      *rpc.Server

	stopOnce sync.Once
	stop     chan struct{}
	cookie   string // the password in <datadir>/.cookie, removed at Close

	upstreamSync time.Duration // period of syncUpstream (tests shorten it)
}

// Run runs the daemon until ctx ends or the stop RPC is called; ready is
// called once the RPC listener accepts connections.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, ready func()) error {
	n, err := Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer n.Close()
	return n.Serve(ctx, ready)
}

// Open builds every component; Serve starts the RPC server.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Node, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Refuse a bad configuration before opening files or binding ports.
	// No rpcpassword means cookie authentication (written once the
	// datadir's stores are locked, so a second daemon cannot replace it).
	useCookie := cfg.RPCPassword == ""
	if !useCookie {
		if err := rpc.CheckCredentials(cfg.RPCUser, cfg.RPCPassword); err != nil {
			return nil, err
		}
	}
	if cfg.Upstream != "" {
		self, err := upstream.PointsAtSelf(ctx, cfg.Upstream, cfg.RPCPort)
		if err != nil {
			return nil, err
		}
		if self {
			return nil, fmt.Errorf("-upstream %s is this node's own RPC address (rpcport %d): point it at twisterd's rpcport", config.RedactURL(cfg.Upstream), cfg.RPCPort)
		}
	}
	n := &Node{cfg: cfg, log: log, stop: make(chan struct{}), upstreamSync: defaultUpstreamSync}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("datadir: %w", err)
	}
	if n.wallet, err = wallet.Open(filepath.Join(cfg.DataDir, "wallet.db"), nil); err != nil {
		return nil, err
	}
	if n.store, err = msgstore.Open(filepath.Join(cfg.DataDir, "messages.db"), nil); err != nil {
		return nil, err
	}
	if useCookie {
		if cfg.RPCUser, cfg.RPCPassword, err = config.WriteCookie(cfg.DataDir); err != nil {
			return nil, err
		}
		n.cookie = cfg.RPCPassword
		n.cfg = cfg
		log.Info("rpc: cookie authentication", "file", config.CookiePath(cfg.DataDir))
	}
	if cfg.Upstream != "" {
		if n.upstream, err = upstream.New(cfg.Upstream, upstream.WithLogger(log)); err != nil {
			return nil, fmt.Errorf("upstream: %w", err)
		}
	}
	switch {
	case useChain(n):
		if err := n.openChain(); err != nil {
			return nil, fmt.Errorf("chain: %w", err)
		}
	case cfg.Registry != "":
		if _, err := registry.InitFile(ctx, cfg.Registry, time.Now(), registry.DefaultBlockInterval); err != nil {
			return nil, fmt.Errorf("registry file: %w", err)
		}
		if n.file, err = registry.OpenFile(cfg.Registry); err != nil {
			return nil, fmt.Errorf("registry file: %w", err)
		}
		n.keys = n.file
	case n.upstream != nil:
		n.keys = registry.NewUpstream(n.upstream, nil)
	}

	bind := bindHost(cfg)
	loopback := isLoopback(bind)
	// twisterd dials uTP first on our UDP port; answering the SYN with a
	// reset makes it fall back to TCP at once instead of after 3 s
	// (docs/swarm.md "uTP").
	var udp atomic.Pointer[dht.Node]
	resetUTP := func(pkt []byte, from netip.AddrPort) {
		if r := swarm.UTPReset(pkt, time.Now()); r != nil {
			if d := udp.Load(); d != nil {
				_ = d.WriteTo(r, from)
			}
		}
	}
	// Tracker answers report how many peers our own swarm knows, as
	// twisterd's do; the swarm starts after the DHT, hence the pointer.
	var swarms atomic.Pointer[swarm.Swarm]
	followers := func(ih [20]byte) int {
		if s := swarms.Load(); s != nil {
			return s.Followers(ih)
		}
		return 0
	}
	dcfg := dht.Config{
		NonDHT:       resetUTP,
		Followers:    followers,
		Bootstrap:    cfg.Bootstrap,
		DataDir:      cfg.DataDir,
		Keys:         n.keys,
		Signer:       walletSigner{n.wallet},
		Logger:       log.With("part", "dht"),
		RelaxIPRules: loopback,
	}
	scfg := swarm.Config{
		DataDir: cfg.DataDir,
		// Pieces share messages.db with the engine: a post and what it
		// causes commit together (docs/architecture.md).
		DB:      n.store.Bolt(),
		Keys:    n.keys,
		Logger:  log.With("part", "swarm"),
		Version: "twgroupd",
		// Nodes sharing a loopback IP are a devnet, as for RelaxIPRules.
		MultiConnPerIP: cfg.MultiConnPerIP || loopback,
		// and dial each other's swarms all at once from that one IP.
		MaxPendingPerIP: loopbackPendingPerIP(loopback),
		BanTime:         time.Duration(cfg.BanTime) * time.Second,
	}
	// The swarm's TCP port must equal the DHT's UDP port (dht-swarm §7.23).
	// TCP is bound first and the DHT takes the same number; with
	// -dhtport=0 a number free for TCP may be taken for UDP: pick again.
	for attempt := 1; ; attempt++ {
		ln, err := net.Listen("tcp", net.JoinHostPort(bind, strconv.Itoa(cfg.DHTPort)))
		if err != nil {
			return nil, fmt.Errorf("swarm: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		dcfg.Listen = net.JoinHostPort(bind, strconv.Itoa(port))
		n.dht, err = dht.Open(dcfg)
		if err == nil {
			scfg.Listener, scfg.ListenAddr, scfg.DHTPort, scfg.Finder = ln, ln.Addr().String(), port, n.dht
			break
		}
		ln.Close()
		if cfg.DHTPort != 0 || !errors.Is(err, syscall.EADDRINUSE) || attempt == 10 {
			return nil, fmt.Errorf("dht: %w", err)
		}
	}
	udp.Store(n.dht)
	if n.chain != nil {
		n.startChain()
	}
	if n.swarm, err = swarm.New(scfg); err != nil {
		scfg.Listener.Close()
		return nil, fmt.Errorf("swarm: %w", err)
	}
	swarms.Store(n.swarm)
	n.feed = rpc.NewFeed()
	if n.engine, err = dm.New(dm.Config{
		Wallet: n.wallet,
		Store:  n.store,
		Keys:   n.keys,
		Net:    n.swarm,
		Notify: n.feed.Notify,
		Logger: log.With("part", "dm"),
	}); err != nil {
		return nil, fmt.Errorf("dm engine: %w", err)
	}
	n.swarm.SetSink(n.engine)
	if n.groups, err = groupchat.New(groupchat.Config{
		Engine: n.engine,
		Wallet: n.wallet,
		Store:  n.store,
		Logger: log.With("part", "groupchat"),
	}); err != nil {
		return nil, fmt.Errorf("groupchat: %w", err)
	}
	if n.upstream != nil {
		importUpstreamKeys(ctx, n)
	}
	if err := n.swarm.Start(); err != nil {
		return nil, fmt.Errorf("swarm: %w", err)
	}
	if err := n.engine.Resume(ctx); err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}

	rcfg := rpc.Config{
		User:     cfg.RPCUser,
		Password: cfg.RPCPassword,
		Port:     cfg.RPCPort,
		AllowIP:  cfg.RPCAllowIP,

		AllowedOrigins: cfg.RPCAllowedOrigin,
		AllowedHosts:   cfg.RPCAllowedHost,

		HTMLDir:  cfg.ResolvedHTMLDir(),
		Logger:   log.With("part", "rpc"),
		DM:       n.engine,
		Groups:   n.groups,
		Wallet:   n.wallet,
		Registry: n.keys,
		DHT:      n.dht,
		Swarm:    n.swarm,
		Node:     n,
		Feed:     n.feed,
		Stop:     n.requestStop,
	}
	if n.file != nil {
		rcfg.Registrar = fileRegistrar{file: n.file}
	}
	if n.chain != nil {
		rcfg.Chain = n.chain.chain
	}
	if n.upstream != nil {
		rcfg.Upstream = n.upstream
	}
	if n.rpc, err = rpc.New(rcfg); err != nil {
		return nil, err
	}
	log.Info("node ready", "datadir", cfg.DataDir, "dht", n.dht.LocalAddr(), "swarm", n.swarm.Addr())
	return n, nil
}

// Serve runs the RPC server until ctx ends or stop is requested.
func (n *Node) Serve(ctx context.Context, ready func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- n.rpc.Serve(ctx) }()
	if n.upstream != nil && n.upstreamSync > 0 {
		var wg sync.WaitGroup
		lctx, lcancel := context.WithCancel(ctx)
		wg.Go(func() { n.upstreamLoop(lctx) })
		defer func() { lcancel(); wg.Wait() }()
	}
	select {
	case <-n.rpc.Ready():
		if ready != nil {
			ready()
		}
	case err := <-errc:
		return fmt.Errorf("rpc: %w", err)
	}
	select {
	case <-ctx.Done():
	case <-n.stop:
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("rpc: %w", err)
		}
	}
	n.log.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = n.rpc.Shutdown(sctx)
	cancel()
	return nil
}

func (n *Node) requestStop() { n.stopOnce.Do(func() { close(n.stop) }) }

// Close stops the network first, then closes the stores it writes to.
func (n *Node) Close() error {
	var errs []error
	errs = append(errs, n.closeChain())
	if n.swarm != nil {
		errs = append(errs, n.swarm.Close())
	}
	if n.dht != nil {
		errs = append(errs, n.dht.Close())
	}
	if n.engine != nil {
		errs = append(errs, n.engine.Close()) // the background retry writes to the store
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	if n.wallet != nil {
		errs = append(errs, n.wallet.Close())
	}
	if n.cookie != "" {
		errs = append(errs, config.RemoveCookie(n.cfg.DataDir, n.cookie))
	}
	return errors.Join(errs...)
}

// NodeStatus feeds getinfo.
func (n *Node) NodeStatus(ctx context.Context) (rpc.NodeStatus, error) {
	best, _ := n.keys.BestHeight(ctx)
	if n.chain != nil {
		best = int64(n.chain.chain.Tip().Height) // also while syncing
	}
	st := n.swarm.Status()
	ds := n.dht.Stats()
	port := int(n.dht.LocalAddr().Port())
	conns := st.NumPeers
	if n.chain != nil {
		conns = n.chain.sync.PeerCount() // twisterd's: chain P2P peers
	}
	var errs string
	if u, ok := n.keys.(*registry.Upstream); ok {
		if us := u.Status(); us.Down {
			errs = fmt.Sprintf("upstream twisterd unavailable since %s: using cached keys and block height %d (from %s)",
				us.DownSince.UTC().Format(time.RFC3339), us.Best, us.BestAt.UTC().Format(time.RFC3339))
		}
	}
	var cs *rpc.ChainSync
	if n.chain != nil {
		ss := n.chain.sync.Status()
		cs = &rpc.ChainSync{Headers: ss.BestHeader, Target: ss.Target, Syncing: ss.Syncing, Percent: ss.Percent, BlocksPerS: ss.BlocksPerS}
	}
	return rpc.NodeStatus{
		Chain:          cs,
		Blocks:         best,
		Connections:    conns,
		Errors:         errs,
		DHTNodes:       int64(ds.Nodes),
		DHTGlobalNodes: int64(ds.Nodes),
		ExtPort1:       port,
		ExtPort2:       port,
		DHTTorrents:    st.Swarms,
		NumPeers:       st.NumPeers,
		PeerListSize:   st.PeerlistSize,
		TotalDownload:  st.TotalDownload,
		TotalUpload:    st.TotalUpload,
	}, nil
}

// walletSigner signs DHT items with a wallet key.
type walletSigner struct{ w *wallet.Wallet }

func (s walletSigner) SignAs(user string, msg []byte) ([]byte, error) {
	k, err := s.w.Key(user)
	if err != nil {
		return nil, err
	}
	return twproto.Sign(k, msg)
}

// loopbackPendingPerIP: a devnet's nodes share one IP, so they get more
// handshake slots per IP than a real host's 8 (the swarm's default).
func loopbackPendingPerIP(loopback bool) int {
	if loopback {
		return 64
	}
	return 0
}

func isLoopback(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
