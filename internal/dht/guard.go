package dht

import (
	"bytes"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds on work done on behalf of remotes (docs/dht.md "Limits").
const (
	// contactInterval: at most one ping per contact address per minute,
	// however many PORT messages name it.
	contactInterval = time.Minute
	contactQueueLen = 64 // contacts waiting for a pinger; beyond: dropped
	contactPingers  = 2  // pings in flight for contacts
	maxContactsSeen = 4096
	// maxRemoteTxns is the share of the 65,536 transaction ids that
	// queries started for remotes (contact pings) may hold; the rest stay
	// for our own lookups.
	maxRemoteTxns = 1 << 14
	// sourceReplyShare: one source may take this fraction of the reply
	// budget, so a flooder cannot silence our answers to everyone else.
	sourceReplyShare  = 4
	maxSourcesTracked = 4096
	replyQueue        = 256 // answers to our queries waiting to be matched
)

// contactQueue rate-limits and queues the pings AddContact asks for.
type contactQueue struct {
	mu        sync.Mutex
	byAddr    bool // key by ip:port (RelaxIPRules), else by IP
	last      map[netip.AddrPort]time.Time
	lastSweep time.Time
	q         chan netip.AddrPort

	pinged, dropped atomic.Int64
}

func newContactQueue(byAddr bool) *contactQueue {
	return &contactQueue{byAddr: byAddr, last: make(map[netip.AddrPort]time.Time), q: make(chan netip.AddrPort, contactQueueLen)}
}

// offer queues addr for a ping unless it (or its IP, under strict rules)
// was offered within contactInterval or the queue is full.
func (c *contactQueue) offer(addr netip.AddrPort, now time.Time) bool {
	key := addr
	if !c.byAddr {
		key = netip.AddrPortFrom(addr.Addr(), 0)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.last[key]; ok && now.Sub(t) < contactInterval {
		c.dropped.Add(1)
		return false
	}
	if len(c.last) >= maxContactsSeen {
		if now.Sub(c.lastSweep) < time.Second {
			c.dropped.Add(1)
			return false
		}
		c.lastSweep = now
		for k, t := range c.last {
			if now.Sub(t) >= contactInterval {
				delete(c.last, k)
			}
		}
		if len(c.last) >= maxContactsSeen {
			c.dropped.Add(1)
			return false
		}
	}
	select {
	case c.q <- addr:
		c.last[key] = now
		return true
	default:
		c.dropped.Add(1)
		return false
	}
}

// contactPinger drains the contact queue, one ping at a time.
func (n *Node) contactPinger() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case addr := <-n.contacts.q:
			n.contacts.pinged.Add(1)
			n.queryAs(n.ctx, addr, methodPing, &Args{}, true)
		}
	}
}

// allowance is one source's budget: packets it may send us and reply
// bytes we may send it.
type allowance struct {
	pkts, bytes float64
	last        time.Time
}

// sourceGuard holds a token bucket per source IP, replacing twisterd's
// 5-minute ban of a whole IP (dht_tracker::incoming_packet): a flooder
// loses only its excess, and a spoofed burst cannot cut us off from the
// address it names. Sources beyond maxSourcesTracked share one bucket. A
// source is an IP, or an ip:port under RelaxIPRules (nodes sharing an IP).
type sourceGuard struct {
	mu                    sync.Mutex
	byAddr                bool
	pktRate, pktBurst     float64 // packets/s; <= 0: unlimited
	replyRate, replyBurst float64 // bytes/s; <= 0: unlimited
	m                     map[netip.AddrPort]*allowance
	overflow              allowance
	lastSweep             time.Time

	droppedPkts, droppedReplies atomic.Int64
}

// newSourceGuard: floodLimit packets per floodWindow (with that as the
// burst), and per source 1/sourceReplyShare of the reply rate with half
// the global burst (a lookup's answers come in bursts).
func newSourceGuard(floodLimit, replyRate int, byAddr bool) *sourceGuard {
	g := &sourceGuard{byAddr: byAddr, m: make(map[netip.AddrPort]*allowance)}
	if floodLimit > 0 {
		g.pktBurst = float64(floodLimit)
		g.pktRate = g.pktBurst / floodWindow.Seconds()
	}
	if replyRate > 0 {
		g.replyRate = float64(replyRate) / sourceReplyShare
		g.replyBurst = float64(replyRate) * replyBurst / 2
	}
	return g
}

// get returns src's bucket, refilled to now; g.mu is held.
func (g *sourceGuard) get(src netip.AddrPort, now time.Time) *allowance {
	if !g.byAddr {
		src = netip.AddrPortFrom(src.Addr(), 0)
	}
	b := g.m[src]
	if b == nil {
		if len(g.m) >= maxSourcesTracked && now.Sub(g.lastSweep) >= time.Second {
			g.lastSweep = now
			for k, v := range g.m {
				g.refill(v, now)
				if v.pkts >= g.pktBurst && v.bytes >= g.replyBurst {
					delete(g.m, k) // full again: idle long enough to forget
				}
			}
		}
		if len(g.m) >= maxSourcesTracked {
			b = &g.overflow
			if b.last.IsZero() {
				b.pkts, b.bytes, b.last = g.pktBurst, g.replyBurst, now
			}
		} else {
			b = &allowance{pkts: g.pktBurst, bytes: g.replyBurst, last: now}
			g.m[src] = b
		}
	}
	g.refill(b, now)
	return b
}

func (g *sourceGuard) refill(b *allowance, now time.Time) {
	el := now.Sub(b.last).Seconds()
	if el <= 0 {
		return
	}
	b.last = now
	b.pkts = min(g.pktBurst, b.pkts+el*g.pktRate)
	b.bytes = min(g.replyBurst, b.bytes+el*g.replyRate)
}

// allowPacket spends one packet of src's allowance.
func (g *sourceGuard) allowPacket(src netip.AddrPort, now time.Time) bool {
	if g.pktRate <= 0 {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.get(src, now)
	if b.pkts < 1 {
		g.droppedPkts.Add(1)
		return false
	}
	b.pkts--
	return true
}

// allowReply spends n reply bytes of to's share.
func (g *sourceGuard) allowReply(to netip.AddrPort, n int, now time.Time) bool {
	if g.replyRate <= 0 {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.get(to, now)
	if b.bytes < float64(n) {
		g.droppedReplies.Add(1)
		return false
	}
	b.bytes -= float64(n)
	return true
}

// looksLikeReply is a cheap test for a KRPC response or error (twister's
// message type key "z" is "r" or "e"); the full decode decides later.
func looksLikeReply(pkt []byte) bool {
	return bytes.Contains(pkt, []byte("1:z1:r")) || bytes.Contains(pkt, []byte("1:z1:e"))
}

// replyLoop matches answers to our queries. They skip the per-source
// budget and the query workers' queue, so a flood never makes us miss
// the answers we asked for.
func (n *Node) replyLoop() {
	defer n.wg.Done()
	for d := range n.replies {
		m, err := DecodeMsg(d.pkt)
		if err != nil || m.Z == "" || (m.Z[0] != 'r' && m.Z[0] != 'e') {
			continue
		}
		n.txns.resolve(m.T, m, d.src)
	}
}

// sendReply sends b to addr within the per-source share and the global
// reply budget; false when it was dropped.
func (n *Node) sendReply(b []byte, to netip.AddrPort) bool {
	now := n.now()
	if !n.guard.allowReply(to, len(b), now) || !n.replyLimit.allow(len(b), now) {
		return false
	}
	n.conn.WriteToUDPAddrPort(b, to)
	return true
}
