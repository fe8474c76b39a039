package node

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/twgroupd/twgroupd/internal/chain"
	"github.com/twgroupd/twgroupd/internal/chainsync"
	"github.com/twgroupd/twgroupd/internal/registry"
)

// dhtPortOffset is twister's LIBTORRENT_PORT_OFFSET: a node's DHT listens
// on its P2P port + 1000 (twister.cpp).
const dhtPortOffset = 1000

// chainSource is the -registry=chain wiring: chain.db in the datadir and
// the P2P client keeping it current.
type chainSource struct {
	chain  *chain.Chain
	sync   *chainsync.Syncer
	cancel context.CancelFunc
	done   chan struct{}
}

// useChain reports whether the registry comes from the blockchain:
// -registry=chain, or neither -registry nor -upstream.
func useChain(n *Node) bool {
	return n.cfg.Chain || (n.cfg.Registry == "" && n.cfg.Upstream == "")
}

// openChain opens chain.db and prepares the syncer (started by startChain
// once the DHT exists).
func (n *Node) openChain() error {
	cfg := n.cfg
	c, err := chain.Open(filepath.Join(cfg.DataDir, "chain.db"), chain.Mainnet(), chain.Options{
		NoCheckpoints: cfg.NoCheckpoints,
		Logger:        n.log.With("part", "chain"),
	})
	if err != nil {
		return err
	}
	s, err := chainsync.New(chainsync.Config{
		Chain:     c,
		Connect:   cfg.Connect,
		AddNodes:  cfg.AddNode,
		SeedNodes: cfg.SeedNode,
		DNSSeed:   !cfg.NoDNSSeed,
		DataDir:   cfg.DataDir,
		Logger:    n.log.With("part", "chainsync"),
	})
	if err != nil {
		c.Close()
		return err
	}
	n.chain = &chainSource{chain: c, sync: s}
	n.keys = registry.NewChain(c).WithSyncing(n.chainSyncing)
	tip := c.Tip()
	n.log.Info("chain: opened", "height", tip.Height, "hash", tip.Hash.String(), "best_header", c.BestHeader().Height)
	return nil
}

// chainSyncing reports the initial sync: the tip more than a block behind
// the best header or a peer's announced height.
func (n *Node) chainSyncing() error {
	c := n.chain.chain
	tip := c.Tip().Height
	target := max(c.BestHeader().Height, n.chain.sync.PeerHeight())
	if target > tip+1 {
		return fmt.Errorf("%w: block %d of %d", registry.ErrChainSyncing, tip, target)
	}
	return nil
}

// startChain runs the syncer and feeds the DHT with the chain's peers.
func (n *Node) startChain() {
	cs := n.chain
	ctx, cancel := context.WithCancel(context.Background())
	cs.cancel, cs.done = cancel, make(chan struct{})
	go func() {
		defer close(cs.done)
		done := make(chan struct{})
		go func() {
			defer close(done)
			n.dhtFromChainPeers(ctx)
		}()
		if err := cs.sync.Run(ctx); err != nil {
			n.log.Warn("chainsync stopped", "err", err)
		}
		<-done
	}()
}

// dhtFromChainPeers is twister.cpp ThreadMaintainDHTNodes: while the DHT
// knows few nodes, every chain P2P address becomes a DHT contact at port +
// 1000, so a standalone node needs no -bootstrap; and while the chain has
// no peer, DHT nodes become chain peer candidates at port - 1000.
func (n *Node) dhtFromChainPeers(ctx context.Context) {
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.dht.Stats().Nodes < 20 {
			for i, ap := range n.chain.sync.KnownAddrs() {
				if i == 32 {
					break
				}
				if p := int(ap.Port()) + dhtPortOffset; p <= 65535 {
					n.dht.AddContact(netip.AddrPortFrom(ap.Addr(), uint16(p)))
				}
			}
		}
		if n.chain.sync.PeerCount() == 0 {
			for _, ap := range n.dht.KnownNodes(16) {
				if p := int(ap.Port()) - dhtPortOffset; p > 0 {
					n.chain.sync.AddAddr(netip.AddrPortFrom(ap.Addr(), uint16(p)))
				}
			}
		}
		t.Reset(30 * time.Second)
	}
}

// closeChain stops the syncer, then closes chain.db.
func (n *Node) closeChain() error {
	cs := n.chain
	if cs == nil {
		return nil
	}
	if cs.cancel != nil {
		cs.cancel()
		<-cs.done
	}
	if err := cs.chain.Close(); err != nil {
		return fmt.Errorf("chain.db: %w", err)
	}
	return nil
}
