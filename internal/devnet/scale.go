package devnet

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twgroupd/twgroupd/internal/registry"
	"github.com/twgroupd/twgroupd/internal/upstream"
)

// The scale scenario (`twgroupd devnet --nodes N --scenario scale`,
// `make net`): every user follows every other, one group of all users, a
// group message, then churn (nodes stopped while messages are sent, and
// restarted). It measures how long each step takes to reach every node
// and what each node costs, and stops by itself (every phase has a limit).

// ScaleOptions tune the scale scenario; zero values take the defaults.
type ScaleOptions struct {
	Churn    int           // nodes stopped and restarted (default N/10, at least 1)
	Messages int           // group messages sent while they are down (default 3)
	Settle   time.Duration // pause after the follows, before the invite (default 5 s)
	Phase    time.Duration // limit of each phase (default 120 s)
	Poll     time.Duration // how often each node is asked (default 250 ms)
}

// Stat is the distribution of one measurement over the nodes that got there.
type Stat struct {
	Reached, Of   int
	P50, P99, Max time.Duration
}

func (s Stat) String() string {
	return fmt.Sprintf("%d/%d nodes, p50 %s, p99 %s, max %s", s.Reached, s.Of, secs(s.P50), secs(s.P99), secs(s.Max))
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// ScaleReport is what the scenario measured.
type ScaleReport struct {
	Nodes   int
	Invite  Stat  // from newgroupinvite to the group with every member on each other node
	Message Stat  // from newdirectmsg to the text in each other node's thread
	Churn   Stat  // from a restarted node answering RPC to it holding every message sent while it was down
	Sockets Count // peak open sockets per node
	RSSMB   Count // peak resident memory per node in MB
}

// Count is the distribution of a per-node number.
type Count struct{ P50, P99, Max int }

// ScaleUsers are the scenario's user names, one per node.
func ScaleUsers(n int) []string {
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("user%03d", i+1)
	}
	return users
}

// Scale runs the scale scenario on a started devnet whose nodes have
// distinct users (ScaleUsers).
func (nw *Net) Scale(ctx context.Context, so ScaleOptions) (*ScaleReport, error) {
	n := len(nw.Nodes)
	if so.Churn <= 0 {
		so.Churn = max(1, n/10)
	}
	so.Churn = min(so.Churn, n-2)
	if so.Messages <= 0 {
		so.Messages = 3
	}
	if so.Settle <= 0 {
		so.Settle = 5 * time.Second
	}
	if so.Phase <= 0 {
		so.Phase = 120 * time.Second
	}
	if so.Poll <= 0 {
		so.Poll = 250 * time.Millisecond
	}
	out := nw.out
	rep := &ScaleReport{Nodes: n}
	users := make([]string, n)
	for i, nd := range nw.Nodes {
		users[i] = nd.User
	}
	fmt.Fprintf(out, "scale: %d nodes on %s..%s, each bootstrapping from node1 and up to 3 random earlier nodes\n", n, nw.Nodes[0].IP, nw.Nodes[n-1].IP)

	sampler := newResourceSampler(nw)
	defer sampler.stop()

	t0 := time.Now()
	register := func(nd *Node) error {
		var have []string
		if err := decode(nd.Call(ctx, "listwalletusers"))(&have); err != nil {
			return err
		}
		if slices.Contains(have, nd.User) {
			return nil // a resumed devnet (--dir of an earlier run)
		}
		if _, err := nd.Call(ctx, "createwalletuser", nd.User); err != nil {
			return fmt.Errorf("%s createwalletuser: %w", nd.Name, err)
		}
		if _, err := nd.Call(ctx, "sendnewusertransaction", nd.User); err != nil {
			return fmt.Errorf("%s sendnewusertransaction: %w", nd.Name, err)
		}
		return nil
	}
	// The creator first: its invite needs about n+n/16 posts, and a user
	// may post k <= 2*(blocks since registration)+20 (spec §3.3 rule 5).
	if err := register(nw.Nodes[0]); err != nil {
		return nil, err
	}
	creatorReg := time.Now()
	if err := forEach(ctx, nw.Nodes[1:], register); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "scale: %d users registered (%.1f s)\n", n, time.Since(t0).Seconds())
	t1 := time.Now()
	if err := forEach(ctx, nw.Nodes, func(nd *Node) error {
		// In calls of 10, as a person clicks Follow: one call of 100 can
		// outlast the client's timeout on a loaded machine.
		for c := range slices.Chunk(users, 10) {
			if _, err := nd.Call(ctx, "follow", nd.User, c); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("follow: %w", err)
	}
	fmt.Fprintf(out, "scale: each user follows all %d (%.1f s)\n", n, time.Since(t1).Seconds())
	sleep(ctx, so.Settle)
	if wait := nw.blockWait(n + n/16 + 6); wait > time.Since(creatorReg) {
		d := wait - time.Since(creatorReg)
		fmt.Fprintf(out, "scale: waiting %.0f s more for blocks: the creator's invite takes about %d posts (k <= 2*(blocks since registration)+20, spec §3.3 rule 5)\n", d.Seconds(), n+n/16+6)
		sleep(ctx, d)
	}

	// One group of all.
	creator := nw.Nodes[0]
	var alias string
	if err := decode(creator.Call(ctx, "creategroup", "scale group"))(&alias); err != nil || alias == "" {
		return nil, fmt.Errorf("creategroup: %q %v", alias, err)
	}
	k, err := creator.NextK(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	// Inviting n users publishes about n+n/16 posts, each committed with
	// fsync: longer than the node client's timeout at n=100 on a busy disk.
	long, err := upstream.New(creator.RPCURL(), upstream.WithTimeout(so.Phase))
	if err != nil {
		return nil, err
	}
	if _, err := long.Call(ctx, "newgroupinvite", creator.User, k, alias, users); err != nil {
		return nil, fmt.Errorf("newgroupinvite: %w", err)
	}
	fmt.Fprintf(out, "scale: newgroupinvite of %d users returned after %.2f s\n", n, time.Since(start).Seconds())
	aliases := sync.Map{}
	aliases.Store(creator.Name, alias)
	others := nw.Nodes[1:]
	rep.Invite = waitAll(ctx, others, so.Phase, so.Poll, start, func(nd *Node) bool {
		a, ok := nd.groupWith(ctx, n)
		if ok {
			aliases.Store(nd.Name, a)
		}
		return ok
	})
	fmt.Fprintf(out, "scale: invite reached %s\n", rep.Invite)
	aliasOf := func(nd *Node) string {
		a, _ := aliases.Load(nd.Name)
		s, _ := a.(string)
		return s
	}

	// One message from a member who is not the creator.
	sender := nw.Nodes[1%n]
	if aliasOf(sender) == "" {
		return rep, fmt.Errorf("%s never got the group", sender.Name)
	}
	text := "scale message from " + sender.User
	start, err = sender.say(ctx, aliasOf(sender), text)
	if err != nil {
		return rep, err
	}
	var receivers []*Node
	for _, nd := range nw.Nodes {
		if nd != sender && aliasOf(nd) != "" {
			receivers = append(receivers, nd)
		}
	}
	rep.Message = waitAll(ctx, receivers, so.Phase, so.Poll, start, func(nd *Node) bool {
		return nd.hasText(ctx, aliasOf(nd), text)
	})
	rep.Message.Of = n - 1
	fmt.Fprintf(out, "scale: message reached %s\n", rep.Message)

	// Churn: stop some nodes, send while they are down, restart them.
	cand := slices.Clone(receivers)
	cand = slices.DeleteFunc(cand, func(nd *Node) bool { return nd == creator })
	rand.Shuffle(len(cand), func(i, j int) { cand[i], cand[j] = cand[j], cand[i] })
	down := cand[:min(so.Churn, len(cand))]
	var alive []*Node
	for _, nd := range nw.Nodes {
		if !slices.Contains(down, nd) && aliasOf(nd) != "" {
			alive = append(alive, nd)
		}
	}
	sampler.hold(func() { _ = forEach(ctx, down, func(nd *Node) error { nd.Stop(); return nil }) })
	var texts []string
	for i := range so.Messages {
		from := alive[i%len(alive)]
		txt := fmt.Sprintf("churn message %d from %s", i+1, from.User)
		if _, err := from.say(ctx, aliasOf(from), txt); err != nil {
			return rep, err
		}
		texts = append(texts, txt)
	}
	fmt.Fprintf(out, "scale: stopped %d nodes, sent %d messages, restarting\n", len(down), len(texts))
	readyAt := sync.Map{}
	sampler.hold(func() {
		err = forEach(ctx, down, func(nd *Node) error {
			if err := nd.Restart(ctx); err != nil {
				return err
			}
			readyAt.Store(nd.Name, time.Now())
			return nil
		})
	})
	if err != nil {
		return rep, err
	}
	rep.Churn = waitAllSince(ctx, down, so.Phase, so.Poll, func(nd *Node) time.Time {
		t, _ := readyAt.Load(nd.Name)
		return t.(time.Time)
	}, func(nd *Node) bool {
		for _, txt := range texts {
			if !nd.hasText(ctx, aliasOf(nd), txt) {
				return false
			}
		}
		return true
	})
	fmt.Fprintf(out, "scale: %d restarted nodes caught up: %s\n", len(down), rep.Churn)
	sampler.stop()
	rep.Sockets, rep.RSSMB = sampler.stats()
	fmt.Fprintf(out, "scale: peak sockets per node: p50 %d, p99 %d, max %d\n", rep.Sockets.P50, rep.Sockets.P99, rep.Sockets.Max)
	fmt.Fprintf(out, "scale: peak RSS per node: p50 %d MB, p99 %d MB, max %d MB\n", rep.RSSMB.P50, rep.RSSMB.P99, rep.RSSMB.Max)
	fmt.Fprintf(out, "scale: done in %.0f s\n", time.Since(t0).Seconds())
	return rep, nil
}

// blockWait is how long after registration a user may post k = posts
// with the registry's block interval.
func (nw *Net) blockWait(posts int) time.Duration {
	blocks := max(0, (posts-20+1)/2) + 1
	return time.Duration(blocks) * max(nw.blockInterval, time.Second)
}

// initRegistry creates the shared registry file with the given block
// interval; with none the first node creates it with the default.
func initRegistry(ctx context.Context, path string, interval time.Duration) error {
	if interval <= 0 {
		return nil
	}
	if _, err := registry.InitFile(ctx, path, time.Now(), interval); err != nil {
		return fmt.Errorf("devnet: %w", err)
	}
	return nil
}

// PrintScale writes the report as the table row of docs/swarm.md.
func PrintScale(w io.Writer, r *ScaleReport) {
	fmt.Fprintln(w, "| N | invite p50 / max | message p50 / p99 / max | churn catch-up p50 / max | sockets p50 / max | RSS p50 / max |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	fmt.Fprintf(w, "| %d | %d/%d, %.1f / %.1f s | %d/%d, %.2f / %.2f / %.2f s | %d/%d, %.1f / %.1f s | %d / %d | %d / %d MB |\n",
		r.Nodes, r.Invite.Reached, r.Invite.Of, r.Invite.P50.Seconds(), r.Invite.Max.Seconds(),
		r.Message.Reached, r.Message.Of, r.Message.P50.Seconds(), r.Message.P99.Seconds(), r.Message.Max.Seconds(),
		r.Churn.Reached, r.Churn.Of, r.Churn.P50.Seconds(), r.Churn.Max.Seconds(),
		r.Sockets.P50, r.Sockets.Max, r.RSSMB.P50, r.RSSMB.Max)
}

// say posts text to the group alias as the node's user; it returns when
// the post was made.
func (n *Node) say(ctx context.Context, alias, text string) (time.Time, error) {
	k, err := n.NextK(ctx)
	if err != nil {
		return time.Time{}, err
	}
	at := time.Now()
	if _, err := n.Call(ctx, "newdirectmsg", n.User, k, alias, text); err != nil {
		return at, fmt.Errorf("%s newdirectmsg: %w", n.Name, err)
	}
	return at, nil
}

func (n *Node) hasText(ctx context.Context, alias, text string) bool {
	if alias == "" {
		return false
	}
	msgs, err := n.Thread(ctx, n.User, alias)
	return err == nil && slices.ContainsFunc(msgs, func(m Message) bool { return m.Text == text })
}

// groupWith is the alias of a group with at least members members, if any.
func (n *Node) groupWith(ctx context.Context, members int) (string, bool) {
	var groups []string
	if err := decode(n.Call(ctx, "listgroups", n.User))(&groups); err != nil {
		return "", false
	}
	for _, g := range groups {
		var info struct {
			Members []string `json:"members"`
		}
		if decode(n.Call(ctx, "getgroupinfo", g))(&info) == nil && len(info.Members) >= members {
			return g, true
		}
	}
	return "", false
}

// forEach runs f for every node, 8 at a time, and returns the first error.
func forEach(ctx context.Context, nodes []*Node, f func(*Node) error) error {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, nd := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(nd); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// waitAll polls check on every node until it holds or limit passes and
// returns the distribution of the times since start.
func waitAll(ctx context.Context, nodes []*Node, limit, every time.Duration, start time.Time, check func(*Node) bool) Stat {
	return waitAllSince(ctx, nodes, limit, every, func(*Node) time.Time { return start }, check)
}

func waitAllSince(ctx context.Context, nodes []*Node, limit, every time.Duration, since func(*Node) time.Time, check func(*Node) bool) Stat {
	deadline := time.Now().Add(limit)
	var mu sync.Mutex
	var got []time.Duration
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, nd := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				sem <- struct{}{}
				ok := check(nd)
				<-sem
				if ok {
					d := time.Since(since(nd))
					mu.Lock()
					got = append(got, d)
					mu.Unlock()
					return
				}
				sleep(ctx, every)
			}
		}()
	}
	wg.Wait()
	return durStat(got, len(nodes))
}

func durStat(ds []time.Duration, of int) Stat {
	st := Stat{Reached: len(ds), Of: of}
	if len(ds) == 0 {
		return st
	}
	slices.Sort(ds)
	st.P50 = ds[(len(ds)-1)/2]
	st.P99 = ds[min(len(ds)-1, (len(ds)*99+99)/100-1)]
	st.Max = ds[len(ds)-1]
	if len(ds) < of {
		// Nodes that never got there make the tail infinite: report the
		// tail only over those that did, the count says the rest.
		st.P99 = ds[len(ds)-1]
	}
	return st
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// resourceSampler records every node's peak socket count and RSS, read
// from /proc every 2 s.
type resourceSampler struct {
	procs   sync.Mutex // held while sampling, and while nodes stop or start
	mu      sync.Mutex
	nodes   []*Node
	sockets map[string]int
	rss     map[string]int // kB
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

func newResourceSampler(nw *Net) *resourceSampler {
	r := &resourceSampler{nodes: slices.Clone(nw.Nodes), sockets: map[string]int{}, rss: map[string]int{}, done: make(chan struct{})}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			r.sample()
			select {
			case <-r.done:
				return
			case <-time.After(2 * time.Second):
			}
		}
	}()
	return r
}

// hold runs f (which stops or starts nodes) while no sample is taken.
func (r *resourceSampler) hold(f func()) {
	r.procs.Lock()
	defer r.procs.Unlock()
	f()
}

func (r *resourceSampler) stop() {
	r.once.Do(func() { close(r.done) })
	r.wg.Wait()
}

func (r *resourceSampler) sample() {
	r.procs.Lock()
	defer r.procs.Unlock()
	for _, nd := range r.nodes {
		pid := nd.pid()
		if pid <= 0 {
			continue
		}
		socks, rss := procSockets(pid), procRSS(pid)
		r.mu.Lock()
		r.sockets[nd.Name] = max(r.sockets[nd.Name], socks)
		r.rss[nd.Name] = max(r.rss[nd.Name], rss)
		r.mu.Unlock()
	}
}

// stats are the peaks as distributions over the nodes.
func (r *resourceSampler) stats() (socks, rssMB Count) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s, m []int
	for _, v := range r.sockets {
		s = append(s, v)
	}
	for _, v := range r.rss {
		m = append(m, v/1024)
	}
	return countStat(s), countStat(m)
}

func countStat(v []int) Count {
	if len(v) == 0 {
		return Count{}
	}
	slices.Sort(v)
	return Count{P50: v[(len(v)-1)/2], P99: v[min(len(v)-1, (len(v)*99+99)/100-1)], Max: v[len(v)-1]}
}

func (n *Node) pid() int {
	if n.done == nil {
		return 0
	}
	select {
	case <-n.done:
		return 0
	default:
	}
	return n.PID()
}

// procSockets counts the open file descriptors of pid that are sockets.
func procSockets(pid int) int {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// procRSS is pid's resident set size in kB (VmRSS).
func procRSS(pid int) int {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				v, _ := strconv.Atoi(f[0])
				return v
			}
		}
	}
	return 0
}
