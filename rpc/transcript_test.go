package rpc

import (
	"encoding/hex"
	"net/http"
	"strings"
	"testing"

	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/tjson"
)

// The transcript tests replay requests recorded from two real twisterd
// nodes (testdata/rpc/*.md, verbatim) against fake backends holding the
// same state, and compare the HTTP bodies byte for byte.

func node1(t testing.TB) (Config, *fakeDM, *fakeGroups, *fakeDHT) {
	t.Helper()
	dmf := newFakeDM()
	dmf.following["alice"] = []string{"alice", "bob"}
	dmf.convs["alice"] = map[string][]msgstore.Message{
		"bob": {
			{ID: 0, Time: 1795483300, Text: "Hi Bob, this is a secret DM from Alice", FromMe: true, From: "alice", K: 2},
			{ID: 1, Time: 1795483302, Text: "Hello Alice! Reply from Bob (copy_self)", FromMe: false, From: "bob", K: 3},
		},
		"*reawrcvt": {
			{ID: 0, Time: 1795483537, Text: "*** New member 'bob' invited by 'alice'", From: "alice", K: 5},
			{ID: 1, Time: 1795483537, Text: "*** New member 'alice' invited by 'alice'", From: "alice", K: 5},
			{ID: 2, Time: 1795483558, Text: "Hello group! (alice)", FromMe: true, From: "alice", K: 6},
			{ID: 3, Time: 1795483581, Text: "Hi group, bob here", From: "bob", K: 4},
		},
	}
	dmf.posts[sendKey("alice", 2, "bob", "Hi Bob, this is a secret DM from Alice", false)] = vectorHex(t, "dm_alice_k2.json", "post_bencoded_hex")
	dmf.posts[sendKey("alice", 6, "*reawrcvt", "Hello group! (alice)", false)] = vectorHex(t, "group_msg_alice_k6.json", "post_bencoded_hex")

	groups := newFakeGroups()
	groups.users["alice"] = true
	groups.newAlias = "*reawrcvt"
	groups.groups["*reawrcvt"] = GroupInfo{Alias: "*reawrcvt", Description: "Test group chat (alice+bob)", Members: []string{"bob", "alice"}}

	w := newFakeWallet()
	w.keys["alice"] = mustWIF(t, aliceWIF)
	w.keys["*reawrcvt"] = mustWIF(t, groupWIF)

	dht := &fakeDHT{items: map[string][][]byte{
		"alice/profile/false": {vectorHex(t, "dht_profile_alice.json", "item_bencoded_hex")},
		"alice/mention/true":  {vectorHex(t, "dht_mention_multi_alice.json", "item_bencoded_hex")},
		"alice/post1/false":   {vectorHex(t, "dht_post1_alice.json", "item_bencoded_hex")},
	}}
	swarm := &fakeSwarm{lastHave: map[string]int64{"alice": 6, "bob": 5}}
	cfg := Config{User: "user", Password: "pwd", DM: dmf, Groups: groups, Wallet: w,
		Registry: transcriptRegistry(t), DHT: dht, Swarm: swarm, Stop: func() {}}
	return cfg, dmf, groups, dht
}

func node2(t testing.TB) Config {
	t.Helper()
	dmf := newFakeDM()
	dmf.following["bob"] = []string{"bob", "alice"}
	dmf.convs["bob"] = map[string][]msgstore.Message{
		"alice": {
			{ID: 0, Time: 1795483300, Text: "Hi Bob, this is a secret DM from Alice", From: "alice", K: 2},
			{ID: 1, Time: 1795483302, Text: "Hello Alice! Reply from Bob (copy_self)", FromMe: true, From: "bob", K: 2},
		},
		"*sureawrc": {
			{ID: 0, Time: 1795483537, Text: "*** New member 'alice' invited by 'alice'", From: "alice", K: 5},
			{ID: 1, Time: 1795483537, Text: "*** Invited by 'alice' to group: Test group chat (alice+bob)", From: "alice", K: 4},
			{ID: 2, Time: 1795483558, Text: "Hello group! (alice)", From: "alice", K: 6},
			{ID: 3, Time: 1795483581, Text: "Hi group, bob here", FromMe: true, From: "bob", K: 4},
		},
	}
	dmf.posts[sendKey("bob", 2, "alice", "Hello Alice! Reply from Bob (copy_self)", true)] = vectorHex(t, "dm_bob_k3.json", "post_bencoded_hex")
	dmf.posts[sendKey("bob", 4, "*sureawrc", "Hi group, bob here", false)] = vectorHex(t, "group_msg_bob_k4.json", "post_bencoded_hex")

	groups := newFakeGroups()
	groups.users["bob"] = true
	groups.groups["*sureawrc"] = GroupInfo{Alias: "*sureawrc", Description: "Test group chat (alice+bob)", Members: []string{"alice", "bob"}}

	w := newFakeWallet()
	w.keys["bob"] = mustWIF(t, bobWIF)
	w.keys["*sureawrc"] = mustWIF(t, groupWIF)

	dht := &fakeDHT{items: map[string][][]byte{
		"alice/profile/false": {vectorHex(t, "dht_profile_alice.json", "item_bencoded_hex")},
		"alice/post1/false":   {vectorHex(t, "dht_post1_alice.json", "item_bencoded_hex")},
		"alice/tracker/true":  nil,
	}}
	swarm := &fakeSwarm{lastHave: map[string]int64{"alice": 6, "bob": 5}}
	return Config{User: "user", Password: "pwd", DM: dmf, Groups: groups, Wallet: w,
		Registry: transcriptRegistry(t), DHT: dht, Swarm: swarm, Stop: func() {}}
}

// replay sends e's request and expects twisterd's exact response.
func replay(t *testing.T, ts *testServer, e exchange, status int) {
	t.Helper()
	r := ts.call(t, e.request)
	if r.status != status || r.body != e.response {
		t.Errorf("%s %s %s\n got %d %s\nwant %d %s", e.node, e.method, e.request, r.status, r.body, status, e.response)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", e.method, ct)
	}
}

func TestTranscriptNode1(t *testing.T) {
	tr := loadTranscript(t, "twisterd-rpc-transcript.md")
	cfg, dmf, groups, dht := node1(t)
	ts := startServer(t, cfg)
	cases := []struct{ method, inReq, inResp string }{
		{"dumppubkey", `["alice"]`, ""},
		{"dumppubkey", `["bob"]`, ""},
		{"follow", `["alice",["alice","bob"]]`, ""},
		{"getfollowing", `["alice"]`, ""},
		{"getlasthave", `["alice"]`, `"alice":6,"bob":5`},
		{"newdirectmsg", `["alice",2,"bob"`, ""},
		{"newdirectmsg", `["alice",6,"*reawrcvt"`, ""},
		{"creategroup", `Test group chat`, ""},
		{"listgroups", `"params":[]`, ""},
		{"listgroups", `["alice"]`, ""},
		{"getgroupinfo", `["*reawrcvt"]`, `"members":["alice","bob"]`},
		{"newgroupinvite", `["alice",3,"*reawrcvt",["alice","bob"]]`, ""},
		{"getdirectmsgs", `["alice",10,[{"username":"bob"}]]`, ""},
		{"getdirectmsgs", `["alice",10,[{"username":"*reawrcvt"}]]`, ""},
		{"getdirectmsgs", `["alice",20,[{"username":"bob"},{"username":"*reawrcvt"}]]`, ""},
		{"dumpprivkey", `["alice"]`, ""},
		{"dumpprivkey", `["*reawrcvt"]`, ""},
		{"listwalletusers", "", ""},
		{"dhtput", `"alice","profile","s"`, ""},
		{"dhtget", `["alice","profile","s"]`, ""},
		{"dhtget", `["alice","mention","m"]`, ""},
		{"stop", "", ""},
	}
	for _, c := range cases {
		replay(t, ts, find(t, tr, "node1", c.method, c.inReq, c.inResp), http.StatusOK)
	}
	if got := strings.Join(dmf.sent, "\n"); !strings.Contains(got, "alice|2|bob|") || !strings.Contains(got, "alice|6|*reawrcvt|") {
		t.Errorf("sent: %s", got)
	}
	if len(groups.created) != 1 || groups.created[0] == "" {
		t.Errorf("creategroup must pass a fresh WIF, got %q", groups.created)
	}
	if len(groups.invites) != 1 || groups.invites[0] != "alice|3|*reawrcvt|alice,bob" {
		t.Errorf("invites: %q", groups.invites)
	}
	wantPut := `alice/profile/false/{"fullname":"Alice Test","bio":"interop test vector","location":"127.0.0.1"}/alice/1`
	if len(dht.puts) != 1 || dht.puts[0] != wantPut {
		t.Errorf("dhtput: %q, want %q", dht.puts, wantPut)
	}
	if len(dht.gets) == 0 || dht.gets[0] != "alice/profile/false/10s/100ms/3" {
		t.Errorf("dhtget defaults: %q", dht.gets)
	}
}

func TestTranscriptNode2(t *testing.T) {
	tr := loadTranscript(t, "twisterd-rpc-transcript.md")
	cfg := node2(t)
	dmf := cfg.DM.(*fakeDM)
	ts := startServer(t, cfg)
	cases := []struct{ method, inReq, inResp string }{
		{"newdirectmsg", `["bob",2,"alice"`, ""},
		{"newdirectmsg", `["bob",4,"*sureawrc"`, ""},
		{"listgroups", `"params":[]`, ""},
		{"listgroups", `["bob"]`, ""},
		{"getgroupinfo", `["*sureawrc"]`, `"members":["alice","bob"]`},
		{"rescandirectmsgs", `["bob"]`, ""},
		{"getdirectmsgs", `["bob",20,[{"username":"alice"},{"username":"*sureawrc"}]]`, ""},
		{"getdirectmsgs", `["bob",10,[{"username":"alice"}]]`, ""},
		{"dumpprivkey", `["bob"]`, ""},
		{"dumpprivkey", `["*sureawrc"]`, ""},
		{"listwalletusers", "", ""},
		{"dumppubkey", `["bob"]`, ""},
		{"dhtget", `["alice","profile","s"]`, ""},
		{"dhtget", `["alice","post1","s"]`, ""},
		{"dhtget", `["alice","tracker","m"]`, ""},
		{"getlasthave", `["bob"]`, `"alice":6,"bob":5`},
	}
	for _, c := range cases {
		replay(t, ts, find(t, tr, "node2", c.method, c.inReq, c.inResp), http.StatusOK)
	}
	if len(dmf.rescanned) != 1 || dmf.rescanned[0] != "bob" {
		t.Errorf("rescanned %q", dmf.rescanned)
	}
}

// TestTranscriptErrorPath reproduces the transcript's error reply (node2
// does not know node1's alias): code, message and HTTP 500.
func TestTranscriptErrorPath(t *testing.T) {
	tr := loadTranscript(t, "twisterd-rpc-transcript.md")
	ts := startServer(t, node2(t))
	e := find(t, tr, "node2", "getgroupinfo", `["*reawrcvt"]`, `"error":{`)
	replay(t, ts, e, http.StatusInternalServerError)
	r := ts.call(t, e.request)
	if !r.close {
		t.Error("an error reply must close the connection, as twisterd")
	}
}

// TestWireTranscript replays the later session's getlasthave of a user that
// is not local on node2: an empty object.
func TestWireTranscript(t *testing.T) {
	tr := loadTranscript(t, "wire-rpc-transcript.md")
	ts := startServer(t, node2(t))
	replay(t, ts, find(t, tr, "node2", "getlasthave", `["alice"]`, `{}`), http.StatusOK)
	replay(t, ts, find(t, tr, "node2", "stop", "", ""), http.StatusOK)
}

// TestGetinfoShape checks getinfo's keys and their order against the
// transcript; the values are ours.
func TestGetinfoShape(t *testing.T) {
	tr := loadTranscript(t, "twisterd-rpc-transcript.md")
	e := find(t, tr, "node1", "getinfo", "", "")
	ts := startServer(t, Config{Node: fakeNode{st: NodeStatus{Blocks: 12, Connections: 2, ExtPort1: 29333, ExtPort2: 29333}}})
	r := ts.call(t, e.request)
	if r.status != http.StatusOK {
		t.Fatalf("getinfo: %d %s", r.status, r.body)
	}
	if got, want := objectKeys(t, r.body), objectKeys(t, e.response); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("getinfo keys\n got %v\nwant %v", got, want)
	}
	for _, frag := range []string{`"version":94000,`, `"protocolversion":70003,`, `"blocks":12,`, `"connections":2,`, `"difficulty":0.00000000,`, `"ext_port1":29333,`} {
		if !strings.Contains(r.body, frag) {
			t.Errorf("getinfo lacks %s: %s", frag, r.body)
		}
	}
}

// TestGetinfoChainSync: with the chain registry, getinfo keeps twisterd's
// keys in their order and adds the sync state after them.
func TestGetinfoChainSync(t *testing.T) {
	tr := loadTranscript(t, "twisterd-rpc-transcript.md")
	e := find(t, tr, "node1", "getinfo", "", "")
	ts := startServer(t, Config{Node: fakeNode{st: NodeStatus{Blocks: 350, Chain: &ChainSync{Headers: 1000, Target: 1000, Syncing: true, Percent: 35, BlocksPerS: 123.45}}}})
	r := ts.call(t, e.request)
	if r.status != http.StatusOK {
		t.Fatalf("getinfo: %d %s", r.status, r.body)
	}
	want := append(objectKeys(t, e.response), "chain_headers", "chain_sync_target", "chain_syncing", "chain_sync_percent", "chain_blocks_per_s")
	if got := objectKeys(t, r.body); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("getinfo keys\n got %v\nwant %v", got, want)
	}
	for _, frag := range []string{`"blocks":350,`, `"chain_headers":1000,`, `"chain_sync_target":1000,`, `"chain_syncing":true,`, `"chain_sync_percent":35.00,`, `"chain_blocks_per_s":123.5}`} {
		if !strings.Contains(r.body, frag) {
			t.Errorf("getinfo lacks %s: %s", frag, r.body)
		}
	}
}

func objectKeys(t *testing.T, reply string) []string {
	t.Helper()
	start := strings.Index(reply, `{"result":`) + len(`{"result":`)
	members, err := tjson.Members([]byte(reply[start:strings.LastIndex(reply, `,"error"`)]), tjson.RFC8259)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, m := range members {
		keys = append(keys, m.Key)
	}
	return keys
}

func TestVectorPubkeys(t *testing.T) {
	// The fixtures' keys agree with the vectors' WIFs.
	if got := hex.EncodeToString(mustWIF(t, aliceWIF).PubKey()); got != alicePubHex {
		t.Fatalf("alice pubkey %s", got)
	}
	if got := hex.EncodeToString(mustWIF(t, bobWIF).PubKey()); got != bobPubHex {
		t.Fatalf("bob pubkey %s", got)
	}
}
