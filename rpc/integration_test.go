package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/groupchat"
	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/wallet"
)

// hub is an in-memory swarm: every published piece is validated and handed
// to every engine, as the swarm does after a verified download.
type hub struct {
	mu      sync.Mutex
	keys    twproto.KeySource
	engines []*dm.Engine
	pieces  map[string]bool
}

func (h *hub) Publish(ctx context.Context, user string, k int64, post []byte) error {
	p, err := twproto.ValidatePost(ctx, post, user, k, h.keys)
	if err != nil {
		return err
	}
	h.mu.Lock()
	id := fmt.Sprintf("%s/%d", user, k)
	if h.pieces[id] {
		h.mu.Unlock()
		return nil
	}
	h.pieces[id] = true
	engines := append([]*dm.Engine(nil), h.engines...)
	h.mu.Unlock()
	for _, e := range engines {
		if err := e.HandlePost(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

func (h *hub) Follow(context.Context, string) error { return nil }

// realNode is one daemon's backends on real bbolt files, served over HTTP.
func realNode(t *testing.T, h *hub, reg KeySource) (*testServer, *Feed) {
	t.Helper()
	dir := t.TempDir()
	w, err := wallet.Open(filepath.Join(dir, "wallet.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	store, err := msgstore.Open(filepath.Join(dir, "messages.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	feed := NewFeed()
	engine, err := dm.New(dm.Config{Wallet: w, Store: store, Keys: reg, Net: h, Notify: feed.Notify, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close() }) // its background retry, before the store
	groups, err := groupchat.New(groupchat.Config{Engine: engine, Wallet: w, Store: store, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.engines = append(h.engines, engine)
	h.mu.Unlock()
	return startServer(t, Config{DM: engine, Groups: groups, Wallet: w, Registry: reg, Feed: feed}), feed
}

func resultOf(t *testing.T, r response, v any) {
	t.Helper()
	var env struct {
		Result json.RawMessage
		Error  json.RawMessage
	}
	if err := json.Unmarshal([]byte(r.body), &env); err != nil || r.status != 200 {
		t.Fatalf("reply %d %s", r.status, r.body)
	}
	if v != nil {
		if err := json.Unmarshal(env.Result, v); err != nil {
			t.Fatalf("result %s: %v", env.Result, err)
		}
	}
}

// TestWithRealEngine runs a group chat between two daemons (real wallet,
// message store, dm engine and group service) only through their JSON-RPC,
// and bob's websocket receives the new group message and DM.
func TestWithRealEngine(t *testing.T) {
	reg := transcriptRegistry(t)
	h := &hub{keys: reg, pieces: map[string]bool{}}
	node1, _ := realNode(t, h, reg)
	node2, feed2 := realNode(t, h, reg)

	resultOf(t, node1.call(t, req("importprivkey", aliceWIF, "alice")), nil)
	resultOf(t, node2.call(t, req("importprivkey", bobWIF, "bob")), nil)
	resultOf(t, node1.call(t, req("follow", "alice", []any{"alice", "bob"})), nil)
	resultOf(t, node2.call(t, req("follow", "bob", []any{"bob", "alice"})), nil)

	ws, _, err := dialWS(t, node2, "/ws", node2.user, node2.pass)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if got := readWS(t, ws); got != wsGreeting {
		t.Fatalf("greeting %q", got)
	}
	waitSubscribers(t, feed2, 1)

	var alias1 string
	resultOf(t, node1.call(t, req("creategroup", "Test group chat (alice+bob)")), &alias1)
	if !strings.HasPrefix(alias1, "*") || len(alias1) != 9 {
		t.Fatalf("alias %q", alias1)
	}
	resultOf(t, node1.call(t, req("newgroupinvite", "alice", 1, alias1, []any{"alice", "bob"})), nil)

	var groups2 []string
	resultOf(t, node2.call(t, req("listgroups", "bob")), &groups2)
	if len(groups2) != 1 {
		t.Fatalf("bob's groups %v", groups2)
	}
	alias2 := groups2[0]
	var info struct {
		Alias, Description string
		Members            []string
	}
	resultOf(t, node2.call(t, req("getgroupinfo", alias2)), &info)
	if info.Description != "Test group chat (alice+bob)" || strings.Join(info.Members, ",") != "alice,bob" {
		t.Errorf("node2 group info %+v", info)
	}

	// The invite itself is a DM event for bob; read up to the group message.
	resultOf(t, node1.call(t, req("newdirectmsg", "alice", 4, alias1, "Hello group! (alice)")), nil)
	want := fmt.Sprintf(`"type":"GROUP","group":%q,"k":4,`, alias2)
	var got string
	for i := 0; i < 10 && !strings.Contains(got, `"msg":"Hello group! (alice)"`); i++ {
		got = readWS(t, ws)
	}
	if !strings.Contains(got, want) || !strings.Contains(got, `"from":"alice","to":"bob","msg":"Hello group! (alice)"}`) {
		t.Errorf("group event %s", got)
	}

	resultOf(t, node1.call(t, req("newdirectmsg", "alice", 5, "bob", "hi bob")), nil)
	if got := readWS(t, ws); !strings.HasPrefix(got, `{"type":"DM","k":5,`) || !strings.HasSuffix(got, `"from":"alice","to":"bob","msg":"hi bob"}`) {
		t.Errorf("dm event %s", got)
	}

	r := node2.call(t, req("getdirectmsgs", "bob", 10, []any{map[string]any{"username": "alice"}, map[string]any{"username": alias2}}))
	if !strings.Contains(r.body, `"text":"hi bob","fromMe":false,"from":"alice","k":5}`) ||
		!strings.Contains(r.body, `"text":"Hello group! (alice)","fromMe":false,"from":"alice","k":4}`) {
		t.Errorf("getdirectmsgs on node2: %s", r.body)
	}
	// A reused k is refused by the engine with our code and message.
	wantReply(t, node1.call(t, req("newdirectmsg", "alice", 5, "bob", "again")), 500, errReply(-32602, "k 5 already used by user 'alice'"))

	// k null: the next free k (6, then 7 and 8 with copy_self), for the
	// group methods too; a negative k is refused with its own message.
	r = node1.call(t, req("newdirectmsg", "alice", nil, "bob", "auto"))
	if !strings.Contains(r.body, `"k":6,`) {
		t.Errorf("newdirectmsg with k null: %s", r.body)
	}
	r = node1.call(t, req("newdirectmsg", "alice", nil, "bob", "auto twice", true))
	if !strings.Contains(r.body, `"k":8,`) {
		t.Errorf("newdirectmsg with k null and copy_self: %s", r.body)
	}
	resultOf(t, node1.call(t, req("newgroupdescription", "alice", nil, alias1, "auto desc")), nil) // k=9
	r = node1.call(t, req("newdirectmsg", "alice", nil, alias1, "after the description"))
	if !strings.Contains(r.body, `"k":10,`) {
		t.Errorf("newdirectmsg after newgroupdescription with k null: %s", r.body)
	}
	for _, body := range []string{
		req("newdirectmsg", "alice", -1, "bob", "negative"),
		req("newgroupinvite", "alice", -2, alias1, []any{"bob"}),
		req("newgroupdescription", "alice", -3, alias1, "negative"),
	} {
		wantReply(t, node1.call(t, body), 500, errReply(-32602, "k must be >= 0"))
	}
	ws.Close(websocket.StatusNormalClosure, "")
}
