package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testUser = "user"
	testPass = "s3cret-rpc-password"
)

// fakeTwisterd answers like twisterd's HTTP layer (spec §8.1): basic auth on
// every request, JSON-RPC 1.0 replies, -32601 -> 404, other errors -> 500,
// 401 with an HTML body for wrong credentials. Replies replay the shapes of
// shared/spec/twisterd-rpc-transcript.md.
type fakeTwisterd struct {
	mu       sync.Mutex
	bodies   [][]byte
	handlers map[string]func(params []json.RawMessage) (any, *RPCError)
}

func newFakeTwisterd(t *testing.T) (*fakeTwisterd, *httptest.Server) {
	f := &fakeTwisterd{handlers: map[string]func([]json.RawMessage) (any, *RPCError){
		"getblockcount": func([]json.RawMessage) (any, *RPCError) { return 12, nil },
		"dumppubkey": func(p []json.RawMessage) (any, *RPCError) {
			if string(p[0]) == `"alice"` {
				return "0289466f49cd83149b97fb61513d87e43ea62cafe646c42e7f53ac84778e41b475", nil
			}
			return "", nil
		},
		"dumpprivkey": func([]json.RawMessage) (any, *RPCError) {
			return nil, &RPCError{Code: -5, Message: "Username not found"}
		},
		"setgenerate": func([]json.RawMessage) (any, *RPCError) { return nil, nil },
	}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeTwisterd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u, p, ok := r.BasicAuth()
	if !ok || u != testUser || p != testPass {
		w.Header().Set("WWW-Authenticate", `Basic realm="jsonrpc"`)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, "<HTML><TITLE>Error</TITLE><BODY><H1>401 Unauthorized.</H1></BODY></HTML>")
		return
	}
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.bodies = append(f.bodies, body)
	f.mu.Unlock()
	var req struct {
		Method string            `json:"method"`
		Params []json.RawMessage `json:"params"`
		ID     json.RawMessage   `json:"id"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeReply(w, http.StatusInternalServerError, nil, &RPCError{-32700, "Parse error"}, json.RawMessage("null"))
		return
	}
	h, ok := f.handlers[req.Method]
	if !ok {
		writeReply(w, http.StatusNotFound, nil, &RPCError{-32601, "Method not found"}, req.ID)
		return
	}
	res, rerr := h(req.Params)
	status := http.StatusOK
	if rerr != nil {
		status = http.StatusInternalServerError
	}
	writeReply(w, status, res, rerr, req.ID)
}

func writeReply(w http.ResponseWriter, status int, res any, rerr *RPCError, id json.RawMessage) {
	out, _ := json.Marshal(map[string]any{"result": res, "error": rerr, "id": id})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Server", "bitcoin-json-rpc/v0.9.40")
	w.WriteHeader(status)
	_, _ = w.Write(append(out, '\n'))
}

func authURL(srv *httptest.Server, pass string) string {
	return strings.Replace(srv.URL, "http://", "http://"+testUser+":"+pass+"@", 1)
}

func newClient(t *testing.T, rawURL string, opts ...Option) *Client {
	t.Helper()
	c, err := New(rawURL, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestCallResults(t *testing.T) {
	_, srv := newFakeTwisterd(t)
	c := newClient(t, authURL(srv, testPass))
	ctx := context.Background()

	res, err := c.Call(ctx, "getblockcount")
	if err != nil || string(res) != "12" {
		t.Fatalf("getblockcount = %s, %v; want 12", res, err)
	}
	res, err = c.Call(ctx, "dumppubkey", "alice")
	if err != nil || string(res) != `"0289466f49cd83149b97fb61513d87e43ea62cafe646c42e7f53ac84778e41b475"` {
		t.Fatalf("dumppubkey = %s, %v", res, err)
	}
	res, err = c.Call(ctx, "setgenerate", false)
	if err != nil || string(res) != "null" {
		t.Fatalf("setgenerate = %s, %v; want null", res, err)
	}
}

func TestCallErrorReplies(t *testing.T) {
	_, srv := newFakeTwisterd(t)
	c := newClient(t, authURL(srv, testPass))
	ctx := context.Background()

	_, err := c.Call(ctx, "dumpprivkey", "nobody")
	var rpcErr *RPCError
	if !errors.As(err, &rpcErr) || rpcErr.Code != -5 || rpcErr.Message != "Username not found" {
		t.Fatalf("dumpprivkey error = %v; want RPCError -5 Username not found", err)
	}
	_, err = c.Call(ctx, "nosuchmethod")
	if !errors.As(err, &rpcErr) || rpcErr.Code != -32601 {
		t.Fatalf("unknown method error = %v; want RPCError -32601", err)
	}
}

func TestParamsAreRawUTF8(t *testing.T) {
	f, srv := newFakeTwisterd(t)
	c := newClient(t, authURL(srv, testPass))
	msg := "olá <b>&\u2028"
	if _, err := c.Call(context.Background(), "dumppubkey", msg); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	body := f.bodies[len(f.bodies)-1]
	f.mu.Unlock()
	// twisterd turns \uXXXX into one byte (spec §8.2): text must go out raw.
	if !bytes.Contains(body, []byte(msg)) || bytes.Contains(body, []byte(`\u`)) {
		t.Fatalf("request body %q does not carry %q raw", body, msg)
	}
	if !bytes.HasPrefix(body, []byte(`{"jsonrpc":"1.0","id":`)) {
		t.Fatalf("request body %q is not a JSON-RPC 1.0 request", body)
	}
}

func TestCredentialsNeverLeak(t *testing.T) {
	_, srv := newFakeTwisterd(t)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	wrong := newClient(t, authURL(srv, "wrong-"+testPass), WithLogger(logger))
	_, err := wrong.Call(context.Background(), "getblockcount")
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong password: %v; want ErrUnauthorized", err)
	}
	if _, _, _, err := wrong.Forward(context.Background(), []byte(`{"method":"getinfo","params":[],"id":1}`)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Forward with wrong password: %v; want ErrUnauthorized", err)
	}
	good := newClient(t, authURL(srv, testPass), WithLogger(logger))
	if _, err := good.Call(context.Background(), "getblockcount"); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	_, downErr := good.Call(context.Background(), "getblockcount")
	if !errors.Is(downErr, ErrUnavailable) {
		t.Fatalf("down upstream: %v; want ErrUnavailable", downErr)
	}
	_, badURLErr := New("http://user:" + testPass + "@127.0.0.1:notaport/")
	if badURLErr == nil {
		t.Fatal("New accepted a bad port")
	}
	if s := good.String(); strings.Contains(s, testPass) || !strings.Contains(s, "user:xxxxx@127.0.0.1") {
		t.Fatalf("String() = %q; want redacted", s)
	}
	for _, text := range []string{err.Error(), downErr.Error(), badURLErr.Error(), logs.String()} {
		if strings.Contains(text, testPass) {
			t.Fatalf("password leaked: %q", text)
		}
	}
	if !strings.Contains(logs.String(), "getblockcount") {
		t.Fatalf("debug log lacks the method name: %q", logs.String())
	}
}

func TestForwardPassThrough(t *testing.T) {
	_, srv := newFakeTwisterd(t)
	c := newClient(t, authURL(srv, testPass))
	ctx := context.Background()

	status, hdr, reply, err := c.Forward(ctx, []byte(`{"jsonrpc":"2.0","id":"x","method":"getblockcount","params":[]}`))
	if err != nil || status != 200 || string(reply) != `{"error":null,"id":"x","result":12}`+"\n" {
		t.Fatalf("Forward = %d %q %v", status, reply, err)
	}
	if hdr.Get("Server") != "bitcoin-json-rpc/v0.9.40" || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("Forward headers = %v", hdr)
	}
	status, _, reply, err = c.Forward(ctx, []byte(`{"id":7,"method":"nosuchmethod","params":[]}`))
	if err != nil || status != 404 || !bytes.Contains(reply, []byte(`"code":-32601`)) {
		t.Fatalf("Forward unknown method = %d %q %v; want 404 reply", status, reply, err)
	}
	status, _, reply, err = c.Forward(ctx, []byte(`{`))
	if err != nil || status != 500 || !bytes.Contains(reply, []byte(`Parse error`)) {
		t.Fatalf("Forward garbage = %d %q %v; want the upstream's 500 reply", status, reply, err)
	}
}

func TestReplySizeBound(t *testing.T) {
	big := strings.Repeat("a", 4096)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"result":"`+big+`","error":null,"id":1}`)
	}))
	defer srv.Close()
	c := newClient(t, srv.URL, WithMaxReplySize(1024))
	if _, err := c.Call(context.Background(), "getblockcount"); !errors.Is(err, ErrReplyTooLarge) {
		t.Fatalf("Call = %v; want ErrReplyTooLarge", err)
	}
	if _, _, _, err := c.Forward(context.Background(), []byte(`{}`)); !errors.Is(err, ErrReplyTooLarge) {
		t.Fatalf("Forward = %v; want ErrReplyTooLarge", err)
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := newClient(t, srv.URL, WithTimeout(50*time.Millisecond))
	_, err := c.Call(context.Background(), "getblockcount")
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call against a hung upstream = %v; want ErrUnavailable + deadline", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Call(ctx, "getblockcount"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Call with a cancelled context = %v; want context.Canceled", err)
	}
}

func TestBadReplies(t *testing.T) {
	replies := map[string]string{
		"html":        "<html>oops</html>",
		"id mismatch": `{"result":1,"error":null,"id":999}`,
		"bad error":   `{"result":null,"error":"boom","id":1}`,
	}
	for name, reply := range replies {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, reply)
			}))
			defer srv.Close()
			c := newClient(t, srv.URL)
			if _, err := c.Call(context.Background(), "getblockcount"); !errors.Is(err, ErrBadReply) {
				t.Fatalf("Call = %v; want ErrBadReply", err)
			}
		})
	}
}

func TestNewRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"", "ftp://127.0.0.1:1/", "http://", "127.0.0.1:28332", "http://a b/"} {
		if _, err := New(u); err == nil {
			t.Errorf("New(%q) succeeded", u)
		}
	}
	c, err := New("http://127.0.0.1:28332")
	if err != nil || c.String() != "http://127.0.0.1:28332/" {
		t.Fatalf("New without credentials = %v, %v", c, err)
	}
}

func FuzzDecodeReply(f *testing.F) {
	f.Add([]byte(`{"result":12,"error":null,"id":"t"}`))
	f.Add([]byte(`{"result":null,"error":{"code":-5,"message":"Username not found"},"id":"t"}`))
	f.Add([]byte(`{"result":["0000004c901f482a179f13904352e58f7ca97d857df5cf4ae127d43eae1110a7"],"error":null,"id":1}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"error":{"code":1e99}}`))
	f.Fuzz(func(t *testing.T, reply []byte) {
		res, rpcErr, err := decodeReply(reply, nil)
		if err == nil && rpcErr == nil && !json.Valid(res) {
			t.Fatalf("decodeReply(%q) returned invalid JSON %q", reply, res)
		}
	})
}

// TestProofOfWorkMethodsOutlastTheTimeout: a forwarded
// sendnewusertransaction timed out after 30 s against a live twisterd while
// twisterd went on computing the registration's proof of work and
// registered the user. Those methods get their own, longer bound; others
// keep the normal one. The upstream answers later than the normal timeout
// with the reply the live twisterd sent.
func TestProofOfWorkMethodsOutlastTheTimeout(t *testing.T) {
	b, err := os.ReadFile("../../testdata/upstream/twisterd_sendnewusertransaction.json")
	if err != nil {
		t.Fatal(err)
	}
	var live struct {
		Request json.RawMessage `json:"request"`
		Reply   string          `json:"reply"`
	}
	if err := json.Unmarshal(b, &live); err != nil {
		t.Fatal(err)
	}
	const timeout = 50 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID json.RawMessage `json:"id"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		select {
		case <-time.After(4 * timeout): // the proof of work
		case <-r.Context().Done():
			return
		}
		// Recorded with id "t": answer with the caller's id.
		io.WriteString(w, strings.Replace(live.Reply, `"id":"t"`, `"id":`+string(req.ID), 1))
	}))
	defer srv.Close()
	c := newClient(t, srv.URL, WithTimeout(timeout), WithProofOfWorkTimeout(20*time.Second))
	_, _, reply, err := c.Forward(context.Background(), live.Request)
	if err != nil || string(reply) != live.Reply {
		t.Fatalf("Forward sendnewusertransaction = %q, %v; want twisterd's reply", reply, err)
	}
	res, err := c.Call(context.Background(), "sendnewusertransaction", "carol")
	if err != nil || !strings.HasPrefix(string(res), `"000000`) {
		t.Fatalf("Call sendnewusertransaction = %s, %v", res, err)
	}
	slow := bytes.Replace(live.Request, []byte("sendnewusertransaction"), []byte("getblockcount"), 1)
	if _, _, _, err := c.Forward(context.Background(), slow); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Forward getblockcount past the timeout = %v; want ErrUnavailable", err)
	}
}
