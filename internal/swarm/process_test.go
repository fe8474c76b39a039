package swarm

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// The test binary doubles as a separate swarm node process: with
// SWARM_CHILD_DIR set, TestMain runs runChildNode instead of the tests.
func TestMain(m *testing.M) {
	if dir := os.Getenv("SWARM_CHILD_DIR"); dir != "" {
		if err := runChildNode(dir); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChildNode serves alice's swarm from its own process. It prints
// "ready <lasthave>", then for each stdin line "publish <k>" publishes a
// DM alice->bob as piece k and prints "ok <k>" once it is committed.
func runChildNode(dir string) error {
	alice, err := twproto.ParseWIF(os.Getenv("SWARM_CHILD_ALICE"))
	if err != nil {
		return err
	}
	bob, err := twproto.ParseWIF(os.Getenv("SWARM_CHILD_BOB"))
	if err != nil {
		return err
	}
	keys := newTestKeys(100)
	keys.add("alice", alice.PubKey(), 1)
	keys.add("bob", bob.PubKey(), 1)
	cfg := fastConfig(dir, keys)
	cfg.ListenAddr = os.Getenv("SWARM_CHILD_LISTEN")
	s, err := New(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	s.SetSink(newSink())
	if err := s.Start(); err != nil {
		return err
	}
	if err := s.Follow(context.Background(), "alice"); err != nil {
		return err
	}
	fmt.Printf("ready %d\n", s.LastHave("alice"))
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) != 2 || f[0] != "publish" {
			return fmt.Errorf("bad command %q", in.Text())
		}
		k, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return err
		}
		env, err := twproto.Encrypt(bob.PubKey(), twproto.EncodeMessage("from another process", "bob"))
		if err != nil {
			return err
		}
		raw, err := twproto.BuildDMPost(alice, "alice", k, 10, 1795483000+k, env)
		if err != nil {
			return err
		}
		if err := s.Publish(context.Background(), "alice", k, raw); err != nil {
			return err
		}
		fmt.Printf("ok %d\n", k)
	}
	return nil
}

type childNode struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startChild(t *testing.T, dir, listen string, alice, bob user) *childNode {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		"SWARM_CHILD_DIR="+dir, "SWARM_CHILD_LISTEN="+listen,
		"SWARM_CHILD_ALICE="+alice.key.WIF(), "SWARM_CHILD_BOB="+bob.key.WIF())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return &childNode{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
}

func (c *childNode) expect(t *testing.T, prefix string) string {
	t.Helper()
	lines := make(chan string, 1)
	go func() {
		if c.out.Scan() {
			lines <- c.out.Text()
		}
		close(lines)
	}()
	select {
	case l, ok := <-lines:
		if !ok || !strings.HasPrefix(l, prefix) {
			t.Fatalf("child said %q, want %q...", l, prefix)
		}
		return strings.TrimPrefix(l, prefix)
	case <-time.After(20 * time.Second):
		t.Fatalf("child silent, want %q", prefix)
	}
	return ""
}

func (c *childNode) publish(t *testing.T, k int64) {
	t.Helper()
	fmt.Fprintf(c.stdin, "publish %d\n", k)
	c.expect(t, fmt.Sprintf("ok %d", k))
}

// TestSeparateProcessKilledAndRestarted: alice's node runs in its own
// process; it is killed with SIGKILL right after a post is committed and
// restarted on the same data dir. Nothing it acknowledged is lost, and the
// follower gets every post exactly once.
func TestSeparateProcessKilledAndRestarted(t *testing.T) {
	ctx := context.Background()
	keys := newTestKeys(100)
	alice, bob := newUser(t, keys, "alice"), newUser(t, keys, "bob")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()

	child := startChild(t, dir, listen, alice, bob)
	child.expect(t, "ready -1")
	for k := int64(1); k <= 3; k++ {
		child.publish(t, k)
	}
	n := startNode(t, t.TempDir(), keys, netip.MustParseAddrPort(listen))
	n.Follow(ctx, "alice")
	waitFor(t, "posts 1..3 from the other process", func() bool {
		return n.sink.has("alice", 1)+n.sink.has("alice", 2)+n.sink.has("alice", 3) == 3
	})

	child.publish(t, 4)
	if err := child.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	child.cmd.Wait()

	child = startChild(t, dir, listen, alice, bob)
	if got := child.expect(t, "ready "); got != "4" {
		t.Fatalf("restarted process has lasthave %s, want 4", got)
	}
	child.publish(t, 5)
	waitFor(t, "posts 4 and 5 after the restart", func() bool { return n.sink.has("alice", 4) == 1 && n.sink.has("alice", 5) == 1 })
	for k := int64(1); k <= 5; k++ {
		if got := n.sink.has("alice", k); got != 1 {
			t.Errorf("alice/%d delivered %d times", k, got)
		}
	}
}
