package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"

	"github.com/twgroupd/twgroupd/internal/msgstore"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewRefusesWeakCredentials(t *testing.T) {
	for _, c := range []Config{{User: "user"}, {User: "same", Password: "same"}, {}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%q/%q) accepted", c.User, c.Password)
		}
	}
	if _, err := New(Config{User: "u", Password: "p", AllowIP: []string{"not an ip!"}}); err == nil {
		t.Error("bad rpcallowip accepted")
	}
}

func TestAuth(t *testing.T) {
	ts := startServer(t, Config{Wallet: newFakeWallet()})
	body := req("listwalletusers")
	check := func(name string, r response) {
		t.Helper()
		if r.status != http.StatusUnauthorized {
			t.Fatalf("%s: status %d", name, r.status)
		}
		if got := r.header.Get("WWW-Authenticate"); got != `Basic realm="jsonrpc"` {
			t.Errorf("%s: WWW-Authenticate %q", name, got)
		}
		if len(r.body) != 296 || r.body != unauthorizedBody {
			t.Errorf("%s: body %d bytes %q", name, len(r.body), r.body)
		}
		if !r.close {
			t.Errorf("%s: connection kept open", name)
		}
	}
	check("no credentials", ts.doAuth(t, http.MethodPost, "/", body, "", ""))
	check("wrong password", ts.doAuth(t, http.MethodPost, "/", body, "user", "wrong"))
	check("wrong user", ts.doAuth(t, http.MethodPost, "/", body, "other", longPassword))
	check("password prefix", ts.doAuth(t, http.MethodPost, "/", body, "user", longPassword[:10]))
	check("static file", ts.doAuth(t, http.MethodGet, "/home.html", "", "", ""))

	// A malformed Authorization header is a failed attempt too.
	hreq, _ := http.NewRequest(http.MethodPost, ts.url, strings.NewReader(body))
	hreq.Header.Set("Authorization", "basic "+"dXNlcjpwd2Q=")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("lowercase basic: %d", resp.StatusCode)
	}

	wantReply(t, ts.call(t, body), http.StatusOK, okReply(`[]`))
}

// TestAuthShortPasswordDelay: with a password under 20 characters a wrong
// attempt is delayed (twisterd's 250 ms); the test only checks the answer.
func TestAuthShortPasswordDelay(t *testing.T) {
	ts := startServer(t, Config{Password: "short", Wallet: newFakeWallet()})
	start := time.Now()
	r := ts.doAuth(t, http.MethodPost, "/", req("listwalletusers"), "user", "shorT")
	if r.status != http.StatusUnauthorized {
		t.Fatalf("status %d", r.status)
	}
	t.Logf("failed attempt answered after %v", time.Since(start))
	wantReply(t, ts.call(t, req("listwalletusers")), http.StatusOK, okReply(`[]`))
}

func TestClientAllowed(t *testing.T) {
	s, err := New(Config{User: "u", Password: "p", AllowIP: []string{"192.168.1.*", "10.0.0.0/8", "2001:db8::?"}})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"127.0.0.1:5":            true,
		"127.8.9.10:5":           true,
		"[::1]:5":                true,
		"[::ffff:127.0.0.1]:5":   true,
		"192.168.1.77:5":         true,
		"[::ffff:192.168.1.7]:5": true,
		"192.168.2.1:5":          false,
		"10.200.0.1:5":           true,
		"11.0.0.1:5":             false,
		"[2001:db8::5]:5":        true,
		"[2001:db8::55]:5":       false,
		"garbage":                false,
	} {
		if got := s.clientAllowed(addr); got != want {
			t.Errorf("clientAllowed(%s) = %v", addr, got)
		}
	}
	loopOnly, _ := New(Config{User: "u", Password: "p"})
	if loopOnly.clientAllowed("192.168.1.77:5") {
		t.Error("without rpcallowip only loopback is allowed")
	}
}

// TestForbidden drives the handler with a non-loopback peer address (a
// real socket cannot come from one on 127.0.0.1): 403 before auth.
func TestForbidden(t *testing.T) {
	s, err := New(Config{User: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(req("help")))
	r.RemoteAddr = "198.51.100.7:4444"
	r.SetBasicAuth("u", "p")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || w.Body.Len() != 0 {
		t.Errorf("got %d %q", w.Code, w.Body.String())
	}
}

func TestWildcardMatch(t *testing.T) {
	for _, c := range []struct {
		s, p string
		want bool
	}{
		{"192.168.1.1", "192.168.1.*", true},
		{"192.168.1.1", "192.168.?.1", true},
		{"192.168.10.1", "192.168.?.1", false},
		{"1.2.3.4", "*", true},
		{"", "*", true},
		{"1.2.3.4", "1.2.3.4", true},
		{"1.2.3.4", "1.2.3.", false},
		{"1.2.3.4", "*.*.*.4", true},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "*a*a*a*a*a*a*a*a*a*a*a*a*c", false},
	} {
		if got := wildcardMatch(c.s, c.p); got != c.want {
			t.Errorf("wildcardMatch(%q, %q) = %v", c.s, c.p, got)
		}
	}
}

// TestBindLoopback: without rpcallowip the server binds loopback only.
func TestBindLoopback(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s, err := New(Config{User: "u", Password: "p", Port: port, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	req, opt := s.listenAddrs()
	if fmt.Sprint(req, opt) != fmt.Sprintf("[127.0.0.1:%d] [[::1]:%d]", port, port) {
		t.Errorf("listen addrs %v %v", req, opt)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	<-s.Ready()
	for _, a := range s.Addrs() {
		if ip := a.(*net.TCPAddr).IP; !ip.IsLoopback() {
			t.Errorf("bound to %v", a)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	open, _ := New(Config{User: "u", Password: "p", Port: port, AllowIP: []string{"10.0.0.0/8"}})
	if req, _ := open.listenAddrs(); req[0] != ":"+strconv.Itoa(port) {
		t.Errorf("with rpcallowip: %v", req)
	}
}

func TestServeTwice(t *testing.T) {
	ts := startServer(t, Config{})
	if err := ts.srv.Serve(context.Background()); err == nil {
		t.Fatal("second Serve accepted")
	}
}

func TestServeFailsOnBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, _ := New(Config{User: "u", Password: "p", Listen: []string{l.Addr().String()}, Logger: discardLogger()})
	if err := s.Serve(context.Background()); err == nil {
		t.Fatal("Serve on a busy port succeeded")
	}
	select {
	case <-s.Ready():
		t.Error("Ready closed although nothing listens")
	default:
	}
}

func TestEnvelope(t *testing.T) {
	ts := startServer(t, Config{Wallet: newFakeWallet()})
	for _, c := range []struct{ body, want string }{
		{`{"method":"listwalletusers","params":[],"id":7}`, `{"result":[],"error":null,"id":7}` + "\n"},
		{`{"method":"listwalletusers","id":{"a": [1, 2]}}`, `{"result":[],"error":null,"id":{"a":[1,2]}}` + "\n"},
		{`{"method":"listwalletusers","params":null}`, `{"result":[],"error":null,"id":null}` + "\n"},
		{`{"jsonrpc":"2.0","method":"listwalletusers","params":[],"id":1}`, `{"result":[],"error":null,"id":1}` + "\n"},
		{` {"id":"x","method":"listwalletusers"} `, `{"result":[],"error":null,"id":"x"}` + "\n"},
	} {
		wantReply(t, ts.call(t, c.body), http.StatusOK, c.want)
	}
}

// TestRequestErrors covers every request-level error of spec §8.1 with
// its code, message and HTTP status.
func TestRequestErrors(t *testing.T) {
	ts := startServer(t, Config{Wallet: newFakeWallet()})
	for _, c := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"method":`, 500, `{"result":null,"error":{"code":-32700,"message":"Parse error"},"id":null}` + "\n"},
		{``, 500, `{"result":null,"error":{"code":-32700,"message":"Parse error"},"id":null}` + "\n"},
		{`"listwalletusers"`, 500, `{"result":null,"error":{"code":-32700,"message":"Top-level object parse error"},"id":null}` + "\n"},
		{`42`, 500, `{"result":null,"error":{"code":-32700,"message":"Top-level object parse error"},"id":null}` + "\n"},
		{`{"id":"t","params":[]}`, 400, errReply(-32600, "Missing method")},
		{`{"id":"t","method":null}`, 400, errReply(-32600, "Missing method")},
		{`{"id":"t","method":5}`, 400, errReply(-32600, "Method must be a string")},
		{`{"id":"t","method":"help","params":{"a":1}}`, 400, errReply(-32600, "Params must be an array")},
		{`{"id":"t","method":"help","params":"x"}`, 400, errReply(-32600, "Params must be an array")},
		{`{"id":"t","method":"nosuchmethod","params":[]}`, 404, errReply(-32601, "Method not found")},
		{`{"id":"t","method":"getpeerinfo"}`, 404, errReply(-32601, "Method not found")},
	} {
		r := ts.call(t, c.body)
		wantReply(t, r, c.status, c.want)
		if !r.close {
			t.Errorf("%s: error reply keeps the connection", c.body)
		}
	}
}

// TestParamErrors: wrong counts answer -1 with the full help text, wrong
// types -1 "value is type <got>, expected <want>" (json_spirit's words).
func TestParamErrors(t *testing.T) {
	cfg, _, _, _ := node1(t)
	cfg.Password = longPassword
	ts := startServer(t, cfg)
	help := ts.srv.methods["newdirectmsg"].help
	for _, c := range []struct {
		body, msg string
	}{
		{req("newdirectmsg", "alice", 2, "bob"), help},
		{req("newdirectmsg", "alice", 2, "bob", "m", true, 1), help},
		{req("getinfo", 1), ts.srv.methods["getinfo"].help},
		{req("getdirectmsgs", "alice", 1), ts.srv.methods["getdirectmsgs"].help},
		{req("newdirectmsg", "alice", "2", "bob", "hi"), "value is type str, expected int"},
		{req("newdirectmsg", "alice", 2.5, "bob", "hi"), "value is type real, expected int"},
		{`{"id":"t","method":"newdirectmsg","params":["alice",2.0,"bob","hi"]}`, "value is type real, expected int"},
		{`{"id":"t","method":"newdirectmsg","params":["alice",1e3,"bob","hi"]}`, "value is type real, expected int"},
		{req("newdirectmsg", 1, 2, "bob", "hi"), "value is type int, expected str"},
		{req("newdirectmsg", "alice", 2, nil, "hi"), "value is type null, expected str"},
		{req("newdirectmsg", "alice", 2, "bob", []any{}), "value is type array, expected str"},
		{req("newdirectmsg", "alice", 2, "bob", "hi", "true"), "value is type str, expected bool"},
		{req("newdirectmsg", "alice", 2, "bob", "hi", 1), "value is type int, expected bool"},
		{req("newdirectmsg", map[string]any{}, 2, "bob", "hi"), "value is type obj, expected str"},
		{req("newdirectmsg", "alice", true, "bob", "hi"), "value is type bool, expected int"},
		{req("getdirectmsgs", "alice", 1, "x"), "value is type str, expected array"},
		{req("getdirectmsgs", "alice", 1, []any{"bob"}), "value is type str, expected obj"},
		{req("getdirectmsgs", "alice", 1, []any{map[string]any{"username": 5}}), "value is type int, expected str"},
		{req("getdirectmsgs", "alice", 1, []any{map[string]any{"username": "bob", "max_id": "1"}}), "value is type str, expected int"},
		{req("follow", "alice", []any{"bob", 3}), "value is type int, expected str"},
		{req("newdirectmsg", "alice", 1<<40, "bob", "hi"), "value is out of range, expected int"},
	} {
		wantReply(t, ts.call(t, c.body), http.StatusInternalServerError, errReply(-1, c.msg))
	}
}

func TestBatch(t *testing.T) {
	ts := startServer(t, Config{Wallet: newFakeWallet(), Groups: newFakeGroups()})
	body := `[{"id":1,"method":"listwalletusers"},` +
		`"junk",` +
		`{"id":2,"method":"nosuch"},` +
		`{"id":3,"method":"getgroupinfo","params":[1]},` +
		`{"id":4,"params":[]},` +
		`{"id":5,"method":"help","params":["stop"]}]`
	want := `[{"result":[],"error":null,"id":1},` +
		`{"result":null,"error":{"code":-32600,"message":"Invalid Request object"},"id":null},` +
		`{"result":null,"error":{"code":-32601,"message":"Method not found"},"id":2},` +
		`{"result":null,"error":{"code":-1,"message":"value is type int, expected str"},"id":3},` +
		`{"result":null,"error":{"code":-32600,"message":"Missing method"},"id":4},` +
		`{"result":"stop\nStop Twister server.","error":null,"id":5}]` + "\n"
	r := ts.call(t, body)
	wantReply(t, r, http.StatusOK, want)
	if r.close {
		t.Error("a batch reply is a success: keep-alive")
	}
	wantReply(t, ts.call(t, `[]`), http.StatusOK, "[]\n")
}

func TestBodyLimit(t *testing.T) {
	ts := startServer(t, Config{MaxBodyBytes: 1024, Wallet: newFakeWallet()})
	big := `{"method":"help","params":["` + strings.Repeat("x", 2000) + `"]}`
	r := ts.call(t, big)
	if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(r.body, "Request body too large") {
		t.Errorf("declared length: %d %q", r.status, r.body)
	}
	// Chunked, no Content-Length: the reader stops at the limit.
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte(`{"method":"help","params":["`))
		chunk := []byte(strings.Repeat("y", 512))
		for i := 0; i < 64; i++ {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Write([]byte(`"]}`))
		pw.Close()
	}()
	hreq, _ := http.NewRequest(http.MethodPost, ts.url, pr)
	hreq.SetBasicAuth(ts.user, ts.pass)
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pr.CloseWithError(errors.New("done"))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked: %d %q", resp.StatusCode, b)
	}
	// Under the limit still works.
	wantReply(t, ts.call(t, req("listwalletusers")), http.StatusOK, okReply(`[]`))
}

// TestJSONText: strings go out as raw bytes like json_spirit: no HTML
// escaping, invalid UTF-8 kept, only '"', '\\' and controls escaped.
func TestJSONText(t *testing.T) {
	dmf := newFakeDM()
	text := "<b>&amp;</b> caf\xc3\xa9 \xff\xfe \u2028 \"q\" \\ \t\x01/"
	dmf.convs["alice"] = map[string][]msgstore.Message{"bob": {{Time: 1, Text: text, From: "bob", K: 3}}}
	ts := startServer(t, Config{DM: dmf})
	r := ts.call(t, req("getdirectmsgs", "alice", 5, []any{map[string]any{"username": "bob"}}))
	want := okReply(`{"bob":[{"id":0,"time":1,"text":"<b>&amp;</b> caf` + "\xc3\xa9 \xff\xfe \u2028" + ` \"q\" \\ \t\u0001/","fromMe":false,"from":"bob","k":3}]}`)
	wantReply(t, r, http.StatusOK, want)

	// Raw bytes in a request pass through unchanged, escapes are decoded.
	dmf.posts[sendKey("alice", 1, "bob", "\xff\xfe raw é", false)] = nil
	body := `{"id":"t","method":"newdirectmsg","params":["alice",1,"bob","` + "\xff\xfe" + ` raw \u00e9"]}`
	ts.call(t, body)
	if len(dmf.sent) != 1 || dmf.sent[0] != sendKey("alice", 1, "bob", "\xff\xfe raw é", false) {
		t.Errorf("sent %q", dmf.sent)
	}
}

func TestHelp(t *testing.T) {
	ts := startServer(t, Config{})
	r := ts.call(t, req("help"))
	var list string
	if err := json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimPrefix(r.body, `{"result":`), `,"error":null,"id":"t"}`+"\n")), &list); err != nil {
		t.Fatalf("help: %v %s", err, r.body)
	}
	lines := strings.Split(list, "\n")
	if len(lines) != len(ts.srv.methods)-1 { // the alias is listed under its target
		t.Errorf("help lists %d methods, table has %d", len(lines), len(ts.srv.methods))
	}
	for i := 1; i < len(lines); i++ {
		if lines[i-1] > lines[i] {
			t.Errorf("help not sorted: %q before %q", lines[i-1], lines[i])
		}
	}
	if strings.HasSuffix(list, "\n") {
		t.Error("help list ends with a newline")
	}
	wantReply(t, ts.call(t, req("help", "getgroupinfo")), 200, okReply(`"getgroupinfo <groupalias>\nget group description and members"`))
	wantReply(t, ts.call(t, req("help", "newdirectmsgto")), 200, okReply(`"newdirectmsg <from> <k> <to> <msg> [copy_self=false]\nPost a new dm to swarm.\nif copy_self true will increase k twice (two DMs).\nk: null (CLI: auto) takes the next free k; uses 1 k, 2 with copy_self."`))
	wantReply(t, ts.call(t, req("help", "frobnicate")), 200, okReply(`"help: unknown command: frobnicate"`))
	wantReply(t, ts.call(t, req("help", "a", "b")), 500, errReply(-1, "help [command]\nList commands, or get help for a command."))
}

// TestEveryMethodHasHelp fails when a method is added without help.
func TestEveryMethodHasHelp(t *testing.T) {
	s, err := New(Config{User: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	required := []string{"creategroup", "listgroups", "getgroupinfo", "newgroupinvite", "newgroupdescription",
		"leavegroup", "getdirectmsgs", "newdirectmsg", "newdirectmsgto", "rescandirectmsgs", "createwalletuser",
		"importprivkey", "dumpprivkey", "dumppubkey", "listwalletusers", "follow", "unfollow", "getfollowing",
		"getlasthave", "getnumpieces", "getpiecemaxseen", "getposts", "dhtget", "dhtput", "getinfo", "stop", "help"}
	for _, name := range required {
		if s.methods[name] == nil {
			t.Errorf("method %s missing", name)
		}
	}
	for name, m := range s.methods {
		usage, _, _ := strings.Cut(m.help, "\n")
		target := name
		if m.aliasOf != "" {
			target = m.aliasOf
		}
		if !strings.HasPrefix(usage, target) || m.handler == nil {
			t.Errorf("method %s: help %q, handler set %v", name, m.help, m.handler != nil)
		}
	}
}

func TestStaticFiles(t *testing.T) {
	dir := t.TempDir()
	html := filepath.Join(dir, "html")
	mustWrite(t, filepath.Join(html, "home.html"), "<html>home</html>")
	mustWrite(t, filepath.Join(html, "js", "app.js"), "var x;")
	mustWrite(t, filepath.Join(html, "css", "style.css"), "body{}")
	mustWrite(t, filepath.Join(html, "img", "a.png"), "PNG")
	mustWrite(t, filepath.Join(dir, "secret.txt"), "secret")
	if err := os.Symlink(filepath.Join(dir, "secret.txt"), filepath.Join(html, "link.html")); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, Config{HTMLDir: html})

	r := ts.do(t, http.MethodGet, "/", "")
	if r.status != 200 || r.body != "<html>home</html>" || r.header.Get("Content-Type") != "text/html; charset=utf-8" ||
		r.header.Get("Content-Security-Policy") != "script-src 'self' 'unsafe-eval'" {
		t.Errorf("GET /: %d %q %v", r.status, r.body, r.header)
	}
	for path, ct := range map[string]string{
		"/js/app.js":             "text/javascript; charset=utf-8",
		"/css/style.css":         "text/css",
		"/img/a.png":             "image/png",
		"/home.html?x=1":         "text/html; charset=utf-8",
		"/home.html?v=style.css": "text/css", // substring of the URI, as twisterd
	} {
		r := ts.do(t, http.MethodGet, path, "")
		if r.status != 200 || r.header.Get("Content-Type") != ct {
			t.Errorf("GET %s: %d %q", path, r.status, r.header.Get("Content-Type"))
		}
	}
	// Any method on a file URI serves the file, as twisterd.
	if r := ts.do(t, http.MethodPost, "/js/app.js", ""); r.status != 200 || r.body != "var x;" {
		t.Errorf("POST file: %d %q", r.status, r.body)
	}
	for _, path := range []string{"/missing.html", "/js", "/link.html"} {
		r := ts.do(t, http.MethodGet, path, "")
		if r.status != 404 || strings.Contains(r.body, "secret\n") || r.body == "secret" {
			t.Errorf("GET %s: %d %q", path, r.status, r.body)
		}
	}
	r = ts.do(t, http.MethodGet, "/missing.html", "")
	if !strings.Contains(r.body, "<b>ERROR 404</b><br/>ServiceConnection: file '<b>") {
		t.Errorf("404 body %q", r.body)
	}
	// ".." and /rss go to the JSON-RPC parser, never to the file system.
	for _, path := range []string{"/../secret.txt", "/js/../../secret.txt", "/%2e%2e/secret.txt", "/rss"} {
		r := ts.do(t, http.MethodGet, path, "")
		if r.body == "secret" || r.status != 500 || !strings.Contains(r.body, "Parse error") {
			t.Errorf("GET %s: %d %q", path, r.status, r.body)
		}
	}
	// Without an html dir every file is 404, RPC still works.
	bare := startServer(t, Config{})
	if r := bare.do(t, http.MethodGet, "/", ""); r.status != 404 {
		t.Errorf("no html dir: %d", r.status)
	}
}

func TestHTMLDirChoice(t *testing.T) {
	if got := HTMLDir("/opt/html", "/data"); got != "/opt/html" {
		t.Errorf("flag: %s", got)
	}
	want := filepath.Join("/data", "html")
	if fi, err := os.Stat(SystemHTMLDir); err == nil && fi.IsDir() {
		want = SystemHTMLDir
	}
	if got := HTMLDir("", "/data"); got != want {
		t.Errorf("default: %s, want %s", got, want)
	}
}

func TestStop(t *testing.T) {
	var calls atomic.Int32
	stopped := make(chan struct{})
	ts := startServer(t, Config{Stop: func() {
		if calls.Add(1) == 1 {
			close(stopped)
		}
	}})
	wantReply(t, ts.call(t, req("stop")), 200, okReply(`"Twister server stopping"`))
	wantReply(t, ts.call(t, req("stop")), 200, okReply(`"Twister server stopping"`))
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop not called")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("Stop called %d times", n)
	}
	noStop := startServer(t, Config{})
	wantReply(t, noStop.call(t, req("stop")), 500, errReply(-1, "stop: this server cannot stop the daemon"))
}

// TestShutdownWaitsForReply: stop's Stop func shuts the server down while
// the reply is still being written; the client gets it whole.
func TestShutdownWaitsForReply(t *testing.T) {
	var ts *testServer
	ts = startServer(t, Config{Stop: func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ts.srv.Shutdown(ctx)
	}})
	wantReply(t, ts.call(t, req("stop")), 200, okReply(`"Twister server stopping"`))
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
