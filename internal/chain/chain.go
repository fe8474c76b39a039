package chain

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/twgroupd/twgroupd/internal/chainwire"
	"github.com/twgroupd/twgroupd/internal/twproto"
	bolt "go.etcd.io/bbolt"
)

// Errors. ErrInvalid means the sender broke a consensus rule (twisterd's
// DoS scores of 10..100: the sync bans such a peer); ErrRejected a block
// that may become acceptable later (timestamp too far in the future);
// ErrOrphan a header whose parent is unknown.
var (
	ErrInvalid  = errors.New("invalid")
	ErrRejected = errors.New("rejected")
	ErrOrphan   = errors.New("previous block unknown")
	ErrNotFound = errors.New("not found")
)

// node status bits.
const (
	stData    uint8 = 1 << iota // body checked, its blockData stored
	stInvalid                   // failed validation; never part of the best chain
)

// maxFutureDrift is CheckBlock's limit on timestamps ahead of the clock.
const maxFutureDrift = 2 * time.Hour

// medianSpan is how many previous blocks GetMedianTimePast looks at.
const medianSpan = 11

// node is one header of the index, kept small (mainnet has hundreds of
// thousands): the full header stays in chain.db.
type node struct {
	hash   chainwire.Hash
	prev   *node
	work   uint256 // cumulative, genesis included
	height int32
	time   uint32
	bits   uint32
	status uint8
}

// Options tune a Chain; the zero value is mainnet behaviour.
type Options struct {
	// NoCheckpoints ignores the hard checkpoints, as twisterd
	// -checkpoints=0 (needed for private chains past height 120).
	NoCheckpoints bool
	Now           func() time.Time
	Logger        *slog.Logger
	// Workers bounds the goroutines computing scrypt for a batch of
	// headers; runtime.NumCPU() if <= 0.
	Workers int
	// CheckAllPoW computes scrypt for headers a hard checkpoint already
	// commits to (see AddHeaders); for benchmarks and the doubtful.
	CheckAllPoW bool
}

// Chain is the validated light chain. Safe for concurrent use.
type Chain struct {
	p    *Params
	opts Options
	log  *slog.Logger
	db   *bolt.DB

	mu      sync.RWMutex
	index   map[chainwire.Hash]*node
	main    []*node // connected chain, main[h].height == h
	best    *node   // most-work header not known invalid
	changed chan struct{}
}

// Tip is a point of the chain.
type Tip struct {
	Height int32
	Hash   chainwire.Hash
	Time   uint32
}

// Open opens (or creates) the chain database at path for network p.
func Open(path string, p *Params, opts Options) (*Chain, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.NumCPU()
	}
	genesis, err := p.GenesisBlock()
	if err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	c := &Chain{p: p, opts: opts, log: opts.Logger, db: db, index: make(map[chainwire.Hash]*node), changed: make(chan struct{})}
	if err := c.load(genesis); err != nil {
		db.Close()
		return nil, fmt.Errorf("chain %s: %w", path, err)
	}
	return c, nil
}

// Close closes the database.
func (c *Chain) Close() error { return c.db.Close() }

// Params returns the network parameters.
func (c *Chain) Params() *Params { return c.p }

func (c *Chain) load(genesis *chainwire.Block) error {
	gh := genesis.Header.Hash()
	return c.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bktMeta, bktHdr, bktBlk, bktMain, bktUser} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bktMeta)
		if g := meta.Get(keyGen); g == nil {
			hb := genesis.Header.Bytes()
			data := newBlockData(genesis)
			if err := meta.Put(keyGen, gh[:]); err != nil {
				return err
			}
			if err := tx.Bucket(bktHdr).Put(gh[:], append(hb[:], stData)); err != nil {
				return err
			}
			if err := tx.Bucket(bktBlk).Put(gh[:], data.encode()); err != nil {
				return err
			}
			if err := tx.Bucket(bktMain).Put(heightKey(0), gh[:]); err != nil {
				return err
			}
		} else if !bytes.Equal(g, gh[:]) {
			return fmt.Errorf("database is for another network (genesis %x)", g)
		}
		// Headers, parents first: nHeight is checked to be prev+1 for
		// every stored header, so sorting by it orders parents first.
		var nodes []*node
		var prevs []chainwire.Hash
		err := tx.Bucket(bktHdr).ForEach(func(k, v []byte) error {
			if len(v) != chainwire.BlockHeaderSize+1 || len(k) != 32 {
				return errCorrupt
			}
			h, err := chainwire.ParseBlockHeader(v[:chainwire.BlockHeaderSize])
			if err != nil {
				return err
			}
			n := &node{height: h.Height, time: h.Time, bits: h.Bits, status: v[chainwire.BlockHeaderSize]}
			copy(n.hash[:], k)
			nodes = append(nodes, n)
			prevs = append(prevs, h.PrevBlock)
			return nil
		})
		if err != nil {
			return err
		}
		order := make([]int, len(nodes))
		for i := range order {
			order[i] = i
		}
		sort.Slice(order, func(i, j int) bool { return nodes[order[i]].height < nodes[order[j]].height })
		for _, i := range order {
			n := nodes[i]
			if n.hash == gh {
				n.work = workOf(n.bits)
			} else {
				prev := c.index[prevs[i]]
				if prev == nil {
					continue // unreachable header: ignore
				}
				n.prev = prev
				n.work = prev.work.add(workOf(n.bits))
				if prev.status&stInvalid != 0 {
					n.status |= stInvalid
				}
			}
			c.index[n.hash] = n
		}
		err = tx.Bucket(bktMain).ForEach(func(k, v []byte) error {
			var h chainwire.Hash
			copy(h[:], v)
			n := c.index[h]
			if n == nil || int(n.height) != len(c.main) || (len(c.main) > 0 && n.prev != c.main[len(c.main)-1]) {
				return fmt.Errorf("%w: main chain at %x", errCorrupt, k)
			}
			c.main = append(c.main, n)
			return nil
		})
		if err != nil {
			return err
		}
		if len(c.main) == 0 {
			return fmt.Errorf("%w: empty main chain", errCorrupt)
		}
		c.best = c.main[len(c.main)-1]
		for _, n := range c.index {
			if n.status&stInvalid == 0 && n.work.cmp(c.best.work) > 0 {
				c.best = n
			}
		}
		return nil
	})
}

// Tip is the connected chain's tip: the height the registry answers for.
func (c *Chain) Tip() Tip {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := c.main[len(c.main)-1]
	return Tip{Height: n.height, Hash: n.hash, Time: n.time}
}

// BestHeader is the most-work valid header known (ahead of Tip while
// bodies are still downloading).
func (c *Chain) BestHeader() Tip {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return Tip{Height: c.best.height, Hash: c.best.hash, Time: c.best.time}
}

// Changed returns a channel closed at the next change of Tip.
func (c *Chain) Changed() <-chan struct{} {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.changed
}

// HashAt is the main chain's block hash at height.
func (c *Chain) HashAt(height int32) (chainwire.Hash, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if height < 0 || int(height) >= len(c.main) {
		return chainwire.Hash{}, false
	}
	return c.main[height].hash, true
}

// HaveHeader reports whether the header is known (valid or not).
func (c *Chain) HaveHeader(h chainwire.Hash) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.index[h] != nil
}

// Locator lists hashes from the best header back to genesis, dense near
// the tip then doubling steps (bitcoin's CBlockLocator).
func (c *Chain) Locator() []chainwire.Hash {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []chainwire.Hash
	step := int32(1)
	for n := c.best; n != nil; {
		out = append(out, n.hash)
		if n.prev == nil {
			break
		}
		if len(out) >= 10 {
			step *= 2
		}
		target := n.height - step
		if target < 0 {
			target = 0
		}
		for n.height > target && n.prev != nil {
			n = n.prev
		}
	}
	return out
}

// AddHeaders validates and stores headers (each one's parent must be known
// or earlier in the slice). The scrypt proofs of work are computed in
// parallel first. It returns how many headers were new; on the first bad
// header it stops with an error wrapping ErrInvalid, ErrRejected or
// ErrOrphan (the good ones before it are kept).
func (c *Chain) AddHeaders(hdrs []chainwire.BlockHeader) (int, error) {
	skip := c.checkpointedPrefix(hdrs)
	pow, err := c.powHashes(hdrs[skip:])
	pow = append(make([]chainwire.Hash, skip), pow...)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	added := 0
	var firstErr error
	err = c.db.Update(func(tx *bolt.Tx) error {
		for i := range hdrs {
			isNew, err := c.addHeaderLocked(tx, &hdrs[i], pow[i])
			if err != nil {
				firstErr = err
				return nil // keep what passed
			}
			if isNew {
				added++
			}
		}
		return nil
	})
	if err != nil {
		return added, fmt.Errorf("store headers: %w", err)
	}
	return added, firstErr
}

// checkpointedPrefix is how many leading headers of hdrs a hard checkpoint
// in the batch commits to: each links by hash to the next, up to one whose
// hash is the checkpoint at its height. sha256d makes them mainnet's own
// headers, so their scrypt is not computed (twisterd does not recheck the
// PoW of its stored index either: main.h CheckIndex); every other rule
// still applies to them. 0 with -checkpoints=0 or CheckAllPoW.
func (c *Chain) checkpointedPrefix(hdrs []chainwire.BlockHeader) int {
	if c.opts.NoCheckpoints || c.opts.CheckAllPoW {
		return 0
	}
	n := 0
	var prev chainwire.Hash
	for i := range hdrs {
		hash := hdrs[i].Hash()
		if i > 0 && hdrs[i].PrevBlock != prev {
			break
		}
		if cp, ok := c.p.Checkpoints[hdrs[i].Height]; ok && cp == hash {
			n = i + 1
		}
		prev = hash
	}
	return n
}

// CheckpointAfter is the lowest hard checkpoint above height h, when
// checkpointed headers skip scrypt (checkpoints on, CheckAllPoW off): a
// syncer may hold headers back until a batch reaches it.
func (c *Chain) CheckpointAfter(h int32) (int32, bool) {
	if c.opts.NoCheckpoints || c.opts.CheckAllPoW {
		return 0, false
	}
	best, ok := int32(0), false
	for cp := range c.p.Checkpoints {
		if cp > h && (!ok || cp < best) {
			best, ok = cp, true
		}
	}
	return best, ok
}

func (c *Chain) powHashes(hdrs []chainwire.BlockHeader) ([]chainwire.Hash, error) {
	out := make([]chainwire.Hash, len(hdrs))
	errs := make([]error, len(hdrs))
	var wg sync.WaitGroup
	next := make(chan int)
	workers := min(c.opts.Workers, len(hdrs))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i], errs[i] = PoWHash(&hdrs[i], c.p.ScryptN)
			}
		}()
	}
	for i := range hdrs {
		next <- i
	}
	close(next)
	wg.Wait()
	return out, errors.Join(errs...)
}

// addHeaderLocked is AcceptBlock's header part plus CheckBlock's proof of
// work and timestamp checks.
func (c *Chain) addHeaderLocked(tx *bolt.Tx, h *chainwire.BlockHeader, pow chainwire.Hash) (bool, error) {
	hash := h.Hash()
	if n := c.index[hash]; n != nil {
		if n.status&stInvalid != 0 {
			return false, fmt.Errorf("%w: header %s is known invalid", ErrInvalid, hash)
		}
		return false, nil
	}
	prev := c.index[h.PrevBlock]
	if prev == nil {
		return false, fmt.Errorf("%w: %s (parent of %s)", ErrOrphan, h.PrevBlock, hash)
	}
	if prev.status&stInvalid != 0 {
		return false, fmt.Errorf("%w: %s builds on an invalid block", ErrInvalid, hash)
	}
	height := prev.height + 1
	// pow is zero for a header a checkpoint commits to (checkpointedPrefix):
	// the target's range is still checked.
	if err := checkProofOfWork(pow, h.Bits, c.p.PowLimit); err != nil {
		return false, fmt.Errorf("header %s at %d: %w", hash, height, err)
	}
	if want := c.nextWorkRequired(prev); h.Bits != want {
		return false, fmt.Errorf("%w: header %s at %d: nBits %08x, want %08x (incorrect proof of work)", ErrInvalid, hash, height, h.Bits, want)
	}
	if h.Version < 2 {
		return false, fmt.Errorf("%w: header %s: nVersion %d", ErrInvalid, hash, h.Version)
	}
	if h.Height != height {
		return false, fmt.Errorf("%w: header %s: nHeight %d at height %d", ErrInvalid, hash, h.Height, height)
	}
	if int64(h.Time) <= medianTimePast(prev) {
		return false, fmt.Errorf("%w: header %s: timestamp too early", ErrInvalid, hash)
	}
	if time.Unix(int64(h.Time), 0).After(c.opts.Now().Add(maxFutureDrift)) {
		return false, fmt.Errorf("%w: header %s: timestamp too far in the future", ErrRejected, hash)
	}
	if !c.opts.NoCheckpoints {
		if cp, ok := c.p.Checkpoints[height]; ok && cp != hash {
			return false, fmt.Errorf("%w: header %s rejected by checkpoint lock-in at %d", ErrInvalid, hash, height)
		}
		// A new header at or below a checkpoint we have connected forks
		// the chain below it: never followed, so not worth storing (bitcoin
		// 0.8 refuses such forks in ProcessBlock too).
		if last := c.lastCheckpointLocked(); height <= last {
			return false, fmt.Errorf("%w: header %s at %d forks below the checkpoint at %d", ErrInvalid, hash, height, last)
		}
	}
	hb := h.Bytes()
	if err := tx.Bucket(bktHdr).Put(hash[:], append(hb[:], 0)); err != nil {
		return false, err
	}
	n := &node{hash: hash, prev: prev, height: height, time: h.Time, bits: h.Bits, work: prev.work.add(workOf(h.Bits))}
	c.index[hash] = n
	if n.work.cmp(c.best.work) > 0 {
		c.best = n
	}
	return true, nil
}

// lastCheckpointLocked is the highest checkpoint height on the connected
// chain (-1: none).
func (c *Chain) lastCheckpointLocked() int32 {
	last := int32(-1)
	tip := int32(len(c.main) - 1)
	for h := range c.p.Checkpoints {
		if h <= tip && h > last {
			last = h
		}
	}
	return last
}

func medianTimePast(n *node) int64 {
	times := make([]int64, 0, medianSpan)
	for ; n != nil && len(times) < medianSpan; n = n.prev {
		times = append(times, int64(n.time))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return times[len(times)/2]
}

// MissingBlocks lists up to max block hashes on the best header chain
// whose bodies are not stored yet, lowest first, skipping those in skip.
func (c *Chain) MissingBlocks(max int, skip func(chainwire.Hash) bool) []chainwire.Hash {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var path []*node
	for n := c.best; n != nil && !c.onMainLocked(n); n = n.prev {
		path = append(path, n)
	}
	var out []chainwire.Hash
	for i := len(path) - 1; i >= 0 && len(out) < max; i-- {
		if path[i].status&stData == 0 && (skip == nil || !skip(path[i].hash)) {
			out = append(out, path[i].hash)
		}
	}
	return out
}

func (c *Chain) onMainLocked(n *node) bool {
	return int(n.height) < len(c.main) && c.main[n.height] == n
}

// AddBlocks validates and stores block bodies and moves the tip as far as
// the stored bodies allow, reorganizing to the most-work chain. A block
// with an unknown header has its header validated first. It stops at the
// first invalid block (error wrapping ErrInvalid); earlier ones are kept.
func (c *Chain) AddBlocks(blocks []*chainwire.Block) error {
	var firstErr error
	for _, b := range blocks {
		if c.HaveHeader(b.Header.Hash()) {
			continue
		}
		if _, err := c.AddHeaders([]chainwire.BlockHeader{b.Header}); err != nil {
			firstErr = err
			break
		}
	}
	c.mu.Lock()
	oldTip := c.main[len(c.main)-1]
	err := c.db.Update(func(tx *bolt.Tx) error {
		for _, b := range blocks {
			n := c.index[b.Header.Hash()]
			if n == nil || n.status&(stData|stInvalid) != 0 {
				continue
			}
			if err := checkBody(c.p, b); err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("block %s at %d: %w", n.hash, n.height, err)
				}
				// A bad body under a good header: the header may be
				// fine with another body, so only this peer is at fault.
				break
			}
			data := newBlockData(b)
			if err := tx.Bucket(bktBlk).Put(n.hash[:], data.encode()); err != nil {
				return err
			}
			if err := c.setStatus(tx, n, n.status|stData); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = c.activateBestLocked()
	}
	changed := c.main[len(c.main)-1] != oldTip
	if changed {
		close(c.changed)
		c.changed = make(chan struct{})
	}
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("store blocks: %w", err)
	}
	return firstErr
}

func (c *Chain) setStatus(tx *bolt.Tx, n *node, st uint8) error {
	b := tx.Bucket(bktHdr)
	v := bytes.Clone(b.Get(n.hash[:]))
	if len(v) != chainwire.BlockHeaderSize+1 {
		return fmt.Errorf("%w: header %s", errCorrupt, n.hash)
	}
	v[chainwire.BlockHeaderSize] = st
	if err := b.Put(n.hash[:], v); err != nil {
		return err
	}
	n.status = st
	return nil
}

// activateBestLocked is ConnectBestBlock/SetBestChain: connect the best
// chain as far as bodies are stored, if that has more work than the tip
// (or extends it). A block failing to connect (an overwritten username
// without a valid replacement signature) is marked invalid with its
// descendants and the best chain chosen again.
func (c *Chain) activateBestLocked() error {
	for {
		tip := c.main[len(c.main)-1]
		var path []*node // best chain above the fork point, highest first
		fork := c.best
		for ; !c.onMainLocked(fork); fork = fork.prev {
			path = append(path, fork)
		}
		// Longest prefix of the branch with bodies.
		k := len(path)
		for k > 0 && path[k-1].status&stData != 0 {
			k--
		}
		// path[k:] (reversed) is connectable; its top is path[k].
		if k == len(path) {
			return nil
		}
		target := path[k]
		if fork != tip && target.work.cmp(tip.work) <= 0 {
			return nil // the branch's connectable part is not heavier yet
		}
		var bad *node
		var badErr error
		var connected []*node
		err := c.db.Update(func(tx *bolt.Tx) error {
			for h := tip.height; h > fork.height; h-- {
				if err := c.disconnect(tx, c.main[h]); err != nil {
					return err
				}
			}
			for i := len(path) - 1; i >= k; i-- {
				if err := c.connect(tx, path[i]); err != nil {
					if errors.Is(err, ErrInvalid) {
						bad, badErr = path[i], err
						return err // roll the whole reorg back
					}
					return err
				}
				connected = append(connected, path[i])
			}
			return nil
		})
		if bad != nil {
			c.log.Warn("chain: invalid block", "height", bad.height, "hash", bad.hash.String(), "err", badErr)
			if err := c.markInvalidLocked(bad); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if fork != tip {
			c.log.Info("chain: reorganized", "fork", fork.height, "old_tip", tip.height, "new_tip", target.height)
		}
		c.main = append(c.main[:fork.height+1], connected...)
	}
}

// markInvalidLocked marks n and every known descendant invalid and picks
// the best header again.
func (c *Chain) markInvalidLocked(bad *node) error {
	var above []*node
	for _, n := range c.index {
		if n.height >= bad.height {
			above = append(above, n)
		}
	}
	sort.Slice(above, func(i, j int) bool { return above[i].height < above[j].height })
	return c.db.Update(func(tx *bolt.Tx) error {
		for _, n := range above {
			if n == bad || (n.prev != nil && n.prev.status&stInvalid != 0 && n.prev.height >= bad.height) {
				if err := c.setStatus(tx, n, n.status|stInvalid); err != nil {
					return err
				}
			}
		}
		c.best = c.main[len(c.main)-1]
		for _, n := range c.index {
			if n.status&stInvalid == 0 && n.work.cmp(c.best.work) > 0 {
				c.best = n
			}
		}
		return nil
	})
}

// connect applies a block's registrations to the user index (ConnectBlock:
// a name already registered may only get a key signed by its current key).
func (c *Chain) connect(tx *bolt.Tx, n *node) error {
	raw := tx.Bucket(bktBlk).Get(n.hash[:])
	data, err := decodeBlockData(raw)
	if err != nil {
		return fmt.Errorf("block %s: %w", n.hash, err)
	}
	users := tx.Bucket(bktUser)
	if err := checkSpamSig(users, data); err != nil {
		return fmt.Errorf("%w: block %s at %d: %v", ErrInvalid, n.hash, n.height, err)
	}
	for _, r := range data.Records {
		old := users.Get([]byte(r.User))
		if old != nil {
			es, err := decodeEntries(old)
			if err != nil {
				return fmt.Errorf("user %q: %w", r.User, err)
			}
			if err := checkReplacement(es[len(es)-1], r); err != nil {
				return fmt.Errorf("%w: block %s at %d: user %q: %v (tried to overwrite transaction)", ErrInvalid, n.hash, n.height, r.User, err)
			}
		}
		e := appendEntry(bytes.Clone(old), Entry{Height: n.height, Block: n.hash, PubKey: r.PubKey, Tx: r.Tx})
		if err := users.Put([]byte(r.User), e); err != nil {
			return err
		}
	}
	return tx.Bucket(bktMain).Put(heightKey(n.height), n.hash[:])
}

// checkSpamSig is ConnectBlock's spam check: unless the spam user is
// "nobody", tx[0] carries a compact signature of its message script by
// the user's key as of the previous blocks (this block's own registrations
// are indexed only after the check).
func checkSpamSig(users *bolt.Bucket, d *blockData) error {
	if d.Spam.User == "nobody" {
		return nil
	}
	if len(d.SpamSig) == 0 {
		return errors.New("spam signature missing")
	}
	v := users.Get([]byte(d.Spam.User))
	if v == nil {
		return fmt.Errorf("spam signed by unknown user %q", d.Spam.User)
	}
	es, err := decodeEntries(v)
	if err != nil || len(es) == 0 {
		return fmt.Errorf("user %q: %v", d.Spam.User, err)
	}
	rec, err := twproto.RecoverPubKey(d.SpamScript, d.SpamSig)
	if err != nil {
		return fmt.Errorf("RecoverCompact failed for spammsg: %v", err)
	}
	if !bytes.Equal(rec, es[len(es)-1].PubKey) {
		return errors.New("spam signature verification failed")
	}
	return nil
}

// checkReplacement is verifyDuplicateOrReplacementTx: the same tx again,
// or a new key whose compact signature recovers to the current key.
func checkReplacement(cur Entry, r Record) error {
	if bytes.Equal(cur.Tx, r.Tx) {
		return nil
	}
	if r.Sig == nil {
		return errors.New("name taken and no replacement signature")
	}
	rec, err := twproto.RecoverPubKey(r.PubKey, r.Sig)
	if err != nil {
		return fmt.Errorf("replacement signature: %w", err)
	}
	if !bytes.Equal(rec, cur.PubKey) {
		return errors.New("replacement not signed by the current key")
	}
	return nil
}

// disconnect undoes connect for the main chain's tip block.
func (c *Chain) disconnect(tx *bolt.Tx, n *node) error {
	data, err := decodeBlockData(tx.Bucket(bktBlk).Get(n.hash[:]))
	if err != nil {
		return fmt.Errorf("block %s: %w", n.hash, err)
	}
	users := tx.Bucket(bktUser)
	for _, r := range data.Records {
		es, err := decodeEntries(users.Get([]byte(r.User)))
		if err != nil {
			return fmt.Errorf("user %q: %w", r.User, err)
		}
		if len(es) > 0 && es[len(es)-1].Height == n.height {
			es = es[:len(es)-1]
		}
		if len(es) == 0 {
			err = users.Delete([]byte(r.User))
		} else {
			err = users.Put([]byte(r.User), encodeEntries(es))
		}
		if err != nil {
			return err
		}
	}
	return tx.Bucket(bktMain).Delete(heightKey(n.height))
}

// UserEntries returns a user's keys on the main chain, ascending height
// (ErrNotFound if the name was never registered).
func (c *Chain) UserEntries(user string) ([]Entry, error) {
	var es []Entry
	err := c.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bktUser).Get([]byte(user))
		if v == nil {
			return ErrNotFound
		}
		var err error
		es, err = decodeEntries(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", user, err)
	}
	return es, nil
}

// BlockInfo is what the chain keeps of a main-chain block.
type BlockInfo struct {
	Header chainwire.BlockHeader
	Hash   chainwire.Hash
	Height int32
	Size   int
	OnMain bool           // part of the connected chain
	Next   chainwire.Hash // the next main-chain block; zero at the tip or off the main chain
	Spam   Spam
	TxIDs  []chainwire.Hash
	Users  []string // usernames registered or re-keyed in the block
}

// Block returns what is kept of the block with hash (main chain or not,
// if its body was stored).
func (c *Chain) Block(hash chainwire.Hash) (*BlockInfo, error) {
	c.mu.RLock()
	n := c.index[hash]
	var onMain bool
	var next chainwire.Hash
	if n != nil {
		onMain = c.onMainLocked(n)
		if onMain && int(n.height)+1 < len(c.main) {
			next = c.main[n.height+1].hash
		}
	}
	c.mu.RUnlock()
	if n == nil || n.status&stData == 0 {
		return nil, fmt.Errorf("block %s: %w", hash, ErrNotFound)
	}
	var data *blockData
	var hdr chainwire.BlockHeader
	err := c.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bktHdr).Get(hash[:])
		if len(v) != chainwire.BlockHeaderSize+1 {
			return errCorrupt
		}
		var err error
		if hdr, err = chainwire.ParseBlockHeader(v[:chainwire.BlockHeaderSize]); err != nil {
			return err
		}
		data, err = decodeBlockData(tx.Bucket(bktBlk).Get(hash[:]))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("block %s: %w", hash, err)
	}
	bi := &BlockInfo{Header: hdr, Hash: n.hash, Height: n.height, Size: int(data.Size), OnMain: onMain, Next: next, Spam: data.Spam, TxIDs: data.TxIDs}
	for _, r := range data.Records {
		bi.Users = append(bi.Users, r.User)
	}
	return bi, nil
}

// UsersWithPrefix lists up to limit registered usernames starting with
// prefix, in byte order (twisterd walks its name index the same way).
func (c *Chain) UsersWithPrefix(prefix string, limit int) ([]string, error) {
	var out []string
	err := c.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bktUser).Cursor()
		for k, _ := cur.Seek([]byte(prefix)); k != nil && len(out) < limit && bytes.HasPrefix(k, []byte(prefix)); k, _ = cur.Next() {
			out = append(out, string(k))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("users with prefix %q: %w", prefix, err)
	}
	return out, nil
}
