package abuse

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/dht"
	"github.com/twgroupd/twgroupd/internal/swarm"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

// keys knows one user, alice, and signs for her.
type keys struct{ k *twproto.PrivateKey }

func (r keys) UserKey(_ context.Context, user string, _ int64) (twproto.UserKey, error) {
	if user != "alice" {
		return twproto.UserKey{}, twproto.ErrUnknownUser
	}
	return twproto.UserKey{PubKey: r.k.PubKey(), RegHeight: 1}, nil
}
func (r keys) BestHeight(context.Context) (int64, error)   { return 100, nil }
func (r keys) SignAs(_ string, msg []byte) ([]byte, error) { return twproto.Sign(r.k, msg) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// victim is a node as internal/node wires it on loopback: a DHT whose
// NonDHT hook answers uTP SYNs with resets, and a swarm (one connection
// per IP per swarm) running alice's swarm with the DHT as its finder.
type victim struct {
	dht   *dht.Node
	swarm *swarm.Swarm
}

func newVictim(t *testing.T, reg keys, bootstrap ...netip.AddrPort) victim {
	t.Helper()
	var v victim
	var udp atomic.Pointer[dht.Node]
	dcfg := dht.Config{
		Listen: "127.0.0.1:0", DataDir: t.TempDir(), Keys: reg, Signer: reg, Logger: quiet(), RelaxIPRules: true,
		NonDHT: func(pkt []byte, from netip.AddrPort) {
			if r := swarm.UTPReset(pkt, time.Now()); r != nil {
				if d := udp.Load(); d != nil {
					d.WriteTo(r, from)
				}
			}
		},
	}
	for _, b := range bootstrap {
		dcfg.Bootstrap = append(dcfg.Bootstrap, b.String())
	}
	d, err := dht.Open(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	v.dht = d
	udp.Store(d)
	t.Cleanup(func() { d.Close() })
	s, err := swarm.New(swarm.Config{DataDir: t.TempDir(), ListenAddr: "127.0.0.1:0", Keys: reg, Finder: d, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Follow(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	v.swarm = s
	return v
}

func newKeys(t *testing.T) keys {
	k, err := twproto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return keys{k}
}

// 30,000 PORT messages from one peer naming a silent port: one ping, the
// victim's own dhtget still works, memory stays flat (issue #11 item 1 at
// a tenth of its size; `make abuse` runs 300,000).
func TestPortFlood(t *testing.T) {
	reg := newKeys(t)
	other, err := dht.Open(dht.Config{Listen: "127.0.0.4:0", Keys: reg, Signer: reg, Logger: quiet(), RelaxIPRules: true})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := context.Background()
	if err := other.Put(ctx, "alice", "status", false, json.RawMessage(`"here"`), "alice", 1); err != nil {
		t.Fatal(err)
	}
	v := newVictim(t, reg, other.LocalAddr())
	res, err := PortFlood(ctx, PortFloodConfig{
		Target: v.swarm.Addr(), Source: netip.MustParseAddr("127.0.0.2"), User: "alice",
		Messages: 30_000, Linger: 500 * time.Millisecond,
		Probe: func(ctx context.Context) error {
			items, err := v.dht.Get(ctx, "alice", "status", false, 5*time.Second, 200*time.Millisecond, 0)
			if err == nil && len(items) != 1 {
				t.Errorf("dhtget during the flood: %d items", len(items))
			}
			return err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Sent != 30_000 {
		t.Fatalf("sent %d", res.Sent)
	}
	if res.Pings > 1 {
		t.Fatalf("%d pings for one address", res.Pings)
	}
	if res.ProbeErr != nil {
		t.Fatalf("own dhtget: %v", res.ProbeErr)
	}
	if grow := res.RSSPeakKB - res.RSSStartKB; grow > 80<<10 {
		t.Fatalf("RSS grew %d KiB", grow)
	}
}

// One IP holding 400 half-open connections leaves the handshake slots of
// others free (item 2; `make abuse` runs 1,500).
func TestHalfOpenFlood(t *testing.T) {
	v := newVictim(t, newKeys(t))
	res, err := HalfOpenFlood(context.Background(), HalfOpenConfig{
		Target: v.swarm.Addr(), Source: netip.MustParseAddr("127.0.0.2"), User: "alice", Conns: 400,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Opened < 300 || res.LegitTried != 10 {
		t.Fatalf("flood did not run: %+v", res)
	}
	if res.LegitAnswered < 9 {
		t.Fatalf("%d of 10 legit handshakes answered", res.LegitAnswered)
	}
	if res.StillOpen > 8 {
		t.Fatalf("%d attacker connections kept", res.StillOpen)
	}
}

// A DHT ping flood from one IP: replies stay within that source's share
// of the reply budget, another host is served, and the flooding IP is
// served again at once afterwards (item 3). The same with uTP SYNs: the
// resets spend the same budget.
func TestDHTFlood(t *testing.T) {
	for _, utp := range []bool{false, true} {
		name := "ping"
		if utp {
			name = "utp"
		}
		t.Run(name, func(t *testing.T) {
			v := newVictim(t, newKeys(t))
			res, err := DHTFlood(context.Background(), DHTFloodConfig{
				Target: v.dht.LocalAddr(), Source: netip.MustParseAddr("127.0.0.2"),
				Packets: 3000, Rate: 2500, UTP: utp,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Log(res)
			// Default budgets: 16000 B/s, 48000 B burst; per source a
			// quarter of the rate and half the burst.
			if max := 24000 + 4000*res.FloodTime.Seconds() + 2000; float64(res.ReplyBytes) > max {
				t.Fatalf("%d reply bytes to the flooder, budget %.0f", res.ReplyBytes, max)
			}
			if res.Replies == 0 {
				t.Fatal("flooder never answered")
			}
			if res.OtherAnswered < res.OtherSent-1 {
				t.Fatalf("other host: %d of %d answered", res.OtherAnswered, res.OtherSent)
			}
			if res.SourceServedAfter < 0 {
				t.Fatal("flooding IP not served again within 10 s")
			}
		})
	}
}

// TestXFlood: a peer flooding full twg_swarms messages leaves the node's
// memory bounded (the HAVEs past 32 a second are ignored, requests past 512
// a second refused) and the node still serves.
func TestXFlood(t *testing.T) {
	reg := newKeys(t)
	v := newVictim(t, reg)
	res, err := XFlood(context.Background(), XFloodConfig{
		Target: v.swarm.Addr(), Source: netip.MustParseAddr("127.0.0.2"), User: "alice", Messages: 3_000,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Sent == 0 {
		t.Fatal("sent nothing")
	}
	if grow := res.RSSPeakKB - res.RSSStartKB; grow > 80<<10 {
		t.Fatalf("RSS grew %d KiB", grow)
	}
}
