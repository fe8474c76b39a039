package devnet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/twgroupd/twgroupd/internal/config"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var binary string

// TestMain builds twgroupd once: the end-to-end tests run it as separate
// processes, one per node, and use its CLI as a person would.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "twgroupd-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "twgroupd")
	build := exec.Command("go", "build", "-o", binary, "../../cmd/twgroupd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build twgroupd:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cli runs a twgroupd client command against node n and decodes its output.
func cli(t *testing.T, n *Node, out any, args ...string) {
	t.Helper()
	// The node's datadir holds its port and password (no secret in argv).
	full := append([]string{"-datadir=" + n.Dir}, args...)
	cmd := exec.Command(binary, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("twgroupd %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if out != nil {
		if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
			t.Fatalf("twgroupd %s printed %q: %v", strings.Join(args, " "), stdout.String(), err)
		}
	}
}

// chat is the part of a group thread every member must see alike: the
// users' messages and the description change, as (from, text), sorted.
func chat(msgs []Message) []string {
	var out []string
	for _, m := range msgs {
		if strings.HasPrefix(m.Text, "*** ") && !strings.Contains(m.Text, "changed group description") {
			continue // invitation lines differ by who was invited
		}
		out = append(out, m.From+": "+m.Text)
	}
	slices.Sort(out)
	return out
}

// TestDevnetGroupChat runs the main job's script over three twgroupd
// processes, then takes one node down while the others talk, restarts it,
// and checks through the CLI that every node shows the same conversation
// with nothing lost and nothing twice.
func TestDevnetGroupChat(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var log bytes.Buffer
	nw, err := Start(ctx, Options{Binary: binary, Dir: t.TempDir(), Out: &log})
	if err != nil {
		t.Fatalf("start: %v\n%s", err, log.String())
	}
	defer nw.Stop()
	if _, err := nw.Script(ctx, 60*time.Second); err != nil {
		t.Fatalf("script: %v\n%s", err, log.String())
	}
	// Cookie authentication: no node's command line carries a password.
	for _, n := range nw.Nodes {
		argv, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", n.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		if n.Password == "" || bytes.Contains(argv, []byte("rpcpassword")) || bytes.Contains(argv, []byte(n.Password)) {
			t.Errorf("%s: argv %q", n.Name, bytes.ReplaceAll(argv, []byte{0}, []byte{' '}))
		}
	}

	// carol's node goes down; alice and bob keep talking.
	carol := nw.Nodes[2]
	carol.Stop()
	var sent []string
	for _, n := range nw.Nodes[:2] {
		k, err := n.NextK(ctx)
		if err != nil {
			t.Fatal(err)
		}
		text := fmt.Sprintf("while carol was away, %s wrote", n.User)
		if _, err := n.Call(ctx, "newdirectmsg", n.User, k, n.Alias(), text); err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		sent = append(sent, text)
	}
	if err := carol.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range nw.Nodes {
		for _, text := range sent {
			if err := n.WaitText(ctx, 60*time.Second, n.User, n.Alias(), text); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Every node, asked through the CLI, shows the same chat, each line once.
	var want []string
	for i, n := range nw.Nodes {
		var res map[string][]Message
		cli(t, n, &res, "getdirectmsgs", n.User, "1000", `[{"username":"`+n.Alias()+`"}]`)
		got := chat(res[n.Alias()])
		if len(got) != 3+1+len(sent) {
			t.Fatalf("%s shows %d chat lines, want %d: %q", n.Name, len(got), 3+1+len(sent), got)
		}
		if uniq := slices.Compact(slices.Clone(got)); len(uniq) != len(got) {
			t.Fatalf("%s shows a line twice: %q", n.Name, got)
		}
		if i == 0 {
			want = got
		} else if !slices.Equal(got, want) {
			t.Fatalf("%s shows\n%q\nnode1 shows\n%q", n.Name, got, want)
		}
		var info struct {
			Description string   `json:"description"`
			Members     []string `json:"members"`
		}
		cli(t, n, &info, "getgroupinfo", n.Alias())
		if info.Description != "devnet group, renamed" || !slices.Equal(info.Members, []string{"alice", "bob", "carol"}) {
			t.Fatalf("%s getgroupinfo: %+v", n.Name, info)
		}
	}
	// alice's following1 item, which twister-html reads, is served by the
	// DHT to bob's node.
	var items []struct {
		P struct {
			V []string `json:"v"`
		} `json:"p"`
		SigUser string `json:"sig_user"`
	}
	cli(t, nw.Nodes[1], &items, "dhtget", "alice", "following1", "s")
	if len(items) != 1 || items[0].SigUser != "alice" || !slices.Equal(items[0].P.V, []string{"bob", "carol"}) {
		t.Fatalf("dhtget alice following1 on bob's node: %+v", items)
	}
	// bob got alice's DM; alice's own copy (copy_self) is in her thread too.
	var dm map[string][]Message
	cli(t, nw.Nodes[1], &dm, "getdirectmsgs", "bob", "10", `[{"username":"alice"}]`)
	if len(dm["alice"]) != 1 || !strings.HasPrefix(dm["alice"][0].Text, "a private word for bob") || dm["alice"][0].FromMe {
		t.Fatalf("bob's DM thread: %+v", dm)
	}
	cli(t, nw.Nodes[0], &dm, "getdirectmsgs", "alice", "10", `[{"username":"bob"}]`)
	if len(dm["bob"]) != 1 || !dm["bob"][0].FromMe {
		t.Fatalf("alice's DM thread: %+v", dm)
	}
}

// TestStartReportsNodeThatExits: a node that dies at once makes Start fail
// with a clear error instead of hanging.
func TestStartReportsNodeThatExits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Start(ctx, Options{Binary: "/bin/false", Dir: t.TempDir(), Nodes: 2})
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("Start with a dying node: %v", err)
	}
}

// TestHTMLDirServedByEveryNode: --htmldir reaches the nodes, which serve
// twister-html's home.html from it at the URL PrintAccess gives.
func TestHTMLDirServedByEveryNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	html := t.TempDir()
	if err := os.WriteFile(filepath.Join(html, "home.html"), []byte("<title>twister</title>"), 0o644); err != nil {
		t.Fatal(err)
	}
	nw, err := Start(ctx, Options{Binary: binary, Dir: t.TempDir(), Nodes: 2, HTMLDir: html})
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Stop()
	var access bytes.Buffer
	PrintAccess(&access, nw, binary)
	if strings.Contains(access.String(), "not installed") {
		t.Fatalf("PrintAccess says twister-html is missing:\n%s", access.String())
	}
	for _, n := range nw.Nodes {
		if !strings.Contains(access.String(), fmt.Sprintf("open http://127.0.0.1:%d/", n.RPCPort)) {
			t.Fatalf("PrintAccess gives no URL for %s:\n%s", n.Name, access.String())
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", n.RPCPort), nil)
		req.SetBasicAuth(config.CookieUser, n.Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "<title>twister</title>" {
			t.Fatalf("%s GET / = %d %q", n.Name, resp.StatusCode, body)
		}
	}
	// A node's error reply names the node and method, not an "upstream".
	n := nw.Nodes[0]
	for range 2 {
		_, err = n.Call(ctx, "createwalletuser", "alice")
	}
	if err == nil || err.Error() != "node1 createwalletuser: error -11: Error: this username exists in wallet" {
		t.Fatalf("second createwalletuser: %v", err)
	}
	// Without --htmldir the access text says how to install twister-html.
	nw.Nodes[0].HTMLDir = t.TempDir()
	access.Reset()
	PrintAccess(&access, nw, binary)
	if !strings.Contains(access.String(), "git clone --depth 1 "+TwisterHTMLRepo) {
		t.Fatalf("PrintAccess does not say how to get twister-html:\n%s", access.String())
	}
}
