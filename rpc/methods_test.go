package rpc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/groupchat"
	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/internal/upstream"
	"github.com/twgroupd/twgroupd/wallet"
)

// TestWalletMethods runs the key methods against a real bbolt wallet.
func TestWalletMethods(t *testing.T) {
	w, err := wallet.Open(filepath.Join(t.TempDir(), "wallet.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ts := startServer(t, Config{Wallet: w, Registry: transcriptRegistry(t)})

	r := ts.call(t, req("createwalletuser", "carol"))
	if r.status != 200 || !strings.HasPrefix(r.body, `{"result":"`) {
		t.Fatalf("createwalletuser: %d %s", r.status, r.body)
	}
	carolWIF := strings.TrimSuffix(strings.TrimPrefix(r.body, `{"result":"`), `","error":null,"id":"t"}`+"\n")
	if _, err := twproto.ParseWIF(carolWIF); err != nil {
		t.Fatalf("createwalletuser returned %q: %v", carolWIF, err)
	}
	wantReply(t, ts.call(t, req("dumpprivkey", "carol")), 200, okReply(`"`+carolWIF+`"`))
	wantReply(t, ts.call(t, req("createwalletuser", "carol")), 500, errReply(-11, "Error: this username exists in wallet"))
	wantReply(t, ts.call(t, req("createwalletuser", "alice")), 500, errReply(-11, "Error: this username exists in tx database"))
	wantReply(t, ts.call(t, req("createwalletuser", "zed", true)), 500, errReply(-11, "Error: replacekey given but old key not in wallet"))
	wantReply(t, ts.call(t, req("createwalletuser", "carol", true)), 500, errReply(-4, "Error: replacekey is not supported by twgroupd"))

	wantReply(t, ts.call(t, req("createwalletuser", "*x")), 500, errReply(-11, `invalid wallet username: "*x"`))
	wantReply(t, ts.call(t, req("importprivkey", "notawif", "alice")), 500, errReply(-5, "Invalid private key"))
	wantReply(t, ts.call(t, req("importprivkey", bobWIF, "alice")), 500, errReply(-5, "Private key mismatch to existing public key (wrong username?)"))
	uncompressed, err := twproto.PrivateKeyFromBytes(mustWIF(t, aliceWIF).Secret(), false)
	if err != nil {
		t.Fatal(err)
	}
	wantReply(t, ts.call(t, req("importprivkey", uncompressed.WIF(), "alice")), 500, errReply(-5, "Private key mismatch to existing public key (wrong username?)"))
	wantReply(t, ts.call(t, req("importprivkey", groupWIF, "dave")), 500, errReply(-5, "User must exist (or allow_new_user flag must be set)"))
	wantReply(t, ts.call(t, req("importprivkey", groupWIF, "dave", false, true)), 200, okReply("null"))
	wantReply(t, ts.call(t, req("importprivkey", aliceWIF, "alice")), 200, okReply("null"))
	wantReply(t, ts.call(t, req("importprivkey", aliceWIF, "alice", true)), 200, okReply("null")) // already there: null
	wantReply(t, ts.call(t, req("importprivkey", aliceWIF, "alice", "yes")), 500, errReply(-1, "value is type str, expected bool"))
	wantReply(t, ts.call(t, req("dumpprivkey", "alice")), 200, okReply(`"`+aliceWIF+`"`))
	wantReply(t, ts.call(t, req("dumpprivkey", "nobody")), 500, errReply(-5, "Username not found"))
	wantReply(t, ts.call(t, req("listwalletusers")), 200, okReply(`["alice","carol","dave"]`))

	// dumppubkey reads the registry only.
	wantReply(t, ts.call(t, req("dumppubkey", "alice")), 200, okReply(`"`+alicePubHex+`"`))
	wantReply(t, ts.call(t, req("dumppubkey", "carol")), 200, okReply(`""`))
	wantReply(t, ts.call(t, req("dumppubkey", "*group")), 200, okReply(`""`))
}

func TestKeyNotKnown(t *testing.T) {
	w := newFakeWallet()
	w.keys["eve"] = nil
	ts := startServer(t, Config{Wallet: w, Registry: transcriptRegistry(t)})
	wantReply(t, ts.call(t, req("dumpprivkey", "eve")), 500, errReply(-4, "Private key for username eve is not known"))
	wantReply(t, ts.call(t, req("createwalletuser", "eve")), 500, errReply(-11, "Error: this username exists in wallet"))
}

func TestRegistryFailure(t *testing.T) {
	reg := &fakeRegistry{err: fmt.Errorf("upstream: %w", upstream.ErrUnavailable)}
	ts := startServer(t, Config{Wallet: newFakeWallet(), Registry: reg})
	r := ts.call(t, req("dumppubkey", "alice"))
	if r.status != 500 || !strings.Contains(r.body, `"code":-32603`) || !strings.Contains(r.body, "upstream twisterd unavailable") {
		t.Errorf("dumppubkey with a failing registry: %d %s", r.status, r.body)
	}
}

// TestErrorTable maps each backend sentinel to twisterd's code and exact
// message, also when the backend wrapped it with context.
func TestErrorTable(t *testing.T) {
	dmf := newFakeDM()
	groups := newFakeGroups()
	groups.groups["*g"] = GroupInfo{Alias: "*g"}
	ts := startServer(t, Config{DM: dmf, Groups: groups})
	send := req("newdirectmsg", "alice", 5, "bob", "hi")
	for _, c := range []struct {
		err  error
		code int
		msg  string
	}{
		{dm.ErrEncryptToDest, -32603, "error encrypting to pubkey of destination user"},
		{fmt.Errorf("newdirectmsg: %w", dm.ErrEncryptToSelf), -32603, "error encrypting to pubkey to ourselve"},
		{fmt.Errorf("sign: %w", dm.ErrSign), -32603, "error signing post with private key of user"},
		{fmt.Errorf("publish: %w", &dm.KUsedError{User: "alice", K: 5}), -32602, "k 5 already used by user 'alice'"},
		{fmt.Errorf("accept: %w", &twproto.PostError{Msg: "bad bencoded post size"}), -32602, "bad bencoded post size"},
		{&upstream.RPCError{Code: -13, Message: "Error: Please enter the wallet passphrase with walletpassphrase first."}, -13, "Error: Please enter the wallet passphrase with walletpassphrase first."},
		{errors.New("disk on fire"), -32603, "disk on fire"},
		// The culprit follows twisterd's message; the code stays.
		{fmt.Errorf("send: %w", dm.Culprit(dm.ErrEncryptToDest, "'nosuchuser' is not a registered user")), -32603, "error encrypting to pubkey of destination user: 'nosuchuser' is not a registered user"},
		{dm.Culprit(dm.ErrSign, "'bob' is not a user of this wallet"), -32603, "error signing post with private key of user: 'bob' is not a user of this wallet"},
		{&dm.CulpritError{Err: groupchat.ErrUnknownGroup, Detail: " '*abc'"}, -32603, "unknown group alias '*abc'"},
		{dm.Culprit(wallet.ErrInvalidKey, "groupprivkey is not a WIF private key"), -5, "Invalid private key: groupprivkey is not a WIF private key"},
		{dm.ErrEmptyMessage, -8, "empty message: a DM without text is dropped by every receiver"},
		{fmt.Errorf("follow: %w", &dm.NotRegisteredError{Users: []string{"x"}}), -8, "follow: 'x' is not a registered user (not followed)"},
		{groupchat.ErrNoMembers, -8, "newgroupinvite: no new member given"},
	} {
		dmf.sendErr = c.err
		wantReply(t, ts.call(t, send), 500, errReply(c.code, c.msg))
	}
	groups.errs = fmt.Errorf("invite: %w", groupchat.ErrEncryptToGroup)
	wantReply(t, ts.call(t, req("newgroupinvite", "alice", 3, "*g", []any{"bob"})), 500, errReply(-32603, "error encrypting to pubkey of group alias"))
	wantReply(t, ts.call(t, req("newgroupdescription", "alice", 3, "*g", "d")), 500, errReply(-32603, "error encrypting to pubkey of group alias"))
	groups.errs = nil
	wantReply(t, ts.call(t, req("newgroupinvite", "alice", 3, "*nope", []any{"bob"})), 500, errReply(-32603, "unknown group alias"))
	wantReply(t, ts.call(t, req("listgroups", "stranger")), 500, errReply(-32603, "unknown user"))
	wantReply(t, ts.call(t, req("leavegroup", "stranger", "*g")), 500, errReply(-32603, "unknown user"))
	wantReply(t, ts.call(t, req("leavegroup", "alice", "*nope")), 500, errReply(-32603, "unknown group alias"))
}

func TestDMAndGroupMethods(t *testing.T) {
	cfg, _, groups, _ := node1(t)
	cfg.Password = longPassword
	swarm := cfg.Swarm.(*fakeSwarm)
	swarm.numPieces = map[string]int{"alice": 7, "bob": 4}
	swarm.maxSeen = map[string]int{"alice/6": 3}
	ts := startServer(t, cfg)

	// newdirectmsgto is newdirectmsg under the group-chat design's name.
	r := ts.call(t, req("newdirectmsgto", "alice", 6, "*reawrcvt", "Hello group! (alice)"))
	post, err := twproto.HexcapePost(vectorHex(t, "group_msg_alice_k6.json", "post_bencoded_hex"))
	if err != nil {
		t.Fatal(err)
	}
	wantReply(t, r, 200, okReply(string(post)))

	wantReply(t, ts.call(t, req("getdirectmsgs", "alice", 1, []any{map[string]any{"username": "bob"}, map[string]any{"username": "nobody"}, map[string]any{"max_id": 1}})), 200,
		okReply(`{"bob":[{"id":1,"time":1795483302,"text":"Hello Alice! Reply from Bob (copy_self)","fromMe":false,"from":"bob","k":3}]}`))
	wantReply(t, ts.call(t, req("getdirectmsgs", "alice", 100, []any{map[string]any{"username": "bob", "since_id": 0, "extra": true}})), 200,
		okReply(`{"bob":[{"id":1,"time":1795483302,"text":"Hello Alice! Reply from Bob (copy_self)","fromMe":false,"from":"bob","k":3}]}`))
	wantReply(t, ts.call(t, req("getdirectmsgs", "alice", 100, []any{map[string]any{"username": "bob", "max_id": 0}})), 200,
		okReply(`{"bob":[{"id":0,"time":1795483300,"text":"Hi Bob, this is a secret DM from Alice","fromMe":true,"from":"alice","k":2}]}`))
	// A name asked twice appears twice, as twisterd's json_spirit Object.
	wantReply(t, ts.call(t, req("getdirectmsgs", "alice", 1, []any{map[string]any{"username": "bob"}, map[string]any{"username": "bob"}})), 200,
		okReply(`{"bob":[{"id":1,"time":1795483302,"text":"Hello Alice! Reply from Bob (copy_self)","fromMe":false,"from":"bob","k":3}],"bob":[{"id":1,"time":1795483302,"text":"Hello Alice! Reply from Bob (copy_self)","fromMe":false,"from":"bob","k":3}]}`))
	wantReply(t, ts.call(t, req("getdirectmsgs", "nobody", 10, []any{map[string]any{"username": "bob"}})), 200, okReply(`{}`))

	wantReply(t, ts.call(t, req("unfollow", "alice", []any{"bob"})), 200, okReply("null"))
	wantReply(t, ts.call(t, req("getfollowing", "alice")), 200, okReply(`["alice"]`))
	wantReply(t, ts.call(t, req("follow", "alice", []any{"carol", "bob"})), 200, okReply("null"))
	wantReply(t, ts.call(t, req("getfollowing", "alice")), 200, okReply(`["alice","bob","carol"]`))
	wantReply(t, ts.call(t, req("getfollowing", "nobody")), 200, okReply(`[]`))
	wantReply(t, ts.call(t, req("getlasthave", "*reawrcvt", []any{"bob", "alice", "bob", "zoe"})), 200, okReply(`{"alice":6,"bob":5,"zoe":-1}`))
	wantReply(t, ts.call(t, req("getlasthave", "alice")), 200, okReply(`{"alice":6,"bob":5,"carol":-1}`))
	wantReply(t, ts.call(t, req("getnumpieces", "alice")), 200, okReply(`{"alice":7,"bob":4,"carol":0}`))
	wantReply(t, ts.call(t, req("getpiecemaxseen", "alice", 6)), 200, okReply(`3`))
	wantReply(t, ts.call(t, req("getpiecemaxseen", "alice", 9)), 200, okReply(`0`))

	// Groups.
	wantReply(t, ts.call(t, req("creategroup", "with key", groupWIF)), 200, okReply(`"*reawrcvt"`))
	if last := groups.created[len(groups.created)-1]; last != groupWIF {
		t.Errorf("creategroup passed %q", last)
	}
	wantReply(t, ts.call(t, req("creategroup", "bad key", "notawif")), 200, okReply(`""`))
	wantReply(t, ts.call(t, req("newgroupdescription", "alice", 7, "*reawrcvt", "new desc")), 200, okReply("null"))
	wantReply(t, ts.call(t, req("getgroupinfo", "*reawrcvt")), 200, okReply(`{"alias":"*reawrcvt","description":"new desc","members":["alice","bob"]}`))
	wantReply(t, ts.call(t, req("leavegroup", "alice", "*reawrcvt")), 200, okReply("null"))
	wantReply(t, ts.call(t, req("listgroups", "alice", true)), 200, okReply(`["*reawrcvt"]`))
	wantReply(t, ts.call(t, req("listgroups", "alice")), 200, okReply(`[]`))
	wantReply(t, ts.call(t, req("listgroups", "alice", "x")), 500, errReply(-1, "value is type str, expected bool"))
	wantReply(t, ts.call(t, req("newgroupinvite", "alice", 8, "*reawrcvt", "bob")), 500, errReply(-1, "value is type str, expected array"))
}

// TestGetposts renders swarm posts like twisterd's newpostmsg/getposts.
func TestGetposts(t *testing.T) {
	tr := loadTranscript(t, "twisterd-rpc-transcript.md")
	want := find(t, tr, "node1", "newpostmsg", `["alice",1,`, "")
	swarm := &fakeSwarm{posts: [][]byte{vectorHex(t, "public_post_alice_k1.json", "post_bencoded_hex"), vectorHex(t, "public_post_bob_k1.json", "post_bencoded_hex")}}
	ts := startServer(t, Config{Swarm: swarm})
	r := ts.call(t, req("getposts", 1, []any{map[string]any{"username": "alice"}, map[string]any{"username": "bob", "since_id": 0, "max_id": 9}}))
	result := strings.TrimSuffix(strings.TrimPrefix(want.response, `{"result":`), `,"error":null,"id":"t"}`+"\n")
	wantReply(t, r, 200, okReply("["+result+"]"))
	if swarm.flags != [2]int{1, 0} {
		t.Errorf("default flags %v", swarm.flags)
	}
	wantQ := []msgstore.Query{{Username: "alice", MaxID: 1<<31 - 1, SinceID: -1}, {Username: "bob", MaxID: 9, SinceID: 0}}
	if fmt.Sprint(swarm.queries) != fmt.Sprint(wantQ) {
		t.Errorf("queries %v", swarm.queries)
	}
	ts.call(t, req("getposts", 5, []any{}, 3, 2))
	if swarm.flags != [2]int{3, 2} {
		t.Errorf("flags %v", swarm.flags)
	}
}

func TestDHTMethods(t *testing.T) {
	w := newFakeWallet()
	w.keys["alice"] = mustWIF(t, aliceWIF)
	w.keys["ghost"] = nil
	dht := &fakeDHT{}
	ts := startServer(t, Config{Wallet: w, DHT: dht})
	value := map[string]any{"fullname": "A"}
	wantReply(t, ts.call(t, req("dhtput", "alice", "profile", "s", value, "bob", 1)), 500, errReply(-11, "Error: no sig_user in wallet"))
	wantReply(t, ts.call(t, req("dhtput", "ghost", "profile", "s", value, "ghost", 1)), 500, errReply(-4, "Private key of sig_user not available"))
	wantReply(t, ts.call(t, req("dhtput", "alice", "profile", "s", value, "alice")), 500, errReply(-4, "Seq parameter required for single"))
	wantReply(t, ts.call(t, req("dhtput", "bob", "profile", "s", value, "alice", 1)), 500, errReply(-4, "Username must be the same as sig_user for single"))
	wantReply(t, ts.call(t, req("dhtput", "bob", "mention", "m", "text", "alice")), 200, okReply("null"))
	wantReply(t, ts.call(t, req("dhtput", "alice", "status", "s", value, "alice", 4)), 200, okReply("null"))
	want := []string{`bob/mention/true/"text"/alice/-1`, `alice/status/false/{"fullname":"A"}/alice/4`}
	if fmt.Sprint(dht.puts) != fmt.Sprint(want) {
		t.Errorf("puts %q", dht.puts)
	}
	wantReply(t, ts.call(t, req("dhtget", "alice", "mention", "m", 10000, 2000, 3)), 200, okReply("[]"))
	wantReply(t, ts.call(t, req("dhtget", "alice", "avatar", "s", 500)), 200, okReply("[]"))
	want = []string{"alice/mention/true/10s/2s/3", "alice/avatar/false/500ms/100ms/3"}
	if fmt.Sprint(dht.gets) != fmt.Sprint(want) {
		t.Errorf("gets %q", dht.gets)
	}
}

// TestNoBackend: without a backend (and without an upstream) a method
// answers a clear error instead of failing obscurely.
func TestNoBackend(t *testing.T) {
	ts := startServer(t, Config{})
	for _, c := range []struct{ body, msg string }{
		{req("newdirectmsg", "a", 1, "b", "m"), "newdirectmsg: no DM engine configured in this twgroupd (run it with -upstream or enable the DM engine)"},
		{req("getgroupinfo", "*g"), "getgroupinfo: no group-chat service configured in this twgroupd (run it with -upstream or enable the group-chat service)"},
		{req("dhtget", "a", "profile", "s"), "dhtget: no DHT configured in this twgroupd (run it with -upstream or enable the DHT)"},
		{req("getlasthave", "a"), "getlasthave: no swarm configured in this twgroupd (run it with -upstream or enable the swarm)"},
		{req("dumppubkey", "a"), "dumppubkey: no user registry configured in this twgroupd (run it with -upstream or enable the user registry)"},
		{req("listwalletusers"), "listwalletusers: no wallet configured in this twgroupd (run it with -upstream or enable the wallet)"},
	} {
		wantReply(t, ts.call(t, c.body), http.StatusInternalServerError, errReply(-1, c.msg))
	}
	// getinfo still answers (zeros) without a node status provider.
	if r := ts.call(t, req("getinfo")); r.status != 200 || !strings.Contains(r.body, `"version":94000`) {
		t.Errorf("getinfo: %d %s", r.status, r.body)
	}
}

// fakeRegistrar registers users in a fakeRegistry.
type fakeRegistrar struct{ reg *fakeRegistry }

func (f fakeRegistrar) RegisterUser(_ context.Context, user string, pubkey []byte) (string, error) {
	f.reg.keys[user] = pubkey
	return hex.EncodeToString(pubkey[:8]), nil
}

func TestSendNewUserTransaction(t *testing.T) {
	w, err := wallet.Open(filepath.Join(t.TempDir(), "wallet.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	reg := transcriptRegistry(t)
	ts := startServer(t, Config{Wallet: w, Registry: reg, Registrar: fakeRegistrar{reg}})
	wantReply(t, ts.call(t, req("sendnewusertransaction", "carol")), 500, errReply(-11, "Error: username must exist in wallet"))
	wantReply(t, ts.call(t, req("sendnewusertransaction", 5)), 500, errReply(-8, "username must be string"))
	ts.call(t, req("createwalletuser", "carol"))
	key, err := w.Key("carol")
	if err != nil {
		t.Fatal(err)
	}
	wantReply(t, ts.call(t, req("sendnewusertransaction", "carol")), 200, okReply(`"`+hex.EncodeToString(key.PubKey()[:8])+`"`))
	wantReply(t, ts.call(t, req("dumppubkey", "carol")), 200, okReply(`"`+hex.EncodeToString(key.PubKey())+`"`))
	wantReply(t, ts.call(t, req("sendnewusertransaction", "carol")), 500, errReply(-11, "Error: this username exists in tx database"))
	wantReply(t, ts.call(t, req("createwalletuser", "carol")), 500, errReply(-11, "Error: this username exists in wallet"))

	// Without a registrar it is not ours: a clear error (or the upstream's).
	bare := startServer(t, Config{Wallet: w, Registry: reg})
	wantReply(t, bare.call(t, req("sendnewusertransaction", "carol")), 500,
		errReply(-1, "sendnewusertransaction: no registrar configured in this twgroupd (run it with -upstream or enable the registrar)"))
}
