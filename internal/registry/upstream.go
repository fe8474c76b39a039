package registry

import (
	"container/list"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/internal/upstream"
)

// Caller is what the upstream registry needs from a JSON-RPC client;
// *upstream.Client implements it.
type Caller interface {
	Call(ctx context.Context, method string, params ...any) (json.RawMessage, error)
}

// Defaults of UpstreamOptions.
const (
	DefaultCacheSize = 10000
	DefaultBestTTL   = 2 * time.Second
	// DefaultMaxStale is how long, with the upstream down, the last known
	// best height is still served (docs/registry.md "Upstream down").
	DefaultMaxStale = 30 * time.Minute
	// maxBlockScan bounds the blocks read one by one after the best height
	// moved; a bigger jump (first sync, long outage) drops the whole cache.
	maxBlockScan = 64
)

// twisterd's RPC_INVALID_ADDRESS_OR_KEY: getrawtransaction's "No information
// available about transaction", i.e. the user is not in the chain.
const rpcInvalidAddressOrKey = -5

// UpstreamOptions tunes an Upstream registry; the zero value is usable.
type UpstreamOptions struct {
	CacheSize int           // users (known or unknown) kept; DefaultCacheSize if <= 0
	BestTTL   time.Duration // how long one getblockcount answer is reused; DefaultBestTTL if <= 0
	// MaxStale: with the upstream unreachable, BestHeight keeps answering
	// the last height it got for this long; DefaultMaxStale if <= 0.
	MaxStale time.Duration
	Now      func() time.Time
	Logger   *slog.Logger
}

// Upstream is a Registry backed by a twisterd's JSON-RPC. Keys are cached
// (bounded, least recently used first out); when getblockcount moves, the
// usernames in the new blocks (getblockhash + getblock) are dropped from the
// cache so registrations and key replacements are seen at once. When the
// upstream is down, calls fail with an error wrapping
// upstream.ErrUnavailable (callers keep the post and retry); cached keys are
// still served.
type Upstream struct {
	c        Caller
	ttl      time.Duration
	maxStale time.Duration
	capacity int
	now      func() time.Time
	log      *slog.Logger

	refreshMu sync.Mutex // one best-height refresh at a time

	mu       sync.Mutex
	best     int64
	bestAt   time.Time
	bestOK   bool
	lastTry  time.Time // of the last getblockcount attempt, ok or not
	downAt   time.Time // first failed attempt of the current outage; zero: up
	gen      uint64    // bumped on every invalidation; stale fetches are not cached
	lru      *list.List
	entries  map[string]*list.Element // -> *cacheEntry
	inflight map[string]*flight       // one fetch per user at a time

	warnedFallback sync.Once
}

// flight is one fetch of a user's registrations that concurrent lookups of
// the same user wait for, instead of asking the upstream again.
type flight struct {
	done chan struct{}
	regs []Registration
	err  error
}

type cacheEntry struct {
	user string
	regs []Registration // ascending height; nil: not registered
}

// NewUpstream returns a registry asking c.
func NewUpstream(c Caller, opts *UpstreamOptions) *Upstream {
	var o UpstreamOptions
	if opts != nil {
		o = *opts
	}
	u := &Upstream{
		c:        c,
		ttl:      o.BestTTL,
		maxStale: o.MaxStale,
		capacity: o.CacheSize,
		now:      o.Now,
		log:      o.Logger,
		lru:      list.New(),
		entries:  make(map[string]*list.Element),
		inflight: make(map[string]*flight),
	}
	if u.ttl <= 0 {
		u.ttl = DefaultBestTTL
	}
	if u.capacity <= 0 {
		u.capacity = DefaultCacheSize
	}
	if u.maxStale <= 0 {
		u.maxStale = DefaultMaxStale
	}
	if u.now == nil {
		u.now = time.Now
	}
	if u.log == nil {
		u.log = slog.Default()
	}
	return u
}

// BestHeight implements twproto.KeySource with getblockcount, reused for
// BestTTL. While the upstream is unreachable it answers the last height it
// got, for at most MaxStale after that answer, and asks again at most once
// per BestTTL; so cached keys keep validating and sending working.
func (u *Upstream) BestHeight(ctx context.Context) (int64, error) {
	u.mu.Lock()
	now := u.now()
	if u.bestOK && now.Sub(u.bestAt) < u.ttl {
		best := u.best
		u.mu.Unlock()
		return best, nil
	}
	if stale, ok := u.staleLocked(now); ok && now.Sub(u.lastTry) < u.ttl {
		u.mu.Unlock()
		return stale, nil
	}
	u.mu.Unlock()
	n, err := u.refresh(ctx)
	if err == nil || !errors.Is(err, upstream.ErrUnavailable) {
		return n, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if stale, ok := u.staleLocked(u.now()); ok {
		return stale, nil
	}
	return 0, err
}

// staleLocked is the last best height while the upstream is down and it is
// not older than maxStale.
func (u *Upstream) staleLocked(now time.Time) (int64, bool) {
	if u.downAt.IsZero() || !u.bestOK || now.Sub(u.bestAt) > u.maxStale {
		return 0, false
	}
	return u.best, true
}

// UpstreamStatus tells whether the upstream answers (for getinfo).
type UpstreamStatus struct {
	Down      bool
	DownSince time.Time // first failed attempt of the outage
	Best      int64     // last best height the upstream gave
	BestAt    time.Time
}

// Status reports the upstream's state as last seen.
func (u *Upstream) Status() UpstreamStatus {
	u.mu.Lock()
	defer u.mu.Unlock()
	return UpstreamStatus{Down: !u.downAt.IsZero(), DownSince: u.downAt, Best: u.best, BestAt: u.bestAt}
}

func (u *Upstream) refresh(ctx context.Context) (int64, error) {
	u.refreshMu.Lock()
	defer u.refreshMu.Unlock()
	return u.refreshLocked(ctx)
}

// maybeRefresh lets lookups notice new blocks even when nobody asks
// BestHeight. It never waits for another refresh and tries at most once per
// TTL, so an unreachable upstream does not slow down cached lookups.
func (u *Upstream) maybeRefresh(ctx context.Context) {
	u.mu.Lock()
	now := u.now()
	due := (!u.bestOK || now.Sub(u.bestAt) >= u.ttl) && now.Sub(u.lastTry) >= u.ttl
	u.mu.Unlock()
	if !due || !u.refreshMu.TryLock() {
		return
	}
	defer u.refreshMu.Unlock()
	if _, err := u.refreshLocked(ctx); err != nil {
		u.log.Debug("registry: best height refresh failed", "err", err)
	}
}

// refreshLocked asks getblockcount and drops the users of new blocks from
// the cache; u.refreshMu is held.
func (u *Upstream) refreshLocked(ctx context.Context) (int64, error) {
	u.mu.Lock()
	if u.bestOK && u.now().Sub(u.bestAt) < u.ttl {
		best := u.best // refreshed while we waited
		u.mu.Unlock()
		return best, nil
	}
	old, hadOld := u.best, u.bestOK
	u.lastTry = u.now()
	u.mu.Unlock()

	var n int64
	if err := u.call(ctx, &n, "getblockcount"); err != nil {
		if errors.Is(err, upstream.ErrUnavailable) {
			u.mu.Lock()
			if u.downAt.IsZero() {
				u.downAt = u.now()
				u.log.Warn("registry: upstream twisterd unavailable; serving cached keys and the last best height", "best", u.best, "max_stale", u.maxStale)
			}
			u.mu.Unlock()
		}
		return 0, fmt.Errorf("registry: best height: %w", err)
	}
	if n < 0 {
		return 0, fmt.Errorf("registry: best height: %w: getblockcount %d", upstream.ErrBadReply, n)
	}
	switch {
	case !hadOld || n == old:
	case n < old || n-old > maxBlockScan:
		u.invalidateAll()
	default:
		changed, err := u.usersInBlocks(ctx, old+1, n)
		if err != nil {
			// Cannot tell who changed: forget everything rather than serve stale keys.
			u.log.Debug("registry: block scan failed, dropping key cache", "from", old+1, "to", n, "err", err)
			u.invalidateAll()
		} else {
			u.invalidate(changed)
		}
	}
	u.mu.Lock()
	if !u.downAt.IsZero() {
		u.log.Info("registry: upstream twisterd back", "best", n, "down_for", u.now().Sub(u.downAt))
	}
	u.best, u.bestAt, u.bestOK, u.downAt = n, u.now(), true, time.Time{}
	u.mu.Unlock()
	return n, nil
}

// usersInBlocks lists the usernames registered (or re-keyed) in blocks
// from..to, from getblock's "usernames" (src/rpcblockchain.cpp blockToJSON).
func (u *Upstream) usersInBlocks(ctx context.Context, from, to int64) ([]string, error) {
	var users []string
	for h := from; h <= to; h++ {
		var hash string
		if err := u.call(ctx, &hash, "getblockhash", h); err != nil {
			return nil, err
		}
		var blk struct {
			Usernames []string `json:"usernames"`
		}
		if err := u.call(ctx, &blk, "getblock", hash); err != nil {
			return nil, err
		}
		users = append(users, blk.Usernames...)
	}
	return users, nil
}

// UserKey implements twproto.KeySource. The key of record comes from the
// user's newest transaction (getrawtransaction <user> 1): its first pubKey
// push, in force from its block height. A key replacement also carries the
// old key's signature of the new key, from which the previous key is
// recovered (src/main.cpp verifyDuplicateOrReplacementTx); it is returned for
// heights below the replacement, with RegHeight -1 because twisterd's RPC
// does not tell when that key was registered. Keys older than that are not
// reachable over RPC.
func (u *Upstream) UserKey(ctx context.Context, user string, height int64) (twproto.UserKey, error) {
	if CheckUsername(user) != nil {
		return twproto.UserKey{}, ErrUnknownUser // twisterd can hold no such name
	}
	u.maybeRefresh(ctx)
	u.mu.Lock()
	if el, ok := u.entries[user]; ok {
		u.lru.MoveToFront(el)
		regs := el.Value.(*cacheEntry).regs
		u.mu.Unlock()
		return lookup(regs, height)
	}
	if f, ok := u.inflight[user]; ok {
		u.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return twproto.UserKey{}, fmt.Errorf("registry: key of %s: %w", user, ctx.Err())
		}
		if f.err != nil {
			return twproto.UserKey{}, fmt.Errorf("registry: key of %s: %w", user, f.err)
		}
		return lookup(f.regs, height)
	}
	f := &flight{done: make(chan struct{})}
	u.inflight[user] = f
	gen := u.gen
	u.mu.Unlock()

	f.regs, f.err = u.fetch(ctx, user)
	u.mu.Lock()
	delete(u.inflight, user)
	if f.err == nil && u.gen == gen {
		u.put(user, f.regs)
	}
	u.mu.Unlock()
	close(f.done)
	if f.err != nil {
		return twproto.UserKey{}, fmt.Errorf("registry: key of %s: %w", user, f.err)
	}
	return lookup(f.regs, height)
}

func lookup(regs []Registration, height int64) (twproto.UserKey, error) {
	uk, ok := keyAt(regs, height)
	if !ok {
		return twproto.UserKey{}, ErrUnknownUser
	}
	return uk, nil
}

// rawTx is getrawtransaction's verbose reply (src/rpcrawtransaction.cpp
// TxToJSON); "height" is absent in older builds.
type rawTx struct {
	Username  string   `json:"username"`
	PubKey    []string `json:"pubKey"`
	BlockHash string   `json:"blockhash"`
	Height    *int64   `json:"height"`
}

func (u *Upstream) fetch(ctx context.Context, user string) ([]Registration, error) {
	var tx rawTx
	err := u.call(ctx, &tx, "getrawtransaction", user, 1)
	var rpcErr *upstream.RPCError
	switch {
	case errors.As(err, &rpcErr) && rpcErr.Code == rpcInvalidAddressOrKey:
		return nil, nil // not in the chain
	case errors.As(err, &rpcErr):
		// A twisterd whose getrawtransaction wants a txid: fall back to
		// dumppubkey, without the registration height.
		return u.fetchPubKeyOnly(ctx, user, rpcErr)
	case err != nil:
		return nil, err
	}
	if tx.Username != user {
		return nil, fmt.Errorf("%w: getrawtransaction %s returned user %q", upstream.ErrBadReply, user, tx.Username)
	}
	if len(tx.PubKey) == 0 {
		return nil, fmt.Errorf("%w: getrawtransaction %s: no pubKey", upstream.ErrBadReply, user)
	}
	pub, err := hex.DecodeString(tx.PubKey[0])
	if err == nil {
		err = checkPubKey(pub)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: getrawtransaction %s: pubKey: %v", upstream.ErrBadReply, user, err)
	}
	var height int64
	switch {
	case tx.Height != nil:
		height = *tx.Height
	case tx.BlockHash != "":
		var blk struct {
			Height *int64 `json:"height"`
		}
		if err := u.call(ctx, &blk, "getblock", tx.BlockHash); err != nil {
			return nil, err
		}
		if blk.Height == nil {
			return nil, fmt.Errorf("%w: getblock %s: no height", upstream.ErrBadReply, tx.BlockHash)
		}
		height = *blk.Height
	default:
		return nil, nil // not in a block of the main chain: not registered yet
	}
	if height < 0 {
		return nil, fmt.Errorf("%w: getrawtransaction %s: height %d", upstream.ErrBadReply, user, height)
	}
	regs := []Registration{{User: user, PubKey: pub, Height: height}}
	if len(tx.PubKey) >= 2 {
		if prev := recoverReplacedKey(pub, tx.PubKey[1]); prev != nil {
			regs = append([]Registration{{User: user, PubKey: prev, Height: -1}}, regs...)
		}
	}
	return regs, nil
}

// recoverReplacedKey returns the key that signed newKey in a replacement
// transaction (pubKey[1] = compact signature by the old key over the raw new
// key bytes, src/rpcrawtransaction.cpp sendnewusertransaction), or nil.
func recoverReplacedKey(newKey []byte, sigHex string) []byte {
	sig, err := hex.DecodeString(sigHex)
	if err != nil {
		return nil
	}
	prev, err := twproto.RecoverPubKey(newKey, sig)
	if err != nil || checkPubKey(prev) != nil {
		return nil
	}
	return prev
}

func (u *Upstream) fetchPubKeyOnly(ctx context.Context, user string, cause *upstream.RPCError) ([]Registration, error) {
	var hexKey string
	if err := u.call(ctx, &hexKey, "dumppubkey", user); err != nil {
		return nil, err
	}
	if hexKey == "" {
		return nil, nil // dumppubkey's answer for users not in the chain (spec §1.4)
	}
	pub, err := hex.DecodeString(hexKey)
	if err == nil {
		err = checkPubKey(pub)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: dumppubkey %s: %v", upstream.ErrBadReply, user, err)
	}
	u.warnedFallback.Do(func() {
		u.log.Warn("registry: upstream getrawtransaction does not take a username; registration heights are unknown (0), so the post number bound is looser",
			"code", cause.Code, "message", cause.Message)
	})
	return []Registration{{User: user, PubKey: pub, Height: 0}}, nil
}

func (u *Upstream) call(ctx context.Context, out any, method string, params ...any) error {
	res, err := u.c.Call(ctx, method, params...)
	if err != nil {
		return err
	}
	if err := jsonUnmarshal(res, out); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	return nil
}

func jsonUnmarshal(res json.RawMessage, out any) error {
	if err := json.Unmarshal(res, out); err != nil {
		return fmt.Errorf("%w: %v", upstream.ErrBadReply, err)
	}
	return nil
}

// put caches regs for user; u.mu is held.
func (u *Upstream) put(user string, regs []Registration) {
	if el, ok := u.entries[user]; ok {
		el.Value.(*cacheEntry).regs = regs
		u.lru.MoveToFront(el)
		return
	}
	u.entries[user] = u.lru.PushFront(&cacheEntry{user: user, regs: regs})
	for u.lru.Len() > u.capacity {
		last := u.lru.Back()
		u.lru.Remove(last)
		delete(u.entries, last.Value.(*cacheEntry).user)
	}
}

func (u *Upstream) invalidate(users []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.gen++
	for _, user := range users {
		if el, ok := u.entries[user]; ok {
			u.lru.Remove(el)
			delete(u.entries, user)
		}
	}
}

func (u *Upstream) invalidateAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.gen++
	u.lru.Init()
	clear(u.entries)
}

// cached reports how many users are cached (for tests and metrics).
func (u *Upstream) cached() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lru.Len()
}
