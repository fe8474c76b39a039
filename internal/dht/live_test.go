package dht

import (
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"testing"

	"github.com/anacrolix/dht/v2/krpc"
)

// TestLiveTwisterdNodeIDs replays testdata/dht/live_nodeid.json: a node on
// a non-local address (192.0.2.2), where twisterd enforces node ids (§2.7),
// bootstrapped from a live twisterd. twisterd rejected the id we started
// with (reply with ip) and accepted the one we then generated for the
// address it reported; its own id verifies for that address too.
func TestLiveTwisterdNodeIDs(t *testing.T) {
	b, err := os.ReadFile("../../testdata/dht/live_nodeid.json")
	if err != nil {
		t.Fatal(err)
	}
	var live struct {
		Packets []struct{ Src, Dst, Hex string }
	}
	if err := json.Unmarshal(b, &live); err != nil {
		t.Fatal(err)
	}
	if len(live.Packets) != 4 {
		t.Fatalf("%d packets", len(live.Packets))
	}
	var msgs []*Msg
	for _, p := range live.Packets {
		raw, err := hex.DecodeString(p.Hex)
		if err != nil {
			t.Fatal(err)
		}
		m, err := DecodeMsg(raw)
		if err != nil {
			t.Fatalf("%s -> %s: %v", p.Src, p.Dst, err)
		}
		msgs = append(msgs, m)
	}
	ours := netip.MustParseAddrPort(live.Packets[0].Src).Addr()
	id := func(b []byte) krpc.ID { var i krpc.ID; copy(i[:], b); return i }

	rejected, accepted := msgs[1].R, msgs[3].R
	if rejected == nil || len(rejected.IP) != 4 || netip.AddrFrom4([4]byte(rejected.IP)) != ours {
		t.Fatalf("twisterd's first reply carries no ip %v: %+v", ours, rejected)
	}
	if accepted == nil || accepted.IP != nil {
		t.Fatalf("twisterd's second reply: %+v", accepted)
	}
	if VerifyID(id(msgs[0].X.ID), ours) {
		t.Error("the id twisterd rejected verifies for our address")
	}
	if !VerifyID(id(msgs[2].X.ID), ours) {
		t.Errorf("the id twisterd accepted does not verify for %v", ours)
	}
	twisterd := netip.MustParseAddrPort(live.Packets[1].Src).Addr()
	if !VerifyID(id(rejected.ID), twisterd) {
		t.Errorf("twisterd's id %x does not verify for %v", rejected.ID, twisterd)
	}
}
