package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/registry"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/internal/upstream"
)

// TestNewPostRaw: posts signed offline and injected with newpostraw are
// validated as received pieces, stored, announced to the swarm's peers and
// processed like any received post; bad ones are refused with a reason.
func TestNewPostRaw(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "registry.txt")
	n1, alice, stop1 := startNode(t, testConfig(t, filepath.Join(dir, "n1"), reg))
	defer stop1()
	c2 := testConfig(t, filepath.Join(dir, "n2"), reg)
	c2.Bootstrap = []string{n1.dht.LocalAddr().String()}
	_, bob, stop2 := startNode(t, c2)
	defer stop2()
	mustCall(t, alice, "createwalletuser", "alice")
	mustCall(t, alice, "sendnewusertransaction", "alice")
	mustCall(t, bob, "createwalletuser", "bob")
	mustCall(t, bob, "sendnewusertransaction", "bob")
	mustCall(t, alice, "follow", "alice", []string{"alice", "bob"})
	mustCall(t, bob, "follow", "bob", []string{"bob", "alice"})

	file, err := registry.OpenFile(reg)
	if err != nil {
		t.Fatal(err)
	}
	// sign is what an offline tool does: a DM from author (key from
	// dumpprivkey) to the registered key of to, as piece k.
	sign := func(c *upstream.Client, author string, k int64, to, text string) string {
		t.Helper()
		var wif, pubHex string
		json.Unmarshal(mustCall(t, c, "dumpprivkey", author), &wif)
		key, err := twproto.ParseWIF(wif)
		if err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(mustCall(t, c, "dumppubkey", to), &pubHex)
		pub, _ := hex.DecodeString(pubHex)
		env, err := twproto.Encrypt(pub, twproto.EncodeMessage(text, to))
		if err != nil {
			t.Fatal(err)
		}
		best, _ := file.BestHeight(context.Background())
		raw, err := twproto.BuildDMPost(key, author, k, max(best-1, 0), time.Now().Unix(), env)
		if err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(raw)
	}
	wantErr := func(c *upstream.Client, code int, msg string, params ...any) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := c.Call(ctx, "newpostraw", params...)
		var re *upstream.RPCError
		if !errors.As(err, &re) || re.Code != code || (msg != "" && re.Message != msg) {
			t.Fatalf("newpostraw %v = %v; want %d %q", params, err, code, msg)
		}
	}

	// alice's post, injected on her node, reaches bob's node through the swarm.
	post := sign(alice, "alice", 0, "bob", "signed offline by alice")
	if r := mustCall(t, alice, "newpostraw", "alice", 0, post); string(r) != "null" {
		t.Fatalf("newpostraw result %s; want null", r)
	}
	waitText(t, bob, "bob", "alice", "signed offline by alice")
	var have map[string]int64
	json.Unmarshal(mustCall(t, alice, "getlasthave", "alice", []string{"alice"}), &have)
	if have["alice"] != 0 {
		t.Fatalf("getlasthave after newpostraw: %v", have)
	}

	// bob's post injected on alice's node (which follows bob) is processed
	// there like a received one: alice has the DM.
	post = sign(bob, "bob", 0, "alice", "signed offline by bob")
	mustCall(t, alice, "newpostraw", "bob", 0, post)
	waitText(t, alice, "alice", "bob", "signed offline by bob")

	wantErr(alice, -32602, "k 0 already used by user 'alice'", "alice", 0, sign(alice, "alice", 0, "bob", "again"))
	wantErr(alice, -32602, "expected piece '1' got '2'", "alice", 1, sign(alice, "alice", 2, "bob", "wrong k"))
	wantErr(alice, -32602, "", "alice", 1, "00"+post)
	wantErr(alice, -8, "data must be hexadecimal string (not 'xyz')", "alice", 1, "xyz")
	wantErr(alice, -8, "newpostraw: this node holds no swarm for 'carol' (follow the user first)", "carol", 0, post)
}

func waitText(t *testing.T, c *upstream.Client, user, peer, text string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var res map[string][]struct{ Text string }
		json.Unmarshal(mustCall(t, c, "getdirectmsgs", user, 10, []map[string]string{{"username": peer}}), &res)
		for _, m := range res[peer] {
			if m.Text == text {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never got %q from %s: %v", user, text, peer, res)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
