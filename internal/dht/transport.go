package dht

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
)

// Transport constants (dht-swarm §1, §2.10).
const (
	readBufferSize     = 64 << 10 // twisterd's big multi replies can exceed 10 KB
	socketBuffer       = 1 << 20  // SO_RCVBUF asked for
	maxReplySize       = 9000     // keep our replies under twisterd's 10000-byte buffer
	defaultSoftTimeout = 1 * time.Second
	defaultHardTimeout = 8 * time.Second
	defaultReplyRate   = 16000           // bytes/s
	replyBurst         = 3               // seconds of rate allowed as a burst
	floodWindow        = 5 * time.Second // FloodLimit packets per window per source
	defaultFloodLimit  = 1000
	inboundQueue       = 256             // datagrams waiting for a worker
	handleTimeout      = 5 * time.Second // per datagram (registry lookups)
)

var (
	// ErrTimeout is a query that got no answer within the hard timeout.
	ErrTimeout = errors.New("dht: query timed out")
	// ErrBadReply is an answer without a valid r.id, or one carrying r.ip
	// (twisterd's "your id does not match your address").
	ErrBadReply = errors.New("dht: invalid reply")
	// ErrClosed is returned once the node is closed.
	ErrClosed = errors.New("dht: node closed")
)

type callResult struct {
	msg  *Msg
	from netip.AddrPort
}

type call struct {
	ip     netip.Addr
	remote bool // started for a remote (a contact ping)
	ch     chan callResult
}

// transactions matches replies to queries on (2-byte t, source IP); the
// port is not compared, as in twisterd's rpc_manager::incoming.
type transactions struct {
	mu     sync.Mutex
	calls  map[uint16]*call
	perIP  map[netip.Addr]int // outstanding queries per destination IP
	remote int                // outstanding queries with call.remote
}

// register takes a free transaction id. Queries for remotes may hold at
// most maxRemoteTxns ids, so our own lookups always find free ones.
func (tx *transactions) register(ip netip.Addr, remote bool) (uint16, *call, error) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if remote && tx.remote >= maxRemoteTxns {
		return 0, nil, errors.New("dht: too many outstanding queries for remotes")
	}
	c := &call{ip: ip, remote: remote, ch: make(chan callResult, 1)}
	for range 64 {
		var b [2]byte
		rand.Read(b[:])
		tid := binary.BigEndian.Uint16(b[:])
		if _, busy := tx.calls[tid]; !busy {
			tx.calls[tid] = c
			tx.perIP[ip]++
			if remote {
				tx.remote++
			}
			return tid, c, nil
		}
	}
	return 0, nil, errors.New("dht: too many outstanding queries")
}

// drop removes tid's call; tx.mu is held.
func (tx *transactions) drop(tid uint16, c *call) {
	delete(tx.calls, tid)
	if tx.perIP[c.ip]--; tx.perIP[c.ip] <= 0 {
		delete(tx.perIP, c.ip)
	}
	if c.remote {
		tx.remote--
	}
}

func (tx *transactions) forget(tid uint16, c *call) {
	tx.mu.Lock()
	if tx.calls[tid] == c {
		tx.drop(tid, c)
	}
	tx.mu.Unlock()
}

// expecting reports whether a query of ours to ip is outstanding.
func (tx *transactions) expecting(ip netip.Addr) bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.perIP[ip] > 0
}

// resolve hands a reply to its waiting query; false if none matches.
func (tx *transactions) resolve(t []byte, m *Msg, from netip.AddrPort) bool {
	if len(t) != 2 {
		return false
	}
	tid := binary.BigEndian.Uint16(t)
	tx.mu.Lock()
	c := tx.calls[tid]
	if c == nil || c.ip != from.Addr() {
		tx.mu.Unlock()
		return false
	}
	tx.drop(tid, c)
	tx.mu.Unlock()
	c.ch <- callResult{msg: m, from: from}
	return true
}

// rateLimiter is a byte bucket for our replies: 16000 B/s with a 3 s burst;
// excess replies are dropped silently as twisterd's rate_limited_udp_socket
// does. rate <= 0 disables it.
type rateLimiter struct {
	mu      sync.Mutex
	rate    float64
	tokens  float64
	last    time.Time
	dropped atomic.Int64
}

func newRateLimiter(rate int, now time.Time) *rateLimiter {
	return &rateLimiter{rate: float64(rate), tokens: float64(rate * replyBurst), last: now}
}

func (r *rateLimiter) allow(n int, now time.Time) bool {
	if r.rate <= 0 {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tokens += now.Sub(r.last).Seconds() * r.rate
	r.last = now
	if max := r.rate * replyBurst; r.tokens > max {
		r.tokens = max
	}
	if r.tokens < float64(n) {
		r.dropped.Add(1)
		return false
	}
	r.tokens -= float64(n)
	return true
}

// send writes one message to addr.
func (n *Node) send(m *Msg, addr netip.AddrPort) error {
	m.V = clientVersion
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	_, err = n.conn.WriteToUDPAddrPort(b, addr)
	if err != nil {
		return fmt.Errorf("dht: send to %s: %w", addr, err)
	}
	return nil
}

// query sends q with args to addr and waits for the matching reply, the
// hard timeout or ctx. A valid reply puts the responder in the routing
// table (without id verification, as twisterd does). An error reply
// resolves the query with a *KRPCError (twisterd lets it time out; failing
// fast is kinder to our callers).
func (n *Node) query(ctx context.Context, addr netip.AddrPort, q string, args *Args) (*Msg, error) {
	return n.queryAs(ctx, addr, q, args, false)
}

// queryAs is query; remote marks a query started for a remote (a contact
// ping), which draws on the limited share of transaction ids.
func (n *Node) queryAs(ctx context.Context, addr netip.AddrPort, q string, args *Args, remote bool) (*Msg, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	own := n.table.ownID()
	args.ID = own[:]
	tid, c, err := n.txns.register(addr.Addr(), remote)
	if err != nil {
		return nil, err
	}
	defer n.txns.forget(tid, c)
	var t [2]byte
	binary.BigEndian.PutUint16(t[:], tid)
	if err := n.send(&Msg{Z: typeQuery, Q: q, T: t[:], X: args}, addr); err != nil {
		return nil, err
	}
	timer := time.NewTimer(n.hardTimeout)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-n.ctx.Done():
		return nil, ErrClosed
	case <-timer.C:
		return nil, ErrTimeout
	case res := <-c.ch:
		m := res.msg
		if m.Z != "" && m.Z[0] == 'e' {
			if m.E != nil {
				return nil, m.E
			}
			return nil, &KRPCError{Code: errorCode, Msg: "error reply"}
		}
		if m.R == nil || len(m.R.ID) != 20 {
			return nil, ErrBadReply
		}
		if l := len(m.R.IP); l == 4 || l == 16 {
			if ip, ok := netip.AddrFromSlice(m.R.IP); ok {
				n.voteExternalIP(ip.Unmap(), res.from.Addr())
			}
			return nil, fmt.Errorf("%w: %s says our id does not match our address", ErrBadReply, addr)
		}
		n.table.nodeSeen(krpc.ID(m.R.ID), res.from)
		return m, nil
	}
}

// readLoop feeds DHT datagrams to the workers. Datagrams that are not
// "d...e" of more than 20 bytes belong to uTP: they go to Config.NonDHT.
// Answers from an address we are waiting on go to replyLoop without
// touching the source's budget; everything else (uTP included) spends
// it first.
func (n *Node) readLoop() {
	defer n.wg.Done()
	defer close(n.replies)
	defer close(n.inbound)
	buf := make([]byte, readBufferSize)
	for {
		sz, src, err := n.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || n.ctx.Err() != nil {
				return
			}
			continue
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		isDHT := sz > 20 && buf[0] == 'd' && buf[sz-1] == 'e'
		if isDHT && looksLikeReply(buf[:sz]) && n.txns.expecting(src.Addr()) {
			select {
			case n.replies <- datagram{pkt: bytes.Clone(buf[:sz]), src: src}:
			default:
			}
			continue
		}
		if !n.guard.allowPacket(src, n.now()) {
			continue
		}
		if !isDHT {
			if n.cfg.NonDHT != nil {
				n.cfg.NonDHT(buf[:sz], src)
			}
			continue
		}
		select {
		case n.inbound <- datagram{pkt: bytes.Clone(buf[:sz]), src: src}:
		default: // overloaded: drop, as an over-quota twisterd would
		}
	}
}

type datagram struct {
	pkt []byte
	src netip.AddrPort
}

func (n *Node) worker() {
	defer n.wg.Done()
	for d := range n.inbound {
		ctx, cancel := context.WithTimeout(n.ctx, handleTimeout)
		reply := n.handleDatagram(ctx, d.pkt, d.src)
		cancel()
		if reply == nil {
			continue
		}
		n.sendReply(reply, d.src)
	}
}

// handleDatagram is the packet handler: it returns the encoded reply to a
// query, or nil (responses, undecodable or ignored datagrams).
func (n *Node) handleDatagram(ctx context.Context, pkt []byte, src netip.AddrPort) []byte {
	m, err := DecodeMsg(pkt)
	if err != nil || m.Z == "" {
		return nil // twisterd silently drops these
	}
	switch m.Z[0] {
	case 'r', 'e':
		// Unmatched replies are dropped; twisterd answers "invalid
		// transaction id", which only feeds reflection.
		n.txns.resolve(m.T, m, src)
		return nil
	case 'q':
		reply := n.handleQuery(ctx, m, src)
		reply.V = clientVersion
		b, err := reply.Marshal()
		if err != nil {
			n.log.Debug("dht: encode reply", "err", err)
			return nil
		}
		return b
	}
	return nil
}
