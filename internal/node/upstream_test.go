package node

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordedTwisterd serves the JSON-RPC replies a live twisterd gave
// (testdata/node/twisterd_upstream.json) on 127.0.0.1, matched by method
// and params; anything else gets twisterd's "Method not found".
type recordedTwisterd struct {
	url string
	srv *http.Server

	mu       sync.Mutex
	called   []string
	override map[string]string // canonical call -> result JSON, set while running
}

// answer makes later calls of method with params (as JSON) give result.
func (r *recordedTwisterd) answer(method, params, result string) {
	var v []any
	json.Unmarshal([]byte(params), &v)
	p, _ := json.Marshal(v)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.override == nil {
		r.override = map[string]string{}
	}
	r.override[method+string(p)] = result
}

func startRecordedTwisterd(t *testing.T) *recordedTwisterd {
	t.Helper()
	b, err := os.ReadFile("../../testdata/node/twisterd_upstream.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Calls []struct {
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			Status int             `json:"status"`
			Body   string          `json:"body"`
		} `json:"calls"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	canon := func(method string, params json.RawMessage) string {
		var v []any
		json.Unmarshal(params, &v)
		p, _ := json.Marshal(v)
		return method + string(p)
	}
	replies := map[string]int{}
	for i, c := range doc.Calls {
		replies[canon(c.Method, c.Params)] = i
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recordedTwisterd{url: "http://user:pwd@" + ln.Addr().String() + "/"}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var call struct {
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			ID     json.RawMessage `json:"id"`
		}
		json.NewDecoder(bytes.NewReader(body)).Decode(&call)
		key := canon(call.Method, call.Params)
		r.mu.Lock()
		r.called = append(r.called, key)
		result, overridden := r.override[key]
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if overridden {
			io.WriteString(w, `{"result":`+result+`,"error":null,"id":`+string(call.ID)+"}\n")
			return
		}
		i, ok := replies[key]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"result":null,"error":{"code":-32601,"message":"Method not found"},"id":`+string(call.ID)+"}\n")
			return
		}
		// The recording was made with id "t"; answer with the caller's.
		w.WriteHeader(doc.Calls[i].Status)
		io.WriteString(w, strings.Replace(doc.Calls[i].Body, `"id":"t"}`, `"id":`+string(call.ID)+`}`, 1))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	r.srv = srv
	return r
}

// TestUpstreamImportsKeysAndFollowing: a node started with -upstream holds
// the twisterd wallet's registered users' keys and follows whom they follow
// there. Without the following list the DM engine dropped the DMs of users
// alice followed on twisterd ("not following"), seen with a live twisterd.
func TestUpstreamImportsKeysAndFollowing(t *testing.T) {
	tw := startRecordedTwisterd(t)
	dir := t.TempDir()
	cfg := testConfig(t, dir, "")
	cfg.Upstream = tw.url
	_, c, stop := startNode(t, cfg)
	defer stop()

	var users []string
	json.Unmarshal(mustCall(t, c, "listwalletusers"), &users)
	slices.Sort(users)
	// dave is in twisterd's wallet but not registered yet: imported too,
	// as twisterd's wallet holds him.
	if !slices.Equal(users, []string{"alice", "bob", "carol", "dave"}) {
		t.Fatalf("wallet users after import: %v; upstream calls: %v", users, tw.calls())
	}
	var following []string
	json.Unmarshal(mustCall(t, c, "getfollowing", "alice"), &following)
	if !slices.Equal(following, []string{"alice", "bob"}) {
		tw.mu.Lock()
		defer tw.mu.Unlock()
		t.Fatalf("alice follows %v after start; upstream calls: %v", following, tw.called)
	}
	json.Unmarshal(mustCall(t, c, "getfollowing", "bob"), &following)
	if len(following) != 0 {
		t.Fatalf("bob follows %v", following)
	}
}

func (r *recordedTwisterd) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.called)
}

// TestUpstreamDownShownInGetinfo: with its twisterd gone the node keeps
// answering the last block height, and getinfo's "errors" says why.
func TestUpstreamDownShownInGetinfo(t *testing.T) {
	tw := startRecordedTwisterd(t)
	cfg := testConfig(t, t.TempDir(), "")
	cfg.Upstream = tw.url
	_, c, stop := startNode(t, cfg)
	defer stop()
	type info struct {
		Blocks int64  `json:"blocks"`
		Errors string `json:"errors"`
	}
	var before info
	json.Unmarshal(mustCall(t, c, "getinfo"), &before)
	if before.Errors != "" || before.Blocks == 0 {
		t.Fatalf("getinfo with twisterd up: %+v", before)
	}
	tw.srv.Close()
	var after info
	waitUntil(t, "getinfo errors", func() bool {
		json.Unmarshal(mustCall(t, c, "getinfo"), &after)
		return after.Errors != ""
	})
	if after.Blocks != before.Blocks || !strings.Contains(after.Errors, "upstream twisterd unavailable") {
		t.Fatalf("getinfo with twisterd gone: %+v", after)
	}
}

// TestUpstreamFollowingKeptInStep: a follow made on twisterd while the
// node runs reaches the node's following list without a restart (bob
// followed nobody at start; the not-following rule would drop alice's DMs
// to him until then), and a name twisterd follows that is not registered
// is left out.
func TestUpstreamFollowingKeptInStep(t *testing.T) {
	tw := startRecordedTwisterd(t)
	dir := t.TempDir()
	cfg := testConfig(t, dir, "")
	cfg.Upstream = tw.url
	_, c, stop := startNode(t, cfg, func(n *Node) { n.upstreamSync = 50 * time.Millisecond })
	defer stop()
	var following []string
	json.Unmarshal(mustCall(t, c, "getfollowing", "bob"), &following)
	if len(following) != 0 {
		t.Fatalf("bob follows %v at start", following)
	}
	tw.answer("getfollowing", `["bob"]`, `["alice","bob","dave"]`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		json.Unmarshal(mustCall(t, c, "getfollowing", "bob"), &following)
		if slices.Equal(following, []string{"alice", "bob"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob follows %v; want [alice bob] from twisterd (dave is not registered)", following)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
