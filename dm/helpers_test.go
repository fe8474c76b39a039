package dm

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/dm/dmtest"
	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/wallet"
)

// clock is a test clock that moves one second per reading, so every post
// has its own time.
type clock struct{ t atomic.Int64 }

func newClock(start int64) *clock { c := &clock{}; c.t.Store(start); return c }

func (c *clock) now() time.Time { return time.Unix(c.t.Add(1)-1, 0) }
func (c *clock) set(unix int64) { c.t.Store(unix) }

// node is one daemon: real wallet and store files in a temp dir, an engine,
// and its endpoint on the hub.
type node struct {
	t     testing.TB
	name  string
	dir   string
	keys  *dmtest.Keys
	net   *dmtest.Node
	clock *clock

	w *wallet.Wallet
	s *msgstore.Store
	e *Engine

	noSync bool // fuzzing: skip fsync

	mu     sync.Mutex
	events []Event
}

func newNode(t testing.TB, hub *dmtest.Hub, keys *dmtest.Keys, name string, c *clock) *node {
	return newNodeSync(t, hub, keys, name, c, true)
}

func newNodeSync(t testing.TB, hub *dmtest.Hub, keys *dmtest.Keys, name string, c *clock, sync bool) *node {
	t.Helper()
	n := &node{t: t, name: name, dir: t.TempDir(), keys: keys, net: hub.Node(name), clock: c, noSync: !sync}
	n.open()
	t.Cleanup(n.close)
	return n
}

func (n *node) open() {
	n.t.Helper()
	var err error
	if n.w, err = wallet.Open(filepath.Join(n.dir, "wallet.db"), &wallet.Options{NoSync: n.noSync}); err != nil {
		n.t.Fatal(err)
	}
	if n.s, err = msgstore.Open(filepath.Join(n.dir, "messages.db"), &msgstore.Options{NoSync: n.noSync}); err != nil {
		n.t.Fatal(err)
	}
	n.e, err = New(Config{
		Wallet: n.w, Store: n.s, Keys: n.keys, Net: n.net, Now: n.clock.now,
		Notify: func(ev Event) { n.mu.Lock(); n.events = append(n.events, ev); n.mu.Unlock() },
	})
	if err != nil {
		n.t.Fatal(err)
	}
	n.net.SetSink(n.e)
}

func (n *node) close() {
	if n.e == nil {
		return
	}
	n.net.SetSink(nil)
	n.e.Close()
	n.w.Close()
	n.s.Close()
	n.e = nil
}

// settle waits for the background retry of pending posts, which the reads
// below expect done.
func (n *node) settle() {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.e.WaitRetries(ctx); err != nil {
		n.t.Fatal(err)
	}
}

// restart closes the files and opens them again, as a daemon restart.
func (n *node) restart(ctx context.Context) {
	n.t.Helper()
	n.close()
	n.open()
	if err := n.e.Resume(ctx); err != nil {
		n.t.Fatal(err)
	}
}

// user creates a wallet user and registers its key.
func (n *node) user(name string) {
	n.t.Helper()
	k, err := n.w.CreateUser(name)
	if err != nil {
		n.t.Fatal(err)
	}
	n.keys.Add(name, k.PubKey(), 1)
}

func (n *node) importUser(name, wif string) {
	n.t.Helper()
	k, err := twproto.ParseWIF(wif)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := n.w.ImportUserKey(name, k); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) follow(local string, users ...string) {
	n.t.Helper()
	if err := n.e.Follow(context.Background(), local, users); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) thread(local, peer string) []msgstore.Message {
	n.t.Helper()
	n.settle()
	th, err := n.e.GetDirectMsgs(local, 1000, []msgstore.Query{msgstore.NewQuery(peer)})
	if err != nil {
		n.t.Fatal(err)
	}
	if len(th) == 0 {
		return nil
	}
	return th[0].Messages
}

func (n *node) group(alias string) msgstore.Group {
	n.t.Helper()
	n.settle()
	var g msgstore.Group
	n.s.View(func(tx *msgstore.Tx) error { g, _ = tx.Group(alias); return nil })
	return g
}

// aliasOf returns the node's alias for a group key.
func (n *node) aliasOf(key *twproto.PrivateKey) string {
	n.t.Helper()
	a, ok, err := n.w.AliasForKey(key)
	if err != nil || !ok {
		n.t.Fatalf("%s: no alias for group key (%v)", n.name, err)
	}
	return a
}

func (n *node) checkNoErrs() {
	n.t.Helper()
	for _, err := range n.net.Errs() {
		n.t.Errorf("delivery error: %v", err)
	}
}

// wantMsg is a message without its id.
type wantMsg struct {
	Time   int64  `json:"time"`
	Text   string `json:"text"`
	FromMe bool   `json:"fromMe"`
	From   string `json:"from"`
	K      int64  `json:"k"`
}

func strip(ms []msgstore.Message) []wantMsg {
	out := []wantMsg{}
	for _, m := range ms {
		out = append(out, wantMsg{m.Time, m.Text, m.FromMe, m.From, m.K})
	}
	return out
}

// byTime orders messages by time, equal times by text: twisterd puts the
// later arrival first among equal times (spec §5.4), twgroupd the earlier
// (ids are arrival order, docs/engine.md), so equal-time runs compare as
// sets.
func byTime(ms []wantMsg) []wantMsg {
	c := slices.Clone(ms)
	slices.SortStableFunc(c, func(a, b wantMsg) int {
		return cmp.Or(cmp.Compare(a.Time, b.Time), cmp.Compare(a.Text, b.Text))
	})
	return c
}

// checkIDs verifies ids are 0..n-1 in order (no holes, no duplicates).
func checkIDs(t testing.TB, ms []msgstore.Message) {
	t.Helper()
	for i, m := range ms {
		if m.ID != int64(i) {
			t.Errorf("message %d has id %d", i, m.ID)
		}
	}
}

// vector is a post from testdata/vectors.
type vector struct {
	Author string `json:"author"`
	K      int64  `json:"k"`
	Hex    string `json:"post_bencoded_hex"`
}

func loadVector(t testing.TB, name string) vector {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "vectors", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var v vector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v vector) raw(t testing.TB) []byte {
	t.Helper()
	b, err := hex.DecodeString(v.Hex)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vectorKeys reads testdata/vectors/keys.json.
type vectorKeys struct {
	Users map[string]struct {
		WIF string `json:"privkey_wif"`
		Pub string `json:"pubkey_compressed_hex"`
	} `json:"users"`
}

func loadVectorKeys(t testing.TB) vectorKeys {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "vectors", "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	var k vectorKeys
	if err := json.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	return k
}

// transcript is an expected end state from testdata/engine.
type transcript struct {
	Threads map[string][]wantMsg `json:"getdirectmsgs"`
	Info    struct {
		Alias       string   `json:"alias"`
		Description string   `json:"description"`
		Members     []string `json:"members"`
	} `json:"getgroupinfo"`
}

func loadTranscript(t testing.TB, name string) transcript {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "engine", name))
	if err != nil {
		t.Fatal(err)
	}
	var tr transcript
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatal(err)
	}
	return tr
}
