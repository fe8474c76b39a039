package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/config"
	"github.com/twgroupd/twgroupd/internal/sdnotify"
)

// lockedBuffer is a log sink read while runServe may still write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func notifySocket(t *testing.T) (*net.UnixConn, *sdnotify.Notifier) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, sdnotify.New(path)
}

func readNotify(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1024)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

// A real SIGTERM to this process cancels the node's context; systemd sees
// READY=1 after ready() and STOPPING=1 on shutdown. The node runner is a
// stand-in here (internal/node is tested on its own); everything around it
// is the production path.
func TestServeSignalAndNotify(t *testing.T) {
	conn, sd := notifySocket(t)
	cfg := config.Config{RPCPort: 28332, DHTPort: 29333, RPCPassword: "hunter2hunter2", Upstream: "http://u:topsecret@127.0.0.1:1"}
	var logs lockedBuffer
	nodeErr := make(chan error, 1)
	gotCtxDone := make(chan struct{})
	node := func(ctx context.Context, c config.Config, log *slog.Logger, ready func()) error {
		log.Debug("node debug line")
		ready()
		ready() // idempotent
		<-ctx.Done()
		close(gotCtxDone)
		return nil
	}
	go func() { nodeErr <- runServe(context.Background(), cfg, &logs, node, sd) }()

	if got := readNotify(t, conn); !strings.HasPrefix(got, "READY=1\n") || !strings.Contains(got, "STATUS=") {
		t.Fatalf("first notification %q", got)
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := readNotify(t, conn); got != sdnotify.Stopping {
		t.Fatalf("second notification %q", got)
	}
	select {
	case <-gotCtxDone:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not cancel the node context")
	}
	select {
	case err := <-nodeErr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("runServe did not return")
	}
	out := logs.String()
	if strings.Contains(out, "hunter2") || strings.Contains(out, "topsecret") {
		t.Fatalf("secret in logs:\n%s", out)
	}
	if strings.Contains(out, "node debug line") {
		t.Fatal("debug line logged without -debug")
	}
	for _, want := range []string{"twgroupd starting", "config.rpcpassword_set=true", "twgroupd ready", "twgroupd shutting down", "twgroupd stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// The stop RPC ends node.Run from inside: STOPPING=1 is still sent, and a
// node error becomes exit status 1 with the error logged.
func TestServeNodeReturns(t *testing.T) {
	conn, sd := notifySocket(t)
	var logs lockedBuffer
	node := func(ctx context.Context, c config.Config, log *slog.Logger, ready func()) error {
		log.Debug("node debug line", "wif", "L5k7ajAiJxiSm8CEHGJf5jALJXyWZmsiQ9Ngy1KJ5jZkWNup8bUK")
		ready()
		return errors.New("listen tcp: address already in use")
	}
	err := runServe(context.Background(), config.Config{Debug: true}, &logs, node, sd)
	if st, ok := err.(exitStatus); !ok || st != 1 {
		t.Fatalf("err %v, want exit status 1", err)
	}
	if got := readNotify(t, conn); !strings.HasPrefix(got, "READY=1") {
		t.Fatalf("notification %q", got)
	}
	if got := readNotify(t, conn); got != sdnotify.Stopping {
		t.Fatalf("notification %q", got)
	}
	out := logs.String()
	if !strings.Contains(out, "node debug line") || !strings.Contains(out, "address already in use") {
		t.Fatalf("logs:\n%s", out)
	}
	if strings.Contains(out, "L5k7aj") {
		t.Fatalf("WIF in logs:\n%s", out)
	}
}

// serve as a subprocess: a bad setting stops it before anything starts.
func TestServeBadConfig(t *testing.T) {
	r := runBin(t, "", "-datadir="+t.TempDir(), "-rpcport=99999", "serve")
	if r.status != 1 || r.stderr != "error: -rpcport: invalid port \"99999\"\n" {
		t.Fatalf("%+v", r)
	}
	r = runBin(t, "", "-datadir="+t.TempDir(), "serve", "extra")
	if r.status != 1 || !strings.Contains(r.stderr, "unknown command \"extra\"") {
		t.Fatalf("%+v", r)
	}
}

// docs/twgroupd.service must stay a Type=notify unit for a dedicated user
// with the hardening docs/cli.md promises, starting `serve`.
func TestServiceUnit(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "twgroupd.service"))
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("bad unit line %q", line)
		}
		settings[k] = append(settings[k], v)
	}
	want := map[string]string{
		"Type": "notify", "NotifyAccess": "main", "User": "twgroupd", "Group": "twgroupd",
		"KillSignal": "SIGTERM", "StateDirectory": "twgroupd", "StateDirectoryMode": "0700", "UMask": "0077",
		"NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "PrivateDevices": "yes", "MemoryDenyWriteExecute": "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
	}
	for k, v := range want {
		if got := settings[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	exec := settings["ExecStart"]
	if len(exec) != 1 || !strings.HasSuffix(exec[0], " serve") || !strings.Contains(exec[0], "-datadir=/var/lib/twgroupd") {
		t.Errorf("ExecStart=%q", exec)
	}
}
