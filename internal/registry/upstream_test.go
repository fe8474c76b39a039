package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/internal/upstream"
)

const (
	aliceWIF = "L5k7ajAiJxiSm8CEHGJf5jALJXyWZmsiQ9Ngy1KJ5jZkWNup8bUK"
	rpcPass  = "registry-test-password"
)

type fakeTx struct {
	user string
	pub  []byte
	sig  []byte // key replacement: the old key's signature of pub
}

type fakeBlock struct {
	hash string
	time int64
	txs  []fakeTx
}

// fakeChain is a twisterd as seen through its RPC: a chain of blocks holding
// user transactions and a wallet. Replies have the shapes of
// src/rpcrawtransaction.cpp TxToJSON, src/rpcblockchain.cpp blockToJSON and
// the calls in shared/spec/twisterd-rpc-transcript.md; errors use twisterd's
// codes and HTTP statuses (spec §8.1).
type fakeChain struct {
	mu            sync.Mutex
	blocks        []fakeBlock
	wallet        map[string]string // name -> WIF
	locked        bool
	noHeightField bool // pre-"height" TxToJSON: registry must ask getblock
	txidOnly      bool // getrawtransaction <txid>: registry falls back to dumppubkey
	calls         map[string]int
}

func newFakeChain(t *testing.T) (*fakeChain, *httptest.Server, *upstream.Client) {
	t.Helper()
	fc := &fakeChain{wallet: map[string]string{}, calls: map[string]int{}}
	fc.mine() // genesis
	srv := httptest.NewServer(fc)
	t.Cleanup(srv.Close)
	c, err := upstream.New(strings.Replace(srv.URL, "http://", "http://user:"+rpcPass+"@", 1), upstream.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return fc, srv, c
}

func (fc *fakeChain) mine(txs ...fakeTx) int64 {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	h := len(fc.blocks)
	sum := sha256.Sum256(fmt.Appendf(nil, "block %d %v", h, txs))
	fc.blocks = append(fc.blocks, fakeBlock{hash: hex.EncodeToString(sum[:]), time: 1795483200 + int64(h)*10, txs: txs})
	return int64(h)
}

func (fc *fakeChain) count(method string) int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.calls[method]
}

type rpcErr struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (fc *fakeChain) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, p, ok := r.BasicAuth(); !ok || p != rpcPass {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var req struct {
		Method string            `json:"method"`
		Params []json.RawMessage `json:"params"`
		ID     json.RawMessage   `json:"id"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	fc.mu.Lock()
	fc.calls[req.Method]++
	res, e := fc.handle(req.Method, req.Params)
	fc.mu.Unlock()
	status := http.StatusOK
	switch {
	case e != nil && e.Code == -32601:
		status = http.StatusNotFound
	case e != nil:
		status = http.StatusInternalServerError
	}
	out, _ := json.Marshal(map[string]any{"result": res, "error": e, "id": req.ID})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(out, '\n'))
}

func strParam(p []json.RawMessage, i int) string {
	var s string
	if i < len(p) {
		_ = json.Unmarshal(p[i], &s)
	}
	return s
}

// latest finds user's newest transaction; fc.mu is held.
func (fc *fakeChain) latest(user string) (fakeTx, int, bool) {
	for h := len(fc.blocks) - 1; h >= 0; h-- {
		for _, tx := range fc.blocks[h].txs {
			if tx.user == user {
				return tx, h, true
			}
		}
	}
	return fakeTx{}, 0, false
}

func (fc *fakeChain) handle(method string, p []json.RawMessage) (any, *rpcErr) {
	best := len(fc.blocks) - 1
	switch method {
	case "getblockcount":
		return best, nil
	case "getblockhash":
		var h int
		if len(p) != 1 || json.Unmarshal(p[0], &h) != nil {
			return nil, &rpcErr{-1, "getblockhash <index>"}
		}
		if h < 0 || h > best {
			return nil, &rpcErr{-1, "Block number out of range."}
		}
		return fc.blocks[h].hash, nil
	case "getblock":
		hash := strParam(p, 0)
		for h, b := range fc.blocks {
			if b.hash != hash {
				continue
			}
			users := []string{}
			for _, tx := range b.txs {
				users = append(users, tx.user)
			}
			return map[string]any{"hash": b.hash, "confirmations": best - h + 1, "size": 300, "height": h, "version": 2,
				"merkleroot": strings.Repeat("0", 64), "tx": users, "spamMessage": "", "spamUser": "",
				"userhashes": users, "usernames": users, "time": b.time, "nonce": 1, "bits": "1f00ffff", "difficulty": 0.00000381}, nil
		}
		return nil, &rpcErr{-5, "Block not found"}
	case "getrawtransaction":
		user := strParam(p, 0)
		if fc.txidOnly {
			return nil, &rpcErr{-8, "parameter 1 must be hexadecimal string (not '" + user + "')"}
		}
		tx, h, ok := fc.latest(user)
		if !ok {
			return nil, &rpcErr{-5, "No information available about transaction"}
		}
		keys := []string{hex.EncodeToString(tx.pub)}
		if tx.sig != nil {
			keys = append(keys, hex.EncodeToString(tx.sig))
		}
		out := map[string]any{"hex": "01", "txid": strings.Repeat("ab", 32), "version": 1, "message": "",
			"username": user, "pubKey": keys, "nonce": 7, "blockhash": fc.blocks[h].hash,
			"confirmations": best - h + 1, "time": fc.blocks[h].time, "blocktime": fc.blocks[h].time}
		if !fc.noHeightField {
			out["height"] = h
		}
		return out, nil
	case "dumppubkey":
		if tx, _, ok := fc.latest(strParam(p, 0)); ok {
			return hex.EncodeToString(tx.pub), nil
		}
		return "", nil
	case "dumpprivkey":
		if fc.locked {
			return nil, &rpcErr{-13, "Error: Please enter the wallet passphrase with walletpassphrase first."}
		}
		name := strParam(p, 0)
		wif, ok := fc.wallet[name]
		if !ok {
			return nil, &rpcErr{-5, "Username not found"}
		}
		return wif, nil
	case "listwalletusers":
		names := []string{}
		for n := range fc.wallet {
			if !strings.HasPrefix(n, "*") {
				names = append(names, n)
			}
		}
		return names, nil
	}
	return nil, &rpcErr{-32601, "Method not found"}
}

// transcriptChain registers alice and bob in block 1 and mines up to 12, as
// on the private network of shared/spec/twisterd-rpc-transcript.md.
func transcriptChain(t *testing.T, fc *fakeChain) {
	fc.mine(fakeTx{user: "alice", pub: mustHex(t, alicePubHex)}, fakeTx{user: "bob", pub: mustHex(t, bobPubHex)})
	for range 11 {
		fc.mine()
	}
}

func loadPost(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile("../../testdata/vectors/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var vec struct {
		Post string `json:"post_bencoded_hex"`
	}
	if err := json.Unmarshal(raw, &vec); err != nil {
		t.Fatal(err)
	}
	return mustHex(t, vec.Post)
}

func TestUpstreamRegistryTranscript(t *testing.T) {
	ctx := context.Background()
	fc, _, c := newFakeChain(t)
	transcriptChain(t, fc)
	reg := NewUpstream(c, nil)

	if best, err := reg.BestHeight(ctx); err != nil || best != 12 {
		t.Fatalf("BestHeight = %d, %v; want 12", best, err)
	}
	uk, err := reg.UserKey(ctx, "alice", -1)
	if err != nil || hex.EncodeToString(uk.PubKey) != alicePubHex || uk.RegHeight != 1 {
		t.Fatalf("UserKey(alice) = %x %d, %v", uk.PubKey, uk.RegHeight, err)
	}
	if _, err := reg.UserKey(ctx, "alice", 0); !errors.Is(err, twproto.ErrUnknownUser) {
		t.Fatalf("UserKey(alice, 0) before registration = %v; want ErrUnknownUser", err)
	}
	if _, err := reg.UserKey(ctx, "carol", -1); !errors.Is(err, twproto.ErrUnknownUser) {
		t.Fatalf("UserKey(carol) = %v; want ErrUnknownUser", err)
	}
	if _, err := reg.UserKey(ctx, "Not-A-Name", -1); !errors.Is(err, twproto.ErrUnknownUser) {
		t.Fatalf("UserKey(bad name) = %v; want ErrUnknownUser", err)
	}
	for _, v := range []struct {
		file, user string
		k          int64
	}{{"dm_alice_k2.json", "alice", 2}, {"dm_bob_k2.json", "bob", 2}, {"group_invite_alice_k3.json", "alice", 3}} {
		if _, err := twproto.ValidatePost(ctx, loadPost(t, v.file), v.user, v.k, reg); err != nil {
			t.Errorf("ValidatePost(%s) = %v", v.file, err)
		}
	}
	// Everything above was answered from the cache after one fetch per user.
	if n := fc.count("getrawtransaction"); n != 3 {
		t.Errorf("getrawtransaction called %d times; want 3 (alice, bob, carol once each)", n)
	}
	if n := fc.count("getblockcount"); n != 1 {
		t.Errorf("getblockcount called %d times within the TTL; want 1", n)
	}
}

func TestUpstreamRegistryFollowsNewBlocks(t *testing.T) {
	ctx := context.Background()
	fc, _, c := newFakeChain(t)
	transcriptChain(t, fc)
	clock := &fakeClock{}
	clock.unix.Store(5000)
	reg := NewUpstream(c, &UpstreamOptions{Now: clock.now})

	if _, err := reg.BestHeight(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.UserKey(ctx, "carol", -1); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("carol before registration: %v", err)
	}
	carol, _ := twproto.NewPrivateKey()
	fc.mine(fakeTx{user: "carol", pub: carol.PubKey()}) // 13
	// Within the TTL nothing is asked, so carol is still unknown (cached).
	if _, err := reg.UserKey(ctx, "carol", -1); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("carol within the TTL: %v", err)
	}

	// Alice replaces her key in block 14, signing the new key with the old one.
	oldAlice, err := twproto.ParseWIF(aliceWIF)
	if err != nil {
		t.Fatal(err)
	}
	newAlice, _ := twproto.NewPrivateKey()
	sig, err := twproto.Sign(oldAlice, newAlice.PubKey())
	if err != nil {
		t.Fatal(err)
	}
	fc.mine(fakeTx{user: "alice", pub: newAlice.PubKey(), sig: sig}) // 14

	clock.unix.Add(3) // past DefaultBestTTL
	if best, err := reg.BestHeight(ctx); err != nil || best != 14 {
		t.Fatalf("BestHeight = %d, %v; want 14", best, err)
	}
	uk, err := reg.UserKey(ctx, "carol", -1)
	if err != nil || !bytes.Equal(uk.PubKey, carol.PubKey()) || uk.RegHeight != 13 {
		t.Fatalf("carol after block 13 = %x %d, %v", uk.PubKey, uk.RegHeight, err)
	}
	uk, err = reg.UserKey(ctx, "alice", -1)
	if err != nil || !bytes.Equal(uk.PubKey, newAlice.PubKey()) || uk.RegHeight != 14 {
		t.Fatalf("alice after replacement = %x %d, %v", uk.PubKey, uk.RegHeight, err)
	}
	// The old key, recovered from the replacement's signature, still covers
	// posts made before block 14: the transcript's DM (height 11) validates.
	uk, err = reg.UserKey(ctx, "alice", 11)
	if err != nil || hex.EncodeToString(uk.PubKey) != alicePubHex || uk.RegHeight != -1 {
		t.Fatalf("alice at 11 = %x %d, %v; want the replaced key", uk.PubKey, uk.RegHeight, err)
	}
	if _, err := twproto.ValidatePost(ctx, loadPost(t, "dm_alice_k2.json"), "alice", 2, reg); err != nil {
		t.Fatalf("ValidatePost of a pre-replacement post: %v", err)
	}
	if n := fc.count("getblock"); n != 2 {
		t.Errorf("getblock called %d times; want 2 (blocks 13 and 14)", n)
	}

	// A jump past maxBlockScan drops the cache instead of reading every block.
	for range maxBlockScan + 1 {
		fc.mine()
	}
	clock.unix.Add(3)
	if _, err := reg.BestHeight(ctx); err != nil {
		t.Fatal(err)
	}
	if n := reg.cached(); n != 0 {
		t.Fatalf("%d users cached after a long jump; want 0", n)
	}
	if n := fc.count("getblock"); n != 2 {
		t.Errorf("getblock called %d times after a long jump; want still 2", n)
	}
}

func TestUpstreamRegistryDown(t *testing.T) {
	ctx := context.Background()
	fc, srv, c := newFakeChain(t)
	transcriptChain(t, fc)
	clock := &fakeClock{}
	reg := NewUpstream(c, &UpstreamOptions{Now: clock.now})
	if _, err := reg.UserKey(ctx, "alice", -1); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.BestHeight(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	clock.unix.Add(10)

	// Within MaxStale: the last height, cached keys, validation works.
	best, err := reg.BestHeight(ctx)
	if err != nil || best != 12 {
		t.Fatalf("BestHeight with the upstream just down = %d, %v; want the last height 12", best, err)
	}
	if st := reg.Status(); !st.Down || st.Best != 12 {
		t.Fatalf("status %+v; want down", st)
	}
	if _, err := reg.UserKey(ctx, "bob", -1); !errors.Is(err, upstream.ErrUnavailable) || errors.Is(err, ErrUnknownUser) {
		t.Fatalf("UserKey(bob) with the upstream down = %v; want ErrUnavailable, not unknown", err)
	}
	if _, err := reg.UserKey(ctx, "alice", -1); err != nil {
		t.Fatalf("cached alice with the upstream down = %v", err)
	}
	if _, err := twproto.ValidatePost(ctx, loadPost(t, "dm_alice_k2.json"), "alice", 2, reg); err != nil {
		t.Fatalf("ValidatePost of a cached user with the upstream down = %v", err)
	}
	// Past MaxStale the height is too old to trust: a retryable error.
	clock.unix.Add(int64(DefaultMaxStale/time.Second) + 1)
	if _, err := reg.BestHeight(ctx); !errors.Is(err, upstream.ErrUnavailable) {
		t.Fatalf("BestHeight long after the upstream went down = %v; want ErrUnavailable", err)
	}
	// Validation fails with a plain error, not a PostError: the caller keeps
	// the piece and tries again later instead of rejecting it.
	_, err = twproto.ValidatePost(ctx, loadPost(t, "dm_alice_k2.json"), "alice", 2, reg)
	var pe *twproto.PostError
	if err == nil || errors.As(err, &pe) || !errors.Is(err, upstream.ErrUnavailable) {
		t.Fatalf("ValidatePost with the upstream down = %v; want a retryable error", err)
	}
	if strings.Contains(err.Error(), rpcPass) {
		t.Fatalf("error leaks the RPC password: %v", err)
	}
}

func TestUpstreamRegistryOlderTwisterd(t *testing.T) {
	ctx := context.Background()
	fc, _, c := newFakeChain(t)
	transcriptChain(t, fc)

	fc.noHeightField = true
	uk, err := NewUpstream(c, nil).UserKey(ctx, "bob", -1)
	if err != nil || uk.RegHeight != 1 || fc.count("getblock") != 1 {
		t.Fatalf("without a height field: %+v, %v, getblock x%d", uk, err, fc.count("getblock"))
	}

	fc.txidOnly = true
	reg := NewUpstream(c, nil)
	uk, err = reg.UserKey(ctx, "bob", -1)
	if err != nil || hex.EncodeToString(uk.PubKey) != bobPubHex || uk.RegHeight != 0 {
		t.Fatalf("dumppubkey fallback: %x %d, %v", uk.PubKey, uk.RegHeight, err)
	}
	if _, err := reg.UserKey(ctx, "carol", -1); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("dumppubkey fallback, unknown user: %v", err)
	}
}

func TestUpstreamRegistryCacheBound(t *testing.T) {
	ctx := context.Background()
	fc, _, c := newFakeChain(t)
	var txs []fakeTx
	for i := range 10 {
		k, _ := twproto.NewPrivateKey()
		txs = append(txs, fakeTx{user: fmt.Sprintf("u%d", i), pub: k.PubKey()})
	}
	fc.mine(txs...)
	reg := NewUpstream(c, &UpstreamOptions{CacheSize: 3})
	for i := range 10 {
		if _, err := reg.UserKey(ctx, fmt.Sprintf("u%d", i), -1); err != nil {
			t.Fatal(err)
		}
		if n := reg.cached(); n > 3 {
			t.Fatalf("%d users cached; bound is 3", n)
		}
	}
	// u9 is recent: no new fetch. u0 was evicted: fetched again.
	before := fc.count("getrawtransaction")
	_, _ = reg.UserKey(ctx, "u9", -1)
	_, _ = reg.UserKey(ctx, "u0", -1)
	if got := fc.count("getrawtransaction") - before; got != 1 {
		t.Fatalf("%d fetches for u9+u0; want 1", got)
	}
}

func TestUpstreamRegistryConcurrent(t *testing.T) {
	ctx := context.Background()
	fc, _, c := newFakeChain(t)
	transcriptChain(t, fc)
	reg := NewUpstream(c, nil)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				user := []string{"alice", "bob", "carol"}[(i+j)%3]
				_, err := reg.UserKey(ctx, user, -1)
				if err != nil && !errors.Is(err, ErrUnknownUser) {
					t.Error(err)
				}
				if _, err := reg.BestHeight(ctx); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
}

func TestImportUserKeys(t *testing.T) {
	ctx := context.Background()
	fc, _, c := newFakeChain(t)
	transcriptChain(t, fc)
	dave, _ := twproto.NewPrivateKey()
	eve, _ := twproto.NewPrivateKey()
	eveChain, _ := twproto.NewPrivateKey()
	fc.mine(fakeTx{user: "eve", pub: eveChain.PubKey()})
	fc.wallet["alice"] = aliceWIF
	fc.wallet["alice/replaced"] = dave.WIF()
	fc.wallet["dave"] = dave.WIF() // in the wallet, not registered yet
	fc.wallet["eve"] = eve.WIF()   // wallet key differs from the chain's
	fc.wallet["*reawrcvt"] = "KzTAkjGZu9xbVgeFyuWkcR4A3X7U8cvigCsBYdKoZrx6p4Mxc8m8"

	keys, err := ImportUserKeys(ctx, c, nil)
	if err == nil || !strings.Contains(err.Error(), "eve") {
		t.Fatalf("ImportUserKeys error = %v; want eve's key mismatch", err)
	}
	for _, secret := range []string{aliceWIF, dave.WIF(), eve.WIF()} {
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("error leaks a WIF: %v", err)
		}
	}
	got := map[string]ImportedKey{}
	for _, k := range keys {
		got[k.User] = k
	}
	if len(got) != 2 || !got["alice"].Registered || got["dave"].Registered {
		t.Fatalf("imported %+v; want alice (registered) and dave (not registered)", got)
	}
	if hex.EncodeToString(got["alice"].Key.PubKey()) != alicePubHex || got["alice"].Key.WIF() != aliceWIF {
		t.Fatal("alice's imported key is not twisterd's")
	}

	keys, err = ImportUserKeys(ctx, c, []string{"alice"})
	if err != nil || len(keys) != 1 {
		t.Fatalf("ImportUserKeys(alice) = %v, %v", keys, err)
	}
	if _, err := ImportUserKeys(ctx, c, []string{"nobody"}); err == nil || !strings.Contains(err.Error(), "Username not found") {
		t.Fatalf("ImportUserKeys(nobody) = %v", err)
	}
	fc.mu.Lock()
	fc.locked = true
	fc.mu.Unlock()
	if _, err := ImportUserKeys(ctx, c, nil); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("ImportUserKeys with a locked wallet = %v", err)
	}
}

func BenchmarkUpstreamUserKeyCached(b *testing.B) {
	fc := &fakeChain{wallet: map[string]string{}, calls: map[string]int{}}
	fc.mine()
	fc.mine(fakeTx{user: "alice", pub: mustHex(b, alicePubHex)})
	srv := httptest.NewServer(fc)
	defer srv.Close()
	c, _ := upstream.New(strings.Replace(srv.URL, "http://", "http://user:"+rpcPass+"@", 1))
	reg := NewUpstream(c, nil)
	ctx := context.Background()
	if _, err := reg.UserKey(ctx, "alice", -1); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.UserKey(ctx, "alice", 5); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFileUserKey(b *testing.B) {
	f, err := OpenFile("../../testdata/registry/example.txt")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.UserKey(ctx, "alice", 5); err != nil {
			b.Fatal(err)
		}
	}
}

// callerFunc adapts a function to Caller, for feeding the registry arbitrary
// upstream replies without a socket.
type callerFunc func(ctx context.Context, method string, params ...any) (json.RawMessage, error)

func (f callerFunc) Call(ctx context.Context, method string, params ...any) (json.RawMessage, error) {
	return f(ctx, method, params...)
}

func FuzzUpstreamReplies(f *testing.F) {
	f.Add([]byte(`{"hex":"01","txid":"ab","version":1,"message":"","username":"alice","pubKey":["`+alicePubHex+`"],"nonce":7,"blockhash":"00","height":1}`), []byte(`{"height":3,"usernames":["alice"]}`), []byte(`12`))
	f.Add([]byte(`{"username":"alice","pubKey":["`+alicePubHex+`","1f00"],"blockhash":"00"}`), []byte(`{"height":-4}`), []byte(`-1`))
	f.Add([]byte(`null`), []byte(`[]`), []byte(`"x"`))
	f.Fuzz(func(t *testing.T, tx, block, count []byte) {
		c := callerFunc(func(ctx context.Context, method string, params ...any) (json.RawMessage, error) {
			switch method {
			case "getrawtransaction":
				return tx, nil
			case "getblock":
				return block, nil
			case "getblockhash":
				return json.RawMessage(`"00"`), nil
			case "getblockcount":
				return count, nil
			}
			return json.RawMessage(`""`), nil
		})
		reg := NewUpstream(c, nil)
		ctx := context.Background()
		uk, err := reg.UserKey(ctx, "alice", -1)
		if err == nil && checkPubKey(uk.PubKey) != nil {
			t.Fatalf("accepted key %x", uk.PubKey)
		}
		if err == nil && uk.RegHeight < -1 {
			t.Fatalf("negative registration height %d", uk.RegHeight)
		}
		if best, err := reg.BestHeight(ctx); err == nil && best < 0 {
			t.Fatalf("negative best height %d", best)
		}
		_, _ = ImportUserKeys(ctx, c, []string{"alice"})
	})
}

func TestUpstreamRegistryOneFetchPerUser(t *testing.T) {
	ctx := context.Background()
	fc, _, c := newFakeChain(t)
	transcriptChain(t, fc)
	clock := &fakeClock{}
	reg := NewUpstream(c, &UpstreamOptions{Now: clock.now})
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := reg.UserKey(ctx, "alice", -1); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := fc.count("getrawtransaction"); n != 1 {
		t.Fatalf("32 concurrent lookups made %d fetches; want 1", n)
	}

	// Lookups alone (no BestHeight caller) still notice new blocks.
	if _, err := reg.UserKey(ctx, "dave", -1); !errors.Is(err, ErrUnknownUser) {
		t.Fatal(err)
	}
	dave, _ := twproto.NewPrivateKey()
	fc.mine(fakeTx{user: "dave", pub: dave.PubKey()})
	clock.unix.Add(3)
	uk, err := reg.UserKey(ctx, "dave", -1)
	if err != nil || !bytes.Equal(uk.PubKey, dave.PubKey()) {
		t.Fatalf("dave after his block, lookups only: %x, %v", uk.PubKey, err)
	}
}
