package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/twgroupd/twgroupd/internal/devnet"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/internal/abuse"
	"github.com/twgroupd/twgroupd/internal/config"
	"github.com/twgroupd/twgroupd/internal/registry"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/internal/upstream"
)

// abuseRows are the attacks of issue #11's table that `twgroupd abuse`
// reproduces, in the order they run (wrong passwords with 500 guessers
// last among the RPC rows: their abandoned waiters queue for minutes).
var abuseRows = []string{"port", "halfopen", "xswarm", "dht", "utp", "slowbody", "passwords", "origin", "batch", "passwords500", "members", "restart"}

// abuseTotal bounds a whole run; every driver is bounded too.
const abuseTotal = 10 * time.Minute

// newAbuseCmd is `twgroupd abuse` (`make abuse`): a bounded load tool. It
// starts a victim node and one honest peer (this binary as `serve`, on
// 127.0.0.1 and 127.0.0.4), runs internal/abuse's drivers against them
// from other loopback addresses, prints each result and a summary table
// (RSS peak, RPC p99 of a legitimate caller, legitimate acceptance), stops
// both nodes and removes its directory.
func newAbuseCmd(stdout io.Writer) *cobra.Command {
	var o abuseOptions
	c := &cobra.Command{
		Use:   "abuse",
		Short: "reproduce issue #11's attacks against a local victim node (127.0.0.0/8 only) and print RSS peak, RPC p99, legit acceptance",
		Long: "abuse starts a victim twgroupd and an honest peer on loopback addresses, runs each attack\n" +
			"(bounded in size and time; the whole run stops within 10 minutes) and prints the figures.\n" +
			"Rows: " + strings.Join(abuseRows, ", ") + ".",
		GroupID: "daemon",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAbuse(cmd.Context(), o, stdout)
		},
	}
	c.Flags().StringSliceVar(&o.only, "only", nil, "run only these rows (comma separated)")
	c.Flags().BoolVar(&o.small, "small", false, "a tenth of the full size (a quick check)")
	c.Flags().BoolVar(&o.keep, "keep", false, "keep the nodes' directory (logs) instead of removing it")
	return c
}

type abuseOptions struct {
	only  []string
	small bool
	keep  bool
}

// abuseNode is one `serve` process of the run.
type abuseNode struct {
	name, dir, bin, bind, registry string
	bootstrap                      []string
	rpcPort                        int
	dhtPort                        int // 0 until the first start picked one; kept across restarts
	proc                           *devnet.Process
	rpc                            *upstream.Client
	pass                           string
}

func startAbuseNode(ctx context.Context, bin, name, dir, bind, registry string, bootstrap ...string) (*abuseNode, error) {
	l, err := net.Listen("tcp", bind+":0")
	if err != nil {
		return nil, fmt.Errorf("abuse: free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	n := &abuseNode{name: name, dir: dir, bin: bin, bind: bind, registry: registry, bootstrap: bootstrap, rpcPort: port}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("abuse: %w", err)
	}
	return n, n.start(ctx)
}

// start runs the process and waits until its RPC answers with the cookie
// it wrote (a new one at each start).
func (n *abuseNode) start(ctx context.Context) error {
	// No rpcpassword: cookie authentication; the RPC listens on loopback.
	args := []string{"-datadir=" + n.dir, "-rpcport=" + strconv.Itoa(n.rpcPort), "-dhtport=" + strconv.Itoa(n.dhtPort),
		"-bind=" + n.bind, "-registry=" + n.registry}
	for _, b := range n.bootstrap {
		args = append(args, "-bootstrap="+b)
	}
	p, err := devnet.StartProcess(n.bin, filepath.Join(n.dir, "twgroupd.log"), append(args, "serve")...)
	if err != nil {
		return fmt.Errorf("abuse: %s: %w", n.name, err)
	}
	n.proc = p
	done := p.Done
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, pass, err := config.ReadCookie(n.dir); err == nil {
			n.pass = pass
			n.rpc, _ = upstream.New(fmt.Sprintf("http://%s:%s@127.0.0.1:%d/", config.CookieUser, pass, n.rpcPort), upstream.WithTimeout(30*time.Second))
			var info struct {
				Port int `json:"ext_port1"`
			}
			if raw, err := n.call(ctx, "getinfo"); err == nil && json.Unmarshal(raw, &info) == nil && info.Port != 0 {
				n.dhtPort = info.Port
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("abuse: %s exited (see %s)", n.name, filepath.Join(n.dir, "twgroupd.log"))
		case <-ctx.Done():
			n.stop()
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.stop()
			return fmt.Errorf("abuse: %s not answering RPC", n.name)
		}
	}
}

// connections is getinfo's count of swarm peer connections.
func (n *abuseNode) connections(ctx context.Context) int {
	var info struct {
		Connections int `json:"connections"`
	}
	raw, err := n.call(ctx, "getinfo")
	if err != nil || json.Unmarshal(raw, &info) != nil {
		return 0
	}
	return info.Connections
}

func (n *abuseNode) call(ctx context.Context, method string, params ...any) (json.RawMessage, error) {
	return n.rpc.Call(ctx, method, params...)
}

func (n *abuseNode) stop() {
	if n == nil || n.proc == nil {
		return
	}
	n.proc.Stop(15 * time.Second)
}

func (n *abuseNode) target() abuse.RPCTarget {
	return abuse.RPCTarget{
		Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(n.rpcPort)),
		User: config.CookieUser, Password: n.pass, VictimPID: n.proc.PID(),
	}
}

// logCount counts lines of the node's log containing s.
func (n *abuseNode) logCount(s string) int {
	b, _ := os.ReadFile(filepath.Join(n.dir, "twgroupd.log"))
	return strings.Count(string(b), s)
}

// abuseRow is one line of the summary table.
type abuseRow struct {
	attack, outcome string
	rssPeakKB       int64
	p99             time.Duration
	legit           string
}

func runAbuse(ctx context.Context, o abuseOptions, out io.Writer) error {
	for _, r := range o.only {
		if !slices.Contains(abuseRows, r) {
			return fmt.Errorf("abuse: unknown row %q (rows: %s)", r, strings.Join(abuseRows, ", "))
		}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, abuseTotal)
	defer cancel()
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("abuse: find own binary: %w", err)
	}
	dir, err := os.MkdirTemp("", "twgroupd-abuse-")
	if err != nil {
		return fmt.Errorf("abuse: %w", err)
	}
	if o.keep {
		fmt.Fprintf(out, "abuse: nodes in %s (kept)\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	scale := func(full int) int {
		if o.small {
			return max(1, full/10)
		}
		return full
	}
	registry := filepath.Join(dir, "registry.txt")
	peer, err := startAbuseNode(ctx, bin, "peer", filepath.Join(dir, "peer"), "127.0.0.4", registry)
	if err != nil {
		return err
	}
	defer peer.stop()
	victim, err := startAbuseNode(ctx, bin, "victim", filepath.Join(dir, "victim"), "127.0.0.1", registry,
		"127.0.0.4:"+strconv.Itoa(peer.dhtPort))
	if err != nil {
		return err
	}
	defer victim.stop()
	fmt.Fprintf(out, "victim: pid %d, rpc 127.0.0.1:%d, dht/swarm 127.0.0.1:%d; honest peer on 127.0.0.4:%d\n",
		victim.proc.PID(), victim.rpcPort, victim.dhtPort, peer.dhtPort)
	if err := abuseSetup(ctx, victim, peer); err != nil {
		return err
	}

	var rows []abuseRow
	ran40 := false
	want := func(r string) bool { return len(o.only) == 0 || slices.Contains(o.only, r) }
	target := victim.target()
	swarmAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(victim.dhtPort))
	report := func(row abuseRow, detail fmt.Stringer) {
		fmt.Fprintf(out, "%s\n", detail)
		rows = append(rows, row)
	}
	for _, r := range abuseRows {
		if !want(r) || ctx.Err() != nil {
			continue
		}
		switch r {
		case "port":
			legit := abuse.StartLegit(ctx, target, 200*time.Millisecond)
			res, err := abuse.PortFlood(ctx, abuse.PortFloodConfig{
				Target: swarmAddr, Source: netip.MustParseAddr("127.0.0.2"), User: "alice",
				Messages: scale(300_000), VictimPID: target.VictimPID,
				Probe: func(ctx context.Context) error { return dhtHasStatus(ctx, victim) },
			})
			lat := legit.Stop()
			if err != nil {
				return err
			}
			probe := "own dhtget works"
			if res.ProbeErr != nil {
				probe = "own dhtget failed: " + res.ProbeErr.Error()
			}
			report(abuseRow{fmt.Sprintf("%d PORT messages from one peer", res.Sent), fmt.Sprintf("%d pings sent, %s", res.Pings, probe),
				res.RSSPeakKB, lat.P99, lat.String()}, res)
		case "halfopen":
			legit := abuse.StartLegit(ctx, target, 200*time.Millisecond)
			res, err := abuse.HalfOpenFlood(ctx, abuse.HalfOpenConfig{
				Target: swarmAddr, Source: netip.MustParseAddr("127.0.0.2"), User: "alice",
				Conns: scale(1500), VictimPID: target.VictimPID,
			})
			lat := legit.Stop()
			if err != nil {
				return err
			}
			report(abuseRow{fmt.Sprintf("%d half-open TCP connections from one address", res.Opened),
				fmt.Sprintf("%d still open; %d of %d handshakes from other addresses answered", res.StillOpen, res.LegitAnswered, res.LegitTried),
				res.RSSPeakKB, lat.P99, fmt.Sprintf("peers %d/%d; rpc %s", res.LegitAnswered, res.LegitTried, lat)}, res)
		case "xswarm":
			legit := abuse.StartLegit(ctx, target, 200*time.Millisecond)
			res, err := abuse.XFlood(ctx, abuse.XFloodConfig{
				Target: swarmAddr, Source: netip.MustParseAddr("127.0.0.2"), User: "alice",
				Messages: scale(30_000), VictimPID: target.VictimPID,
			})
			lat := legit.Stop()
			if err != nil {
				return err
			}
			report(abuseRow{fmt.Sprintf("%d full twg_swarms messages (256 HAVEs, requests or refusals each) from one peer", res.Sent),
				fmt.Sprintf("%d bytes answered; victim closed the connection: %v", res.Answered, res.Closed),
				res.RSSPeakKB, lat.P99, lat.String()}, res)
		case "dht", "utp":
			legit := abuse.StartLegit(ctx, target, 200*time.Millisecond)
			res, err := abuse.DHTFlood(ctx, abuse.DHTFloodConfig{
				Target: swarmAddr, Source: netip.MustParseAddr("127.0.0.5"), Other: netip.MustParseAddr("127.0.0.6"),
				Packets: scale(100_000), UTP: r == "utp", VictimPID: target.VictimPID,
			})
			lat := legit.Stop()
			if err != nil {
				return err
			}
			kind := "DHT pings"
			if r == "utp" {
				kind = "uTP SYNs"
			}
			again := "flooder served again after " + res.SourceServedAfter.Round(time.Millisecond).String()
			if res.SourceServedAfter < 0 {
				again = "flooder NOT served again within 10 s"
			}
			report(abuseRow{fmt.Sprintf("%d %s from one source", res.Sent, kind),
				fmt.Sprintf("%.0f B/s of replies to it; %s", res.ReplyRate(), again),
				res.RSSPeakKB, lat.P99, fmt.Sprintf("other host %d/%d; rpc %s", res.OtherAnswered, res.OtherSent, lat)}, res)
		case "slowbody":
			res, err := abuse.SlowBody(ctx, abuse.SlowBodyConfig{Target: target, Clients: 24, Duration: 15 * time.Second})
			if err != nil {
				return err
			}
			report(abuseRow{fmt.Sprintf("%d authenticated clients trickle a 1,000-byte body", res.Clients),
				fmt.Sprintf("%d cut by the body timeout and reopened", res.Reconnects), res.RSSPeakKB, res.Legit.P99, res.Legit.String()}, res)
		case "passwords", "passwords500":
			par := 40
			if r == "passwords500" {
				par = 500
			}
			if r == "passwords500" && ran40 {
				// The 40-guesser row left up to 40 guesses queued (10 s of turns).
				fmt.Fprintln(out, "(waiting 11 s for the previous row's abandoned guesses to be answered)")
				sleepCtx(ctx, 11*time.Second)
			}
			before := victim.logCount("incorrect password attempt")
			res, err := abuse.WrongPasswords(ctx, abuse.WrongPasswordConfig{Target: target, Parallel: par, Duration: 10 * time.Second})
			if err != nil {
				return err
			}
			logged := victim.logCount("incorrect password attempt") - before
			ran40 = ran40 || par == 40
			report(abuseRow{fmt.Sprintf("%d wrong passwords in parallel", par),
				fmt.Sprintf("%.1f guesses/s answered; %d WARN lines", res.Rate(), logged), res.RSSPeakKB, res.Legit.P99, res.Legit.String()}, res)
		case "origin":
			res, err := abuse.CrossOrigin(ctx, target)
			if err != nil {
				return err
			}
			report(abuseRow{"a page on another origin POSTs text/plain with cached basic auth",
				fmt.Sprintf("HTTP %d (null origin %d, rebound Host %d; own origin %d)", res.OtherOrigin, res.NullOrigin, res.Rebound, res.SameOrigin),
				0, 0, "own origin " + strconv.Itoa(res.SameOrigin)}, res)
		case "batch":
			legit := abuse.StartLegit(ctx, target, 200*time.Millisecond)
			res, err := abuse.HugeBatch(ctx, abuse.HugeBatchConfig{Target: target, Elements: scale(50_000)})
			lat := legit.Stop()
			if err != nil {
				return err
			}
			report(abuseRow{fmt.Sprintf("one %d-element batch", res.Elements),
				fmt.Sprintf("HTTP %d, %d-byte reply in %v, RSS +%d KiB", res.Status, res.ReplyBytes, res.Took.Round(time.Millisecond), max(0, res.RSSPeakKB-res.RSSStartKB)),
				res.RSSPeakKB, lat.P99, lat.String()}, res)
		case "members":
			res, err := memberListRow(ctx, victim, registry, scale(100))
			if err != nil {
				return err
			}
			report(abuseRow{fmt.Sprintf("one member's member list names %d unregistered and %d registered users", res.Ghosts, res.Registered),
				fmt.Sprintf("unregistered followed %d -> %d, after a restart %d; registered followed %d (after a restart %d), cap %d per group",
					res.GhostsBefore, res.GhostsAfter, res.GhostsRestart, res.RegAfter, res.RegRestart, dm.MaxGroupFollows),
				0, 0, "-"}, res)
		case "restart":
			res, err := restartPair(ctx, victim, peer, scale(20))
			if err != nil {
				return err
			}
			fmt.Fprintln(out, res)
			rows = append(rows, abuseRow{fmt.Sprintf("the 2-node pair restarted %d times", res.restarts),
				fmt.Sprintf("reconnected within 10 s %d of %d times, slowest %v", res.within10s, res.restarts, res.slowest.Round(time.Millisecond)),
				0, 0, fmt.Sprintf("%d/%d", res.within10s, res.restarts)})
		}
	}
	if err := ctx.Err(); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(out, "abuse: stopped: %v\n", err)
	}
	fmt.Fprintln(out, "\n| attack | outcome | victim RSS peak | RPC p99 | legitimate |")
	fmt.Fprintln(out, "|---|---|---|---|---|")
	for _, r := range rows {
		rss, p99 := "-", "-"
		if r.rssPeakKB > 0 {
			rss = fmt.Sprintf("%.1f MB", float64(r.rssPeakKB)/1024)
		}
		if r.p99 > 0 {
			p99 = r.p99.Round(time.Millisecond).String()
		}
		fmt.Fprintf(out, "| %s | %s | %s | %s | %s |\n", r.attack, r.outcome, rss, p99, r.legit)
	}
	return nil
}

// abuseSetup registers alice on the victim and stores her status in the
// DHT, so that the victim runs alice's swarm and its own dhtget has an
// answer to find on the honest peer.
func abuseSetup(ctx context.Context, victim, peer *abuseNode) error {
	if _, err := victim.call(ctx, "createwalletuser", "alice"); err != nil {
		return fmt.Errorf("abuse: createwalletuser: %w", err)
	}
	if _, err := victim.call(ctx, "sendnewusertransaction", "alice"); err != nil {
		return fmt.Errorf("abuse: sendnewusertransaction: %w", err)
	}
	// Following alice runs her swarm, which the swarm attacks handshake for.
	if _, err := victim.call(ctx, "follow", "alice", []string{"alice"}); err != nil {
		return fmt.Errorf("abuse: follow: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := victim.call(ctx, "dhtput", "alice", "status", "s", "here", "alice", 1)
		if err == nil && dhtHasStatus(ctx, peer) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("abuse: alice's status never reached the peer: %v", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// memberListRow: mallory, a registered user whose key the attacker
// holds, is invited by the victim's alice to her group and posts one
// member list naming ghosts unregistered users and 80 registered ones
// (more than the per-group cap); the victim restarts once.
func memberListRow(ctx context.Context, victim *abuseNode, regPath string, ghosts int) (abuse.MemberListResult, error) {
	file, err := registry.OpenFile(regPath)
	if err != nil {
		return abuse.MemberListResult{}, fmt.Errorf("abuse: registry: %w", err)
	}
	register := func(user string) (*twproto.PrivateKey, error) {
		k, err := twproto.NewPrivateKey()
		if err != nil {
			return nil, err
		}
		if _, err := file.Register(ctx, user, k.PubKey()); err != nil {
			return nil, fmt.Errorf("abuse: register %s: %w", user, err)
		}
		return k, nil
	}
	mallory, err := register("mallory")
	if err != nil {
		return abuse.MemberListResult{}, err
	}
	var names, real []string
	for i := range ghosts {
		names = append(names, fmt.Sprintf("ghost%03d", i))
	}
	for i := range 80 {
		u := fmt.Sprintf("member%03d", i)
		if _, err := register(u); err != nil {
			return abuse.MemberListResult{}, err
		}
		real = append(real, u)
	}
	best, err := file.BestHeight(ctx)
	if err != nil {
		return abuse.MemberListResult{}, fmt.Errorf("abuse: best height: %w", err)
	}
	// alice's next piece number.
	var have map[string]int64
	raw, err := victim.call(ctx, "getlasthave", "alice", []string{"alice"})
	if err == nil {
		err = json.Unmarshal(raw, &have)
	}
	if err != nil {
		return abuse.MemberListResult{}, fmt.Errorf("abuse: getlasthave: %w", err)
	}
	return abuse.MemberList(ctx, abuse.MemberListConfig{
		Victim: victim.rpc, Local: "alice", LocalK: max(have["alice"], -1) + 1,
		Member: "mallory", MemberKey: mallory, Ghosts: names, Registered: real, Height: best,
		Restart: func(ctx context.Context) (abuse.Caller, error) {
			victim.stop()
			if err := victim.start(ctx); err != nil {
				return nil, err
			}
			return victim.rpc, nil
		},
	})
}

// dhtHasStatus is a node's own dhtget of alice's status: it must find it.
func dhtHasStatus(ctx context.Context, n *abuseNode) error {
	raw, err := n.call(ctx, "dhtget", "alice", "status", "s")
	if err != nil {
		return err
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return err
	}
	if len(items) == 0 {
		return errors.New("dhtget returned []")
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

type restartResult struct {
	restarts, within10s int
	slowest             time.Duration
	never               int // not reconnected within 30 s
}

func (r restartResult) String() string {
	return fmt.Sprintf("restarted pair: %d restarts, reconnected within 10 s %d times, %d not within 30 s, slowest %v",
		r.restarts, r.within10s, r.never, r.slowest.Round(time.Millisecond))
}

// restartPair stops both nodes and starts them again (same datadirs and
// ports) n times, timing how long until both see a swarm connection.
func restartPair(ctx context.Context, victim, peer *abuseNode, n int) (restartResult, error) {
	res := restartResult{restarts: n}
	// Both must hold a swarm in common: the peer follows alice too.
	if _, err := peer.call(ctx, "follow", "alice", []string{"alice"}); err != nil {
		// The peer has no wallet user alice: follow as its own user.
		if _, err := peer.call(ctx, "createwalletuser", "peer"); err != nil {
			return res, fmt.Errorf("abuse: createwalletuser peer: %w", err)
		}
		if _, err := peer.call(ctx, "sendnewusertransaction", "peer"); err != nil {
			return res, fmt.Errorf("abuse: register peer: %w", err)
		}
		if _, err := peer.call(ctx, "follow", "peer", []string{"alice"}); err != nil {
			return res, fmt.Errorf("abuse: follow: %w", err)
		}
	}
	// They have found each other once before the first restart.
	deadline := time.Now().Add(30 * time.Second)
	for victim.connections(ctx) == 0 || peer.connections(ctx) == 0 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return res, errors.New("abuse: victim and peer never connected their swarms")
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		victim.stop()
		peer.stop()
		start := time.Now() // the time counted includes both start-ups
		if err := peer.start(ctx); err != nil {
			return res, err
		}
		if err := victim.start(ctx); err != nil {
			return res, err
		}
		for {
			if victim.connections(ctx) > 0 && peer.connections(ctx) > 0 {
				took := time.Since(start)
				res.slowest = max(res.slowest, took)
				if took <= 10*time.Second {
					res.within10s++
				}
				break
			}
			if time.Since(start) > 30*time.Second {
				res.never++
				res.slowest = max(res.slowest, time.Since(start))
				break
			}
			sleepCtx(ctx, 100*time.Millisecond)
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
		}
	}
	return res, nil
}
