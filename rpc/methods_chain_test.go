package rpc

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/chain"
	"github.com/twgroupd/twgroupd/internal/chain/chaintest"
	"github.com/twgroupd/twgroupd/internal/registry"
	"github.com/twgroupd/twgroupd/internal/upstream"
)

var _ Chain = (*chain.Chain)(nil)

// recordedChainServer serves the chain recorded from twisterd
// (testdata/chain, from shared/chain).
func recordedChainServer(t *testing.T) (*testServer, []map[string]any) {
	t.Helper()
	blocks := chaintest.LoadBlocks(t, "testdata/chain/blocks.jsonl")
	now := time.Unix(int64(blocks[len(blocks)-1].Header.Time)+600, 0)
	c, err := chain.Open(filepath.Join(t.TempDir(), "chain.db"), chain.Mainnet(), chain.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.AddBlocks(blocks[1:]); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/chain/blocks.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var verbose []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r struct {
			Verbose map[string]any `json:"verbose"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		verbose = append(verbose, r.Verbose)
	}
	return startServer(t, Config{Chain: c, Registry: registry.NewChain(c)}), verbose
}

func result(t *testing.T, r response) any {
	t.Helper()
	var out struct {
		Result any `json:"result"`
		Error  any `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &out); err != nil || out.Error != nil {
		t.Fatalf("reply %q: %v", r.body, err)
	}
	return out.Result
}

// getblock and getblockhash answer what twisterd answered for every block of
// the recorded chain, field for field (difficulty compared as a number).
func TestChainMethodsMatchTwisterd(t *testing.T) {
	ts, verbose := recordedChainServer(t)
	wantReply(t, ts.call(t, req("getblockcount")), 200, okReply("70"))
	wantReply(t, ts.call(t, req("getbestblockhash")), 200, okReply(`"49499feab092322caabdcc92efeda459acb862c71247996a6c2674eeff40224d"`))
	for h, want := range verbose {
		hash := result(t, ts.call(t, req("getblockhash", h)))
		if hash != want["hash"] {
			t.Fatalf("getblockhash %d: %v", h, hash)
		}
		got := result(t, ts.call(t, req("getblock", hash))).(map[string]any)
		if d := got["difficulty"].(float64); math.Abs(d-want["difficulty"].(float64)) > 1e-8 {
			t.Fatalf("block %d difficulty %v", h, d)
		}
		delete(got, "difficulty")
		delete(want, "difficulty")
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("getblock %d:\ngot  %v\nwant %v", h, got, want)
		}
	}
	wantReply(t, ts.call(t, req("getblockhash", 71)), 500, errReply(-1, "Block number out of range."))
	wantReply(t, ts.call(t, req("getblock", "00")), 500, errReply(-5, "Block not found"))
}

// getmininginfo keeps twisterd's keys in their order (the transcript's
// mining node) with a non-miner's values and the tip's height and
// difficulty; getgenerate is false. network.html polls both.
func TestMiningInfoFromChain(t *testing.T) {
	ts, verbose := recordedChainServer(t)
	tr := loadTranscript(t, "twisterd-rpc-transcript.md")
	e := find(t, tr, "node1", "getmininginfo", "", "")
	r := ts.call(t, e.request)
	if got, want := objectKeys(t, r.body), objectKeys(t, e.response); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("getmininginfo keys\n got %v\nwant %v", got, want)
	}
	got := result(t, r).(map[string]any)
	if got["blocks"] != float64(70) || got["generate"] != false || got["hashespersec"] != float64(0) ||
		math.Abs(got["difficulty"].(float64)-verbose[70]["difficulty"].(float64)) > 1e-8 {
		t.Fatalf("getmininginfo %v", got)
	}
	wantReply(t, ts.call(t, req("getgenerate")), 200, okReply("false"))
	// Without the chain they are not ours (upstream or Method not found).
	plain := startServer(t, Config{})
	if r := plain.call(t, req("getmininginfo")); r.status != 404 {
		t.Fatalf("without chain: %d %s", r.status, r.body)
	}
}

func TestGetRawTransactionMatchesTwisterd(t *testing.T) {
	ts, _ := recordedChainServer(t)
	raw, err := os.ReadFile("testdata/chain/getrawtransaction.json")
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]struct {
		Result any `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	for user, w := range want {
		r := ts.call(t, req("getrawtransaction", user, 1))
		if w.Error != nil {
			wantReply(t, r, 500, errReply(w.Error.Code, w.Error.Message))
			continue
		}
		got := result(t, r)
		// confirmations count from twisterd's tip at recording time (70), as ours.
		if !reflect.DeepEqual(got, w.Result) {
			t.Fatalf("getrawtransaction %s:\ngot  %v\nwant %v", user, got, w.Result)
		}
		hexOnly := result(t, ts.call(t, req("getrawtransaction", user)))
		if hexOnly != w.Result.(map[string]any)["hex"] {
			t.Fatalf("%s: non-verbose %v", user, hexOnly)
		}
	}
}

// With the chain source, @-autocomplete lists the chain's names by prefix
// and dumppubkey answers the current key.
func TestChainUserLookups(t *testing.T) {
	ts, _ := recordedChainServer(t)
	wantReply(t, ts.call(t, req("listusernamespartial", "ca", 10)), 200, okReply(`["carol"]`))
	wantReply(t, ts.call(t, req("listusernamespartial", "", 3)), 200, okReply(`["alice","bob","carol"]`))
	wantReply(t, ts.call(t, req("dumppubkey", "bob")), 200, okReply(`"033d30e84f48bfaa260b959f16e21e145069c98397b5f8130a33e742f1a6f5a392"`))
	wantReply(t, ts.call(t, req("dumppubkey", "nosuchuser")), 200, okReply(`""`))
}

// A twgroupd with the chain source can be another twgroupd's -upstream:
// the upstream registry reads its keys, bob's replaced one included.
func TestChainServerAsUpstreamRegistry(t *testing.T) {
	ts, _ := recordedChainServer(t)
	u, err := upstream.New(strings.Replace(ts.url, "http://", "http://"+ts.user+":"+ts.pass+"@", 1))
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.NewUpstream(u, nil)
	ctx := context.Background()
	if best, err := reg.BestHeight(ctx); err != nil || best != 70 {
		t.Fatalf("best %d %v", best, err)
	}
	now, err := reg.UserKey(ctx, "bob", -1)
	if err != nil || hex.EncodeToString(now.PubKey) != "033d30e84f48bfaa260b959f16e21e145069c98397b5f8130a33e742f1a6f5a392" || now.RegHeight != 23 {
		t.Fatalf("bob now: %x %d %v", now.PubKey, now.RegHeight, err)
	}
	old, err := reg.UserKey(ctx, "bob", 10)
	if err != nil || hex.EncodeToString(old.PubKey) != "02c40a3985caf1768d9efa1a725d583e7f1892ea777505e22a0b11fadda0620673" {
		t.Fatalf("bob at 10: %x %v", old.PubKey, err)
	}
	if _, err := reg.UserKey(ctx, "nosuchuser", -1); !errors.Is(err, registry.ErrUnknownUser) {
		t.Fatalf("nosuchuser: %v", err)
	}
}
