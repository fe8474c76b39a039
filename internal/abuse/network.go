package abuse

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twgroupd/twgroupd/internal/swarm"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

// PortFloodConfig: one peer completes a swarm handshake and sends PORT
// messages naming a UDP port it listens on and never answers.
type PortFloodConfig struct {
	Target    netip.AddrPort // the victim's swarm (TCP)
	Source    netip.Addr     // the attacker's IP, e.g. 127.0.0.2
	User      string         // a user whose swarm the victim runs
	Messages  int            // PORT messages (default 300,000)
	Linger    time.Duration  // keep counting pings after the flood (default 2 s)
	Timeout   time.Duration  // the whole run (default 60 s)
	VictimPID int            // whose RSS is sampled; 0: this process
	// Probe, when set, runs after the flood while the connection is still
	// open (e.g. the victim's own dhtget); its error is reported.
	Probe func(ctx context.Context) error
}

// PortFloodResult: what the flood cost the victim.
type PortFloodResult struct {
	Sent                  int   // PORT messages written
	Pings                 int64 // datagrams the victim sent to the named port
	RSSStartKB, RSSPeakKB int64
	Elapsed               time.Duration
	ProbeErr              error
}

func (r PortFloodResult) String() string {
	return fmt.Sprintf("PORT flood: %d messages, %d pings sent by the victim, RSS %d -> peak %d KiB, %v, probe err %v",
		r.Sent, r.Pings, r.RSSStartKB, r.RSSPeakKB, r.Elapsed.Round(time.Millisecond), r.ProbeErr)
}

// PortFlood runs the PORT message flood.
func PortFlood(ctx context.Context, cfg PortFloodConfig) (PortFloodResult, error) {
	var res PortFloodResult
	if err := CheckLoopback(cfg.Target.Addr(), cfg.Source); err != nil {
		return res, err
	}
	msgs := clampCount(cfg.Messages, 300_000)
	ctx, cancel := withBound(ctx, bound(cfg.Timeout, 60*time.Second))
	defer cancel()
	start := time.Now()
	rss := StartRSS(cfg.VictimPID)

	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: cfg.Source.AsSlice()})
	if err != nil {
		rss.Stop()
		return res, fmt.Errorf("abuse: silent udp port: %w", err)
	}
	defer udp.Close()
	var pings atomic.Int64
	go countDatagrams(udp, &pings)
	port := uint16(udp.LocalAddr().(*net.UDPAddr).Port)

	c, err := handshake(ctx, cfg.Source, cfg.Target, cfg.User)
	if err != nil {
		rss.Stop()
		return res, err
	}
	defer c.Close()
	go io.Copy(io.Discard, c) // the victim's greeting and keep-alives

	frame := swarm.Message{ID: swarm.MsgPort, Port: port}.AppendTo(nil)
	chunk := make([]byte, 0, len(frame)*4096)
	for res.Sent < msgs && ctx.Err() == nil {
		chunk = chunk[:0]
		for i := 0; i < 4096 && res.Sent+i < msgs; i++ {
			chunk = append(chunk, frame...)
		}
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(chunk); err != nil {
			break // the victim may drop a flooding peer: that is a fine answer
		}
		res.Sent += len(chunk) / len(frame)
	}
	if cfg.Probe != nil {
		res.ProbeErr = cfg.Probe(ctx)
	}
	sleepCtx(ctx, bound(cfg.Linger, 2*time.Second))
	res.Pings = pings.Load()
	res.RSSStartKB, res.RSSPeakKB = rss.Stop()
	res.Elapsed = time.Since(start)
	return res, nil
}

// HalfOpenConfig: one IP opens many TCP connections to the swarm port and
// never sends a handshake; meanwhile peers from other IPs try to connect.
type HalfOpenConfig struct {
	Target    netip.AddrPort // the victim's swarm (TCP)
	Source    netip.Addr     // the attacker's IP
	Conns     int            // connections held (default 1,500)
	User      string         // a user whose swarm the victim runs (legit handshakes)
	Legit     []netip.Addr   // other hosts, one handshake each (default 127.0.0.3..12)
	Timeout   time.Duration  // the whole run (default 60 s)
	VictimPID int
}

// HalfOpenResult: how many attacker connections got in and how many
// legitimate handshakes were answered.
type HalfOpenResult struct {
	Opened                int // attacker connections established (the victim may close them)
	StillOpen             int // of those, still open after the legit handshakes
	LegitTried            int
	LegitAnswered         int
	RSSStartKB, RSSPeakKB int64
	Elapsed               time.Duration
}

func (r HalfOpenResult) String() string {
	return fmt.Sprintf("half-open flood: %d opened (%d still open), %d of %d legit handshakes answered, RSS %d -> peak %d KiB, %v",
		r.Opened, r.StillOpen, r.LegitAnswered, r.LegitTried, r.RSSStartKB, r.RSSPeakKB, r.Elapsed.Round(time.Millisecond))
}

// HalfOpenFlood runs the half-open connection flood.
func HalfOpenFlood(ctx context.Context, cfg HalfOpenConfig) (HalfOpenResult, error) {
	var res HalfOpenResult
	legit := cfg.Legit
	if len(legit) == 0 {
		for i := range 10 {
			legit = append(legit, netip.AddrFrom4([4]byte{127, 0, 0, byte(3 + i)}))
		}
	}
	if err := CheckLoopback(append([]netip.Addr{cfg.Target.Addr(), cfg.Source}, legit...)...); err != nil {
		return res, err
	}
	n := min(clampCount(cfg.Conns, 1500), 20_000)
	ctx, cancel := withBound(ctx, bound(cfg.Timeout, 60*time.Second))
	defer cancel()
	start := time.Now()
	rss := StartRSS(cfg.VictimPID)

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: cfg.Source.AsSlice()}, Timeout: 5 * time.Second}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		if ctx.Err() != nil {
			break
		}
		c, err := d.DialContext(ctx, "tcp", cfg.Target.String())
		if err != nil {
			continue
		}
		conns = append(conns, c)
	}
	res.Opened = len(conns)
	for _, ip := range legit {
		if ctx.Err() != nil {
			break
		}
		res.LegitTried++
		c, err := handshake(ctx, ip, cfg.Target, cfg.User)
		if err == nil {
			res.LegitAnswered++
			c.Close()
		}
	}
	// The victim accepts in order, so once a legit peer was served it has
	// taken (and kept or closed) every attacker connection: closed ones
	// read EOF at once, kept ones time out.
	var open atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			var b [1]byte
			_, err := c.Read(b[:])
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				open.Add(1)
			}
			c.SetReadDeadline(time.Time{})
		}()
	}
	wg.Wait()
	res.StillOpen = int(open.Load())
	res.RSSStartKB, res.RSSPeakKB = rss.Stop()
	res.Elapsed = time.Since(start)
	return res, nil
}

// DHTFloodConfig: one source sends DHT pings (or uTP SYNs) to the UDP
// port; meanwhile another host pings too, and afterwards the flooding IP
// itself does.
type DHTFloodConfig struct {
	Target    netip.AddrPort // the victim's DHT (UDP)
	Source    netip.Addr     // the flooding IP
	Other     netip.Addr     // another host pinging during the flood (default 127.0.0.3)
	Packets   int            // flood datagrams (default 100,000)
	Rate      int            // datagrams per second (default 20,000); the kernel drops what the victim cannot read
	UTP       bool           // send uTP SYNs instead of DHT pings
	Timeout   time.Duration  // the whole run (default 60 s)
	VictimPID int
}

// DHTFloodResult: what the victim sent back and whom it still served.
type DHTFloodResult struct {
	Sent, Replies         int
	ReplyBytes            int64
	FloodTime             time.Duration
	OtherSent             int
	OtherAnswered         int
	SourceServedAfter     time.Duration // how soon after the flood the source's own ping was answered; -1: not within 10 s
	RSSStartKB, RSSPeakKB int64
}

// ReplyRate is the bytes per second the victim sent the flooder.
func (r DHTFloodResult) ReplyRate() float64 {
	if r.FloodTime <= 0 {
		return 0
	}
	return float64(r.ReplyBytes) / r.FloodTime.Seconds()
}

func (r DHTFloodResult) String() string {
	after := "not within 10 s"
	if r.SourceServedAfter >= 0 {
		after = "after " + r.SourceServedAfter.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("DHT flood: %d sent in %v, %d replies (%d B, %.0f B/s), other host %d/%d answered, source served again %s, RSS %d -> peak %d KiB",
		r.Sent, r.FloodTime.Round(time.Millisecond), r.Replies, r.ReplyBytes, r.ReplyRate(), r.OtherAnswered, r.OtherSent,
		after, r.RSSStartKB, r.RSSPeakKB)
}

// DHTFlood runs the UDP flood.
func DHTFlood(ctx context.Context, cfg DHTFloodConfig) (res DHTFloodResult, err error) {
	if !cfg.Other.IsValid() {
		cfg.Other = netip.MustParseAddr("127.0.0.3")
	}
	if err := CheckLoopback(cfg.Target.Addr(), cfg.Source, cfg.Other); err != nil {
		return res, err
	}
	packets := clampCount(cfg.Packets, 100_000)
	rate := cfg.Rate
	if rate <= 0 {
		rate = 20_000
	}
	ctx, cancel := withBound(ctx, bound(cfg.Timeout, 60*time.Second))
	defer cancel()
	rss := StartRSS(cfg.VictimPID)
	defer func() { res.RSSStartKB, res.RSSPeakKB = rss.Stop() }()

	src, err := net.ListenUDP("udp4", &net.UDPAddr{IP: cfg.Source.AsSlice()})
	if err != nil {
		return res, fmt.Errorf("abuse: flood socket: %w", err)
	}
	defer src.Close()
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: cfg.Other.AsSlice()})
	if err != nil {
		return res, fmt.Errorf("abuse: other socket: %w", err)
	}
	defer other.Close()

	// Count answers only: the victim may also ping us (table upkeep).
	var replies, replyBytes atomic.Int64
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := src.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if isDHTReply(buf[:n]) || (cfg.UTP && swarm.IsUTP(buf[:n])) {
				replies.Add(1)
				replyBytes.Add(int64(n))
			}
		}
	}()
	var otherAnswered atomic.Int64
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := other.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if isDHTReply(buf[:n]) {
				otherAnswered.Add(1)
			}
		}
	}()

	pkt := pingPacket("fl")
	if cfg.UTP {
		pkt = utpSyn()
	}
	start := time.Now()
	batch := max(1, rate/1000) // datagrams per millisecond
	otherPing := pingPacket("ot")
	every := max(1, packets/10)
	for res.Sent < packets && ctx.Err() == nil {
		for i := 0; i < batch && res.Sent < packets; i++ {
			src.WriteToUDPAddrPort(pkt, cfg.Target)
			res.Sent++
			if res.Sent%every == 0 {
				other.WriteToUDPAddrPort(otherPing, cfg.Target)
				res.OtherSent++
			}
		}
		// Pace by the clock, not by sleeps alone (sleeps overshoot).
		if ahead := time.Duration(res.Sent)*time.Second/time.Duration(rate) - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
	}
	res.FloodTime = time.Since(start)
	sleepCtx(ctx, 300*time.Millisecond) // late replies
	res.Replies, res.ReplyBytes = int(replies.Load()), replyBytes.Load()
	res.OtherAnswered = int(otherAnswered.Load())

	// The flooding IP is served again soon (no 5-minute ban).
	res.SourceServedAfter = -1
	probe := pingPacket("pr")
	before := replies.Load()
	for t0 := time.Now(); time.Since(t0) < 10*time.Second && ctx.Err() == nil; {
		src.WriteToUDPAddrPort(probe, cfg.Target)
		sleepCtx(ctx, 100*time.Millisecond)
		if replies.Load() > before {
			res.SourceServedAfter = time.Since(t0)
			break
		}
	}
	return res, nil
}

// handshake connects from src and completes a swarm handshake for user.
func handshake(ctx context.Context, src netip.Addr, to netip.AddrPort, user string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", to.String())
	if err != nil {
		return nil, fmt.Errorf("abuse: dial %s: %w", to, err)
	}
	var id [20]byte
	copy(id[:], "-AB0001-")
	rand.Read(id[8:])
	c.SetDeadline(time.Now().Add(5 * time.Second))
	reserved := [8]byte{0, 0, 0, 0, 0, 0x10, 0, 0x15} // twisterd's bits: extensions, DHT, FAST
	hs := swarm.Handshake{Reserved: reserved, InfoHash: twproto.SwarmInfoHash(user), PeerID: id}
	if _, err := c.Write(hs.AppendTo(nil)); err != nil {
		c.Close()
		return nil, fmt.Errorf("abuse: handshake: %w", err)
	}
	b := make([]byte, swarm.HandshakeLen)
	if _, err := io.ReadFull(c, b); err != nil {
		c.Close()
		return nil, fmt.Errorf("abuse: handshake not answered: %w", err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func countDatagrams(c *net.UDPConn, n *atomic.Int64) {
	buf := make([]byte, 65536)
	for {
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			return
		}
		n.Add(1)
	}
}

// isDHTReply: a KRPC answer (twister's type key "z" is "r").
func isDHTReply(b []byte) bool {
	return bytes.Contains(b, []byte("1:z1:r"))
}

// pingPacket is a twister DHT ping query (keys z/x, twister's dialect).
func pingPacket(tid string) []byte {
	var id [20]byte
	rand.Read(id[:])
	b := []byte("d1:q4:ping1:t2:" + tid + "1:v4:AB\x00\x011:xd2:id20:")
	b = append(b, id[:]...)
	return append(b, "e1:z1:qe"...)
}

// utpSyn is a 20-byte uTP ST_SYN (type 4, version 1).
func utpSyn() []byte {
	b := make([]byte, 20)
	b[0] = 0x41
	rand.Read(b[2:4])
	binary.BigEndian.PutUint16(b[16:18], 1)
	return b
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// NetworkTarget is a victim node for RunNetwork.
type NetworkTarget struct {
	Swarm     netip.AddrPort // TCP swarm port
	DHT       netip.AddrPort // UDP DHT port (twgroupd: the same number)
	User      string         // a user whose swarm the victim runs
	VictimPID int            // 0: this process
	// DHTGet, when set, is the victim's own dhtget, run during the PORT
	// flood (e.g. over its RPC).
	DHTGet func(ctx context.Context) error
}

// NetworkReport holds the figures of the network attacks of issue #11.
type NetworkReport struct {
	Port     PortFloodResult
	HalfOpen HalfOpenResult
	DHT, UTP DHTFloodResult
}

func (r NetworkReport) String() string {
	return r.Port.String() + "\n" + r.HalfOpen.String() + "\n" + r.DHT.String() + "\nuTP " + r.UTP.String()
}

// RunNetwork runs the network attacks at the full size, one after
// the other, from 127.0.0.2 (other hosts 127.0.0.3..12): 300,000 PORT
// messages, 1,500 half-open connections, 100,000 DHT pings and 100,000
// uTP SYNs at 20,000/s. It takes about 20 s.
func RunNetwork(ctx context.Context, v NetworkTarget) (NetworkReport, error) {
	var r NetworkReport
	src := netip.MustParseAddr("127.0.0.2")
	var err error
	if r.Port, err = PortFlood(ctx, PortFloodConfig{Target: v.Swarm, Source: src, User: v.User, VictimPID: v.VictimPID, Probe: v.DHTGet}); err != nil {
		return r, err
	}
	if r.HalfOpen, err = HalfOpenFlood(ctx, HalfOpenConfig{Target: v.Swarm, Source: src, User: v.User, VictimPID: v.VictimPID}); err != nil {
		return r, err
	}
	if r.DHT, err = DHTFlood(ctx, DHTFloodConfig{Target: v.DHT, Source: src, VictimPID: v.VictimPID}); err != nil {
		return r, err
	}
	r.UTP, err = DHTFlood(ctx, DHTFloodConfig{Target: v.DHT, Source: src, UTP: true, VictimPID: v.VictimPID})
	return r, err
}

// XFloodConfig: one peer completes a swarm handshake, offers twg_swarms
// (the twgroupd cross-swarm extension, docs/swarm.md) and sends it full
// messages: 256 HAVEs with ever higher indices, 256 requests, 256 refusals.
type XFloodConfig struct {
	Target    netip.AddrPort // the victim's swarm (TCP)
	Source    netip.Addr     // the attacker's IP
	User      string         // a user whose swarm the victim runs
	Messages  int            // twg_swarms messages (default 30,000: 10,000 of each kind)
	Timeout   time.Duration  // the whole run (default 60 s)
	VictimPID int
}

// XFloodResult: what the flood cost the victim, and what it answered.
type XFloodResult struct {
	Sent                  int   // messages written before the victim closed, or all
	Closed                bool  // the victim ended the connection
	Answered              int64 // bytes the victim sent back
	RSSStartKB, RSSPeakKB int64
	Elapsed               time.Duration
}

func (r XFloodResult) String() string {
	return fmt.Sprintf("twg_swarms flood: %d messages, victim closed %v, %d bytes answered, RSS %d -> peak %d KiB, %v",
		r.Sent, r.Closed, r.Answered, r.RSSStartKB, r.RSSPeakKB, r.Elapsed.Round(time.Millisecond))
}

// XFlood runs the twg_swarms flood.
func XFlood(ctx context.Context, cfg XFloodConfig) (XFloodResult, error) {
	var res XFloodResult
	if err := CheckLoopback(cfg.Target.Addr(), cfg.Source); err != nil {
		return res, err
	}
	msgs := clampCount(cfg.Messages, 30_000)
	ctx, cancel := withBound(ctx, bound(cfg.Timeout, 60*time.Second))
	defer cancel()
	start := time.Now()
	rss := StartRSS(cfg.VictimPID)
	c, err := handshake(ctx, cfg.Source, cfg.Target, cfg.User)
	if err != nil {
		rss.Stop()
		return res, err
	}
	defer c.Close()
	eh, _ := swarm.ExtHandshake{M: map[string]int{"twg_swarms": 9}}.Bytes()
	if _, err := c.Write(swarm.Message{ID: swarm.MsgExtended, Data: eh}.AppendTo(nil)); err != nil {
		rss.Stop()
		return res, fmt.Errorf("abuse: extended handshake: %w", err)
	}
	// The victim's id for twg_swarms, from its extended handshake.
	id, err := victimExtID(c, "twg_swarms")
	if err != nil {
		rss.Stop()
		return res, err
	}
	var answered atomic.Int64
	closed := make(chan struct{})
	go func() {
		n, _ := io.Copy(io.Discard, c)
		answered.Store(n)
		close(closed)
	}()
	ih := twproto.SwarmInfoHash(cfg.User)
	refs := make([]swarm.XRef, 256)
	top := int64(0)
	for res.Sent < msgs && ctx.Err() == nil {
		var m swarm.XMessage
		switch res.Sent % 3 {
		case 0:
			for i := range refs {
				top = (top + 1) % (1 << 21)
				refs[i] = swarm.XRef{IH: ih, K: top, Low: top + 1}
			}
			m.Have = refs
		case 1:
			for i := range refs {
				refs[i] = swarm.XRef{IH: ih, K: int64(i)}
			}
			m.Req = refs
		default:
			m.Reject = refs
		}
		body, err := m.Bytes()
		if err != nil {
			return res, err
		}
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(swarm.Message{ID: swarm.MsgExtended, ExtID: id, Data: body}.AppendTo(nil)); err != nil {
			break // the victim may drop a flooding peer
		}
		res.Sent++
	}
	select {
	case <-closed:
		res.Closed = true
	case <-time.After(500 * time.Millisecond):
	}
	c.Close()
	<-closed
	res.Answered = answered.Load()
	res.RSSStartKB, res.RSSPeakKB = rss.Stop()
	res.Elapsed = time.Since(start)
	return res, nil
}

// victimExtID reads the victim's greeting up to its extended handshake and
// returns its id for the extension name.
func victimExtID(c net.Conn, name string) (byte, error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var n [4]byte
	for range 64 {
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return 0, fmt.Errorf("abuse: reading the victim's greeting: %w", err)
		}
		size := binary.BigEndian.Uint32(n[:])
		if size > swarm.MaxMessageLen {
			return 0, fmt.Errorf("abuse: victim sent a %d-byte frame", size)
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(c, body); err != nil {
			return 0, fmt.Errorf("abuse: reading the victim's greeting: %w", err)
		}
		m, err := swarm.ParseMessage(body)
		if err != nil || m.KeepAlive || m.ID != swarm.MsgExtended || m.ExtID != 0 {
			continue
		}
		eh, err := swarm.ParseExtHandshake(m.Data)
		if err != nil {
			return 0, err
		}
		if id := eh.M[name]; id > 0 && id < 256 {
			return byte(id), nil
		}
		return 0, fmt.Errorf("abuse: the victim does not offer %s", name)
	}
	return 0, errors.New("abuse: no extended handshake from the victim")
}
