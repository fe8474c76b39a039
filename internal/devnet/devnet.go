// Package devnet runs a local twister network of twgroupd nodes on 127.0.0.1
// and drives a group chat through their JSON-RPC, the way a person would with
// the CLI: it starts one `twgroupd serve` process per node with its own
// datadir and ports and a shared local registry file, registers users, has
// them follow each other, creates a group, invites, chats, changes the
// description, sends a DM, and reports each node's view of the conversation.
//
// It owns process orchestration and the scripted conversation; it talks to
// the nodes only through their RPC, so it proves what a user would see.
//
// Each node's settings are in its datadir's twgroupd.conf (0600) and it
// authenticates RPC with a cookie (datadir/.cookie), so no secret is on a
// command line and a client command needs only -datadir. Started again on the same Dir, the devnet
// resumes: the same datadirs, wallets, registry and, when still free, ports.
package devnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twgroupd/twgroupd/internal/config"
	"github.com/twgroupd/twgroupd/internal/upstream"
)

// Options configure a devnet.
type Options struct {
	Binary   string        // the twgroupd executable to start as `serve`
	Dir      string        // base directory; each node gets Dir/nodeN
	Nodes    int           // number of nodes (default 3)
	Users    []string      // one user per node, round robin (default alice, bob, carol)
	Timeout  time.Duration // how long to wait for the conversation to converge
	KeepOpen bool          // keep the nodes running after the script until ctx ends
	HTMLDir  string        // twister-html for every node (default: each node's own)
	Out      io.Writer     // progress and the conversations
	// BlockInterval, when set, creates the registry file with this pretend
	// block time (else the nodes create it with the registry's default).
	BlockInterval time.Duration
	// Debug makes every node log at debug level (devnet --debug).
	Debug bool
}

// Node is one running twgroupd process.
type Node struct {
	Name     string
	Dir      string
	IP       string // the node's own loopback address for DHT and swarm
	RPCPort  int
	DHTPort  int
	User     string // the local user created on this node
	Password string // its RPC cookie's password, read from Dir/.cookie once ready
	HTMLDir  string // where this node serves twister-html from
	Resumed  bool   // the datadir was there from an earlier run
	alias    string
	conf     nodeConf
	binary   string
	args     []string
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	proc     *Process      // the running process; nil when stopped
	rpc      *upstream.Client
}

// start launches the node's process with its log in Dir/twgroupd.log.
func (n *Node) start() error {
	p, err := StartProcess(n.binary, filepath.Join(n.Dir, "twgroupd.log"), n.args...)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	n.proc, n.cmd, n.done = p, p.Cmd, p.Done
	n.rpc = nil // each start writes a new cookie; waitReady reads it
	return nil
}

// connect builds the RPC client from the node's cookie (no password on any
// command line: the node writes Dir/.cookie at start).
func (n *Node) connect() error {
	_, pass, err := config.ReadCookie(n.Dir)
	if err != nil {
		return err
	}
	n.Password = pass
	n.rpc, err = upstream.New(n.RPCURL(), upstream.WithTimeout(20*time.Second))
	return err
}

// Stop ends the node's process (SIGTERM, then SIGKILL after 10 s).
func (n *Node) Stop() {
	if n.proc == nil {
		return
	}
	n.proc.Stop(10 * time.Second)
	n.proc, n.cmd = nil, nil
}

// Kill ends the node's process with SIGKILL at once (crash tests).
func (n *Node) Kill() {
	if n.proc == nil {
		return
	}
	n.proc.Kill()
	n.proc, n.cmd = nil, nil
}

// PID is the node's process id, 0 when it is not running.
func (n *Node) PID() int {
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Restart starts a stopped node again on the same datadir and ports.
func (n *Node) Restart(ctx context.Context) error {
	n.Stop()
	if err := n.start(); err != nil {
		return err
	}
	return n.waitReady(ctx, 20*time.Second)
}

// Alias is the group's alias on this node, once Script has run.
func (n *Node) Alias() string { return n.alias }

// RPCURL is the node's JSON-RPC address with credentials, for the CLI.
func (n *Node) RPCURL() string {
	return fmt.Sprintf("http://%s:%s@127.0.0.1:%d/", config.CookieUser, n.Password, n.RPCPort)
}

// Call invokes an RPC method on the node. An error reply is a *CallError
// naming the node and method (the client package calls every server its
// "upstream"; here it is the node's own RPC).
func (n *Node) Call(ctx context.Context, method string, params ...any) (json.RawMessage, error) {
	res, err := n.rpc.Call(ctx, method, params...)
	var re *upstream.RPCError
	if errors.As(err, &re) {
		return nil, &CallError{Node: n.Name, Method: method, Code: re.Code, Message: re.Message}
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", n.Name, method, err)
	}
	return res, nil
}

// CallError is a JSON-RPC error reply of a node.
type CallError struct {
	Node, Method string
	Code         int
	Message      string
}

func (e *CallError) Error() string {
	return fmt.Sprintf("%s %s: error %d: %s", e.Node, e.Method, e.Code, e.Message)
}

// nodeConf is what the devnet keeps in a node's twgroupd.conf.
type nodeConf struct {
	rpcPort, dhtPort int
	ip               string // bind: the node's own loopback address
	registry         string
	bootstrap        []string // DHT addresses of a few nodes started before
	htmlDir          string
	debug            bool
}

func (c nodeConf) text() string {
	var b strings.Builder
	b.WriteString("# written by twgroupd devnet; re-running it with the same --dir reuses this file\n")
	// No rpcpassword: the node writes a new cookie at each start.
	fmt.Fprintf(&b, "rpcport=%d\n", c.rpcPort)
	fmt.Fprintf(&b, "dhtport=%d\nbind=%s\nregistry=%s\n", c.dhtPort, c.ip, c.registry)
	for _, a := range c.bootstrap {
		fmt.Fprintf(&b, "bootstrap=%s\n", a)
	}
	if c.htmlDir != "" {
		fmt.Fprintf(&b, "htmldir=%s\n", c.htmlDir)
	}
	if c.debug {
		b.WriteString("debug=1\n")
	}
	return b.String()
}

func (n *Node) writeConf() error {
	path := filepath.Join(n.Dir, config.ConfFileName)
	if err := os.WriteFile(path, []byte(n.conf.text()), 0o600); err != nil {
		return fmt.Errorf("devnet: %w", err)
	}
	return os.Chmod(path, 0o600)
}

// readConf returns the ports of an earlier run's conf file; ok is false
// when there is none.
func readConf(dir string) (rpcPort, dhtPort int, ok bool) {
	data, err := os.ReadFile(filepath.Join(dir, config.ConfFileName))
	if err != nil {
		return 0, 0, false
	}
	vals, err := config.ParseFile(data)
	if err != nil {
		return 0, 0, false
	}
	first := func(k string) string {
		if v := vals[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	rpcPort, _ = strconv.Atoi(first("rpcport"))
	dhtPort, _ = strconv.Atoi(first("dhtport"))
	return rpcPort, dhtPort, rpcPort > 0
}

// portFree reports whether port is free on ip for TCP (and for UDP when
// udp is set).
func portFree(ip string, port int, udp bool) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	if udp {
		c, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			return false
		}
		c.Close()
	}
	return true
}

// Net is a running devnet.
type Net struct {
	Nodes         []*Node
	out           io.Writer
	dm            [2]*Node      // sender and receiver of the script's DM
	blockInterval time.Duration // of the registry file, when the devnet made it
}

// Message is one line of getdirectmsgs.
type Message struct {
	ID     int64  `json:"id"`
	Time   int64  `json:"time"`
	Text   string `json:"text"`
	FromMe bool   `json:"fromMe"`
	From   string `json:"from"`
	K      int64  `json:"k"`
}

func (o *Options) defaults() {
	if o.Nodes <= 0 {
		o.Nodes = 3
	}
	if len(o.Users) == 0 {
		o.Users = []string{"alice", "bob", "carol"}
	}
	if o.Timeout <= 0 {
		o.Timeout = 90 * time.Second
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
}

// Start launches the nodes, each on its own loopback address (LoopbackIP),
// and waits until each answers RPC. A node bootstraps its DHT from the first
// node and up to 3 random other earlier ones.
func Start(ctx context.Context, o Options) (*Net, error) {
	o.defaults()
	if o.Binary == "" {
		return nil, errors.New("devnet: no twgroupd binary")
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("devnet: %w", err)
	}
	registry := filepath.Join(o.Dir, "registry.txt")
	htmlDir := ""
	if o.HTMLDir != "" {
		abs, err := filepath.Abs(o.HTMLDir)
		if err != nil {
			return nil, fmt.Errorf("devnet: htmldir: %w", err)
		}
		htmlDir = abs
	}
	if err := initRegistry(ctx, registry, o.BlockInterval); err != nil {
		return nil, err
	}
	nw := &Net{out: o.Out, blockInterval: o.BlockInterval}
	for i := 0; i < o.Nodes; i++ {
		n := &Node{
			Name: fmt.Sprintf("node%d", i+1),
			Dir:  filepath.Join(o.Dir, fmt.Sprintf("node%d", i+1)),
			User: o.Users[i%len(o.Users)],
			IP:   LoopbackIP(i),
		}
		conf := nodeConf{ip: n.IP, registry: registry, htmlDir: htmlDir, debug: o.Debug}
		if rpcPort, dhtPort, ok := readConf(n.Dir); ok {
			// An earlier run's node: its ports while free.
			n.Resumed = true
			if portFree("127.0.0.1", rpcPort, false) {
				conf.rpcPort = rpcPort
			}
			if dhtPort > 0 && portFree(n.IP, dhtPort, true) {
				conf.dhtPort = dhtPort
			}
		}
		if conf.rpcPort == 0 {
			p, err := freePort("tcp")
			if err != nil {
				return nil, err
			}
			conf.rpcPort = p
		}
		for _, prev := range bootstrapPeers(nw.Nodes) {
			conf.bootstrap = append(conf.bootstrap, net.JoinHostPort(prev.IP, strconv.Itoa(prev.DHTPort)))
		}
		n.conf, n.RPCPort = conf, conf.rpcPort
		n.HTMLDir = htmlDir
		if n.HTMLDir == "" {
			n.HTMLDir = config.Config{DataDir: n.Dir}.ResolvedHTMLDir()
		}
		if err := os.MkdirAll(n.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("devnet: %w", err)
		}
		if err := n.writeConf(); err != nil {
			return nil, err
		}
		// Everything else is in the conf file; no password anywhere (cookie).
		n.binary, n.args = o.Binary, []string{"serve", "-datadir=" + n.Dir}
		if err := n.start(); err != nil {
			nw.Stop()
			return nil, err
		}
		nw.Nodes = append(nw.Nodes, n)
		if err := n.waitReady(ctx, 20*time.Second); err != nil {
			nw.Stop()
			return nil, err
		}
		if err := n.learnDHTPort(ctx); err != nil {
			nw.Stop()
			return nil, err
		}
		how := "started"
		if n.Resumed {
			how = "resumed"
		}
		fmt.Fprintf(o.Out, "%s %s: rpc 127.0.0.1:%d, dht/swarm %s:%d, datadir %s\n", how, n.Name, n.RPCPort, n.IP, n.DHTPort, n.Dir)
	}
	return nw, nil
}

func (n *Node) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		err := n.connect() // a cookie left by an earlier run fails and is read again
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = n.Call(cctx, "getinfo")
			cancel()
			if err == nil {
				return nil
			}
		}
		select {
		case <-n.done:
			return fmt.Errorf("devnet: %s exited: %v (see %s)", n.Name, n.proc.Err(), filepath.Join(n.Dir, "twgroupd.log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("devnet: %s not answering RPC: %v", n.Name, err)
		}
	}
}

// Stop stops every node (SIGTERM: each flushes and closes its stores).
func (nw *Net) Stop() {
	var wg sync.WaitGroup
	for _, n := range nw.Nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.Stop() }()
	}
	wg.Wait()
}

// Script runs the scripted conversation and returns each node's view of the
// group and of the DM, keyed by node name. On a resumed devnet the users
// are there already and are reused; each run makes a new group.
func (nw *Net) Script(ctx context.Context, timeout time.Duration) (map[string][]Message, error) {
	out := nw.out
	users := make([]string, len(nw.Nodes))
	for i, n := range nw.Nodes {
		users[i] = n.User
	}
	// Users and registration, skipped for what an earlier run did.
	for _, n := range nw.Nodes {
		var have []string
		if err := decode(n.Call(ctx, "listwalletusers"))(&have); err != nil {
			return nil, err
		}
		if slices.Contains(have, n.User) {
			fmt.Fprintf(out, "%s: user %s is in the wallet from an earlier run\n", n.Name, n.User)
		} else if _, err := n.Call(ctx, "createwalletuser", n.User); err != nil {
			return nil, err
		}
		var pub string
		if err := decode(n.Call(ctx, "dumppubkey", n.User))(&pub); err != nil {
			return nil, err
		}
		if pub != "" {
			fmt.Fprintf(out, "%s: user %s is registered\n", n.Name, n.User)
			continue
		}
		if _, err := n.Call(ctx, "sendnewusertransaction", n.User); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "%s: created and registered user %s\n", n.Name, n.User)
	}
	for _, n := range nw.Nodes {
		if _, err := n.Call(ctx, "follow", n.User, users); err != nil {
			return nil, err
		}
	}
	// twister-html builds its DM list from the following1 DHT item, not
	// from getfollowing; publish it as the frontend's Follow button does
	// (seq: the time, so a resumed run's item replaces the earlier one).
	seq := time.Now().Unix()
	for _, n := range nw.Nodes {
		others := slices.DeleteFunc(slices.Clone(users), func(u string) bool { return u == n.User })
		if _, err := n.Call(ctx, "dhtput", n.User, "following1", "s", others, n.User, seq); err != nil {
			fmt.Fprintf(out, "%s: dhtput following1: %v (twister-html's DM list starts empty)\n", n.Name, err)
		}
	}
	fmt.Fprintf(out, "every user follows %s (a DM from someone you do not follow is dropped, as in twister)\n", strings.Join(users, ", "))

	// Groups each node holds already (a resumed devnet): the new one is
	// the one not among them.
	before := map[string][]string{}
	for _, n := range nw.Nodes {
		var groups []string
		if err := decode(n.Call(ctx, "listgroups"))(&groups); err != nil {
			return nil, err
		}
		before[n.Name] = groups
	}
	creator := nw.Nodes[0]
	var alias string
	if err := decode(creator.Call(ctx, "creategroup", "devnet group chat"))(&alias); err != nil || alias == "" {
		return nil, fmt.Errorf("creategroup: %q %v", alias, err)
	}
	fmt.Fprintf(out, "%s: %s created group %s (creategroup makes the group key; nobody is a member yet)\n", creator.Name, creator.User, alias)
	k, err := creator.NextK(ctx)
	if err != nil {
		return nil, err
	}
	invitees := append(slices.Clone(users[1:]), creator.User)
	if _, err := creator.Call(ctx, "newgroupinvite", creator.User, k, alias, invitees); err != nil {
		return nil, err
	}
	last, err := creator.NextK(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "%s: newgroupinvite %s k=%d '%s' %q: posts k=%d..%d, a group_invite DM (the key) to each of %s, then the member list sealed to the group\n",
		creator.Name, creator.User, k, alias, invitees, k, last-1, strings.Join(invitees, ", "))
	fmt.Fprintf(out, "    %s invites herself too: only members get the group's messages, and creategroup does not make its creator one (twister-html's New Group does the same)\n", creator.User)

	// Each node learns the group under its own alias.
	aliases := map[string]string{creator.Name: alias}
	for _, n := range nw.Nodes[1:] {
		a, err := n.waitGroup(ctx, timeout, len(users), before[n.Name])
		if err != nil {
			return nil, err
		}
		aliases[n.Name] = a
		fmt.Fprintf(out, "%s: %s sees the group as %s (an alias is local to each node)\n", n.Name, n.User, a)
	}
	var want []string
	for _, n := range nw.Nodes {
		k, err := n.NextK(ctx)
		if err != nil {
			return nil, err
		}
		text := fmt.Sprintf("hello group, %s here", n.User)
		if _, err := n.Call(ctx, "newdirectmsg", n.User, k, aliases[n.Name], text); err != nil {
			return nil, err
		}
		want = append(want, text)
		fmt.Fprintf(out, "%s: newdirectmsg %s %d %s %q\n", n.Name, n.User, k, aliases[n.Name], text)
	}
	k, err = creator.NextK(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := creator.Call(ctx, "newgroupdescription", creator.User, k, alias, "devnet group, renamed"); err != nil {
		return nil, err
	}
	want = append(want, fmt.Sprintf("*** '%s' changed group description to: devnet group, renamed", creator.User))
	fmt.Fprintf(out, "%s: newgroupdescription %s %d %s \"devnet group, renamed\"\n", creator.Name, creator.User, k, alias)
	if len(nw.Nodes) > 1 {
		peer := nw.Nodes[1]
		k, err := creator.NextK(ctx)
		if err != nil {
			return nil, err
		}
		dm := fmt.Sprintf("a private word for %s (sent %s)", peer.User, time.Now().UTC().Format("15:04:05"))
		if _, err := creator.Call(ctx, "newdirectmsg", creator.User, k, peer.User, dm, true); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "%s: newdirectmsg %s %d %s %q true   (a DM; true: a copy to herself, post k+1)\n", creator.Name, creator.User, k, peer.User, dm)
		if err := peer.WaitText(ctx, timeout, peer.User, creator.User, dm); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "%s: %s received the DM\n", peer.Name, peer.User)
		nw.dm = [2]*Node{creator, peer}
	}
	for _, n := range nw.Nodes {
		n.alias = aliases[n.Name]
	}
	views := map[string][]Message{}
	for _, n := range nw.Nodes {
		for _, text := range want {
			if err := n.WaitText(ctx, timeout, n.User, aliases[n.Name], text); err != nil {
				return nil, err
			}
		}
		msgs, err := n.Thread(ctx, n.User, aliases[n.Name])
		if err != nil {
			return nil, err
		}
		views[n.Name] = msgs
	}
	return views, nil
}

func decode(raw json.RawMessage, err error) func(any) error {
	return func(v any) error {
		if err != nil {
			return err
		}
		return json.Unmarshal(raw, v)
	}
}

// NextK asks getlasthave for the user's last piece, as twister-html does.
func (n *Node) NextK(ctx context.Context) (int64, error) {
	var have map[string]int64
	if err := decode(n.Call(ctx, "getlasthave", n.User, []string{n.User}))(&have); err != nil {
		return 0, fmt.Errorf("%s getlasthave: %w", n.Name, err)
	}
	last, ok := have[n.User]
	if !ok {
		last = -1
	}
	return last + 1, nil
}

// waitGroup waits for a group not in old with at least members members.
func (n *Node) waitGroup(ctx context.Context, timeout time.Duration, members int, old []string) (string, error) {
	var last string
	err := poll(ctx, timeout, func() (bool, error) {
		var groups []string
		if err := decode(n.Call(ctx, "listgroups", n.User))(&groups); err != nil {
			return false, nil // the user may not be known yet
		}
		for _, g := range groups {
			if slices.Contains(old, g) {
				continue
			}
			var info struct {
				Members []string `json:"members"`
			}
			if decode(n.Call(ctx, "getgroupinfo", g))(&info) == nil && len(info.Members) >= members {
				last = g
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return "", fmt.Errorf("%s: group with %d members never arrived: %w", n.Name, members, err)
	}
	return last, nil
}

func (n *Node) Thread(ctx context.Context, user, peer string) ([]Message, error) {
	var res map[string][]Message
	q := []map[string]any{{"username": peer}}
	if err := decode(n.Call(ctx, "getdirectmsgs", user, 1000, q))(&res); err != nil {
		return nil, fmt.Errorf("%s getdirectmsgs: %w", n.Name, err)
	}
	return res[peer], nil
}

func (n *Node) WaitText(ctx context.Context, timeout time.Duration, user, peer, text string) error {
	err := poll(ctx, timeout, func() (bool, error) {
		msgs, err := n.Thread(ctx, user, peer)
		if err != nil {
			return false, nil
		}
		return slices.ContainsFunc(msgs, func(m Message) bool { return m.Text == text }), nil
	})
	if err != nil {
		return fmt.Errorf("%s: %s never saw %q in %s: %w", n.Name, user, text, peer, err)
	}
	return nil
}

func poll(ctx context.Context, timeout time.Duration, f func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := f()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// PrintViews writes each node's view of the group, then the script's DM
// as its sender and its receiver see it.
func PrintViews(w io.Writer, nw *Net, views map[string][]Message) {
	for _, n := range nw.Nodes {
		fmt.Fprintf(w, "\n== group chat %s as %s (%s) sees it\n", n.alias, n.Name, n.User)
		printThread(w, views[n.Name])
	}
	from, to := nw.dm[0], nw.dm[1]
	if from == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, side := range [][2]*Node{{from, to}, {to, from}} {
		n, peer := side[0], side[1]
		msgs, err := n.Thread(ctx, n.User, peer.User)
		if err != nil {
			fmt.Fprintf(w, "\n== DMs of %s with %s: %v\n", n.User, peer.User, err)
			continue
		}
		fmt.Fprintf(w, "\n== DMs of %s with %s, as %s sees them (getdirectmsgs %s 10 '[{\"username\":\"%s\"}]')\n", n.User, peer.User, n.Name, n.User, peer.User)
		printThread(w, msgs)
	}
}

func printThread(w io.Writer, msgs []Message) {
	for _, m := range msgs {
		fmt.Fprintf(w, "  [%d] %s %-6s %s\n", m.ID, time.Unix(m.Time, 0).UTC().Format("15:04:05"), m.From+":", m.Text)
	}
}

// TwisterHTMLRepo is where twister-html comes from.
const TwisterHTMLRepo = "https://github.com/miguelfreitas/twister-html.git"

// ShellFunc is the line to paste into a POSIX shell so that `tw <command>`
// runs binary as a client of node n (its datadir holds the port and
// password), the line README.md's "CLI in five lines" starts from.
func ShellFunc(binary string, n *Node) string {
	return fmt.Sprintf("tw() { %s -datadir=%s \"$@\"; }", shellQuote(binary), shellQuote(n.Dir))
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:,@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// PrintAccess tells a person how to reach each node: the twister-html URL
// and login, the client command, and how to get twister-html when the
// node's html dir has none.
func PrintAccess(w io.Writer, nw *Net, binary string) {
	fmt.Fprintln(w, "\nThe nodes keep running; Ctrl-C stops them.")
	missing := map[string]bool{}
	for _, n := range nw.Nodes {
		fmt.Fprintf(w, "\n  %s (%s):\n", n.Name, n.User)
		fmt.Fprintf(w, "    twister-html: open http://127.0.0.1:%d/ and log in as user \"%s\", password %s\n", n.RPCPort, config.CookieUser, n.Password)
		fmt.Fprintf(w, "                  (the cookie in %s, new at each start)\n", config.CookiePath(n.Dir))
		if _, err := os.Stat(filepath.Join(n.HTMLDir, "home.html")); err != nil {
			fmt.Fprintf(w, "                  (not installed yet in %s, see below)\n", n.HTMLDir)
			missing[n.HTMLDir] = true
		}
		fmt.Fprintf(w, "    CLI:          %s -datadir=%s getdirectmsgs %s 10 '[{\"username\":\"%s\"}]'\n", shellQuote(binary), shellQuote(n.Dir), n.User, n.alias)
	}
	if len(missing) > 0 {
		fmt.Fprintf(w, "\ntwister-html is not installed. Get it once and restart the devnet with --htmldir:\n")
		fmt.Fprintf(w, "    git clone --depth 1 %s ~/twister-html\n", TwisterHTMLRepo)
		fmt.Fprintf(w, "    %s devnet --htmldir ~/twister-html   (add --dir DIR to keep the same users)\n", shellQuote(binary))
		fmt.Fprintf(w, "or clone it into each node's html dir shown above (the devnet's default).\n")
	}
	if len(nw.Nodes) > 0 {
		n := nw.Nodes[0]
		fmt.Fprintf(w, "\nFor README.md's \"CLI in five lines\" (as %s on %s), paste this line into your shell:\n\n", n.User, n.Name)
		fmt.Fprintf(w, "%s\n\n", ShellFunc(binary, n))
	}
}

func freePort(network string) (int, error) {
	l, err := net.Listen(network, "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("devnet: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// learnDHTPort reads the port the node picked from getinfo (ext_port1) and
// pins it in the node's conf file, so a restart or a resumed run comes back
// on it.
func (n *Node) learnDHTPort(ctx context.Context) error {
	var info struct {
		Port int `json:"ext_port1"`
	}
	if err := decode(n.Call(ctx, "getinfo"))(&info); err != nil || info.Port == 0 {
		return fmt.Errorf("devnet: %s's DHT port from getinfo: %d %v", n.Name, info.Port, err)
	}
	n.DHTPort = info.Port
	if n.conf.dhtPort != n.DHTPort {
		n.conf.dhtPort = n.DHTPort
		return n.writeConf()
	}
	return nil
}
