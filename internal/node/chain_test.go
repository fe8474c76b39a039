package node

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/chain/chaintest"
)

// TestChainRegistryStandalone: with neither -registry nor -upstream the node
// reads the registry from the blockchain. A Go peer on 127.0.0.1 serves the
// chain recorded from twisterd; getinfo reports its height and the P2P
// connection, dumppubkey answers from it (bob's replaced key), and a
// restart resumes from chain.db without downloading a block again.
func TestChainRegistryStandalone(t *testing.T) {
	blocks := chaintest.LoadBlocks(t, "testdata/chain/blocks.jsonl")
	peer := chaintest.NewPeer(t, blocks, chaintest.Serve)
	dir := t.TempDir()
	cfg := testConfig(t, dir, "")
	cfg.Connect = []string{peer.Addr()}
	cfg.NoDNSSeed = true
	cfg.NoCheckpoints = true
	_, c, stop := startNode(t, cfg)
	getinfo := func() (blocks, conns int64) {
		var gi struct {
			Blocks      int64 `json:"blocks"`
			Connections int64 `json:"connections"`
		}
		if err := json.Unmarshal(mustCall(t, c, "getinfo"), &gi); err != nil {
			t.Fatal(err)
		}
		return gi.Blocks, gi.Connections
	}
	waitUntil(t, "blocks 70", func() bool { b, _ := getinfo(); return b == 70 })
	waitUntil(t, "one connection", func() bool { _, n := getinfo(); return n == 1 })
	var key string
	json.Unmarshal(mustCall(t, c, "dumppubkey", "bob"), &key)
	if key != "033d30e84f48bfaa260b959f16e21e145069c98397b5f8130a33e742f1a6f5a392" {
		t.Fatalf("dumppubkey bob: %q", key)
	}
	var count int64
	json.Unmarshal(mustCall(t, c, "getblockcount"), &count)
	var raw struct {
		Height int64 `json:"height"`
	}
	json.Unmarshal(mustCall(t, c, "getrawtransaction", "carol", 1), &raw)
	if count != 70 || raw.Height != 45 {
		t.Fatalf("getblockcount %d, carol's latest tx at %d", count, raw.Height)
	}
	served := peer.TotalServed()
	stop()

	_, c, stop = startNode(t, cfg)
	defer stop()
	if b, _ := getinfo(); b != 70 {
		t.Fatalf("after restart: blocks %d", b)
	}
	waitUntil(t, "reconnect", func() bool { _, n := getinfo(); return n == 1 })
	if peer.TotalServed() != served {
		t.Fatalf("restart downloaded %d blocks again", peer.TotalServed()-served)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
