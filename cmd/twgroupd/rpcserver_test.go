package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/groupchat"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/rpc"
	"github.com/twgroupd/twgroupd/wallet"
)

// groupsSeam stands in for groupchat.Service (tested in its own package):
// it records what the CLI's converted parameters became on the server side.
type groupsSeam struct {
	mu      sync.Mutex
	invites []string
}

func (g *groupsSeam) Create(ctx context.Context, desc, wif string) (string, error) {
	if wif != "" {
		if _, err := twproto.ParseWIF(wif); err != nil {
			return "", nil // twisterd answers "" for a bad key
		}
	}
	return "*abcdefgh", nil
}

func (g *groupsSeam) List(user string, onlyIgnored bool) ([]string, error) {
	if user != "" && user != "alice" {
		return nil, groupchat.ErrUnknownUser
	}
	if onlyIgnored {
		return []string{}, nil
	}
	return []string{"*abcdefgh"}, nil
}

func (g *groupsSeam) Info(alias string) (rpc.GroupInfo, error) {
	if alias != "*abcdefgh" {
		return rpc.GroupInfo{}, groupchat.ErrUnknownGroup
	}
	return rpc.GroupInfo{Alias: alias, Description: "weekend plans", Members: []string{"alice", "bob"}}, nil
}

func (g *groupsSeam) Invite(ctx context.Context, user string, k int64, alias string, members []string) error {
	if alias != "*abcdefgh" {
		return groupchat.ErrUnknownGroup
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.invites = append(g.invites, user+" "+strconv.FormatInt(k, 10)+" "+alias+" "+strings.Join(members, ","))
	return nil
}

func (g *groupsSeam) SetDescription(ctx context.Context, user string, k int64, alias, desc string) error {
	return groupchat.ErrUnknownGroup
}

func (g *groupsSeam) Leave(ctx context.Context, user, alias string) error { return nil }

// emptyRegistry has no registered users, so createwalletuser may create any.
type emptyRegistry struct{}

func (emptyRegistry) UserKey(ctx context.Context, user string, height int64) (twproto.UserKey, error) {
	return twproto.UserKey{}, twproto.ErrUnknownUser
}

func (emptyRegistry) BestHeight(ctx context.Context) (int64, error) { return 0, nil }

// startRPCServer runs the real rpc server with a real bbolt wallet on
// 127.0.0.1 and returns its port.
func startRPCServer(t *testing.T, groups rpc.GroupService) string {
	t.Helper()
	w, err := wallet.Open(filepath.Join(t.TempDir(), "wallet.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	srv, err := rpc.New(rpc.Config{
		User: "u", Password: "a-long-enough-password", Listen: []string{"127.0.0.1:0"},
		Wallet: w, Groups: groups, Registry: emptyRegistry{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("rpc server did not stop")
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("rpc server not ready")
	}
	_, port, err := net.SplitHostPort(srv.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// The CLI against twgroupd's own JSON-RPC server: conversions arrive with
// the right types, results print as twisterd's client prints them, and
// error replies give |code| as the exit status.
func TestClientAgainstRPCServer(t *testing.T) {
	groups := &groupsSeam{}
	port := startRPCServer(t, groups)
	call := func(args ...string) result {
		t.Helper()
		flags := []string{"-datadir=" + t.TempDir(), "-rpcport=" + port, "-rpcuser=u", "-rpcpassword=a-long-enough-password"}
		return runBin(t, "", append(flags, args...)...)
	}

	r := call("createwalletuser", "alice")
	if r.status != 0 || r.stderr != "" {
		t.Fatalf("createwalletuser: %+v", r)
	}
	wif := strings.TrimSuffix(r.stdout, "\n")
	if _, err := twproto.ParseWIF(wif); err != nil {
		t.Fatalf("createwalletuser printed %q, not a raw WIF string", r.stdout)
	}
	if r := call("dumpprivkey", "alice"); r.status != 0 || r.stdout != wif+"\n" {
		t.Fatalf("dumpprivkey: %+v", r)
	}
	if r := call("listwalletusers"); r.status != 0 || r.stdout != "[\n    \"alice\"\n]\n" {
		t.Fatalf("listwalletusers: %+v", r)
	}
	// -5 Username not found: exit 5, compact error object on stderr.
	if r := call("dumpprivkey", "nobody"); r.status != 5 || r.stdout != "" ||
		r.stderr != "error: {\"code\":-5,\"message\":\"Username not found\"}\n" {
		t.Fatalf("dumpprivkey nobody: %+v", r)
	}
	// -11 Error: this username exists in wallet.
	if r := call("createwalletuser", "alice", "false"); r.status != 11 || !strings.Contains(r.stderr, "this username exists in wallet") {
		t.Fatalf("createwalletuser again: %+v", r)
	}

	if r := call("creategroup", "weekend plans"); r.status != 0 || r.stdout != "*abcdefgh\n" {
		t.Fatalf("creategroup: %+v", r)
	}
	// A bad key gives "", which twisterd's client prints as nothing.
	if r := call("creategroup", "x", "notawif"); r.status != 0 || r.stdout != "" || r.stderr != "" {
		t.Fatalf("creategroup bad key: %+v", r)
	}
	if r := call("newgroupinvite", "alice", "5", "*abcdefgh", `["bob","carol"]`); r.status != 0 || r.stdout != "" {
		t.Fatalf("newgroupinvite: %+v", r)
	}
	groups.mu.Lock()
	invites := slices.Clone(groups.invites)
	groups.mu.Unlock()
	if !slices.Equal(invites, []string{"alice 5 *abcdefgh bob,carol"}) {
		t.Fatalf("server saw invites %q", invites)
	}
	// -32603 unknown group alias: the OS keeps the low byte of 32603.
	if r := call("newgroupinvite", "alice", "6", "*nosuch", `["bob"]`); r.status != 32603&0xff ||
		r.stderr != "error: {\"code\":-32603,\"message\":\"unknown group alias\"}\n" {
		t.Fatalf("newgroupinvite unknown: %+v", r)
	}
	if r := call("getgroupinfo", "*abcdefgh"); r.status != 0 ||
		r.stdout != "{\n    \"alias\" : \"*abcdefgh\",\n    \"description\" : \"weekend plans\",\n    \"members\" : [\n        \"alice\",\n        \"bob\"\n    ]\n}\n" {
		t.Fatalf("getgroupinfo: %+v", r)
	}
	if r := call("listgroups", "alice", "true"); r.status != 0 || r.stdout != "[\n]\n" {
		t.Fatalf("listgroups ignored: %+v", r)
	}
	if r := call("listgroups", "mallory"); r.status != 32603&0xff || !strings.Contains(r.stderr, `"unknown user"`) {
		t.Fatalf("listgroups unknown user: %+v", r)
	}
	// Too few parameters: -1 with the help text.
	if r := call("getgroupinfo"); r.status != 1 || !strings.HasPrefix(r.stderr, "error: {\"code\":-1,\"message\":\"getgroupinfo <groupalias>") {
		t.Fatalf("getgroupinfo without alias: %+v", r)
	}
	// An unknown method without -upstream: -32601, exit 89.
	if r := call("getblockcount"); r.status != 32601&0xff || !strings.Contains(r.stderr, `"Method not found"`) {
		t.Fatalf("getblockcount: %+v", r)
	}
	if r := call("help", "getgroupinfo"); r.status != 0 || !strings.HasPrefix(r.stdout, "getgroupinfo <groupalias>") {
		t.Fatalf("help getgroupinfo: %+v", r)
	}
	// Wrong password against the real server's 401.
	r = runBin(t, "", "-datadir="+t.TempDir(), "-rpcport="+port, "-rpcuser=u", "-rpcpassword=wrong", "getinfo")
	if r.status != 87 || r.stderr != "error: incorrect rpcuser or rpcpassword (authorization failed)\n" {
		t.Fatalf("wrong password: %+v", r)
	}
}
