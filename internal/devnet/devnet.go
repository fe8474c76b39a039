// Package devnet runs a local twister network of twgroupd nodes on 127.0.0.1
// and drives a group chat through their JSON-RPC, the way a person would with
// the CLI: it starts one `twgroupd serve` process per node with its own
// datadir and ports and a shared local registry file, registers users, has
// them follow each other, creates a group, invites, chats, changes the
// description, sends a DM, and reports each node's view of the conversation.
//
// It owns process orchestration and the scripted conversation; it talks to
// the nodes only through their RPC, so it proves what a user would see.
package devnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
	"syscall"
	"time"

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
	// BlockInterval, when set, creates the registry file with this pretend
	// block time (else the nodes create it with the registry's default).
	BlockInterval time.Duration
	Out           io.Writer // progress and the conversations
}

// Node is one running twgroupd process.
type Node struct {
	Name     string
	Dir      string
	IP       string // the node's own loopback address for DHT and swarm
	RPCPort  int
	DHTPort  int
	User     string // the local user created on this node
	Password string
	alias    string
	binary   string
	args     []string
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	exitErr  error         // its Wait error, valid once done is closed
	rpc      *upstream.Client
}

// start launches the node's process with its log in Dir/twgroupd.log.
func (n *Node) start() error {
	logf, err := os.OpenFile(filepath.Join(n.Dir, "twgroupd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("devnet: %w", err)
	}
	n.cmd = exec.Command(n.binary, n.args...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("devnet: start %s: %w", n.Name, err)
	}
	done := make(chan struct{})
	n.done = done
	cmd := n.cmd
	go func() {
		n.exitErr = cmd.Wait()
		logf.Close()
		close(done)
	}()
	if n.rpc == nil {
		if n.rpc, err = upstream.New(n.RPCURL(), upstream.WithTimeout(20*time.Second)); err != nil {
			return err
		}
	}
	return nil
}

// Stop ends the node's process (SIGTERM, then SIGKILL after 10 s).
func (n *Node) Stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
	n.cmd = nil
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
	return fmt.Sprintf("http://user:%s@127.0.0.1:%d/", n.Password, n.RPCPort)
}

// Call invokes an RPC method on the node.
func (n *Node) Call(ctx context.Context, method string, params ...any) (json.RawMessage, error) {
	return n.rpc.Call(ctx, method, params...)
}

// Net is a running devnet.
type Net struct {
	Nodes         []*Node
	out           io.Writer
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

// Start launches the nodes and waits until each answers RPC. The first node
// is every other node's DHT bootstrap.
func Start(ctx context.Context, o Options) (*Net, error) {
	o.defaults()
	if o.Binary == "" {
		return nil, errors.New("devnet: no twgroupd binary")
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("devnet: %w", err)
	}
	registry := filepath.Join(o.Dir, "registry.txt")
	if err := initRegistry(ctx, registry, o.BlockInterval); err != nil {
		return nil, err
	}
	nw := &Net{out: o.Out, blockInterval: o.BlockInterval}
	for i := 0; i < o.Nodes; i++ {
		rpcPort, err := freePort("tcp")
		if err != nil {
			return nil, err
		}
		n := &Node{
			Name:     fmt.Sprintf("node%d", i+1),
			Dir:      filepath.Join(o.Dir, fmt.Sprintf("node%d", i+1)),
			IP:       LoopbackIP(i),
			RPCPort:  rpcPort,
			User:     o.Users[i%len(o.Users)],
			Password: randomPassword(),
		}
		if err := os.MkdirAll(n.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("devnet: %w", err)
		}
		args := []string{"serve",
			"-datadir=" + n.Dir,
			"-rpcuser=user",
			"-rpcpassword=" + n.Password,
			"-rpcport=" + strconv.Itoa(n.RPCPort),
			"-dhtport=0", // the node picks a number free for TCP and UDP
			"-registry=" + registry,
			"-bind=" + n.IP,
		}
		for _, prev := range bootstrapPeers(nw.Nodes) {
			args = append(args, "-bootstrap="+net.JoinHostPort(prev.IP, strconv.Itoa(prev.DHTPort)))
		}
		n.binary, n.args = o.Binary, args
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
		fmt.Fprintf(o.Out, "started %s: rpc 127.0.0.1:%d, dht/swarm %s:%d, datadir %s\n", n.Name, n.RPCPort, n.IP, n.DHTPort, n.Dir)
	}
	return nw, nil
}

func (n *Node) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := n.Call(cctx, "getinfo")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-n.done:
			return fmt.Errorf("devnet: %s exited: %v (see %s)", n.Name, n.exitErr, filepath.Join(n.Dir, "twgroupd.log"))
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
// group and of the DM, keyed by node name.
func (nw *Net) Script(ctx context.Context, timeout time.Duration) (map[string][]Message, error) {
	out := nw.out
	users := make([]string, len(nw.Nodes))
	for i, n := range nw.Nodes {
		users[i] = n.User
	}
	// Users and registration.
	for _, n := range nw.Nodes {
		if _, err := n.Call(ctx, "createwalletuser", n.User); err != nil {
			return nil, fmt.Errorf("%s createwalletuser %s: %w", n.Name, n.User, err)
		}
		if _, err := n.Call(ctx, "sendnewusertransaction", n.User); err != nil {
			return nil, fmt.Errorf("%s sendnewusertransaction %s: %w", n.Name, n.User, err)
		}
		fmt.Fprintf(out, "%s: created and registered user %s\n", n.Name, n.User)
	}
	for _, n := range nw.Nodes {
		if _, err := n.Call(ctx, "follow", n.User, users); err != nil {
			return nil, fmt.Errorf("%s follow: %w", n.Name, err)
		}
	}
	// twister-html builds its DM list from the following1 DHT item, not
	// from getfollowing; publish it as the frontend's Follow button does.
	for _, n := range nw.Nodes {
		others := slices.DeleteFunc(slices.Clone(users), func(u string) bool { return u == n.User })
		if _, err := n.Call(ctx, "dhtput", n.User, "following1", "s", others, n.User, 1); err != nil {
			fmt.Fprintf(out, "%s: dhtput following1: %v (twister-html's DM list starts empty)\n", n.Name, err)
		}
	}
	fmt.Fprintf(out, "every user follows %s\n", strings.Join(users, ", "))

	creator := nw.Nodes[0]
	var alias string
	if err := decode(creator.Call(ctx, "creategroup", "devnet group chat"))(&alias); err != nil || alias == "" {
		return nil, fmt.Errorf("creategroup: %q %v", alias, err)
	}
	fmt.Fprintf(out, "%s: %s created group %s\n", creator.Name, creator.User, alias)
	k, err := creator.NextK(ctx)
	if err != nil {
		return nil, err
	}
	invitees := append(slices.Clone(users[1:]), creator.User)
	if _, err := creator.Call(ctx, "newgroupinvite", creator.User, k, alias, invitees); err != nil {
		return nil, fmt.Errorf("newgroupinvite: %w", err)
	}
	fmt.Fprintf(out, "%s: invited %s\n", creator.User, strings.Join(invitees, ", "))

	// Each node learns the group under its own alias.
	aliases := map[string]string{creator.Name: alias}
	for _, n := range nw.Nodes[1:] {
		a, err := n.waitGroup(ctx, timeout, len(users))
		if err != nil {
			return nil, err
		}
		aliases[n.Name] = a
		fmt.Fprintf(out, "%s: %s sees the group as %s\n", n.Name, n.User, a)
	}
	var want []string
	for _, n := range nw.Nodes {
		k, err := n.NextK(ctx)
		if err != nil {
			return nil, err
		}
		text := fmt.Sprintf("hello group, %s here", n.User)
		if _, err := n.Call(ctx, "newdirectmsg", n.User, k, aliases[n.Name], text); err != nil {
			return nil, fmt.Errorf("%s newdirectmsg: %w", n.Name, err)
		}
		want = append(want, text)
		fmt.Fprintf(out, "%s: %s says %q\n", n.Name, n.User, text)
	}
	k, err = creator.NextK(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := creator.Call(ctx, "newgroupdescription", creator.User, k, alias, "devnet group, renamed"); err != nil {
		return nil, fmt.Errorf("newgroupdescription: %w", err)
	}
	want = append(want, fmt.Sprintf("*** '%s' changed group description to: devnet group, renamed", creator.User))
	fmt.Fprintf(out, "%s: changed the description\n", creator.User)
	if len(nw.Nodes) > 1 {
		peer := nw.Nodes[1]
		k, err := creator.NextK(ctx)
		if err != nil {
			return nil, err
		}
		dm := fmt.Sprintf("a private word for %s", peer.User)
		if _, err := creator.Call(ctx, "newdirectmsg", creator.User, k, peer.User, dm, true); err != nil {
			return nil, fmt.Errorf("newdirectmsg dm: %w", err)
		}
		fmt.Fprintf(out, "%s: DM to %s %q\n", creator.User, peer.User, dm)
		if err := peer.WaitText(ctx, timeout, peer.User, creator.User, dm); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "%s: %s received the DM\n", peer.Name, peer.User)
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

func (n *Node) waitGroup(ctx context.Context, timeout time.Duration, members int) (string, error) {
	var last string
	err := poll(ctx, timeout, func() (bool, error) {
		var groups []string
		if err := decode(n.Call(ctx, "listgroups", n.User))(&groups); err != nil {
			return false, nil // the user may not be known yet
		}
		for _, g := range groups {
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

// PrintViews writes each node's conversation.
func PrintViews(w io.Writer, nw *Net, views map[string][]Message) {
	for _, n := range nw.Nodes {
		fmt.Fprintf(w, "\n== group chat as %s (%s) sees it\n", n.Name, n.User)
		for _, m := range views[n.Name] {
			fmt.Fprintf(w, "  [%d] %s %-6s %s\n", m.ID, time.Unix(m.Time, 0).UTC().Format("15:04:05"), m.From+":", m.Text)
		}
	}
}

// PrintAccess tells a person how to reach each node.
func PrintAccess(w io.Writer, nw *Net, binary string) {
	fmt.Fprintln(w, "\nThe nodes keep running; Ctrl-C stops them. Try:")
	for _, n := range nw.Nodes {
		fmt.Fprintf(w, "  %s (%s): rpc http://127.0.0.1:%d/ user=user password=%s\n", n.Name, n.User, n.RPCPort, n.Password)
		fmt.Fprintf(w, "      %s -rpcport=%d -rpcuser=user -rpcpassword=%s listgroups\n", binary, n.RPCPort, n.Password)
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
// pins it in the node's arguments, so a restart comes back on it.
func (n *Node) learnDHTPort(ctx context.Context) error {
	var info struct {
		Port int `json:"ext_port1"`
	}
	if err := decode(n.Call(ctx, "getinfo"))(&info); err != nil || info.Port == 0 {
		return fmt.Errorf("devnet: %s's DHT port from getinfo: %d %v", n.Name, info.Port, err)
	}
	n.DHTPort = info.Port
	for i, a := range n.args {
		if a == "-dhtport=0" {
			n.args[i] = "-dhtport=" + strconv.Itoa(n.DHTPort)
		}
	}
	return nil
}

func randomPassword() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
