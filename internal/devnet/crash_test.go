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
	"slices"
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

var fsyncLine = regexp.MustCompile(`^\d+\s+(\d+\.\d+)\s+(?:fsync|fdatasync)\((\d+)`)

// syncCall is one fsync or fdatasync seen by strace.
type syncCall struct {
	at   time.Time
	file string // base name
}

// traceSyncs attaches strace to pid and records its fsync and fdatasync
// calls, with their times and files, until stop is called.
func traceSyncs(t *testing.T, pid int) (stop func() []syncCall) {
	t.Helper()
	out := filepath.Join(t.TempDir(), fmt.Sprintf("strace.%d", pid))
	cmd := exec.Command("strace", "-f", "-qq", "-ttt", "-e", "trace=fsync,fdatasync", "-o", out, "-p", strconv.Itoa(pid))
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
	return func() []syncCall {
		_ = cmd.Process.Signal(syscall.SIGINT) // detaches and flushes
		_ = cmd.Wait()
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var calls []syncCall
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			m := fsyncLine.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			name, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, m[2]))
			if err != nil {
				name = "fd " + m[2]
			}
			sec, _ := strconv.ParseFloat(m[1], 64)
			calls = append(calls, syncCall{at: time.Unix(0, int64(sec*1e9)), file: filepath.Base(name)})
		}
		return calls
	}
}

// byFile counts calls per file.
func byFile(calls []syncCall) map[string]int {
	m := map[string]int{}
	for _, c := range calls {
		m[c.file]++
	}
	return m
}

// perWindow counts the calls on file that fall in each window
// [starts[i], starts[i+1]) (the last one open-ended).
func perWindow(calls []syncCall, file string, starts []time.Time) []int {
	n := make([]int, len(starts))
	for _, c := range calls {
		if c.file != file {
			continue
		}
		for i := len(starts) - 1; i >= 0; i-- {
			if !c.at.Before(starts[i]) {
				n[i]++
				break
			}
		}
	}
	return n
}

// The fsync and fdatasync calls one DM costs on the sender's and on the
// receiver's process, counted with strace over DMs sent one after the
// other (each delivered before the next): the DM's own path (messages.db,
// which holds the pieces too) takes at most 2 per DM on each side, one
// bbolt commit. Each call is put in the window of the DM during which it
// happened; the median window is what a DM costs, while a window that also
// holds a periodic write (the swarm's saved peers, a bbolt file growth) is
// reported. dht.db's periodic save is reported apart. Run with -v to see
// the figures.
func TestSyncsPerDM(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace not installed: cannot count fsync calls (apt-get install strace)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, b := pair(t, ctx)
	sendDM(t, ctx, a, b, "warm-up") // swarms joined, peers connected
	const dms = 20
	stopA, stopB := traceSyncs(t, a.PID()), traceSyncs(t, b.PID())
	starts := make([]time.Time, dms)
	for i := range dms {
		starts[i] = time.Now()
		sendDM(t, ctx, a, b, fmt.Sprintf("counted %d", i))
	}
	sender, receiver := stopA(), stopB()
	for side, calls := range map[string][]syncCall{"sender": sender, "receiver": receiver} {
		files := byFile(calls)
		w := perWindow(calls, "messages.db", starts)
		sorted := slices.Clone(w)
		slices.Sort(sorted)
		median := sorted[len(sorted)/2]
		t.Logf("%s: %v over %d DMs (%.2f per DM in all); messages.db per DM: median %d, max %d, each %v",
			side, files, dms, float64(len(calls))/dms, median, sorted[len(sorted)-1], w)
		if median > 2 {
			t.Errorf("%s: a DM costs %d fsync/fdatasync on messages.db (median over %d), want at most 2", side, median, dms)
		}
		if extra := files["messages.db"] - 2*dms; extra > dms/2 {
			t.Errorf("%s: %d syncs on messages.db for %d DMs, %d over 2 per DM: more than occasional background writes", side, files["messages.db"], dms, extra)
		}
	}
}
