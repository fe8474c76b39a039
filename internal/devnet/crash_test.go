package devnet

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/registry"
)

// pair starts two nodes, bob's first and alice's bootstrapping from it (so
// a restarted alice finds bob again through the DHT at once), both users
// registered and following each other. It returns alice's node first.
func pair(t *testing.T, ctx context.Context) (*Node, *Node) {
	t.Helper()
	dir := t.TempDir()
	// One block a second: each lets a user post 2 more pieces (spec §3.3
	// rule 5), which the long crash run needs.
	if _, err := registry.InitFile(ctx, filepath.Join(dir, "registry.txt"), time.Now(), time.Second); err != nil {
		t.Fatal(err)
	}
	nw, err := Start(ctx, Options{Binary: binary, Dir: dir, Nodes: 2, Users: []string{"bob", "alice"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Stop)
	for _, n := range nw.Nodes {
		if _, err := n.Call(ctx, "createwalletuser", n.User); err != nil {
			t.Fatalf("%s createwalletuser: %v", n.Name, err)
		}
		if _, err := n.Call(ctx, "sendnewusertransaction", n.User); err != nil {
			t.Fatalf("%s sendnewusertransaction: %v", n.Name, err)
		}
	}
	for _, n := range nw.Nodes {
		if _, err := n.Call(ctx, "follow", n.User, []string{"alice", "bob"}); err != nil {
			t.Fatalf("%s follow: %v", n.Name, err)
		}
	}
	return nw.Nodes[1], nw.Nodes[0]
}

// blocks is the node's best height (getinfo).
func blocks(t *testing.T, ctx context.Context, n *Node) int64 {
	t.Helper()
	var info struct {
		Blocks int64 `json:"blocks"`
	}
	if err := decode(n.Call(ctx, "getinfo"))(&info); err != nil {
		t.Fatal(err)
	}
	return info.Blocks
}

// sendDM sends one DM as alice with the k twister-html would use
// (getlasthave + 1) and waits until bob's node shows it.
func sendDM(t *testing.T, ctx context.Context, a, b *Node, text string) {
	t.Helper()
	k, err := a.NextK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Call(ctx, "newdirectmsg", "alice", k, "bob", text); err != nil {
		t.Fatalf("newdirectmsg k=%d: %v", k, err)
	}
	if err := b.WaitText(ctx, time.Minute, "bob", "alice", text); err != nil {
		t.Fatal(err)
	}
}

// crashIterations is how many sends TestSendSurvivesSIGKILL interrupts:
// a few in `make test`, TWGROUPD_CRASH_ITERATIONS=100 (make crash) for
// the long run.
func crashIterations(t *testing.T) int {
	if v := os.Getenv("TWGROUPD_CRASH_ITERATIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("TWGROUPD_CRASH_ITERATIONS=%q", v)
		}
		return n
	}
	return 8 // each of the four kinds of send twice
}

// groupLines are the lines of user's group thread that alice's sends make
// (her messages and description changes), in id order.
func groupLines(t *testing.T, ctx context.Context, n *Node, user, alias string) []string {
	t.Helper()
	msgs, err := n.Thread(ctx, user, alias)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		if m.From == "alice" && !strings.HasPrefix(m.Text, "*** Invited") && !strings.HasPrefix(m.Text, "*** New member") {
			out = append(out, m.Text)
		}
	}
	return out
}

// A SIGKILL of alice's `twgroupd serve` 2-20 ms into a send, many times,
// rotating over newdirectmsg to bob, newdirectmsg to their group,
// newgroupdescription and newgroupinvite: after each restart getlasthave
// moved by nothing or by all the posts of the call (never half of them),
// and the next k (getlasthave + 1, what twister-html sends) is accepted;
// getlasthave covers every k alice's conversation shows; in the end bob
// has every message and description change alice's node shows as sent
// (which includes every call that returned success) exactly once.
func TestSendSurvivesSIGKILL(t *testing.T) {
	iterations := crashIterations(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(60+5*iterations)*time.Second)
	defer cancel()
	a, b := pair(t, ctx)
	reg := blocks(t, ctx, a) // alice registered at most here
	sendDM(t, ctx, a, b, "before the crashes")
	var alias string
	if err := decode(a.Call(ctx, "creategroup", "crash group"))(&alias); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Call(ctx, "newgroupinvite", "alice", nil, alias, []string{"alice", "bob"}); err != nil {
		t.Fatal(err)
	}
	aliasB, err := b.waitGroup(ctx, time.Minute, 2, nil)
	if err != nil {
		t.Fatal(err)
	}

	type op struct {
		method string
		posts  int64 // ks the call uses
		params func(k int64, text string) []any
		text   func(i int) string
	}
	ops := []op{
		{"newdirectmsg", 1, func(k int64, text string) []any { return []any{"alice", k, "bob", text} },
			func(i int) string { return fmt.Sprintf("sent while crashing %d", i) }},
		{"newdirectmsg", 1, func(k int64, text string) []any { return []any{"alice", k, alias, text} },
			func(i int) string { return fmt.Sprintf("group message while crashing %d", i) }},
		{"newgroupdescription", 1, func(k int64, text string) []any { return []any{"alice", k, alias, text} },
			func(i int) string { return fmt.Sprintf("description while crashing %d", i) }},
		{"newgroupinvite", 2, func(k int64, _ string) []any { return []any{"alice", k, alias, []string{"bob"}} },
			func(int) string { return "" }},
	}
	succeeded := map[string]bool{}
	for i := range iterations {
		o := ops[i%len(ops)]
		k, err := a.NextK(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Stay under the post-number bound 2*(best-reg)+20.
		err = poll(ctx, time.Minute, func() (bool, error) { return 2*(blocks(t, ctx, a)-reg)+20 >= k+o.posts+1, nil })
		if err != nil {
			t.Fatal(err)
		}
		text := o.text(i)
		done := make(chan error, 1)
		go func() {
			_, err := a.Call(ctx, o.method, o.params(k, text)...)
			done <- err
		}()
		time.Sleep(time.Duration(2+rand.IntN(19)) * time.Millisecond)
		a.Kill()
		if err := <-done; err == nil && text != "" {
			succeeded[text] = true
		}
		if err := a.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		next, err := a.NextK(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if next != k && next != k+o.posts {
			t.Fatalf("iteration %d (%s at k %d, %d posts): getlasthave+1 is %d after the kill: half a call", i, o.method, k, o.posts, next)
		}
		// The k twister-html picks now must be free, whatever happened.
		after := fmt.Sprintf("after crash %d", i)
		if _, err := a.Call(ctx, "newdirectmsg", "alice", next, "bob", after); err != nil {
			t.Fatalf("iteration %d: the next k %d after a restart is refused: %v", i, next, err)
		}
		succeeded[after] = true
	}

	// What alice's node shows as sent, with the k of each.
	sent, err := a.Thread(ctx, "alice", "bob")
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]bool{}
	maxK := int64(-1)
	for _, m := range sent {
		if m.FromMe {
			shown[m.Text] = true
			maxK = max(maxK, m.K)
		}
	}
	groupSent := groupLines(t, ctx, a, "alice", alias)
	for _, text := range groupSent {
		shown[text] = true
	}
	for text := range succeeded {
		if !shown[text] && !shown["*** 'alice' changed group description to: "+text] {
			t.Errorf("%q: the call succeeded, alice's node does not show it", text)
		}
	}
	if next, err := a.NextK(ctx); err != nil || next <= maxK {
		t.Errorf("getlasthave+1 = %d, %v; alice's conversation shows k %d", next, err, maxK)
	}
	// Bob gets every one of them, once.
	err = poll(ctx, time.Minute, func() (bool, error) {
		got, err := b.Thread(ctx, "bob", "alice")
		if err != nil {
			return false, nil
		}
		count := map[string]int{}
		for _, m := range got {
			count[m.Text]++
		}
		for _, text := range groupLines(t, ctx, b, "bob", aliasB) {
			count[text]++
		}
		for text := range shown {
			if count[text] > 1 {
				return false, fmt.Errorf("%q delivered %d times", text, count[text])
			}
			if count[text] == 0 {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("bob's view of what alice shows as sent: %v\nalice shows %v", err, shown)
	}
	t.Logf("%d interrupted sends, %d returned success before the kill; %d messages and description changes shown as sent (%d in the group), all delivered once",
		iterations, len(succeeded)-iterations, len(shown), len(groupSent))
}

var fsyncLine = regexp.MustCompile(`^\d+\s+(?:fsync|fdatasync)\((\d+)`)

// traceSyncs attaches strace to pid and counts its fsync and fdatasync
// calls, per file (base name), until stop is called.
func traceSyncs(t *testing.T, pid int) (stop func() map[string]int) {
	t.Helper()
	out := filepath.Join(t.TempDir(), fmt.Sprintf("strace.%d", pid))
	cmd := exec.Command("strace", "-f", "-qq", "-e", "trace=fsync,fdatasync", "-o", out, "-p", strconv.Itoa(pid))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Attached once the tracer shows in the process's status.
	err := poll(context.Background(), 20*time.Second, func() (bool, error) {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		return err == nil && !strings.Contains(string(st), "TracerPid:\t0\n"), nil
	})
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("strace -p %d did not attach: %v", pid, err)
	}
	return func() map[string]int {
		_ = cmd.Process.Signal(syscall.SIGINT) // detaches and flushes
		_ = cmd.Wait()
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		byFile := map[string]int{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if m := fsyncLine.FindStringSubmatch(sc.Text()); m != nil {
				name, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, m[1]))
				if err != nil {
					name = "fd " + m[1]
				}
				byFile[filepath.Base(name)]++
			}
		}
		return byFile
	}
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// The fsync and fdatasync calls one DM costs on the sender's and on the
// receiver's process, counted with strace over DMs sent one after the
// other (each delivered before the next): the DM's own path (messages.db,
// which holds the pieces too) takes at most 2 per DM on each side, one
// bbolt commit. The DHT's periodic save of dht.db, not caused by the DMs,
// is reported apart. Run with -v to see the figures.
func TestSyncsPerDM(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace not installed: cannot count fsync calls (apt-get install strace)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, b := pair(t, ctx)
	// follow's swarm joins are recorded by the swarm's next tick, one
	// commit that is not the DMs' and would land in the counted window
	// whenever that tick is late. A restart records them at shutdown and
	// reloads them at start: nothing is left pending.
	for _, n := range []*Node{a, b} {
		if err := n.Restart(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sendDM(t, ctx, a, b, "warm-up") // peers connected
	const dms = 20
	stopA, stopB := traceSyncs(t, a.PID()), traceSyncs(t, b.PID())
	for i := range dms {
		sendDM(t, ctx, a, b, fmt.Sprintf("counted %d", i))
	}
	sender, receiver := stopA(), stopB()
	t.Logf("fsync+fdatasync over %d DMs: sender %v, receiver %v", dms, sender, receiver)
	t.Logf("per DM: sender %.2f (messages.db %.2f), receiver %.2f (messages.db %.2f)",
		float64(total(sender))/dms, float64(sender["messages.db"])/dms,
		float64(total(receiver))/dms, float64(receiver["messages.db"])/dms)
	// bbolt adds one fsync when it grows the file: allow one such step.
	for side, m := range map[string]map[string]int{"sender": sender, "receiver": receiver} {
		if total(m)-m["dht.db"] > 2*dms+1 {
			t.Errorf("%s: %v syncs for %d DMs: want at most 2 per DM", side, m, dms)
		}
	}
}
