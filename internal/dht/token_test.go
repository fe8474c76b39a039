package dht

import (
	"net/netip"
	"testing"
	"time"
)

func TestTokens(t *testing.T) {
	now := time.Unix(1795483617, 0)
	tk := newTokens(func() time.Time { return now })
	ip := netip.MustParseAddr("192.0.2.7")
	var target [20]byte
	target[0] = 1
	tok := tk.generate(ip, target)
	if len(tok) != 4 {
		t.Fatalf("token length %d", len(tok))
	}
	if !tk.verify(tok, ip, target) {
		t.Fatal("fresh token refused")
	}
	if tk.verify(tok, netip.MustParseAddr("192.0.2.8"), target) {
		t.Fatal("token accepted from another ip")
	}
	other := target
	other[1] = 1
	if tk.verify(tok, ip, other) {
		t.Fatal("token accepted for another target")
	}
	if tk.verify(append(tok, 0), ip, target) {
		t.Fatal("5-byte token accepted")
	}
	now = now.Add(6 * time.Minute) // one rotation: previous secret still valid
	if !tk.verify(tok, ip, target) {
		t.Fatal("token refused after one rotation")
	}
	now = now.Add(5 * time.Minute) // two rotations: stale
	if tk.verify(tok, ip, target) {
		t.Fatal("stale token accepted")
	}
}
