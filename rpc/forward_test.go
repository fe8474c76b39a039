package rpc

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/twgroupd/twgroupd/internal/upstream"
)

// fakeTwisterd is an upstream twisterd on 127.0.0.1 that answers a few
// methods and records the bodies it received.
type fakeTwisterd struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
}

const upstreamPass = "upstream-secret-pass"

func newFakeTwisterd(t *testing.T) *fakeTwisterd {
	f := &fakeTwisterd{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "tw" || p != upstreamPass {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies = append(f.bodies, string(body))
		f.mu.Unlock()
		var req struct {
			Method string          `json:"method"`
			ID     json.RawMessage `json:"id"`
		}
		json.Unmarshal(body, &req)
		w.Header().Set("Content-Type", "application/json")
		switch req.Method {
		case "getbestblockhash":
			io.WriteString(w, `{"result":"4b8ab09dd699a811c99f7c7395d944658be33e24e03cd2687980b2f432e80dfc","error":null,"id":`+string(req.ID)+"}\n")
		case "getblock":
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"result":null,"error":{"code":-5,"message":"Block not found"},"id":`+string(req.ID)+"}\n")
		case "help":
			io.WriteString(w, `{"result":"getbestblockhash\nReturns the hash of the best (tip) block in the longest block chain.","error":null,"id":`+string(req.ID)+"}\n")
		case "listwalletusers":
			io.WriteString(w, `{"result":["alice"],"error":null,"id":`+string(req.ID)+"}\n")
		case "dhtget", "getinfo":
			io.WriteString(w, `{"result":"from upstream","error":null,"id":`+string(req.ID)+"}\n")
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"result":null,"error":{"code":-32601,"message":"Method not found"},"id":`+string(req.ID)+"}\n")
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeTwisterd) client(t *testing.T) *upstream.Client {
	t.Helper()
	c, err := upstream.New("http://tw:"+upstreamPass+"@"+strings.TrimPrefix(f.URL, "http://"), upstream.WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestForwardUnknownMethods(t *testing.T) {
	up := newFakeTwisterd(t)
	ts := startServer(t, Config{Wallet: newFakeWallet(), Upstream: up.client(t)})

	body := `{"jsonrpc":"1.0","id":"t","method":"getbestblockhash","params":[]}`
	wantReply(t, ts.call(t, body), 200, okReply(`"4b8ab09dd699a811c99f7c7395d944658be33e24e03cd2687980b2f432e80dfc"`))
	// The upstream's error status and body come back unchanged.
	wantReply(t, ts.call(t, req("getblock", "00")), 500, errReply(-5, "Block not found"))
	wantReply(t, ts.call(t, req("nosuchmethod")), 404, errReply(-32601, "Method not found"))
	up.mu.Lock()
	if len(up.bodies) != 3 || up.bodies[0] != body {
		t.Errorf("upstream saw %q", up.bodies)
	}
	up.mu.Unlock()

	// Native methods are not forwarded, in a batch neither.
	batch := `[{"id":1,"method":"listwalletusers"},{"id":2,"method":"getbestblockhash"},{"id":3,"method":"getblock","params":["x"]}]`
	wantReply(t, ts.call(t, batch), 200, `[{"result":[],"error":null,"id":1},`+
		`{"result":"4b8ab09dd699a811c99f7c7395d944658be33e24e03cd2687980b2f432e80dfc","error":null,"id":2},`+
		`{"result":null,"error":{"code":-5,"message":"Block not found"},"id":3}]`+"\n")
	up.mu.Lock()
	if n := len(up.bodies); n != 5 || up.bodies[3] != `{"id":2,"method":"getbestblockhash"}` {
		t.Errorf("upstream saw %q", up.bodies)
	}
	up.mu.Unlock()
}

// TestForwardMissingBackend: a native method whose backend this daemon does
// not run goes upstream too (e.g. dhtget without a DHT).
func TestForwardMissingBackend(t *testing.T) {
	up := newFakeTwisterd(t)
	ts := startServer(t, Config{Upstream: up.client(t)})
	wantReply(t, ts.call(t, req("dhtget", "alice", "profile", "s")), 200, okReply(`"from upstream"`))
	wantReply(t, ts.call(t, req("getinfo")), 200, okReply(`"from upstream"`))
	// help for a method only the upstream has comes from the upstream.
	wantReply(t, ts.call(t, req("help", "getbestblockhash")), 200, okReply(`"getbestblockhash\nReturns the hash of the best (tip) block in the longest block chain."`))
	wantReply(t, ts.call(t, req("help", "dhtget")), 200, okReply(`"dhtget <username> <resource> <s(ingle)/m(ulti)> [timeout_ms] [timeout_multi_ms] [min_multi]\nGet resource from dht network"`))
	// Parameter errors are still ours.
	wantReply(t, ts.call(t, req("dhtget", "alice", "profile", 1)), 500, errReply(-1, "value is type int, expected str"))
}

// TestForwardUpstreamDown: an unreachable upstream is an error that does
// not reveal its credentials.
func TestForwardUpstreamDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := upstream.New("http://tw:"+upstreamPass+"@"+addr, upstream.WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, Config{Upstream: c})
	for _, body := range []string{req("getbestblockhash"), `[{"id":1,"method":"getbestblockhash"}]`} {
		r := ts.call(t, body)
		if !strings.Contains(r.body, `"code":-32603`) || !strings.Contains(r.body, "upstream twisterd unavailable") {
			t.Errorf("%s: %d %s", body, r.status, r.body)
		}
		if strings.Contains(r.body, upstreamPass) {
			t.Errorf("upstream password leaked: %s", r.body)
		}
	}
}

// TestFollowMirroredUpstream: follow and unfollow are ours, and are repeated
// on the upstream twisterd so its timeline follows the same users; an
// upstream that refuses does not fail them.
func TestFollowMirroredUpstream(t *testing.T) {
	up := newFakeTwisterd(t)
	ts := startServer(t, Config{DM: newFakeDM(), Upstream: up.client(t)})
	wantReply(t, ts.call(t, req("follow", "alice", []string{"bob", "carol"})), 200, okReply(`null`))
	wantReply(t, ts.call(t, req("unfollow", "alice", []string{"carol"})), 200, okReply(`null`))
	wantReply(t, ts.call(t, req("getfollowing", "alice")), 200, okReply(`["bob"]`))
	// dave is not in twisterd's wallet: his follow is not repeated there
	// (twisterd would make an entry for him).
	wantReply(t, ts.call(t, req("follow", "dave", []string{"bob"})), 200, okReply(`null`))
	up.mu.Lock()
	defer up.mu.Unlock()
	ask := `{"id":"twgroupd-mirror","method":"listwalletusers","params":[]}`
	want := []string{
		ask, `{"id":"twgroupd-mirror","method":"follow","params":["alice",["bob","carol"]]}`,
		ask, `{"id":"twgroupd-mirror","method":"unfollow","params":["alice",["carol"]]}`,
		ask,
	}
	if !slices.Equal(up.bodies, want) {
		t.Fatalf("upstream saw %q, want %q", up.bodies, want)
	}
}

// lateForwarder forwards to a client set after the server started.
type lateForwarder struct{ c *upstream.Client }

func (l *lateForwarder) Forward(ctx context.Context, body []byte) (int, http.Header, []byte, error) {
	return l.c.Forward(ctx, body)
}

// TestForwardLoop: a server whose upstream is itself (here, two servers
// pointing at each other) answers a forwarding-loop error instead of
// forwarding forever; single requests, batches and chains all stop.
func TestForwardLoop(t *testing.T) {
	fa, fb := &lateForwarder{}, &lateForwarder{}
	a := startServer(t, Config{Upstream: fa})
	b := startServer(t, Config{Upstream: fb})
	for _, p := range []struct {
		f  *lateForwarder
		to *testServer
	}{{fa, b}, {fb, a}} {
		u := strings.Replace(p.to.url, "http://", "http://"+p.to.user+":"+p.to.pass+"@", 1)
		c, err := upstream.New(u)
		if err != nil {
			t.Fatal(err)
		}
		p.f.c = c
	}
	r := a.call(t, req("getbestblockhash"))
	if !strings.Contains(r.body, "forwarding loop: -upstream leads back to this twgroupd") {
		t.Errorf("single: %d %q", r.status, r.body)
	}
	r = a.call(t, `[{"id":1,"method":"getbestblockhash"}]`)
	if !strings.Contains(r.body, "forwarding loop") {
		t.Errorf("batch: %d %q", r.status, r.body)
	}
	via, err := upstream.CheckVia("1,2,3,4,5,6,7", "8")
	if err != nil || via != "1,2,3,4,5,6,7,8" {
		t.Errorf("chain of 8: %q %v", via, err)
	}
	if _, err := upstream.CheckVia(via, "9"); err == nil {
		t.Error("chain of 9 accepted")
	}
}
