package swarm

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// testKeys is an in-memory registry: every user registered at regHeight.
type testKeys struct {
	mu    sync.Mutex
	best  int64
	users map[string]twproto.UserKey
	down  bool // simulate an unreachable registry
}

var errRegistryDown = errors.New("registry unreachable")

func (k *testKeys) setBest(best int64) {
	k.mu.Lock()
	k.best = best
	k.mu.Unlock()
}

func (k *testKeys) setDown(down bool) {
	k.mu.Lock()
	k.down = down
	k.mu.Unlock()
}

func newTestKeys(best int64) *testKeys {
	return &testKeys{best: best, users: map[string]twproto.UserKey{}}
}

func (k *testKeys) add(user string, pub []byte, reg int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.users[user] = twproto.UserKey{PubKey: pub, RegHeight: reg}
}

func (k *testKeys) UserKey(_ context.Context, user string, _ int64) (twproto.UserKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.down {
		return twproto.UserKey{}, errRegistryDown
	}
	u, ok := k.users[user]
	if !ok {
		return twproto.UserKey{}, twproto.ErrUnknownUser
	}
	return u, nil
}

func (k *testKeys) BestHeight(context.Context) (int64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.best, nil
}

// recordingSink records HandlePost calls.
type recordingSink struct {
	mu    sync.Mutex
	posts []*twproto.Post
	count map[string]int
}

func newSink() *recordingSink { return &recordingSink{count: map[string]int{}} }

func (r *recordingSink) HandlePost(_ context.Context, p *twproto.Post) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.posts = append(r.posts, p)
	r.count[fmt.Sprintf("%s/%d", p.N, p.K)]++
	return nil
}

func (r *recordingSink) has(user string, k int64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count[fmt.Sprintf("%s/%d", user, k)]
}

func (r *recordingSink) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.posts)
}

// user is a registered test identity.
type user struct {
	name string
	key  *twproto.PrivateKey
}

func newUser(t testing.TB, keys *testKeys, name string) user {
	t.Helper()
	k, err := twproto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	keys.add(name, k.PubKey(), 1)
	return user{name, k}
}

// publicPost builds a signed public post of u.
func publicPost(t testing.TB, u user, k int64, msg string) []byte {
	t.Helper()
	up, err := twproto.Bencode(map[string]any{"height": int64(10), "k": k, "msg": msg, "n": u.name, "time": int64(1795483000) + k})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := twproto.Sign(u.key, up)
	if err != nil {
		t.Fatal(err)
	}
	return twproto.WrapSignedPost(sig, up)
}

// dmPost builds a signed DM post of u to the holder of pub.
func dmPost(t testing.TB, u user, k int64, to user, msg string) []byte {
	t.Helper()
	env, err := twproto.Encrypt(to.key.PubKey(), twproto.EncodeMessage(msg, to.name))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := twproto.BuildDMPost(u.key, u.name, k, 10, 1795483000+k, env)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

type testNode struct {
	*Swarm
	sink *recordingSink
	dir  string
}

func fastConfig(dir string, keys twproto.KeySource, static ...netip.AddrPort) Config {
	return Config{
		DataDir:           dir,
		ListenAddr:        "127.0.0.1:0",
		Keys:              keys,
		StaticPeers:       static,
		ReconnectInterval: 100 * time.Millisecond,
		RequestTimeout:    2 * time.Second,
		KeepAliveInterval: 500 * time.Millisecond,
		PeerTimeout:       5 * time.Second,
		HandshakeTimeout:  2 * time.Second,
		MultiConnPerIP:    true, // every test node is on 127.0.0.1
	}
}

func startNode(t testing.TB, dir string, keys twproto.KeySource, static ...netip.AddrPort) *testNode {
	t.Helper()
	return startNodeConfig(t, fastConfig(dir, keys, static...))
}

func startNodeConfig(t testing.TB, cfg Config) *testNode {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{Swarm: s, sink: newSink(), dir: cfg.DataDir}
	s.SetSink(n.sink)
	if err := s.Start(); err != nil {
		s.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
