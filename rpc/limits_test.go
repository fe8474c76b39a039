package rpc

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/tjson"
)

// TestHiddenPathsNotServed: nothing under a component starting with '.'
// (a cloned twister-html has .git/config) is served, however it is spelled.
func TestHiddenPathsNotServed(t *testing.T) {
	html := filepath.Join(t.TempDir(), "html")
	mustWrite(t, filepath.Join(html, "home.html"), "home")
	mustWrite(t, filepath.Join(html, ".git", "config"), "[remote] url=https://token@example")
	mustWrite(t, filepath.Join(html, "js", ".env"), "SECRET=1")
	mustWrite(t, filepath.Join(html, ".htaccess"), "deny")
	ts := startServer(t, Config{HTMLDir: html})
	for _, p := range []string{"/.git/config", "/%2egit/config", "/js/.env", "/.htaccess", "/./.git/config", "/js/%2Eenv"} {
		r := ts.do(t, http.MethodGet, p, "")
		if r.status != http.StatusNotFound || strings.Contains(r.body, "token") || strings.Contains(r.body, "SECRET") {
			t.Errorf("GET %s: %d %q", p, r.status, r.body)
		}
	}
	if r := ts.do(t, http.MethodGet, "/home.html", ""); r.status != 200 || r.body != "home" {
		t.Errorf("home: %d %q", r.status, r.body)
	}
}

// rawRequest sends one HTTP request with the given extra headers.
func (ts *testServer) withHeaders(t *testing.T, body string, hdr map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ts.url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(ts.user, ts.pass)
	req.Header.Set("Content-Type", "text/plain")
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{close: resp.Close, status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// TestOriginAndHost: a page on another origin (with the browser's cached
// basic auth) gets 403, as does a rebinding name in Host; the server's own
// origin, localhost, IP literals and configured names work.
func TestOriginAndHost(t *testing.T) {
	ts := startServer(t, Config{Wallet: newFakeWallet(),
		AllowedOrigins: []string{"https://tw.example.org"}, AllowedHosts: []string{"mynode.lan"}})
	hostport := strings.TrimSuffix(strings.TrimPrefix(ts.url, "http://"), "/")
	_, port, _ := net.SplitHostPort(hostport)
	body := req("listwalletusers")
	for _, c := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"no origin", nil, 200},
		{"own origin", map[string]string{"Origin": "http://" + hostport}, 200},
		{"own origin, localhost", map[string]string{"Host": "localhost:" + port, "Origin": "http://LOCALHOST:" + port}, 200},
		{"allowed origin", map[string]string{"Origin": "https://tw.example.org"}, 200},
		{"allowed origin default port", map[string]string{"Origin": "https://tw.example.org:443"}, 200},
		{"allowed host", map[string]string{"Host": "mynode.lan:" + port}, 200},
		{"host of allowed origin", map[string]string{"Host": "tw.example.org"}, 200},
		{"ipv6 host", map[string]string{"Host": "[::1]:" + port}, 200},
		{"other origin", map[string]string{"Origin": "http://evil.example"}, 403},
		{"other port", map[string]string{"Origin": "http://127.0.0.1:1"}, 403},
		{"https own host", map[string]string{"Origin": "https://" + hostport}, 403},
		{"null origin", map[string]string{"Origin": "null"}, 403},
		{"rebinding host", map[string]string{"Host": "evil.example:" + port, "Origin": "http://evil.example:" + port}, 403},
		{"rebinding host, no origin", map[string]string{"Host": "evil.example:" + port}, 403},
	} {
		r := ts.withHeaders(t, body, c.hdr)
		if r.status != c.want {
			t.Errorf("%s: status %d %q, want %d", c.name, r.status, r.body, c.want)
		}
		if c.want == 200 && r.body != okReply(`[]`) {
			t.Errorf("%s: body %q", c.name, r.body)
		}
	}
	if _, err := New(Config{User: "u", Password: "p", AllowedOrigins: []string{"evil.example"}}); err == nil {
		t.Error("origin without scheme accepted")
	}
}

// TestBatchLimit: a batch over MaxBatch is refused whole with a clear
// JSON-RPC error; one at the limit runs; a batch whose reply is larger
// than the buffer is streamed and still complete.
func TestBatchLimit(t *testing.T) {
	ts := startServer(t, Config{Wallet: newFakeWallet(), MaxBatch: 10})
	batch := func(n int, elem string) string {
		return "[" + strings.TrimSuffix(strings.Repeat(elem+",", n), ",") + "]"
	}
	r := ts.call(t, batch(11, `{"id":1,"method":"listwalletusers"}`))
	wantReply(t, r, http.StatusBadRequest, `{"result":null,"error":{"code":-32600,"message":"batch of 11 requests is over the limit of 10 requests per batch"},"id":null}`+"\n")
	r = ts.call(t, batch(10, `{"id":1,"method":"listwalletusers"}`))
	wantReply(t, r, http.StatusOK, batch(10, `{"result":[],"error":null,"id":1}`)+"\n")

	// Each help reply is ~200 KB of echoed id: 10 of them exceed the 1 MiB buffer.
	big := startServer(t, Config{Wallet: newFakeWallet(), MaxBatch: 10, MaxBodyBytes: 4 << 20})
	id := `"` + strings.Repeat("i", 200<<10) + `"`
	r = big.call(t, batch(10, `{"id":`+id+`,"method":"listwalletusers"}`))
	if want := batch(10, `{"result":[],"error":null,"id":`+id+`}`) + "\n"; r.status != 200 || r.body != want {
		t.Errorf("streamed batch: %d, %d bytes, want %d", r.status, len(r.body), len(want))
	}
	if r.header.Get("Content-Length") != "" {
		t.Errorf("large batch was not streamed (Content-Length %s)", r.header.Get("Content-Length"))
	}
}

// TestSlowBodyDoesNotTakeSlots: more clients than execution slots trickle
// their bodies; a normal call is answered meanwhile, and a body not sent
// within BodyTimeout gets 408.
func TestSlowBodyDoesNotTakeSlots(t *testing.T) {
	ts := startServer(t, Config{Wallet: newFakeWallet(), MaxInFlight: 2, BodyTimeout: 30 * time.Second})
	addr := strings.TrimSuffix(strings.TrimPrefix(ts.url, "http://"), "/")
	auth := "Basic dXNlcjphLWxvbmctcnBjLXBhc3N3b3JkLTAxMjM0NTY3ODk=" // user:longPassword
	var conns []net.Conn
	for i := 0; i < 6; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Length: 1000\r\n\r\n{", addr, auth)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Were slots taken before the body, these calls would wait for the
	// 30 s body timeout.
	for i := 0; i < 2; i++ {
		done := make(chan response, 1)
		go func() { done <- ts.call(t, req("listwalletusers")) }()
		select {
		case r := <-done:
			wantReply(t, r, http.StatusOK, okReply(`[]`))
		case <-time.After(15 * time.Second):
			t.Fatal("a call waited behind clients trickling their bodies")
		}
	}

	short := startServer(t, Config{Wallet: newFakeWallet(), BodyTimeout: 300 * time.Millisecond})
	addr = strings.TrimSuffix(strings.TrimPrefix(short.url, "http://"), "/")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Length: 1000\r\n\r\n{", addr, auth)
	trickling := make(chan struct{})
	defer close(trickling)
	go func() { // keeps trickling after the 408
		for {
			select {
			case <-trickling:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.Write([]byte{' '}); err != nil {
				return
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), "Request body not received within") {
		t.Errorf("trickled body: %d %q", resp.StatusCode, b)
	}
	// And the connection is closed, not held while the rest trickles in.
	// (EOF, or a reset since the client is still writing: either way closed.)
	if _, err := br.ReadByte(); err == nil || os.IsTimeout(err) {
		t.Errorf("after the 408: %v, want the connection closed", err)
	}
}

// TestConnectionCap: at MaxConns open connections a newcomer waits for a
// slot instead of being served; closing one lets it in.
func TestConnectionCap(t *testing.T) {
	ts := startServer(t, Config{Wallet: newFakeWallet(), MaxConns: 3})
	addr := strings.TrimSuffix(strings.TrimPrefix(ts.url, "http://"), "/")
	var idle []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	done := make(chan response, 1)
	go func() { done <- ts.call(t, req("listwalletusers")) }()
	select {
	case r := <-done:
		t.Fatalf("served past the connection cap: %d", r.status)
	case <-time.After(300 * time.Millisecond):
	}
	idle[0].Close()
	select {
	case r := <-done:
		wantReply(t, r, http.StatusOK, okReply(`[]`))
	case <-time.After(20 * time.Second):
		t.Fatal("not served after a slot freed")
	}
	for _, c := range idle[1:] {
		c.Close()
	}
}

// TestWrongPasswordsSerialized: wrong guesses in parallel are answered one
// per AuthFailInterval across all connections, while a correct password
// is answered at once, and the warning is logged once.
func TestWrongPasswordsSerialized(t *testing.T) {
	const n, interval = 12, 200 * time.Millisecond
	var logs lockedBuffer
	ts := startServer(t, Config{Wallet: newFakeWallet(), AuthFailInterval: interval, MaxConns: 4,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last time.Duration
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := ts.doAuth(t, http.MethodPost, "/", req("listwalletusers"), "user", fmt.Sprintf("guess-%d", i))
			if r.status != http.StatusUnauthorized || r.body != unauthorizedBody {
				t.Errorf("guess %d: %d", i, r.status)
			}
			mu.Lock()
			last = max(last, time.Since(start))
			mu.Unlock()
		}()
	}
	// Wait until most guesses queue (more than MaxConns: waiters are outside
	// the connection cap), then a correct call goes through before the queue drains.
	deadline := time.Now().Add(20 * time.Second)
	for ts.srv.gate.waiting.Load() < n-2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	wantReply(t, ts.call(t, req("listwalletusers")), http.StatusOK, okReply(`[]`))
	if ts.srv.gate.waiting.Load() == 0 {
		t.Error("the correct password waited for the wrong guesses")
	}
	wg.Wait()
	if min := time.Duration(n-1) * interval; last < min {
		t.Errorf("%d wrong guesses answered within %v, want >= %v", n, last, min)
	}
	if got := strings.Count(logs.String(), "incorrect password attempt"); got != 1 {
		t.Errorf("%d warnings logged for %d guesses, want 1 (rate-limited)", got, n)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// FuzzCountElements: the batch limit's count agrees with the split.
func FuzzCountElements(f *testing.F) {
	for _, s := range []string{`[]`, `[ ]`, `[1]`, `[1,2]`, `[[1,2],{"a":[3,4]},"x,y","\"]",null]`, `["\\",","]`, `[{"id":1,"method":"help"},"junk"]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := batchCount([]byte(s))
		if !ok {
			return
		}
		elems, err := tjson.Elements(trimJSON([]byte(s)), tjson.RFC8259)
		if err != nil {
			return // the server answers Parse error then
		}
		if n != len(elems) {
			t.Fatalf("%q: counted %d, split %d", s, n, len(elems))
		}
	})
}

// TestWriteTimeout: a client that stops reading a large reply loses the
// connection after WriteTimeout instead of holding it.
func TestWriteTimeout(t *testing.T) {
	html := filepath.Join(t.TempDir(), "html")
	const size = 16 << 20 // beyond what loopback socket buffers hold
	mustWrite(t, filepath.Join(html, "big.js"), strings.Repeat("x", size))
	ts := startServer(t, Config{HTMLDir: html, WriteTimeout: 300 * time.Millisecond})
	addr := strings.TrimSuffix(strings.TrimPrefix(ts.url, "http://"), "/")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(64 << 10)
	fmt.Fprintf(c, "GET /big.js HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic dXNlcjphLWxvbmctcnBjLXBhc3N3b3JkLTAxMjM0NTY3ODk=\r\n\r\n", addr)
	time.Sleep(1500 * time.Millisecond) // not reading
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if n >= size {
		t.Fatalf("all %d bytes arrived (err %v): the write was not cut", n, err)
	}
	t.Logf("%d of %d bytes before the server gave up (%v)", n, size, err)
}

// FuzzOriginHost: hostile Origin and Host headers never panic the checks,
// and an origin accepted as the server's own is the Host's.
func FuzzOriginHost(f *testing.F) {
	for _, s := range [][2]string{{"http://127.0.0.1:28332", "127.0.0.1:28332"}, {"null", "x"}, {"http://[::1]:1", "[::1]:1"},
		{"https://a:443", "a"}, {"http://user@h", "h"}, {"http://%zz", "%zz"}, {"http://h:80/", "h:80"}} {
		f.Add(s[0], s[1])
	}
	s, err := New(Config{User: "u", Password: "p", AllowedOrigins: []string{"https://tw.example.org"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, origin, host string) {
		_ = s.hostAllowed(host)
		if s.originAllowed(origin, host) && origin != "" {
			if _, ok := normalizeOrigin(origin); !ok {
				t.Fatalf("accepted an origin that does not parse: %q", origin)
			}
		}
	})
}
