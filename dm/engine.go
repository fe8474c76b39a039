// Package dm is twgroupd's direct-message engine: the receive path (trial
// decryption of every DM post with every wallet key, then twisterd's
// processReceivedDM rules, spec §5.3 and §6.2-6.4) and the send path
// (newdirectmsg and the group-control posts of package groupchat: encrypt,
// build, sign, validate, store, publish).
//
// It owns the rules, not the bytes on disk (internal/msgstore, wallet) nor
// the sockets: it reaches the network only through the Network interface,
// implemented by internal/swarm and, in tests, by dmtest.Hub.
//
// Construction:
//
//	e, err := dm.New(dm.Config{
//		Wallet: w,            // keys of local users and groups
//		Store:  s,            // conversations, groups, seen DM posts
//		Keys:   registry,     // twproto.KeySource: user keys, best height
//		Net:    swarm,        // publish pieces, follow swarms
//		Notify: feed.Push,    // optional: every stored non-self message
//		Logger: slog.Default(),
//		Now:    time.Now,
//	})
//	err = e.Resume(ctx)   // follow every swarm we need after a restart
//
// Improvements over twisterd, all wire-compatible (docs/engine.md): a new
// group key makes the engine retry the DM posts it could not decrypt before,
// in the background and over a bounded set (retry.go; twisterd needs a
// manual rescandirectmsgs); a group_invite for a key the
// wallet already holds still updates the description and re-adds the
// invited member (twisterd drops it); following a user reprocesses that
// user's stored DM posts; message ids are stable and dedup is by post; a
// used k is refused and a failed call consumes none.
//
// The engine never calls Network while a store transaction is open, so a
// Network may hand posts back to HandlePost from inside Publish or Follow.
// Close stops the background retry; call it before closing the store.
package dm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/wallet"
)

// Errors with twisterd's RPC messages (contracts.md).
var (
	ErrEncryptToDest = errors.New("error encrypting to pubkey of destination user")
	ErrEncryptToSelf = errors.New("error encrypting to pubkey to ourselve")
	ErrSign          = errors.New("error signing post with private key of user")
	// ErrKUsed matches KUsedError: twisterd silently drops a piece whose k
	// is taken; twgroupd refuses the call instead.
	ErrKUsed = errors.New("k already used")
	// ErrEmptyMessage refuses a DM without text: every receiver drops it
	// (processReceivedDM stores nothing for an empty msg), so twisterd's
	// silent success would lose it.
	ErrEmptyMessage = errors.New("empty message: a DM without text is dropped by every receiver")
	// ErrNotRegistered refuses a follow of a name the registry does not know
	// (twisterd's follow adds any string and reports success).
	ErrNotRegistered = errors.New("not a registered user")
)

// CulpritError is one of twisterd's error messages followed by what caused
// it ("error encrypting to pubkey of destination user: 'bob' is not a
// registered user"): the message keeps twisterd's text as its prefix, so a
// client that matches on it still matches, and the rpc package keeps the
// sentinel's code (errors.Is sees Err).
type CulpritError struct {
	Err    error  // the sentinel, twisterd's message
	Detail string // appended as is, separator included
}

func (e *CulpritError) Error() string { return e.Err.Error() + e.Detail }
func (e *CulpritError) Unwrap() error { return e.Err }

// Culprit appends ": <detail>" to sentinel's message.
func Culprit(sentinel error, format string, args ...any) error {
	return &CulpritError{Err: sentinel, Detail: ": " + fmt.Sprintf(format, args...)}
}

// KUsedError reports a k the local user has already used.
type KUsedError struct {
	User string
	K    int64
}

func (e *KUsedError) Error() string {
	return fmt.Sprintf("k %d already used by user '%s'", e.K, e.User)
}

// Is makes errors.Is(err, ErrKUsed) true.
func (e *KUsedError) Is(target error) bool { return target == ErrKUsed }

// Network is what the engine needs from the swarm layer.
type Network interface {
	// Publish adds post as piece k of user's swarm and announces it (HAVE).
	Publish(ctx context.Context, user string, k int64, post []byte) error
	// Follow starts fetching user's swarm; every verified piece is handed to
	// the engine's HandlePost once.
	Follow(ctx context.Context, user string) error
}

// TxNetwork is a Network whose piece store lives in the message store's
// bbolt file (internal/swarm with Config.DB): a send's k reservation, the
// sender's copy, the processing of its own posts and the pieces commit in
// one transaction, so a crash leaves all of it or none
// (docs/architecture.md, "One commit per post").
type TxNetwork interface {
	Network
	// Bolt is the shared file (nil when the pieces are elsewhere).
	Bolt() *bolt.DB
	// StagePublish stores the validated post p as a piece inside tx;
	// announce sends HAVE after the commit.
	StagePublish(tx *bolt.Tx, p *twproto.Post) (announce func(), err error)
}

// LastHaver may be implemented by a Network that knows the highest piece
// held of a swarm (getlasthave); the engine counts it when it picks the
// next free k.
type LastHaver interface {
	LastHave(user string) int64
}

// PieceChecker may be implemented by a Network that knows which pieces a
// swarm holds (public posts, pieces made by another daemon with the same
// user): the engine then also refuses those ks, before building anything.
type PieceChecker interface {
	HasPiece(user string, k int64) bool
}

// Event is a stored message pushed to live listeners (twisterd's websocket
// objects, spec §5.3 step 9).
type Event struct {
	Type  string // "DM" or "GROUP"
	Group string // local group alias, for GROUP
	K     int64
	Time  int64
	From  string
	To    string // the local user who received it
	Msg   string
}

// Thread is one conversation in a getdirectmsgs answer.
type Thread struct {
	Username string
	Messages []msgstore.Message
}

// Config wires an Engine. Wallet, Store, Keys and Net are required.
type Config struct {
	Wallet *wallet.Wallet
	Store  *msgstore.Store
	Keys   twproto.KeySource
	Net    Network
	Notify func(Event)      // optional
	Logger *slog.Logger     // optional
	Now    func() time.Time // optional, time.Now

	// Bounds of the pending set (posts no wallet key opened, kept for a
	// retry with a future group key; docs/engine.md): how many, and for
	// how long after arrival. 0 means DefaultPendingMax and
	// DefaultPendingMaxAge.
	PendingMax    int
	PendingMaxAge time.Duration
}

// Defaults of Config's pending bounds.
const (
	DefaultPendingMax    = 50_000
	DefaultPendingMaxAge = 30 * 24 * time.Hour
)

// Engine is the DM engine. Its methods are safe for concurrent use.
type Engine struct {
	wallet *wallet.Wallet
	store  *msgstore.Store
	keys   twproto.KeySource
	net    Network
	txnet  TxNetwork // net, when it shares the store's file
	notify func(Event)
	log    *slog.Logger
	now    func() time.Time

	// Sends of one user are serialized from choosing k to the commit, so
	// an automatic k never collides (map bounded by the wallet's users).
	sendMu  sync.Mutex
	senders map[string]*sync.Mutex

	// Wallet keys cached for trial decryption, reloaded when the wallet's
	// generation moves.
	cacheMu   sync.Mutex
	cacheOK   bool
	cacheGen  uint64
	cacheName []string
	cacheKeys []*twproto.PrivateKey
	cachePub  map[string]int // uncompressed public key -> first index

	pendMax int
	pendAge time.Duration

	// The retry worker (retry.go): started on the first kick, stopped by
	// Close.
	retryOnce sync.Once
	retryKick chan struct{}
	retryCtx  context.Context
	retryStop context.CancelFunc
	retryDone chan struct{}
	retryBusy chan struct{} // holds a token while a pass runs
	hotCalls  atomic.Int32  // hot-path calls in progress (retry.go)
	hotLast   atomic.Int64  // when the last one ended, unix ns
	// retryWaiters counts WaitRetries calls: the worker does not pause
	// for hot calls while one waits.
	retryWaiters atomic.Int32

	// Members each group made us follow (at most MaxGroupFollows each).
	groupMu      sync.Mutex
	groupFollows map[string]map[string]bool
}

// New builds an Engine.
func New(cfg Config) (*Engine, error) {
	if cfg.Wallet == nil || cfg.Store == nil || cfg.Keys == nil || cfg.Net == nil {
		return nil, errors.New("dm: Wallet, Store, Keys and Net are required")
	}
	e := &Engine{
		wallet: cfg.Wallet, store: cfg.Store, keys: cfg.Keys, net: cfg.Net,
		notify: cfg.Notify, log: cfg.Logger, now: cfg.Now,
		pendMax: cfg.PendingMax, pendAge: cfg.PendingMaxAge,
		retryKick: make(chan struct{}, 1), retryDone: make(chan struct{}),
		retryBusy:    make(chan struct{}, 1),
		groupFollows: map[string]map[string]bool{},
	}
	if e.pendMax <= 0 {
		e.pendMax = DefaultPendingMax
	}
	if e.pendAge <= 0 {
		e.pendAge = DefaultPendingMaxAge
	}
	e.retryCtx, e.retryStop = context.WithCancel(context.Background())
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	if tn, ok := cfg.Net.(TxNetwork); ok && tn.Bolt() != nil && tn.Bolt() == cfg.Store.Bolt() {
		e.txnet = tn
	}
	e.senders = map[string]*sync.Mutex{}
	return e, nil
}

// walletKeys returns the cached wallet keys, in wallet name order.
func (e *Engine) walletKeys() ([]string, []*twproto.PrivateKey, error) {
	e.cacheMu.Lock()
	defer e.cacheMu.Unlock()
	gen := e.wallet.Generation()
	if e.cacheOK && gen == e.cacheGen {
		return e.cacheName, e.cacheKeys, nil
	}
	all, err := e.wallet.AllKeys()
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(all))
	keys := make([]*twproto.PrivateKey, len(all))
	for i, nk := range all {
		names[i], keys[i] = nk.Name, nk.Key
	}
	// cachePub is built on first use (ownerOf): only senders need it.
	e.cacheOK, e.cacheGen, e.cacheName, e.cacheKeys, e.cachePub = true, gen, names, keys, nil
	return names, keys, nil
}

// ownerOf is the wallet name that trial decryption would find for a post
// sealed to pub (the first name in wallet order holding that key), "" when
// no wallet key opens it. The sender knows both the key and the plaintext
// of its own posts, so it needs no ECDH for them.
func (e *Engine) ownerOf(pub []byte) (string, error) {
	pt, err := twproto.ParsePubKey(pub)
	if err != nil {
		return "", nil
	}
	names, _, err := e.walletKeys()
	if err != nil {
		return "", err
	}
	e.cacheMu.Lock()
	if e.cachePub == nil && len(names) == len(e.cacheKeys) {
		e.cachePub = make(map[string]int, len(e.cacheKeys))
		for j, k := range e.cacheKeys {
			pk := string(k.Key.PubKey().SerializeUncompressed())
			if _, dup := e.cachePub[pk]; !dup {
				e.cachePub[pk] = j
			}
		}
	}
	i, ok := e.cachePub[string(pt.SerializeUncompressed())]
	e.cacheMu.Unlock()
	if !ok || i >= len(names) {
		return "", nil
	}
	return names[i], nil
}

// effects are what a committed transaction asks for afterwards.
type effects struct {
	events []Event
	follow []groupMember // members announced in a held group
	retry  bool          // a retry job was recorded
}

type groupMember struct{ group, user string }

// MaxGroupFollows caps the swarms one group makes this node follow: a
// member list is written by any member, and each name would cost a swarm
// (DHT lookups, connections) at every start (issue #11).
const MaxGroupFollows = 64

// HandlePost is the entry point for every received or locally published
// piece; p has passed twproto.ValidatePost. A post seen before (same author
// and k) is ignored: processing twice never stores twice.
func (e *Engine) HandlePost(ctx context.Context, p *twproto.Post) error {
	if p == nil || !p.IsDM() {
		return nil
	}
	defer e.hot()()
	ref := msgstore.PostRef{Author: p.N, K: p.K}
	var seen bool
	if err := e.store.View(func(tx *msgstore.Tx) error { seen = tx.HasPost(ref); return nil }); err != nil {
		return fmt.Errorf("handle post %s/%d: %w", p.N, p.K, err)
	}
	if seen {
		return nil
	}
	return e.process(ctx, p, true)
}

// process trial-decrypts p with every wallet key (spec §5.3 step 2) and
// applies it. record stores the post as seen in the same transaction.
func (e *Engine) process(ctx context.Context, p *twproto.Post, record bool) error {
	gen := e.wallet.Generation()
	names, keys, err := e.walletKeys()
	if err != nil {
		return fmt.Errorf("handle post %s/%d: %w", p.N, p.K, err)
	}
	idx, plain, derr := decryptAny(p.DM, keys)
	name := ""
	if derr == nil {
		name = names[idx]
	} else if !errors.Is(derr, twproto.ErrMAC) {
		e.log.Debug("undecryptable dm envelope", "user", p.N, "k", p.K, "err", derr)
	}
	if err := e.commit(ctx, p, name, plain, derr, record); err != nil {
		return err
	}
	if derr != nil && e.wallet.Generation() != gen {
		// A key arrived during the trial: its retry may have scanned the
		// pending set before this post was marked. Once more, with it.
		return e.process(ctx, p, false)
	}
	return nil
}

// commit applies one post in one store transaction, then runs its effects.
func (e *Engine) commit(ctx context.Context, p *twproto.Post, keyName string, plain []byte, derr error, record bool) error {
	var fx effects
	err := e.store.Update(func(tx *msgstore.Tx) error {
		fx = effects{}
		return e.applyPost(tx, p, keyName, plain, derr, record, &fx)
	})
	if err != nil {
		return fmt.Errorf("handle post %s/%d: %w", p.N, p.K, err)
	}
	e.after(ctx, fx)
	return nil
}

// applyPost is one post's part of a transaction: record it (if record),
// mark it pending or apply processReceivedDM.
func (e *Engine) applyPost(tx *msgstore.Tx, p *twproto.Post, keyName string, plain []byte, derr error, record bool, fx *effects) error {
	ref := msgstore.PostRef{Author: p.N, K: p.K}
	if record {
		isNew, err := tx.PutPost(ref, p.Raw)
		if err != nil || !isNew {
			return err
		}
	}
	if derr != nil {
		// Only a MAC mismatch may turn into a match with a future key.
		if !errors.Is(derr, twproto.ErrMAC) {
			return tx.SetPending(ref, false)
		}
		now := e.now()
		return tx.MarkPending(ref, msgstore.PendingLimits{
			Now: now.Unix(), MinTime: now.Add(-e.pendAge).Unix(), Max: e.pendMax,
		})
	}
	if err := tx.SetPending(ref, false); err != nil {
		return err
	}
	return e.apply(tx, p, keyName, plain, fx)
}

// PreparePost is the receive path split around the swarm's piece commit
// (swarm.TxSink): trial decryption here, outside any transaction; apply
// records and applies the post inside the transaction that stores the
// piece, so a received DM costs one commit; committed runs the effects.
func (e *Engine) PreparePost(ctx context.Context, p *twproto.Post) (apply func(*bolt.Tx) error, committed func(context.Context), err error) {
	if p == nil || !p.IsDM() {
		return nil, nil, nil
	}
	defer e.hot()()
	ref := msgstore.PostRef{Author: p.N, K: p.K}
	var seen bool
	if err := e.store.View(func(tx *msgstore.Tx) error { seen = tx.HasPost(ref); return nil }); err != nil {
		return nil, nil, fmt.Errorf("handle post %s/%d: %w", p.N, p.K, err)
	}
	if seen {
		return nil, nil, nil
	}
	gen := e.wallet.Generation()
	names, keys, err := e.walletKeys()
	if err != nil {
		return nil, nil, fmt.Errorf("handle post %s/%d: %w", p.N, p.K, err)
	}
	idx, plain, derr := decryptAny(p.DM, keys)
	name := ""
	if derr == nil {
		name = names[idx]
	}
	var fx effects
	apply = func(btx *bolt.Tx) error {
		fx = effects{}
		return e.store.In(btx, func(tx *msgstore.Tx) error {
			return e.applyPost(tx, p, name, plain, derr, true, &fx)
		})
	}
	committed = func(ctx context.Context) {
		e.after(ctx, fx)
		if derr != nil && e.wallet.Generation() != gen {
			// A key arrived while this post was being decrypted: its retry
			// of the pending posts may have run before this one was marked.
			if err := e.process(ctx, p, false); err != nil {
				e.log.Warn("retrying a post with a new key", "user", p.N, "k", p.K, "err", err)
			}
		}
	}
	return apply, committed, nil
}

// after runs a committed transaction's effects: live events, swarms to
// follow, and waking the background retry of pending posts (retry.go) when
// a new group key was recorded. The post is
// handled once its transaction committed, so a failure here is logged, not
// returned: a member list naming a user whose swarm cannot start must not
// make the post (or a restart) fail.
func (e *Engine) after(ctx context.Context, fx effects) {
	if e.notify != nil {
		for _, ev := range fx.events {
			e.notify(ev)
		}
	}
	for _, m := range fx.follow {
		e.followGroupMember(ctx, m.group, m.user)
	}
	if fx.retry {
		e.kickRetry()
	}
}

// followGroupMember starts the swarm of a member announced in group: only
// for a registered user (a member list may name anyone), and at most
// MaxGroupFollows members per group. Callers check that the group is held.
func (e *Engine) followGroupMember(ctx context.Context, group, user string) {
	e.groupMu.Lock()
	set := e.groupFollows[group]
	done, full := set[user], len(set) >= MaxGroupFollows
	e.groupMu.Unlock()
	if done {
		return
	}
	if full {
		e.log.Debug("group member not followed: the group's cap is reached", "group", group, "user", user, "cap", MaxGroupFollows)
		return
	}
	if _, err := e.keys.UserKey(ctx, user, -1); err != nil {
		e.log.Debug("group member not followed", "group", group, "user", user, "err", err)
		return
	}
	e.groupMu.Lock()
	set = e.groupFollows[group]
	if set == nil {
		set = map[string]bool{}
		e.groupFollows[group] = set
	}
	if set[user] || len(set) >= MaxGroupFollows {
		e.groupMu.Unlock()
		return
	}
	set[user] = true
	e.groupMu.Unlock()
	if err := e.net.Follow(ctx, user); err != nil {
		e.log.Warn("cannot follow group member", "group", group, "user", user, "err", err)
	}
}

// groupHeld reports whether a local user takes part in group: a member
// that has not left it. Only then do its member lists start swarms.
func groupHeld(tx *msgstore.Tx, group string) bool {
	g, ok := tx.Group(group)
	if !ok {
		return false
	}
	for _, m := range g.Members {
		if tx.HasUser(m) && !tx.IsIgnored(m, group) {
			return true
		}
	}
	return false
}

func (e *Engine) storedPost(ref msgstore.PostRef) (*twproto.Post, error) {
	var raw []byte
	var ok bool
	if err := e.store.View(func(tx *msgstore.Tx) error { raw, ok = tx.Post(ref); return nil }); err != nil {
		return nil, fmt.Errorf("stored post %s/%d: %w", ref.Author, ref.K, err)
	}
	if !ok {
		return nil, nil
	}
	p, err := twproto.DecodePost(raw)
	if err != nil || !p.IsDM() {
		return nil, fmt.Errorf("stored post %s/%d: %v", ref.Author, ref.K, err)
	}
	return p, nil
}

// Rescan processes again every stored DM post of the users user follows
// (rescandirectmsgs, spec §8.4), with every wallet key. Messages already
// stored are not stored twice.
func (e *Engine) Rescan(ctx context.Context, user string) error {
	var following []string
	if err := e.store.View(func(tx *msgstore.Tx) error { following = tx.Following(user); return nil }); err != nil {
		return fmt.Errorf("rescan %s: %w", user, err)
	}
	var errs []error
	for _, author := range following {
		if err := e.rescanAuthor(ctx, author); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rescanAuthor processes again every stored DM post of author.
func (e *Engine) rescanAuthor(ctx context.Context, author string) error {
	var refs []msgstore.PostRef
	err := e.store.View(func(tx *msgstore.Tx) error {
		return tx.PostsBy(author, func(k int64, _ []byte) error {
			refs = append(refs, msgstore.PostRef{Author: author, K: k})
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("rescan %s: %w", author, err)
	}
	var errs []error
	for _, ref := range refs {
		if err := ctx.Err(); err != nil {
			return err
		}
		p, err := e.storedPost(ref)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if p == nil {
			continue
		}
		if err := e.process(ctx, p, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Resume asks the network for every swarm the engine needs: the users each
// local user follows, the local users, and the members of each group a
// local user takes part in (twisterd starts every group member's torrent at
// startup, spec §6.5; here only registered ones, MaxGroupFollows per group).
func (e *Engine) Resume(ctx context.Context) error {
	users, err := e.wallet.Users()
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, u := range users {
		want[u] = true
	}
	var members []groupMember
	err = e.store.View(func(tx *msgstore.Tx) error {
		for _, u := range tx.Users() {
			for _, f := range tx.Following(u) {
				want[f] = true
			}
		}
		for _, a := range tx.Groups() {
			if !groupHeld(tx, a) {
				continue
			}
			g, _ := tx.Group(a)
			// A bounded look at a list anyone in the group can grow.
			for _, m := range g.Members[:min(len(g.Members), 4*MaxGroupFollows)] {
				members = append(members, groupMember{group: a, user: m})
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	e.kickRetry() // retry jobs a restart interrupted
	// One swarm that cannot start (a bad name in a received member list)
	// must not keep the daemon from starting: log it and go on.
	for _, u := range sortedKeys(want) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := e.net.Follow(ctx, u); err != nil {
			e.log.Warn("resume: cannot follow", "user", u, "err", err)
		}
	}
	for _, m := range members {
		if err := ctx.Err(); err != nil {
			return err
		}
		e.followGroupMember(ctx, m.group, m.user)
	}
	return nil
}

// parallelMinKeys is the key count from which trial decryption is spread
// over the CPUs. With the work on the post's point shared (twproto.Trial)
// a failed trial costs a few microseconds per key, so a split pays only
// when each worker still gets a batch large enough for the batched path.
const parallelMinKeys = 64

// decryptAny is twproto's DecryptAny with one Trial (the post's table of
// multiples) shared by GOMAXPROCS goroutines, each opening a chunk of the
// keys; the result is the same: the first key in wallet order that opens
// env.
func decryptAny(env *twproto.Envelope, keys []*twproto.PrivateKey) (int, []byte, error) {
	trial, err := env.NewTrial(len(keys))
	if err != nil {
		return -1, nil, err
	}
	workers := min(runtime.GOMAXPROCS(0), len(keys)/(parallelMinKeys/2))
	if len(keys) < parallelMinKeys || workers < 2 {
		return trial.Open(keys)
	}
	type result struct {
		idx   int
		plain []byte
		err   error
	}
	results := make([]result, workers)
	per := (len(keys) + workers - 1) / workers
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*per, min((w+1)*per, len(keys))
		wg.Go(func() {
			i, plain, err := trial.Open(keys[lo:hi])
			if err == nil {
				i += lo
			}
			results[w] = result{i, plain, err}
		})
	}
	wg.Wait()
	for _, r := range results { // chunks are in key order
		if r.err == nil {
			return r.idx, r.plain, nil
		}
	}
	return -1, nil, results[0].err
}
