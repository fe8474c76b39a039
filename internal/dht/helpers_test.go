package dht

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// testRegistry is a KeySource and Signer over generated keys.
type testRegistry struct {
	mu   sync.Mutex
	keys map[string]*twproto.PrivateKey
	pubs map[string][]byte
	best int64
}

func newTestRegistry(t testing.TB, users ...string) *testRegistry {
	r := &testRegistry{keys: map[string]*twproto.PrivateKey{}, pubs: map[string][]byte{}}
	for _, u := range users {
		k, err := twproto.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		r.keys[u] = k
		r.pubs[u] = k.PubKey()
	}
	return r
}

func (r *testRegistry) UserKey(_ context.Context, user string, _ int64) (twproto.UserKey, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pk, ok := r.pubs[user]
	if !ok {
		return twproto.UserKey{}, twproto.ErrUnknownUser
	}
	return twproto.UserKey{PubKey: pk, RegHeight: 1}, nil
}

func (r *testRegistry) BestHeight(context.Context) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.best, nil
}

func (r *testRegistry) SignAs(user string, msg []byte) ([]byte, error) {
	r.mu.Lock()
	k, ok := r.keys[user]
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no key for %s", user)
	}
	return twproto.Sign(k, msg)
}

// signedP builds and signs p for target as user.
func (r *testRegistry) signedP(t testing.TB, user string, target twproto.DHTTarget, v string, seq, height, tm int64) (p, sig []byte) {
	t.Helper()
	p = twproto.BuildDHTP(target, encodeString([]byte(v)), seq, height, tm)
	sig, err := r.SignAs(user, p)
	if err != nil {
		t.Fatal(err)
	}
	return p, sig
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testConfig is a loopback node: relaxed IP rules, fast timers, no rate
// limits, its own datadir.
func testConfig(t testing.TB, reg *testRegistry, bootstrap ...netip.AddrPort) Config {
	cfg := Config{
		Listen:         "127.0.0.1:0",
		DataDir:        t.TempDir(),
		Keys:           reg,
		Signer:         reg,
		Logger:         quietLogger(),
		RelaxIPRules:   true,
		TickInterval:   50 * time.Millisecond,
		FlushInterval:  time.Hour,
		SoftTimeout:    500 * time.Millisecond,
		QueryTimeout:   4 * time.Second,
		ReplyRateLimit: -1,
		FloodLimit:     -1,
	}
	for _, b := range bootstrap {
		cfg.Bootstrap = append(cfg.Bootstrap, b.String())
	}
	return cfg
}

func openNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawClient is a bare UDP socket speaking KRPC, to probe one node. It
// answers queries with a plain {id} (nodes learn it from our queries and
// ping it), so it never stalls their lookups.
type rawClient struct {
	t       testing.TB
	conn    *net.UDPConn
	id      [20]byte
	tid     *atomic.Uint32
	replies chan *Msg
}

func newRawClient(t testing.TB) *rawClient {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c := &rawClient{t: t, conn: conn, id: GenerateID(netip.Addr{}), tid: new(atomic.Uint32), replies: make(chan *Msg, 16)}
	done := make(chan struct{})
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	go func() {
		defer close(done)
		buf := make([]byte, readBufferSize)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			m, err := DecodeMsg(buf[:n])
			if err != nil {
				continue
			}
			if m.Z == "q" {
				if b, err := (&Msg{Z: "r", T: m.T, V: clientVersion, R: &Return{ID: c.id[:]}}).Marshal(); err == nil {
					conn.WriteToUDPAddrPort(b, from)
				}
				continue
			}
			select {
			case c.replies <- m:
			default:
			}
		}
	}()
	return c
}

// on returns the client reporting failures to t (a subtest).
func (c *rawClient) on(t testing.TB) *rawClient {
	cc := *c
	cc.t = t
	return &cc
}

// ask sends a query and returns the decoded answer.
func (c *rawClient) ask(to netip.AddrPort, q string, x *Args) *Msg {
	c.t.Helper()
	var tid [2]byte
	binary.BigEndian.PutUint16(tid[:], uint16(c.tid.Add(1)))
	if x.ID == nil {
		x.ID = c.id[:]
	}
	b, err := (&Msg{Z: "q", Q: q, T: tid[:], X: x, V: clientVersion}).Marshal()
	if err != nil {
		c.t.Fatal(err)
	}
	return c.askRaw(to, b, tid[:])
}

func (c *rawClient) askRaw(to netip.AddrPort, pkt, tid []byte) *Msg {
	c.t.Helper()
	if _, err := c.conn.WriteToUDPAddrPort(pkt, to); err != nil {
		c.t.Fatal(err)
	}
	timeout := time.After(3 * time.Second)
	for {
		select {
		case m := <-c.replies:
			if string(m.T) == string(tid) {
				return m
			}
		case <-timeout:
			c.t.Fatalf("no answer to %q", pkt)
		}
	}
}

// token fetches a write token for target from node.
func (c *rawClient) token(to netip.AddrPort, target twproto.DHTTarget) []byte {
	c.t.Helper()
	m := c.ask(to, methodGetData, &Args{Target: target.Bencode(), JustToken: i64(1)})
	if m.R == nil || len(m.R.Token) != 4 {
		c.t.Fatalf("no token: %+v", m)
	}
	return m.R.Token
}

func errMsg(m *Msg) string {
	if m.E == nil {
		return ""
	}
	return m.E.Msg
}
