package dht

import (
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/anacrolix/dht/v2/krpc"
)

// The computed vectors of dht-swarm §2.7.
func TestNodeIDVectors(t *testing.T) {
	for _, c := range []struct {
		ip     string
		r      byte
		prefix string
	}{
		{"1.2.3.4", 5, "11966ab9"},
		{"124.31.75.21", 1, "f766f9f5"},
	} {
		h := idPrefix(netip.MustParseAddr(c.ip), c.r)
		if got := hex.EncodeToString(h[:4]); got != c.prefix {
			t.Errorf("%s r=%d: prefix %s, want %s", c.ip, c.r, got, c.prefix)
		}
	}
}

func TestGenerateVerifyID(t *testing.T) {
	pub := netip.MustParseAddr("124.31.75.21")
	for i := 0; i < 50; i++ {
		id := GenerateID(pub)
		if !VerifyID(id, pub) {
			t.Fatalf("generated id %x does not verify", id)
		}
		if VerifyID(id, netip.MustParseAddr("8.8.8.8")) {
			t.Fatalf("id %x verifies for another ip", id)
		}
	}
	var bad krpc.ID
	if VerifyID(bad, pub) {
		t.Fatal("zero id verified for a public ip")
	}
	for _, local := range []string{"127.0.0.1", "10.1.2.3", "192.168.1.1", "172.16.0.9", "169.254.1.1", "::1"} {
		if !VerifyID(bad, netip.MustParseAddr(local)) {
			t.Errorf("%s not exempt", local)
		}
	}
}

func TestRandomIDInBucket(t *testing.T) {
	own := GenerateID(netip.Addr{})
	for cpl := 0; cpl < 160; cpl += 7 {
		if got := commonPrefixLen(own, randomIDInBucket(own, cpl)); got != cpl {
			t.Fatalf("cpl %d: got %d", cpl, got)
		}
	}
}
