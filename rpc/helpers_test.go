package rpc

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/groupchat"
	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/tjson"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/wallet"
)

// testServer is a Server listening on 127.0.0.1 with its credentials.
type testServer struct {
	srv  *Server
	url  string
	user string
	pass string
}

// longPassword is >= 20 characters, so wrong-password tests skip the delay.
const longPassword = "a-long-rpc-password-0123456789"

func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	if cfg.User == "" {
		cfg.User = "user"
	}
	if cfg.Password == "" {
		cfg.Password = longPassword
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == nil {
		cfg.Listen = []string{"127.0.0.1:0"}
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Serve: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("server not ready")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v", err)
		}
	})
	return &testServer{srv: srv, url: "http://" + srv.Addrs()[0].String() + "/", user: cfg.User, pass: cfg.Password}
}

type response struct {
	close  bool // the server closes the connection
	status int
	header http.Header
	body   string
}

// do sends a request with the server's credentials.
func (ts *testServer) do(t *testing.T, method, path, body string) response {
	t.Helper()
	return ts.doAuth(t, method, path, body, ts.user, ts.pass)
}

func (ts *testServer) doAuth(t *testing.T, method, path, body, user, pass string) response {
	t.Helper()
	req, err := http.NewRequest(method, strings.TrimSuffix(ts.url, "/")+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" || pass != "" {
		req.SetBasicAuth(user, pass)
	}
	req.Header.Set("Content-Type", "text/plain;")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{close: resp.Close, status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// call posts one JSON-RPC request body to "/".
func (ts *testServer) call(t *testing.T, body string) response {
	t.Helper()
	return ts.do(t, http.MethodPost, "/", body)
}

// req builds a JSON-RPC 1.0 body like the transcript's curl commands.
func req(method string, params ...any) string {
	if params == nil {
		params = []any{}
	}
	b, err := json.Marshal(map[string]any{"jsonrpc": "1.0", "id": "t", "method": method, "params": params})
	if err != nil {
		panic(err)
	}
	return string(b)
}

func wantReply(t *testing.T, r response, status int, body string) {
	t.Helper()
	if r.status != status || r.body != body {
		t.Errorf("got %d %q\nwant %d %q", r.status, r.body, status, body)
	}
}

func okReply(result string) string {
	return `{"result":` + result + `,"error":null,"id":"t"}` + "\n"
}

func errReply(code int, msg string) string {
	return fmt.Sprintf(`{"result":null,"error":{"code":%d,"message":%s},"id":"t"}`+"\n", code, tjson.AppendString(nil, msg))
}

// exchange is one request/response pair of a verbatim twisterd transcript.
type exchange struct {
	node, method, request, response string
}

var (
	transcriptHeading = regexp.MustCompile("^### (node[0-9]+) `([a-z]+)`")
	transcriptCurl    = regexp.MustCompile(`--data-binary '(.*)' -H`)
)

func loadTranscript(t *testing.T, name string) []exchange {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "rpc", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []exchange
	var cur *exchange
	inJSON := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := transcriptHeading.FindStringSubmatch(line); m != nil {
			out = append(out, exchange{node: m[1], method: m[2]})
			cur = &out[len(out)-1]
			continue
		}
		if cur == nil {
			continue
		}
		if m := transcriptCurl.FindStringSubmatch(line); m != nil {
			cur.request = m[1]
			continue
		}
		if line == "```json" {
			inJSON = true
			continue
		}
		if inJSON {
			cur.response = line + "\n"
			inJSON = false
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// find returns the exchange of node and method whose request and response
// contain the given substrings.
func find(t *testing.T, all []exchange, node, method, inRequest, inResponse string) exchange {
	t.Helper()
	for _, e := range all {
		if e.node == node && e.method == method && strings.Contains(e.request, inRequest) && strings.Contains(e.response, inResponse) {
			return e
		}
	}
	t.Fatalf("no %s %s exchange with %q / %q in the transcript", node, method, inRequest, inResponse)
	return exchange{}
}

// vectorHex reads a hex field of a testdata/vectors file.
func vectorHex(t testing.TB, file, field string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "vectors", file))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	s, ok := m[field].(string)
	if !ok {
		t.Fatalf("%s: no field %s", file, field)
	}
	raw, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func mustWIF(t testing.TB, wif string) *twproto.PrivateKey {
	t.Helper()
	k, err := twproto.ParseWIF(wif)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Transcript keys (testdata/vectors/keys.json).
const (
	aliceWIF    = "L5k7ajAiJxiSm8CEHGJf5jALJXyWZmsiQ9Ngy1KJ5jZkWNup8bUK"
	alicePubHex = "0289466f49cd83149b97fb61513d87e43ea62cafe646c42e7f53ac84778e41b475"
	bobWIF      = "KwMZKH3afx3A6mxmsb3feBU1R7srkURvpZu6MEJdpG7stxJPqWTL"
	bobPubHex   = "03f7f427f2255b00fcdceb20fc50e2320816099cee898de26d967078d2796787e6"
	groupWIF    = "KzTAkjGZu9xbVgeFyuWkcR4A3X7U8cvigCsBYdKoZrx6p4Mxc8m8"
)

// fakeDM is a DMEngine over in-memory conversations whose ids are
// positions, selected with twisterd's window rule (spec §8.4).
type fakeDM struct {
	mu        sync.Mutex
	following map[string][]string
	convs     map[string]map[string][]msgstore.Message // local user -> peer
	posts     map[string][]byte                        // sendKey -> post
	sendErr   error
	rescanned []string
	sent      []string
}

func newFakeDM() *fakeDM {
	return &fakeDM{following: map[string][]string{}, convs: map[string]map[string][]msgstore.Message{}, posts: map[string][]byte{}}
}

func sendKey(from string, k int64, to, msg string, copySelf bool) string {
	return fmt.Sprintf("%s|%d|%s|%s|%v", from, k, to, msg, copySelf)
}

func (f *fakeDM) NewDirectMsg(_ context.Context, from string, k int64, to, msg string, copySelf bool) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sendErr != nil {
		return nil, f.sendErr
	}
	key := sendKey(from, k, to, msg, copySelf)
	f.sent = append(f.sent, key)
	post, ok := f.posts[key]
	if !ok {
		return nil, fmt.Errorf("fake: no post for %s/%d", from, k)
	}
	return post, nil
}

func (f *fakeDM) GetDirectMsgs(localUser string, count int, queries []msgstore.Query) ([]dm.Thread, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []dm.Thread
	for _, q := range queries {
		msgs := f.convs[localUser][q.Username]
		if len(msgs) == 0 {
			continue
		}
		maxID := min(q.MaxID, int64(len(msgs)-1))
		since := max(q.SinceID, maxID-int64(count))
		th := dm.Thread{Username: q.Username}
		for i := max(since+1, 0); i <= maxID; i++ {
			th.Messages = append(th.Messages, msgs[i])
		}
		out = append(out, th)
	}
	return out, nil
}

func (f *fakeDM) Rescan(_ context.Context, user string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rescanned = append(f.rescanned, user)
	return nil
}

func (f *fakeDM) Follow(_ context.Context, localUser string, users []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	set := map[string]bool{}
	for _, u := range append(f.following[localUser], users...) {
		set[u] = true
	}
	f.following[localUser] = sortedKeys(set)
	return nil
}

func (f *fakeDM) Unfollow(_ context.Context, localUser string, users []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	set := map[string]bool{}
	for _, u := range f.following[localUser] {
		set[u] = true
	}
	for _, u := range users {
		delete(set, u)
	}
	f.following[localUser] = sortedKeys(set)
	return nil
}

func (f *fakeDM) Following(localUser string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.following[localUser]...), nil
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// fakeGroups is a GroupService over in-memory groups.
type fakeGroups struct {
	mu       sync.Mutex
	groups   map[string]GroupInfo
	users    map[string]bool     // local users
	ignored  map[string][]string // user -> aliases
	newAlias string              // what Create names the next group
	created  []string            // WIFs given to Create
	invites  []string
	errs     error // returned by Invite/SetDescription when set
}

func newFakeGroups() *fakeGroups {
	return &fakeGroups{groups: map[string]GroupInfo{}, users: map[string]bool{}, ignored: map[string][]string{}}
}

func (g *fakeGroups) Create(_ context.Context, desc, wif string) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.created = append(g.created, wif)
	if _, err := twproto.ParseWIF(wif); err != nil {
		return "", nil
	}
	info := g.groups[g.newAlias]
	info.Alias, info.Description = g.newAlias, desc
	g.groups[g.newAlias] = info
	return g.newAlias, nil
}

func (g *fakeGroups) List(user string, onlyIgnored bool) ([]string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if user != "" && !g.users[user] {
		return nil, errUnknownUser
	}
	if onlyIgnored {
		return g.ignored[user], nil
	}
	var out []string
	for alias, info := range g.groups {
		if user == "" || contains(info.Members, user) {
			out = append(out, alias)
		}
	}
	sort.Strings(out)
	return out, nil
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func (g *fakeGroups) Info(alias string) (GroupInfo, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	info, ok := g.groups[alias]
	if !ok {
		return GroupInfo{}, fmt.Errorf("group info %q: %w", alias, errUnknownGroup)
	}
	return info, nil
}

func (g *fakeGroups) Invite(_ context.Context, user string, k int64, alias string, members []string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.errs != nil {
		return g.errs
	}
	if _, ok := g.groups[alias]; !ok {
		return errUnknownGroup
	}
	g.invites = append(g.invites, fmt.Sprintf("%s|%d|%s|%s", user, k, alias, strings.Join(members, ",")))
	return nil
}

func (g *fakeGroups) SetDescription(_ context.Context, user string, k int64, alias, desc string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.errs != nil {
		return g.errs
	}
	info, ok := g.groups[alias]
	if !ok {
		return errUnknownGroup
	}
	info.Description = desc
	g.groups[alias] = info
	return nil
}

func (g *fakeGroups) Leave(_ context.Context, user, alias string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	info, ok := g.groups[alias]
	if !ok {
		return errUnknownGroup
	}
	if !g.users[user] {
		return errUnknownUser
	}
	var members []string
	for _, m := range info.Members {
		if m != user {
			members = append(members, m)
		}
	}
	info.Members = members
	g.groups[alias] = info
	g.ignored[user] = append(g.ignored[user], alias)
	return nil
}

// fakeWallet is a Wallet in memory, with wallet's sentinel errors.
type fakeWallet struct {
	mu   sync.Mutex
	keys map[string]*twproto.PrivateKey
}

func newFakeWallet() *fakeWallet { return &fakeWallet{keys: map[string]*twproto.PrivateKey{}} }

func (w *fakeWallet) CreateUser(name string) (*twproto.PrivateKey, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.keys[name]; ok {
		return nil, wallet.ErrUserExists
	}
	k, err := twproto.NewPrivateKey()
	if err != nil {
		return nil, err
	}
	w.keys[name] = k
	return k, nil
}

func (w *fakeWallet) ImportUserKey(name string, key *twproto.PrivateKey) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.keys[name] = key
	return nil
}

func (w *fakeWallet) Key(name string) (*twproto.PrivateKey, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k, ok := w.keys[name]
	if !ok {
		return nil, fmt.Errorf("wallet key %q: %w", name, wallet.ErrUserNotFound)
	}
	if k == nil {
		return nil, fmt.Errorf("wallet key %q: %w", name, wallet.KeyNotKnown(name))
	}
	return k, nil
}

func (w *fakeWallet) Users() ([]string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for name := range w.keys {
		if !strings.HasPrefix(name, "*") {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// fakeRegistry is a KeySource over a map of registered pubkeys.
type fakeRegistry struct {
	keys map[string][]byte
	best int64
	err  error
}

func (r *fakeRegistry) UserKey(_ context.Context, user string, height int64) (twproto.UserKey, error) {
	if r.err != nil {
		return twproto.UserKey{}, r.err
	}
	pub, ok := r.keys[user]
	if !ok {
		return twproto.UserKey{}, fmt.Errorf("registry %q: %w", user, twproto.ErrUnknownUser)
	}
	return twproto.UserKey{PubKey: pub, RegHeight: 1}, nil
}

func (r *fakeRegistry) BestHeight(context.Context) (int64, error) { return r.best, nil }

func transcriptRegistry(t testing.TB) *fakeRegistry {
	a, err := hex.DecodeString(alicePubHex)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(bobPubHex)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeRegistry{keys: map[string][]byte{"alice": a, "bob": b}, best: 12}
}

// fakeDHT serves stored raw items and records puts.
type fakeDHT struct {
	mu    sync.Mutex
	items map[string][][]byte // "user/resource/multi"
	puts  []string
	gets  []string
}

func (d *fakeDHT) Get(_ context.Context, user, resource string, multi bool, timeout, timeoutMulti time.Duration, minMulti int) ([][]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gets = append(d.gets, fmt.Sprintf("%s/%s/%v/%v/%v/%d", user, resource, multi, timeout, timeoutMulti, minMulti))
	return d.items[fmt.Sprintf("%s/%s/%v", user, resource, multi)], nil
}

func (d *fakeDHT) Put(_ context.Context, user, resource string, multi bool, value json.RawMessage, sigUser string, seq int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.puts = append(d.puts, fmt.Sprintf("%s/%s/%v/%s/%s/%d", user, resource, multi, value, sigUser, seq))
	return nil
}

// fakeSwarm answers from maps.
type fakeSwarm struct {
	lastHave  map[string]int64
	numPieces map[string]int
	maxSeen   map[string]int
	posts     [][]byte
	queries   []msgstore.Query
	flags     [2]int
}

func (s *fakeSwarm) LastHave(user string) int64 {
	if v, ok := s.lastHave[user]; ok {
		return v
	}
	return -1
}

func (s *fakeSwarm) NumPieces(user string) int { return s.numPieces[user] }

func (s *fakeSwarm) PieceMaxSeen(user string, k int64) int {
	return s.maxSeen[fmt.Sprintf("%s/%d", user, k)]
}

func (s *fakeSwarm) Posts(_ context.Context, count int, queries []msgstore.Query, allowed, required int) ([][]byte, error) {
	s.queries = queries
	s.flags = [2]int{allowed, required}
	if len(s.posts) > count {
		return s.posts[:count], nil
	}
	return s.posts, nil
}

type fakeNode struct{ st NodeStatus }

func (n fakeNode) NodeStatus(context.Context) (NodeStatus, error) { return n.st, nil }

var (
	errUnknownGroup = groupchat.ErrUnknownGroup
	errUnknownUser  = groupchat.ErrUnknownUser
)
