package node

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/config"
	"github.com/twgroupd/twgroupd/internal/registry"
	"github.com/twgroupd/twgroupd/internal/upstream"
)

func testConfig(t testing.TB, dir, registry string) config.Config {
	t.Helper()
	return config.Config{
		DataDir:     dir,
		RPCUser:     "user",
		RPCPassword: "a-long-enough-test-password",
		RPCPort:     freeTCPPort(t),
		Bind:        "127.0.0.1",
		Registry:    registry,
	}
}

func freeTCPPort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startNode runs a node until the test ends and returns an RPC client.
func startNode(t testing.TB, cfg config.Config, mods ...func(*Node)) (*Node, *upstream.Client, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n, err := Open(ctx, cfg, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	for _, mod := range mods {
		mod(n)
	}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	c, err := upstream.New("http://user:a-long-enough-test-password@127.0.0.1:" + itoa(cfg.RPCPort) + "/")
	if err != nil {
		t.Fatal(err)
	}
	stop := func() {
		cancel()
		<-done
		if err := n.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	return n, c, stop
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestUTPSynGetsReset sends twisterd's captured uTP SYN to the node's UDP
// port: the node must answer from that port with an ST_RESET, which makes
// twisterd fall back to TCP at once (docs/swarm.md).
func TestUTPSynGetsReset(t *testing.T) {
	dir := t.TempDir()
	n, _, stop := startNode(t, testConfig(t, dir, filepath.Join(dir, "registry.txt")))
	defer stop()
	syn := capturedSyn(t)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(n.dht.LocalAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(syn); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	nr, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no reply to a uTP SYN: %v", err)
	}
	if buf[0] != 0x31 || nr != 20 {
		t.Fatalf("reply %x is not a uTP ST_RESET", buf[:nr])
	}
	if buf[2] != syn[2] || buf[3] != syn[3] {
		t.Fatalf("reset connection id %x, SYN's %x", buf[2:4], syn[2:4])
	}
}

func capturedSyn(t *testing.T) []byte {
	f, err := os.Open("../../testdata/swarm/wire/utp_packets.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r struct {
			Hex string `json:"hex"`
			UTP struct {
				Type string `json:"type"`
			} `json:"utp"`
		}
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.UTP.Type == "ST_SYN" {
			b, err := hex.DecodeString(r.Hex)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatal("no SYN in the capture")
	return nil
}

// TestRestartKeepsState: a user, a group and a sent message survive a
// restart of the daemon on the same datadir; a second daemon on that datadir
// is refused while the first runs.
func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "registry.txt")
	cfg := testConfig(t, filepath.Join(dir, "n1"), reg)
	ctx := context.Background()
	_, c, stop := startNode(t, cfg)
	mustCall(t, c, "createwalletuser", "alice")
	mustCall(t, c, "sendnewusertransaction", "alice")
	mustCall(t, c, "follow", "alice", []string{"alice"})
	var alias string
	json.Unmarshal(mustCall(t, c, "creategroup", "persisted group"), &alias)
	mustCall(t, c, "newgroupinvite", "alice", 1, alias, []string{"alice"})
	mustCall(t, c, "newdirectmsg", "alice", 3, alias, "before restart")

	second := cfg
	second.RPCPort = freeTCPPort(t)
	if _, err := Open(ctx, second, nil); err == nil {
		t.Fatal("a second daemon opened the same datadir")
	}
	stop()

	_, c, stop = startNode(t, cfg)
	defer stop()
	var info struct {
		Description string   `json:"description"`
		Members     []string `json:"members"`
	}
	json.Unmarshal(mustCall(t, c, "getgroupinfo", alias), &info)
	if info.Description != "persisted group" || len(info.Members) != 1 {
		t.Fatalf("group after restart: %+v", info)
	}
	var msgs map[string][]struct{ Text string }
	json.Unmarshal(mustCall(t, c, "getdirectmsgs", "alice", 10, []map[string]string{{"username": alias}}), &msgs)
	found := false
	for _, m := range msgs[alias] {
		found = found || m.Text == "before restart"
	}
	if !found {
		t.Fatalf("message lost across restart: %+v", msgs)
	}
	var have map[string]int64
	json.Unmarshal(mustCall(t, c, "getlasthave", "alice"), &have)
	if have["alice"] != 3 {
		t.Fatalf("getlasthave after restart: %v", have)
	}
}

func mustCall(t *testing.T, c *upstream.Client, method string, params ...any) json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := c.Call(ctx, method, params...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return r
}

// TestBadConfigRefusedBeforeAnything: a missing password or registry is
// refused before any file is created or port bound.
func TestBadConfigRefusedBeforeAnything(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	for name, mod := range map[string]func(*config.Config){
		"password == user": func(c *config.Config) { c.RPCPassword = c.RPCUser },
		"upstream is self": func(c *config.Config) {
			c.Upstream = "http://u:p@127.0.0.1:" + itoa(c.RPCPort)
		},
		"upstream is self by name": func(c *config.Config) {
			c.Upstream = "http://u:p@localhost:" + itoa(c.RPCPort) + "/"
		},
	} {
		cfg := testConfig(t, dir, filepath.Join(dir, "registry.txt"))
		mod(&cfg)
		_, err := Open(context.Background(), cfg, nil)
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		if strings.HasPrefix(name, "upstream is self") && !strings.Contains(err.Error(), "is this node's own RPC address") {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("%s: datadir created before the config was checked", name)
		}
	}
}

// TestCookieAuth: without rpcpassword the node writes a fresh 0600
// <datadir>/.cookie at each start, serves with it and removes it at stop.
func TestCookieAuth(t *testing.T) {
	dir := t.TempDir()
	var prev string
	for i := 0; i < 2; i++ {
		cfg := testConfig(t, dir, filepath.Join(dir, "registry.txt"))
		cfg.RPCUser, cfg.RPCPassword = "", ""
		n, _, stop := startNode(t, cfg)
		path := filepath.Join(dir, ".cookie")
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("cookie mode %v", fi.Mode().Perm())
		}
		data, _ := os.ReadFile(path)
		user, pass, _ := strings.Cut(string(data), ":")
		if user != "__cookie__" || len(pass) != 64 || pass == prev {
			t.Errorf("cookie %q (previous password %q)", data, prev)
		}
		prev = pass
		c, err := upstream.New("http://" + user + ":" + pass + "@127.0.0.1:" + itoa(cfg.RPCPort) + "/")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Call(context.Background(), "getinfo"); err != nil {
			t.Errorf("getinfo with the cookie: %v", err)
		}
		_ = n
		stop()
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("cookie left after stop: %v", err)
		}
	}
}

// TestNodesShareNoPort: daemons started with -dhtport=0 side by side each
// get one number free for both TCP (swarm) and UDP (DHT), the same on both.
func TestNodesShareNoPort(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "registry.txt")
	for i := range 8 {
		n, _, stop := startNode(t, testConfig(t, filepath.Join(dir, strconv.Itoa(i)), reg))
		defer stop()
		if d, s := n.dht.LocalAddr().Port(), n.swarm.Addr().Port(); d != s {
			t.Fatalf("node %d: DHT on UDP %d, swarm on TCP %d", i, d, s)
		}
	}
}

// TestFirstPostRightAfterRegistration: on a registry file whose chain has
// been running for a while (best height 100), a user's first DM sent right
// after sendnewusertransaction validates (posts are signed at best-1).
func TestFirstPostRightAfterRegistration(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "registry.txt")
	if _, err := registry.InitFile(context.Background(), reg, time.Now().Add(-1000*time.Second), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	_, c, stop := startNode(t, testConfig(t, filepath.Join(dir, "n1"), reg))
	defer stop()
	mustCall(t, c, "createwalletuser", "alice")
	mustCall(t, c, "createwalletuser", "bob")
	mustCall(t, c, "sendnewusertransaction", "alice")
	mustCall(t, c, "sendnewusertransaction", "bob")
	mustCall(t, c, "newdirectmsg", "alice", 0, "bob", "first post")
}

// TestErrorsNameTheCulprit: through a real node's RPC, the mistakes of the
// first hour get twisterd's code and message as prefix, then the culprit,
// and none of them succeeds silently.
func TestErrorsNameTheCulprit(t *testing.T) {
	dir := t.TempDir()
	_, c, stop := startNode(t, testConfig(t, filepath.Join(dir, "n1"), filepath.Join(dir, "registry.txt")))
	defer stop()
	mustCall(t, c, "createwalletuser", "alice")
	mustCall(t, c, "sendnewusertransaction", "alice")
	var alias string
	json.Unmarshal(mustCall(t, c, "creategroup", "g"), &alias)
	for _, tc := range []struct {
		method string
		params []any
		code   int
		msg    string
	}{
		{"newdirectmsg", []any{"alice", 0, "nosuchuser", "hi"}, -32603, "error encrypting to pubkey of destination user: 'nosuchuser' is not a registered user"},
		{"newdirectmsg", []any{"alice", 0, "*abc", "hi"}, -32603, "error encrypting to pubkey of destination user: unknown group alias '*abc'"},
		{"newdirectmsg", []any{"bob", 0, "alice", "hi"}, -32603, "error signing post with private key of user: 'bob' is not a user of this wallet"},
		{"newdirectmsg", []any{"alice", 0, "alice", ""}, -8, "empty message: a DM without text is dropped by every receiver"},
		{"getgroupinfo", []any{"*abc"}, -32603, "unknown group alias '*abc'"},
		{"creategroup", []any{"g", "notakey"}, -5, "Invalid private key: groupprivkey is not a WIF private key"},
		{"newgroupinvite", []any{"alice", 0, alias, []string{}}, -8, "newgroupinvite: no new member given"},
		{"follow", []any{"alice", []string{"ghost"}}, -8, "follow: 'ghost' is not a registered user (not followed)"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := c.Call(ctx, tc.method, tc.params...)
		cancel()
		var re *upstream.RPCError
		if !errors.As(err, &re) || re.Code != tc.code || re.Message != tc.msg {
			t.Errorf("%s %v = %v; want %d %q", tc.method, tc.params, err, tc.code, tc.msg)
		}
	}
	var groups []string
	json.Unmarshal(mustCall(t, c, "listgroups"), &groups)
	if len(groups) != 1 {
		t.Errorf("groups after the refused creategroup: %v", groups)
	}
	var have map[string]int64
	json.Unmarshal(mustCall(t, c, "getlasthave", "alice", []string{"alice"}), &have)
	if have["alice"] != -1 {
		t.Errorf("a refused call published a post: getlasthave %v", have)
	}
}
