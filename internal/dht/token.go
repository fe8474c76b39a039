package dht

import (
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"net/netip"
	"sync"
	"time"
)

// tokenRotation is how often the write-token secret changes; the previous
// secret stays valid, so a token lives 5 to 10 minutes (dht-swarm §2.8).
const tokenRotation = 5 * time.Minute

// tokens makes and checks the 4-byte write tokens twisterd uses:
// SHA1(ip as text || secret || target hash)[:4] (node.cpp generate_token).
type tokens struct {
	mu      sync.Mutex
	secrets [2][4]byte // current, previous
	rotated time.Time
	now     func() time.Time
}

func newTokens(now func() time.Time) *tokens {
	t := &tokens{now: now, rotated: now()}
	rand.Read(t.secrets[0][:])
	rand.Read(t.secrets[1][:])
	return t
}

func (t *tokens) maybeRotate() {
	now := t.now()
	switch elapsed := now.Sub(t.rotated); {
	case elapsed >= 2*tokenRotation:
		// Idle for two periods: both secrets are stale.
		t.rotateLocked()
		t.rotateLocked()
		t.rotated = now
	case elapsed >= tokenRotation:
		t.rotateLocked()
		t.rotated = now
	}
}

func (t *tokens) rotateLocked() {
	t.secrets[1] = t.secrets[0]
	rand.Read(t.secrets[0][:])
}

func tokenFor(ip netip.Addr, secret [4]byte, target [20]byte) [4]byte {
	h := sha1.New()
	h.Write([]byte(ip.Unmap().String()))
	h.Write(secret[:])
	h.Write(target[:])
	var sum [20]byte
	h.Sum(sum[:0])
	return [4]byte(sum[:4])
}

// generate returns the token for (ip, target).
func (t *tokens) generate(ip netip.Addr, target [20]byte) []byte {
	t.mu.Lock()
	t.maybeRotate()
	s := t.secrets[0]
	t.mu.Unlock()
	tok := tokenFor(ip, s, target)
	return tok[:]
}

// verify accepts a token made with the current or the previous secret.
func (t *tokens) verify(tok []byte, ip netip.Addr, target [20]byte) bool {
	if len(tok) != 4 {
		return false
	}
	t.mu.Lock()
	t.maybeRotate()
	secrets := t.secrets
	t.mu.Unlock()
	for _, s := range secrets {
		want := tokenFor(ip, s, target)
		if subtle.ConstantTimeCompare(tok, want[:]) == 1 {
			return true
		}
	}
	return false
}

// rotate forces a secret change (the periodic tick, and tests).
func (t *tokens) rotate() {
	t.mu.Lock()
	t.rotateLocked()
	t.rotated = t.now()
	t.mu.Unlock()
}
