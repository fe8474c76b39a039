package dht

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// dht.db keeps the node id, the routing table and the items (own items
// still unconfirmed), is private to its owner and cannot be opened twice.
func TestPersistence(t *testing.T) {
	reg := newTestRegistry(t, "alice")
	peer := openNode(t, testConfig(t, reg))
	cfg := testConfig(t, reg)
	a, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.AddContact(peer.LocalAddr())
	waitFor(t, 5*time.Second, "contact confirmed", func() bool { _, c := a.table.size(); return c == 1 })
	if err := a.Put(context.Background(), "alice", "avatar", false, json.RawMessage(`"data:x"`), "alice", 3); err != nil {
		t.Fatal(err)
	}
	second := cfg
	second.Listen = "127.0.0.1:0"
	if _, err := Open(second); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second open of dht.db: %v", err)
	}
	id := a.ID()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(cfg.DataDir, "dht.db"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("dht.db mode %v", st.Mode().Perm())
	}

	b := openNode(t, cfg)
	if b.ID() != id {
		t.Fatal("node id changed")
	}
	waitFor(t, 5*time.Second, "saved contact back", func() bool { l, _ := b.table.size(); return l == 1 })
	target := twproto.DHTTarget{N: "alice", R: "avatar", T: "s"}
	l := b.items.get(target.Hash())
	if len(l) != 1 || l[0].seq != 3 || l[0].localAdd == 0 {
		t.Fatalf("restored items %+v", l)
	}
}
