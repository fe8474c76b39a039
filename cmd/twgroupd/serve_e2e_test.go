package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/sdnotify"
)

// daemon is a `twgroupd serve` subprocess on 127.0.0.1 with a real notify
// socket standing in for systemd's.
type daemon struct {
	cmd     *exec.Cmd
	notify  *net.UnixConn
	flags   []string // the client flags that reach it
	datadir string
	home    string
	log     lockedBuffer
	exited  chan struct{} // closed when the process has been waited for
	err     error         // Wait's result, valid after exited
}

func freeTCPPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func startDaemon(t *testing.T) *daemon {
	t.Helper()
	return startDaemonAuth(t, false)
}

// startDaemonAuth with cookie set starts serve without rpcuser/rpcpassword
// and on the default datadir ($HOME/.twgroupd): cookie authentication.
func startDaemonAuth(t *testing.T, cookie bool) *daemon {
	t.Helper()
	if binPath == "" {
		t.Fatal("twgroupd binary not built")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d := &daemon{notify: conn, datadir: filepath.Join(dir, "data"), exited: make(chan struct{}), home: dir}
	d.flags = []string{"-datadir=" + d.datadir, "-rpcport=" + freeTCPPort(t), "-rpcuser=u", "-rpcpassword=a-long-enough-password"}
	if cookie {
		d.datadir = filepath.Join(dir, ".twgroupd")
		d.flags = []string{"-rpcport=" + freeTCPPort(t)}
	}
	args := append(append([]string{}, d.flags...), "-dhtport=0", "-bind=127.0.0.1", "-registry="+filepath.Join(dir, "registry.txt"), "serve")
	d.cmd = exec.Command(binPath, args...)
	d.cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), sdnotify.EnvSocket + "=" + sock}
	d.cmd.Stdout, d.cmd.Stderr = &d.log, &d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.cmd.Process.Kill()
			<-d.exited
		}
	})
	return d
}

// expectNotify waits for the next datagram on the notify socket.
func (d *daemon) expectNotify(t *testing.T, prefix string) {
	t.Helper()
	d.notify.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 1024)
	n, err := d.notify.Read(buf)
	if err != nil {
		t.Fatalf("waiting for %s: %v\nlog:\n%s", prefix, err, d.log.String())
	}
	if got := string(buf[:n]); !strings.HasPrefix(got, prefix) {
		t.Fatalf("notification %q, want %s", got, prefix)
	}
}

func (d *daemon) wait(t *testing.T) {
	t.Helper()
	select {
	case <-d.exited:
		if d.err != nil {
			t.Fatalf("serve exited with %v\nlog:\n%s", d.err, d.log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not exit\nlog:\n%s", d.log.String())
	}
}

// `twgroupd serve` end to end: READY=1 once the RPC answers, client
// commands against it, SIGTERM -> STOPPING=1 and a clean exit, the wallet
// file 0600, and no secret in the log.
func TestServeEndToEndSIGTERM(t *testing.T) {
	d := startDaemon(t)
	d.expectNotify(t, "READY=1")

	r := runBin(t, "", append(d.flags, "createwalletuser", "alice")...)
	if r.status != 0 || len(strings.TrimSpace(r.stdout)) != 52 {
		t.Fatalf("createwalletuser: %+v", r)
	}
	wif := strings.TrimSpace(r.stdout)
	r = runBin(t, "", append(d.flags, "getinfo")...)
	if r.status != 0 || !strings.HasPrefix(r.stdout, "{\n    \"version\" : ") {
		t.Fatalf("getinfo: %+v", r)
	}
	r = runBin(t, "", append(d.flags, "creategroup", "e2e group")...)
	if r.status != 0 || !strings.HasPrefix(r.stdout, "*") {
		t.Fatalf("creategroup: %+v", r)
	}
	alias := strings.TrimSpace(r.stdout)
	r = runBin(t, "", append(d.flags, "getgroupinfo", alias)...)
	if r.status != 0 || !strings.Contains(r.stdout, `"description" : "e2e group"`) {
		t.Fatalf("getgroupinfo: %+v", r)
	}
	r = runBin(t, "", append(d.flags, "getgroupinfo", "*nosuchgr")...)
	if r.status != 32603&0xff || !strings.Contains(r.stderr, `"unknown group alias '*nosuchgr'"`) {
		t.Fatalf("getgroupinfo unknown: %+v", r)
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d.expectNotify(t, sdnotify.Stopping)
	d.wait(t)

	fi, err := os.Stat(filepath.Join(d.datadir, "wallet.db"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("wallet.db mode %v", fi.Mode().Perm())
	}
	logs := d.log.String()
	if strings.Contains(logs, "a-long-enough-password") || strings.Contains(logs, wif) {
		t.Fatalf("secret in the daemon log:\n%s", logs)
	}
}

// The stop RPC from the CLI shuts the daemon down the same way.
func TestServeEndToEndStopRPC(t *testing.T) {
	d := startDaemon(t)
	d.expectNotify(t, "READY=1")
	r := runBin(t, "", append(d.flags, "stop")...)
	if r.status != 0 || r.stderr != "" {
		t.Fatalf("stop: %+v", r)
	}
	d.expectNotify(t, sdnotify.Stopping)
	d.wait(t)
}

// Cookie authentication end to end: serve without a password writes
// <datadir>/.cookie (0600), client commands find it through the default
// datadir and through -datadir, no password is on any command line, and
// the stop RPC removes the file.
func TestServeCookieAuth(t *testing.T) {
	d := startDaemonAuth(t, true)
	d.expectNotify(t, "READY=1")
	path := filepath.Join(d.datadir, ".cookie")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no cookie: %v\nlog:\n%s", err, d.log.String())
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("cookie mode %v", fi.Mode().Perm())
	}
	cookie, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(cookie), "__cookie__:") {
		t.Errorf("cookie %q", cookie)
	}
	if r := runBinHome(t, d.home, "", append(d.flags, "getinfo")...); r.status != 0 {
		t.Fatalf("getinfo through the default datadir: %+v", r)
	}
	if r := runBin(t, "", append(d.flags, "-datadir="+d.datadir, "getinfo")...); r.status != 0 {
		t.Fatalf("getinfo through -datadir: %+v", r)
	}
	if r := runBin(t, "", append(d.flags, "getinfo")...); r.status != 87 || !strings.Contains(r.stderr, ".cookie") {
		t.Fatalf("getinfo with another datadir: %+v", r)
	}
	if strings.Contains(d.log.String(), strings.TrimPrefix(string(cookie), "__cookie__:")) {
		t.Errorf("cookie in the log")
	}
	if r := runBinHome(t, d.home, "", append(d.flags, "stop")...); r.status != 0 {
		t.Fatalf("stop: %+v", r)
	}
	d.wait(t)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("cookie left after stop: %v", err)
	}
}
