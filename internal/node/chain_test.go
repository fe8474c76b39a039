package node

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/chain/chaintest"
	"github.com/twgroupd/twgroupd/internal/config"
	"github.com/twgroupd/twgroupd/internal/upstream"
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
	var sync struct {
		Headers int64   `json:"chain_headers"`
		Target  int64   `json:"chain_sync_target"`
		Syncing bool    `json:"chain_syncing"`
		Percent float64 `json:"chain_sync_percent"`
	}
	if err := json.Unmarshal(mustCall(t, c, "getinfo"), &sync); err != nil || sync.Headers != 70 || sync.Target != 70 || sync.Syncing || sync.Percent != 100 {
		t.Fatalf("getinfo sync fields %+v %v", sync, err)
	}
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

// TestChainRegistryDMs: two nodes with no -registry and no -upstream, both
// syncing the recorded twisterd chain from a Go peer, exchange a DM between
// alice and bob with the keys twisterd created for them (bob's replaced
// key: the one valid at the tip). Each side checks the other's post
// signature with the key the chain says was valid at its height.
func TestChainRegistryDMs(t *testing.T) {
	blocks := chaintest.LoadBlocks(t, "testdata/chain/blocks.jsonl")
	peer := chaintest.NewPeer(t, blocks, chaintest.Serve)
	var wifs map[string]string
	raw, err := os.ReadFile("testdata/chain/keys.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &wifs); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	chainCfg := func(name string) config.Config {
		cfg := testConfig(t, filepath.Join(dir, name), "")
		cfg.Connect = []string{peer.Addr()}
		cfg.NoDNSSeed = true
		return cfg
	}
	n1, alice, stop1 := startNode(t, chainCfg("n1"))
	defer stop1()
	c2 := chainCfg("n2")
	c2.Bootstrap = []string{n1.dht.LocalAddr().String()}
	_, bob, stop2 := startNode(t, c2)
	defer stop2()
	for _, c := range []struct {
		cl   *upstream.Client
		user string
	}{{alice, "alice"}, {bob, "bob"}} {
		waitUntil(t, "synced", func() bool {
			var n int64
			json.Unmarshal(mustCall(t, c.cl, "getblockcount"), &n)
			return n == 70
		})
		mustCall(t, c.cl, "importprivkey", wifs[c.user], c.user)
	}
	// bob's first key is no longer his: twisterd's importprivkey refuses it.
	if _, err := bob.Call(t.Context(), "importprivkey", wifs["bob_old"], "bob"); err == nil {
		t.Fatal("bob's replaced key imported")
	}
	mustCall(t, alice, "follow", "alice", []string{"alice", "bob"})
	mustCall(t, bob, "follow", "bob", []string{"bob", "alice"})
	send := func(from *upstream.Client, to *upstream.Client, sender, recipient, text string) {
		t.Helper()
		mustCall(t, from, "newdirectmsg", sender, 1, recipient, text)
		waitUntil(t, text+" at "+recipient, func() bool {
			var res map[string][]struct{ Text string }
			json.Unmarshal(mustCall(t, to, "getdirectmsgs", recipient, 5, []map[string]string{{"username": sender}}), &res)
			msgs := res[sender]
			return len(msgs) > 0 && msgs[len(msgs)-1].Text == text
		})
	}
	send(alice, bob, "alice", "bob", "hi bob, from the chain registry")
	send(bob, alice, "bob", "alice", "hi alice, signed with my replaced key")
}

// TestDHTBootstrapFromChainPeers: a node given only a chain peer (no
// -bootstrap) finds the DHT at that peer's port + 1000, as twisterd does.
func TestDHTBootstrapFromChainPeers(t *testing.T) {
	blocks := chaintest.LoadBlocks(t, "testdata/chain/blocks.jsonl")
	dir := t.TempDir()
	var peer *chaintest.Peer
	var n1 *Node
	for attempt := 0; peer == nil; attempt++ {
		if attempt == 10 {
			t.Fatal("no free port pair")
		}
		cfg := testConfig(t, filepath.Join(dir, "n1", strconv.Itoa(attempt)), "")
		cfg.Connect = []string{"127.0.0.1:1"} // never answers; n1 only hosts the DHT
		cfg.NoDNSSeed = true
		n, _, stop := startNode(t, cfg)
		port := int(n.dht.LocalAddr().Port())
		if port > 1024 {
			peer = chaintest.NewPeerOn(t, "127.0.0.1:"+strconv.Itoa(port-1000), blocks, chaintest.Serve)
		}
		if peer == nil {
			stop()
			continue
		}
		n1 = n
		t.Cleanup(stop)
	}
	cfg := testConfig(t, filepath.Join(dir, "n2"), "")
	cfg.Connect = []string{peer.Addr()}
	cfg.NoDNSSeed = true
	n2, _, stop2 := startNode(t, cfg)
	defer stop2()
	waitUntil(t, "a DHT node learned from the chain peer", func() bool { return n2.dht.Stats().Nodes > 0 })
	if n1.dht.Stats().Nodes == 0 {
		waitUntil(t, "n1 hears n2", func() bool { return n1.dht.Stats().Nodes > 0 })
	}
}
