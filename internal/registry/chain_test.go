package registry

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/chain"
	"github.com/twgroupd/twgroupd/internal/chain/chaintest"
	"github.com/twgroupd/twgroupd/internal/chainwire"
)

// recordedChain loads the recorded twisterd chain's blocks and opens an
// empty chain store whose clock is 10 minutes past the last block.
func recordedChain(t *testing.T) ([]*chainwire.Block, *chain.Chain) {
	t.Helper()
	blocks := chaintest.LoadBlocks(t, "testdata/chain/blocks.jsonl")
	now := time.Unix(int64(blocks[len(blocks)-1].Header.Time)+600, 0)
	c, err := chain.Open(filepath.Join(t.TempDir(), "chain.db"), chain.Mainnet(), chain.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return blocks, c
}

// The chain source answers, at every height of the recorded twisterd chain
// and beyond, the key twisterd's users.json says was valid then, with the
// height it was registered (or replaced) at.
func TestChainSourceEveryHeight(t *testing.T) {
	blocks, c := recordedChain(t)
	if err := c.AddBlocks(blocks[1:]); err != nil {
		t.Fatal(err)
	}
	var users map[string][]struct {
		PubKey string `json:"pubkey"`
		From   int64  `json:"from"`
		Until  *int64 `json:"until"`
	}
	raw, err := os.ReadFile("testdata/chain/users.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &users); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := NewChain(c)
	if best, _ := r.BestHeight(ctx); best != 70 {
		t.Fatalf("best %d", best)
	}
	for name, keys := range users {
		for h := int64(-1); h <= 80; h++ {
			want := -1
			for i, k := range keys {
				if h < 0 && k.Until == nil || h >= k.From && (k.Until == nil || h <= *k.Until) {
					want = i
				}
			}
			got, err := r.UserKey(ctx, name, h)
			if want < 0 {
				if !errors.Is(err, ErrUnknownUser) {
					t.Fatalf("%s@%d: %v, want unknown", name, h, err)
				}
				continue
			}
			if err != nil || hex.EncodeToString(got.PubKey) != keys[want].PubKey || got.RegHeight != keys[want].From {
				t.Fatalf("%s@%d: %x reg %d (%v), want %s reg %d", name, h, got.PubKey, got.RegHeight, err, keys[want].PubKey, keys[want].From)
			}
		}
	}
	if names, err := r.UsersWithPrefix(ctx, "", 100); err != nil || len(names) != 11 || names[0] != "alice" {
		t.Fatalf("all users: %v %v", names, err)
	}
	if names, _ := r.UsersWithPrefix(ctx, "ma", 100); len(names) != 1 || names[0] != "mallory_x9" {
		t.Fatalf("prefix ma: %v", names)
	}
	for _, bad := range []string{"nosuchuser", "Alice", "", "waytoolongusername17"} {
		if _, err := r.UserKey(ctx, bad, -1); !errors.Is(err, ErrUnknownUser) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

// While the initial sync runs, heights and unknown names are retryable
// errors, not verdicts; known keys are still answered.
func TestChainSourceWhileSyncing(t *testing.T) {
	blocks, c := recordedChain(t)
	if err := c.AddBlocks(blocks[1:20]); err != nil {
		t.Fatal(err)
	}
	syncing := true
	r := NewChain(c).WithSyncing(func() error {
		if syncing {
			return fmt.Errorf("%w: block 19 of 70", ErrChainSyncing)
		}
		return nil
	})
	ctx := context.Background()
	if _, err := r.BestHeight(ctx); !errors.Is(err, ErrChainSyncing) {
		t.Fatalf("BestHeight while syncing: %v", err)
	}
	if k, err := r.UserKey(ctx, "alice", 10); err != nil || k.RegHeight != 6 {
		t.Fatalf("alice while syncing: %v", err)
	}
	if _, err := r.UserKey(ctx, "heidi", -1); !errors.Is(err, ErrChainSyncing) || errors.Is(err, ErrUnknownUser) {
		t.Fatalf("heidi (registered at 29) while syncing: %v", err)
	}
	syncing = false
	if _, err := r.UserKey(ctx, "heidi", -1); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("heidi after sync (tip 19): %v", err)
	}
	if best, err := r.BestHeight(ctx); err != nil || best != 19 {
		t.Fatalf("best %d %v", best, err)
	}
}
