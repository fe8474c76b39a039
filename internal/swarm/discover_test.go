package swarm

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
)

// failingAnnouncer is a finder whose first announces fail (no DHT node
// answered yet).
type failingAnnouncer struct {
	mu        sync.Mutex
	failFirst int
	announces int
}

func (f *failingAnnouncer) FindPeers(context.Context, [20]byte) ([]netip.AddrPort, error) {
	return nil, nil
}

func (f *failingAnnouncer) AnnouncePeer(context.Context, [20]byte, int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.announces++
	if f.announces <= f.failFirst {
		return errors.New("no DHT node answered")
	}
	return nil
}

func (f *failingAnnouncer) AddContact(netip.AddrPort) {}

func (f *failingAnnouncer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.announces
}

// TestFailedAnnounceRetried: an announce that fails is tried again at the
// lookup backoff (2 s, 4 s, ...), not only after AnnounceInterval (15 min):
// a node started before its DHT bootstrap peer was unreachable for
// twisterd's lookups until then (live run 3, docs/interop.md).
func TestFailedAnnounceRetried(t *testing.T) {
	keys := newTestKeys(100)
	newUser(t, keys, "alice")
	f := &failingAnnouncer{failFirst: 2}
	cfg := fastConfig(t.TempDir(), keys)
	cfg.Finder = f
	n := startNodeConfig(t, cfg)
	if err := n.Follow(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a successful announce after two failures", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		tr := n.byUser["alice"]
		return !tr.lastAnnounce.IsZero() && tr.announceFailures == 0
	})
	if got := f.count(); got != 3 {
		t.Fatalf("%d announces, want 3 (two failed, then one)", got)
	}
}
