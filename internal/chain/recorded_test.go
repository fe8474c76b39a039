package chain_test

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/chain"
	"github.com/twgroupd/twgroupd/internal/chainwire"
)

type recBlock struct {
	Height  int    `json:"height"`
	Hash    string `json:"hash"`
	PoWHash string `json:"pow_hash"`
	RawHex  string `json:"raw_hex"`
}

// recordedBlocks loads the private chain recorded from twisterd 0.9.40
// (testdata/blocks.jsonl, from shared/chain): heights 0..70 on mainnet's
// genesis.
func recordedBlocks(t testing.TB) ([]*chainwire.Block, []recBlock) {
	t.Helper()
	f, err := os.Open("testdata/blocks.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []*chainwire.Block
	var recs []recBlock
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r recBlock
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		raw, err := hex.DecodeString(r.RawHex)
		if err != nil {
			t.Fatal(err)
		}
		b, err := chainwire.ParseBlock(raw)
		if err != nil {
			t.Fatalf("block %d: %v", r.Height, err)
		}
		blocks = append(blocks, b)
		recs = append(recs, r)
	}
	return blocks, recs
}

type userKey struct {
	PubKey string `json:"pubkey"`
	From   int32  `json:"from"`
	Until  *int32 `json:"until"`
	TxID   string `json:"txid"`
}

func recordedUsers(t testing.TB) map[string][]userKey {
	t.Helper()
	b, err := os.ReadFile("testdata/users.json")
	if err != nil {
		t.Fatal(err)
	}
	var u map[string][]userKey
	if err := json.Unmarshal(b, &u); err != nil {
		t.Fatal(err)
	}
	return u
}

// clockAfter is a clock just after the recorded chain's last block, so
// "too far in the future" does not depend on the machine's date.
func clockAfter(blocks []*chainwire.Block) func() time.Time {
	t := time.Unix(int64(blocks[len(blocks)-1].Header.Time)+600, 0)
	return func() time.Time { return t }
}

func TestRecordedPoWAndHashes(t *testing.T) {
	blocks, recs := recordedBlocks(t)
	p := chain.Mainnet()
	g, _ := p.GenesisBlock()
	if g.Header.Hash().String() != recs[0].Hash {
		t.Fatalf("mainnet genesis %s, recorded %s", g.Header.Hash(), recs[0].Hash)
	}
	for i, b := range blocks {
		if b.Header.Hash().String() != recs[i].Hash {
			t.Fatalf("block %d hash", i)
		}
		pow, err := chain.PoWHash(&b.Header, p.ScryptN)
		if err != nil || pow.String() != recs[i].PoWHash {
			t.Fatalf("block %d: pow %s, recorded %s (%v)", i, pow, recs[i].PoWHash, err)
		}
	}
}

// The whole recorded chain validates under mainnet rules, and the registry
// state equals what twisterd reported at every height.
func TestRecordedChainRegistry(t *testing.T) {
	blocks, recs := recordedBlocks(t)
	path := filepath.Join(t.TempDir(), "chain.db")
	c, err := chain.Open(path, chain.Mainnet(), chain.Options{Now: clockAfter(blocks)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var hdrs []chainwire.BlockHeader
	for _, b := range blocks[1:] {
		hdrs = append(hdrs, b.Header)
	}
	if n, err := c.AddHeaders(hdrs); err != nil || n != 70 {
		t.Fatalf("AddHeaders: %d, %v", n, err)
	}
	if bh := c.BestHeader(); bh.Height != 70 || c.Tip().Height != 0 {
		t.Fatalf("best header %d, tip %d", bh.Height, c.Tip().Height)
	}
	missing := c.MissingBlocks(1000, nil)
	if len(missing) != 70 || missing[0] != blocks[1].Header.Hash() {
		t.Fatalf("missing: %d", len(missing))
	}
	if err := c.AddBlocks(blocks[1:]); err != nil {
		t.Fatal(err)
	}
	tip := c.Tip()
	if tip.Height != 70 || tip.Hash.String() != recs[70].Hash {
		t.Fatalf("tip %d %s", tip.Height, tip.Hash)
	}
	checkUsers(t, c, recordedUsers(t))
	bi, err := c.Block(blocks[6].Header.Hash())
	if err != nil || len(bi.Users) != 3 || bi.Height != 6 {
		t.Fatalf("block 6: %+v %v", bi, err)
	}
	if bi, _ := c.Block(blocks[11].Header.Hash()); bi.Spam.User != "alice" || bi.Spam.Message != "spam #1 from alice: twister light client test chain" {
		t.Fatalf("spam of 11: %+v", bi.Spam)
	}
}

func checkUsers(t *testing.T, c *chain.Chain, users map[string][]userKey) {
	t.Helper()
	for name, keys := range users {
		es, err := c.UserEntries(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(es) != len(keys) {
			t.Fatalf("%s: %d keys, want %d", name, len(es), len(keys))
		}
		for i, k := range keys {
			if es[i].Height != k.From || hex.EncodeToString(es[i].PubKey) != k.PubKey {
				t.Fatalf("%s key %d: height %d key %x, want %d %s", name, i, es[i].Height, es[i].PubKey, k.From, k.PubKey)
			}
			if id := chainwire.DoubleSHA256(es[i].Tx); id.String() != k.TxID {
				t.Fatalf("%s key %d: tx %s, want %s", name, i, id, k.TxID)
			}
		}
	}
	if _, err := c.UserEntries("nosuchuser"); err == nil {
		t.Fatal("nosuchuser found")
	}
}

// A restart resumes from chain.db: nothing is downloaded twice.
func TestRecordedChainRestart(t *testing.T) {
	blocks, _ := recordedBlocks(t)
	path := filepath.Join(t.TempDir(), "chain.db")
	opts := chain.Options{Now: clockAfter(blocks)}
	c, err := chain.Open(path, chain.Mainnet(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddBlocks(blocks[1:41]); err != nil {
		t.Fatal(err)
	}
	var hdrs []chainwire.BlockHeader
	for _, b := range blocks[41:] {
		hdrs = append(hdrs, b.Header)
	}
	if _, err := c.AddHeaders(hdrs); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c, err = chain.Open(path, chain.Mainnet(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Tip().Height != 40 || c.BestHeader().Height != 70 {
		t.Fatalf("after restart: tip %d best %d", c.Tip().Height, c.BestHeader().Height)
	}
	if loc := c.Locator(); loc[0] != blocks[70].Header.Hash() || loc[len(loc)-1] != blocks[0].Header.Hash() {
		t.Fatal("locator does not span best header .. genesis")
	}
	missing := c.MissingBlocks(1000, nil)
	if len(missing) != 30 || missing[0] != blocks[41].Header.Hash() {
		t.Fatalf("missing after restart: %d", len(missing))
	}
	if n, _ := c.AddHeaders(hdrs); n != 0 {
		t.Fatalf("%d headers stored twice", n)
	}
	if err := c.AddBlocks(blocks[41:]); err != nil {
		t.Fatal(err)
	}
	if c.Tip().Height != 70 {
		t.Fatalf("tip %d", c.Tip().Height)
	}
	checkUsers(t, c, recordedUsers(t))
}

// A recorded registration whose name is taken, sent again without a
// replacement signature, makes the block invalid (ConnectBlock "tried to
// overwrite transaction"); checked on the recorded mainnet-difficulty chain
// via the checkpoint-free body rules only.
func TestRecordedChainTamperedBody(t *testing.T) {
	blocks, _ := recordedBlocks(t)
	c, err := chain.Open(filepath.Join(t.TempDir(), "chain.db"), chain.Mainnet(), chain.Options{Now: clockAfter(blocks)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Block 6 with its registrations' order changed: merkle root mismatch.
	b6 := *blocks[6]
	b6.Txs = append([]chainwire.Tx{b6.Txs[0], b6.Txs[2], b6.Txs[1]}, b6.Txs[3:]...)
	if err := c.AddBlocks(blocks[1:6]); err != nil {
		t.Fatal(err)
	}
	if err := c.AddBlocks([]*chainwire.Block{&b6}); err == nil {
		t.Fatal("block with wrong merkle root accepted")
	}
	if c.Tip().Height != 5 {
		t.Fatalf("tip %d", c.Tip().Height)
	}
	// The real body is still accepted afterwards.
	if err := c.AddBlocks(blocks[6:8]); err != nil || c.Tip().Height != 7 {
		t.Fatalf("real block 6: %v, tip %d", err, c.Tip().Height)
	}
}
