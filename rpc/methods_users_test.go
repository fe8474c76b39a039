package rpc

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/registry"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

// TestListUsernamesPartial: twister-html's @-autocomplete in the new-group
// and invite forms calls listusernamespartial ["bo",10]; without it the
// daemon answered Method not found and no name was ever suggested.
func TestListUsernamesPartial(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "registry.txt")
	if _, err := registry.InitFile(ctx, path, time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"carol", "boris", "alice", "bob"} {
		k, err := twproto.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Register(ctx, u, k.PubKey()); err != nil {
			t.Fatal(err)
		}
	}
	w := newFakeWallet()
	if _, err := w.CreateUser("alice"); err != nil {
		t.Fatal(err)
	}
	dmf := newFakeDM()
	// Followed names come first, registered or not (twisterd: the swarm's
	// following list, not the chain).
	dmf.following["alice"] = []string{"bo", "bobby", "bob", "zed"}
	ts := startServer(t, Config{Wallet: w, DM: dmf, Registry: reg})

	for _, c := range []struct {
		params []any
		want   string
	}{
		{[]any{"bo", 10}, `["bo","bob","bobby","boris"]`},
		{[]any{"bo", 2}, `["bo","bob"]`},                // the following list fills the count first
		{[]any{"bo", 3}, `["bo","bob","bobby"]`},        // sorted set, not request order
		{[]any{"bo", 10, true}, `["bo","bob","boris"]`}, // exact_match only filters followed names
		{[]any{"c", 10}, `["carol"]`},
		{[]any{"", 100}, `["alice","bo","bob","bobby","boris","carol","zed"]`},
		{[]any{"", -1}, `["alice","bo","bob","bobby","boris","carol","zed"]`}, // size_t: no limit
		{[]any{"x", 10}, `[]`},
	} {
		wantReply(t, ts.call(t, req("listusernamespartial", c.params...)), 200, okReply(c.want))
	}
	wantReply(t, ts.call(t, req("listusernamespartial", "bo", "10")), 500, errReply(-1, "value is type str, expected int"))
	wantReply(t, ts.call(t, req("listusernamespartial", "bo", 10, "yes")), 500, errReply(-1, "value is type str, expected bool"))
	wantReply(t, ts.call(t, req("listusernamespartial", "bo")), 500,
		errReply(-1, "listusernamespartial <username_starts_with> <count> [exact_match=false]\nget list of usernames starting with"))

	// Without a wallet, DM engine or listing registry: an empty list, not an error.
	bare := startServer(t, Config{Registry: transcriptRegistry(t)})
	wantReply(t, bare.call(t, req("listusernamespartial", "bo", 10)), 200, okReply(`[]`))
}

// TestListUsernamesPartialUpstream: with a registry that cannot list names
// (an upstream twisterd's chain) the request goes to that twisterd.
func TestListUsernamesPartialUpstream(t *testing.T) {
	up := newFakeTwisterd(t)
	ts := startServer(t, Config{Wallet: newFakeWallet(), DM: newFakeDM(), Registry: transcriptRegistry(t), Upstream: up.client(t)})
	body := req("listusernamespartial", "bo", 10)
	wantReply(t, ts.call(t, body), 404, errReply(-32601, "Method not found"))
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.bodies) != 1 || up.bodies[0] != body {
		t.Errorf("upstream saw %q", up.bodies)
	}
}
