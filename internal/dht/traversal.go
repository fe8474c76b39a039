package dht

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
)

// Lookup constants (dht-swarm §2.9).
const (
	searchBranching = 5
	maxCandidates   = 100
	bootstrapK      = 16
	maxLookupQuery  = 500 // safety bound on queries per lookup
)

type candState int

const (
	candFresh candState = iota
	candInFlight
	candResponded
	candFailed
)

type candidate struct {
	nodeInfo
	state candState
	slow  bool // past the soft timeout: no longer holds a branching slot
}

type lookupEvent struct {
	c     *candidate
	reply *Msg
	err   error
	soft  bool
}

type lookupResult struct {
	node nodeInfo
}

// lookup is twisterd's traversal_algorithm: up to searchBranching queries
// in flight (a query past the soft timeout frees its slot but stays
// outstanding until answered or timed out), new nodes from every nodes
// reply, done when the k closest candidates have answered and nothing is
// outstanding. onReply runs in the lookup's goroutine for each answer.
// It returns the responders, closest first.
func (n *Node) lookup(ctx context.Context, target krpc.ID, k int, seeds []nodeInfo, q string, mkArgs func() *Args, onReply func(nodeInfo, *Msg)) []lookupResult {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	own := n.table.ownID()
	self := n.LocalAddr()
	var cands []*candidate
	byAddr := make(map[netip.AddrPort]bool)
	byID := make(map[krpc.ID]bool)
	add := func(ni nodeInfo) {
		if ni.ID == own || byAddr[ni.Addr] || !validContact(ni.Addr) {
			return
		}
		if ni.Addr == self || ni.Addr.Port() == self.Port() && ni.Addr.Addr().IsLoopback() && self.Addr().IsUnspecified() {
			return
		}
		var zero krpc.ID
		if ni.ID != zero && byID[ni.ID] {
			return
		}
		if !n.cfg.RelaxIPRules {
			// restrict_search_ips: one node per /28 in a lookup.
			for _, c := range cands {
				if sameCIDR(c.Addr.Addr(), ni.Addr.Addr(), 28) {
					return
				}
			}
		}
		byAddr[ni.Addr] = true
		if ni.ID != zero {
			byID[ni.ID] = true
		}
		cands = append(cands, &candidate{nodeInfo: ni})
	}
	for _, s := range seeds {
		add(s)
	}
	for _, s := range n.table.lookupSeeds(target, maxCandidates) {
		add(s)
	}
	resort := func() {
		slices.SortStableFunc(cands, func(a, b *candidate) int {
			return distance(a.ID, target).Cmp(distance(b.ID, target))
		})
		// Keep the closest maxCandidates, never dropping outstanding ones.
		for i := len(cands) - 1; i >= 0 && len(cands) > maxCandidates; i-- {
			if cands[i].state != candInFlight {
				cands = slices.Delete(cands, i, i+1)
			}
		}
	}
	resort()

	events := make(chan lookupEvent, 2*maxCandidates)
	emit := func(ev lookupEvent) {
		select {
		case events <- ev:
		case <-lctx.Done():
		}
	}
	launch := func(c *candidate) {
		c.state = candInFlight
		args := mkArgs()
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			soft := time.AfterFunc(n.softTimeout, func() { emit(lookupEvent{c: c, soft: true}) })
			m, err := n.query(lctx, c.Addr, q, args)
			soft.Stop()
			emit(lookupEvent{c: c, reply: m, err: err})
		}()
	}
	inFlight, outstanding, queries := 0, 0, 0
	for {
		remaining := k
		for _, c := range cands {
			if inFlight >= searchBranching || queries >= maxLookupQuery {
				break
			}
			if c.state == candResponded {
				remaining--
				if remaining == 0 {
					break
				}
				continue
			}
			if c.state != candFresh {
				continue
			}
			launch(c)
			inFlight++
			outstanding++
			queries++
		}
		if outstanding == 0 {
			break
		}
		var ev lookupEvent
		select {
		case <-lctx.Done():
			return results(cands)
		case ev = <-events:
		}
		c := ev.c
		if ev.soft {
			if c.state == candInFlight && !c.slow {
				c.slow = true
				inFlight--
			}
			continue
		}
		if !c.slow {
			inFlight--
		}
		outstanding--
		if ev.err != nil {
			c.state = candFailed
			// Only silence counts against a node, not our own cancellation.
			var zero krpc.ID
			if c.ID != zero && errors.Is(ev.err, ErrTimeout) {
				n.table.nodeFailed(c.ID, c.Addr)
			}
			continue
		}
		c.state = candResponded
		c.ID = krpc.ID(ev.reply.R.ID)
		if onReply != nil {
			onReply(c.nodeInfo, ev.reply)
		}
		for _, ni := range decodeNodes(ev.reply.R.Nodes) {
			if ni.ID == own {
				continue
			}
			n.table.heardAbout(ni.ID, ni.Addr)
			add(ni)
		}
		resort()
	}
	return results(cands)
}

func results(cands []*candidate) []lookupResult {
	var out []lookupResult
	for _, c := range cands {
		if c.state == candResponded {
			out = append(out, lookupResult{node: c.nodeInfo})
		}
	}
	return out
}

// sameCIDR reports whether a and b share their first bits bits.
func sameCIDR(a, b netip.Addr, bits int) bool {
	if a.Is4() != b.Is4() {
		return false
	}
	pa, err := a.Prefix(bits)
	if err != nil {
		return false
	}
	return pa.Contains(b)
}

// findNodes is a findNode lookup (refresh and bootstrap).
func (n *Node) findNodes(ctx context.Context, target krpc.ID, k int, seeds []nodeInfo) []lookupResult {
	return n.lookup(ctx, target, k, seeds, methodFindNode, func() *Args {
		return &Args{Target: encodeString(target[:])}
	}, nil)
}

// bootstrap looks up our own id from the configured nodes, the saved
// table and the current one (dht-swarm §2.11).
func (n *Node) bootstrap(ctx context.Context, saved []nodeInfo) error {
	seeds := append([]nodeInfo(nil), saved...)
	for _, hp := range n.cfg.Bootstrap {
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			n.log.Warn("dht: bad bootstrap node", "node", hp, "err", err)
			continue
		}
		pn, err := net.LookupPort("udp", port)
		if err != nil {
			n.log.Warn("dht: bad bootstrap port", "node", hp, "err", err)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ips, err := net.DefaultResolver.LookupNetIP(rctx, "ip4", host)
		cancel()
		if err != nil {
			n.log.Warn("dht: resolve bootstrap node", "node", hp, "err", err)
			continue
		}
		for _, ip := range ips {
			seeds = append(seeds, nodeInfo{Addr: netip.AddrPortFrom(ip.Unmap(), uint16(pn))})
		}
	}
	if len(seeds) == 0 {
		if live, _ := n.table.size(); live == 0 {
			return fmt.Errorf("no bootstrap nodes")
		}
	}
	res := n.findNodes(ctx, n.table.ownID(), bootstrapK, seeds)
	n.log.Debug("dht: bootstrap done", "responders", len(res))
	return nil
}

// encodeString bencodes a byte string (raw target values).
func encodeString(b []byte) []byte {
	return append(fmt.Appendf(nil, "%d:", len(b)), b...)
}
