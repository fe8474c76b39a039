package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen opens a real unixgram socket standing in for systemd's.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotifyPathSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn := listen(t, path)
	t.Setenv(EnvSocket, path)
	n := FromEnv()
	if !n.Enabled() {
		t.Fatal("not enabled with NOTIFY_SOCKET set")
	}
	for _, state := range []string{Ready, Stopping, "STATUS=serving\nREADY=1"} {
		if err := n.Notify(state); err != nil {
			t.Fatal(err)
		}
		if got := receive(t, conn); got != state {
			t.Fatalf("got %q, want %q", got, state)
		}
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	name := "twgroupd-sdnotify-test-" + strings.ReplaceAll(t.TempDir(), "/", "_")
	conn := listen(t, "\x00"+name)
	if err := New("@" + name).Notify(Ready); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, conn); got != Ready {
		t.Fatalf("got %q", got)
	}
}

func TestNoSocketIsNoop(t *testing.T) {
	t.Setenv(EnvSocket, "")
	if FromEnv().Enabled() {
		t.Fatal("enabled without NOTIFY_SOCKET")
	}
	if err := FromEnv().Notify(Ready); err != nil {
		t.Fatal(err)
	}
	var nilN *Notifier
	if err := nilN.Notify(Ready); err != nil {
		t.Fatal(err)
	}
}

func TestMissingSocketErrors(t *testing.T) {
	err := New(filepath.Join(t.TempDir(), "absent.sock")).Notify(Ready)
	if err == nil || !strings.Contains(err.Error(), "sd_notify") {
		t.Fatalf("err %v", err)
	}
}
