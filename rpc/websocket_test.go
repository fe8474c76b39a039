package rpc

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/twgroupd/twgroupd/dm"
)

func dialWS(t *testing.T, ts *testServer, path, user, pass string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := http.Header{}
	if user != "" {
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	}
	u := "ws://" + strings.TrimPrefix(strings.TrimSuffix(ts.url, "/"), "http://") + path
	return websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
}

func readWS(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("websocket read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("message type %v", typ)
	}
	return string(b)
}

// waitSubscribers polls until n clients are subscribed to the feed.
func waitSubscribers(t *testing.T, f *Feed, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		got := len(f.subs)
		f.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d feed subscribers, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWebsocketFeed(t *testing.T) {
	feed := NewFeed()
	ts := startServer(t, Config{Feed: feed, Wallet: newFakeWallet()})
	c, _, err := dialWS(t, ts, "/ws", ts.user, ts.pass)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if got := readWS(t, c); got != wsGreeting {
		t.Fatalf("greeting %q", got)
	}
	waitSubscribers(t, feed, 1)

	// A new group message, as the dm engine's Notify option delivers it.
	var notify func(dm.Event) = feed.Notify
	notify(dm.Event{Type: "GROUP", Group: "*reawrcvt", K: 6, Time: 1795483558, From: "alice", To: "bob", Msg: "Hello group! <b>&</b> é"})
	if got, want := readWS(t, c), `{"type":"GROUP","group":"*reawrcvt","k":6,"time":1795483558,"from":"alice","to":"bob","msg":"Hello group! <b>&</b> é"}`; got != want {
		t.Errorf("group event\n got %s\nwant %s", got, want)
	}
	notify(dm.Event{Type: "DM", K: 2, Time: 1795483300, From: "alice", To: "bob", Msg: "Hi Bob"})
	if got, want := readWS(t, c), `{"type":"DM","k":2,"time":1795483300,"from":"alice","to":"bob","msg":"Hi Bob"}`; got != want {
		t.Errorf("dm event\n got %s\nwant %s", got, want)
	}

	// JSON-RPC requests over the socket, as twisterd's websocket server.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(req("listwalletusers"))); err != nil {
		t.Fatal(err)
	}
	if got := readWS(t, c); got != okReply(`[]`) {
		t.Errorf("rpc over websocket: %q", got)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"id":"t","method":"nosuch"}`)); err != nil {
		t.Fatal(err)
	}
	if got := readWS(t, c); got != errReply(-32601, "Method not found") {
		t.Errorf("rpc error over websocket: %q", got)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(`[`)); err != nil {
		t.Fatal(err)
	}
	if got := readWS(t, c); !strings.Contains(got, "Parse error") {
		t.Errorf("parse error over websocket: %q", got)
	}
	c.Close(websocket.StatusNormalClosure, "")
	waitSubscribers(t, feed, 0)
}

func TestWebsocketAuth(t *testing.T) {
	feed := NewFeed()
	ts := startServer(t, Config{Feed: feed})
	_, resp, err := dialWS(t, ts, "/", "user", "wrong-password-wrong-password")
	if err == nil {
		t.Fatal("websocket without valid credentials accepted")
	}
	if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("response %v", resp)
	}
	// "/" works as well as "/ws".
	c, _, err := dialWS(t, ts, "/", ts.user, ts.pass)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if got := readWS(t, c); got != wsGreeting {
		t.Errorf("greeting %q", got)
	}
}

// TestWebsocketSlowClient: a client that does not read is dropped, the
// engine's Notify never blocks.
func TestWebsocketSlowClient(t *testing.T) {
	feed := NewFeed()
	sub := feed.subscribe()
	for i := 0; i < feedBuffer+10; i++ {
		feed.Notify(dm.Event{Type: "DM", Msg: "x"})
	}
	select {
	case <-sub.gone:
	default:
		t.Fatal("slow subscriber not dropped")
	}
	feed.unsubscribe(sub) // idempotent after a drop
}

func TestWebsocketShutdown(t *testing.T) {
	feed := NewFeed()
	ts := startServer(t, Config{Feed: feed})
	c, _, err := dialWS(t, ts, "/ws", ts.user, ts.pass)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	readWS(t, c)
	waitSubscribers(t, feed, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(ctx) }()
	// The client sees the close frame and answers it.
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("read after shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitSubscribers(t, feed, 0)
}

// TestSecretsNotLogged: WIFs, the rpc password and upstream credentials
// never reach the log.
func TestSecretsNotLogged(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dmf := newFakeDM()
	ts := startServer(t, Config{Logger: log, Wallet: newFakeWallet(), Registry: transcriptRegistry(t), DM: dmf})
	ts.call(t, req("importprivkey", aliceWIF, "alice"))
	ts.call(t, req("importprivkey", bobWIF, "alice"))
	ts.call(t, req("dumpprivkey", "alice"))
	ts.doAuth(t, http.MethodPost, "/", req("help"), "user", "not-the-password-but-long")
	ts.call(t, req("newdirectmsg", "alice", 1, "bob", "secret text"))
	mu.Lock()
	defer mu.Unlock()
	out := buf.String()
	for _, secret := range []string{aliceWIF, bobWIF, longPassword, "not-the-password", "secret text"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
}

type lockedWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}
