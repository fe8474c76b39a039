package dm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

// The pending retry (improvement over twisterd, spec pitfall 17): a new
// group key is tried on the posts no key opened so far, so members and
// messages that arrived before the invite are not lost. The work is done
// off the hot paths: registering a key only records a retry job (in the
// same transaction, so it survives a restart) and wakes the worker, which
// scans the pending set in batches in the background. RPC calls and the
// swarm's delivery goroutine never wait for it.

// retryBatch is how many pending posts one step of a retry reads and
// tries: one read transaction, then the trials with no transaction open,
// in chunks of retryChunk posts between which the worker gives way to the
// hot paths (hotWait).
const (
	retryBatch = 512
	retryChunk = 128
)

// hotQuiet is how long after the last hot call the worker stays paused:
// hot calls come in bursts (a swarm's catch-up, a client's requests).
const hotQuiet = 10 * time.Millisecond

// hot marks a call on a hot path (a received post, an RPC that writes) in
// progress; the retry worker pauses between chunks while any is, and for
// hotQuiet after.
func (e *Engine) hot() func() {
	e.hotCalls.Add(1)
	return func() {
		e.hotLast.Store(time.Now().UnixNano())
		e.hotCalls.Add(-1)
	}
}

// hotWait waits until no hot call is in progress or ended within hotQuiet,
// at most a second, so a steady stream slows the retry but cannot stall it;
// not while someone waits in WaitRetries.
func (e *Engine) hotWait(ctx context.Context) {
	deadline := time.Now().Add(time.Second)
	for ctx.Err() == nil && e.retryWaiters.Load() == 0 {
		now := time.Now()
		busy := e.hotCalls.Load() > 0 || now.Sub(time.Unix(0, e.hotLast.Load())) < hotQuiet
		if !busy || now.After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// kickRetry wakes the retry worker, starting it on first use.
func (e *Engine) kickRetry() {
	e.retryOnce.Do(func() { go e.retryLoop() })
	select {
	case e.retryKick <- struct{}{}:
	default:
	}
}

// Close stops the retry worker and waits for it; a job it was running is
// resumed by the next Resume. Close does not close the wallet or store.
func (e *Engine) Close() error {
	e.retryStop()
	e.retryOnce.Do(func() { close(e.retryDone) }) // never started
	<-e.retryDone
	return nil
}

func (e *Engine) retryLoop() {
	defer close(e.retryDone)
	ctx := e.retryCtx
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.retryKick:
		}
		e.retryBusy <- struct{}{}
		err := e.retryPass(ctx)
		<-e.retryBusy
		if err != nil && ctx.Err() == nil {
			e.log.Warn("retrying pending posts with new group keys", "err", err)
		}
	}
}

// WaitRetries returns once no retry job is recorded and the worker is idle
// (tests, and callers that want the recovered messages before they read).
func (e *Engine) WaitRetries(ctx context.Context) error {
	e.retryWaiters.Add(1)
	defer e.retryWaiters.Add(-1)
	for {
		var jobs int
		if err := e.store.View(func(tx *msgstore.Tx) error { jobs = len(tx.Retries()); return nil }); err != nil {
			return fmt.Errorf("wait for retries: %w", err)
		}
		if jobs == 0 && len(e.retryBusy) == 0 {
			return nil
		}
		if jobs > 0 {
			e.kickRetry()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// retryMatch is a pending post a new key opened.
type retryMatch struct {
	p     *twproto.Post
	name  string
	plain []byte
}

// retryPass runs the recorded jobs: every pending post is tried with all
// their keys, the matches are applied in post time order (so recovered
// messages get ids in the order they were written), then the jobs are
// deleted. Interrupted, it is run again in full: applying is idempotent.
func (e *Engine) retryPass(ctx context.Context) error {
	var jobs []string
	if err := e.store.View(func(tx *msgstore.Tx) error { jobs = tx.Retries(); return nil }); err != nil {
		return fmt.Errorf("retry jobs: %w", err)
	}
	if len(jobs) == 0 {
		return nil
	}
	var names []string
	var keys []*twproto.RetryKey // recoded once for the whole pass
	for _, name := range jobs {
		k, err := e.wallet.Key(name)
		if err != nil {
			e.log.Info("retry job for a key no longer in the wallet dropped", "name", name)
			continue
		}
		names, keys = append(names, name), append(keys, twproto.NewRetryKey(k))
	}
	var matches []retryMatch
	var errs []error
	var pos uint64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var refs []msgstore.PostRef
		var raws [][]byte
		var got int
		err := e.store.View(func(tx *msgstore.Tx) error {
			pos = tx.PendingAfter(pos, retryBatch, func(_ uint64, ref msgstore.PostRef) bool {
				got++
				if raw, ok := tx.Post(ref); ok {
					refs, raws = append(refs, ref), append(raws, raw)
				}
				return true
			})
			return nil
		})
		if err != nil {
			return fmt.Errorf("retry: read pending: %w", err)
		}
		// Decoded with no transaction open.
		posts := make([]*twproto.Post, 0, len(raws))
		for i, raw := range raws {
			p, err := twproto.DecodePost(raw)
			if err != nil || !p.IsDM() {
				errs = append(errs, fmt.Errorf("stored post %s/%d: %v", refs[i].Author, refs[i].K, err))
				continue
			}
			posts = append(posts, p)
		}
		if got == 0 {
			break
		}
		for len(posts) > 0 {
			n := min(len(posts), retryChunk)
			matches = append(matches, tryPending(posts[:n], names, keys, func() { e.hotWait(ctx) })...)
			posts = posts[n:]
		}
	}
	slices.SortStableFunc(matches, func(a, b retryMatch) int {
		return cmp.Or(cmp.Compare(a.p.Time, b.p.Time), cmp.Compare(a.p.N, b.p.N), cmp.Compare(a.p.K, b.p.K))
	})
	for _, m := range matches {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := e.commit(ctx, m.p, m.name, m.plain, nil, false); err != nil {
			errs = append(errs, err)
		}
	}
	err := e.store.Update(func(tx *msgstore.Tx) error {
		for _, name := range jobs {
			if err := tx.DeleteRetry(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("retry: delete jobs: %w", err))
	}
	return errors.Join(errs...)
}

// tryPending tries keys on posts, each key on all posts at once
// (twproto.DecryptEach), calling pause before each key; the first key in
// order that opens a post wins, as on the receive path.
func tryPending(posts []*twproto.Post, names []string, keys []*twproto.RetryKey, pause func()) []retryMatch {
	envs := make([]*twproto.Envelope, len(posts))
	for i, p := range posts {
		envs[i] = p.DM
	}
	found := make([]retryMatch, len(posts))
	for ki, k := range keys {
		pause()
		for i, plain := range k.DecryptEach(envs) {
			if plain != nil && found[i].p == nil {
				found[i] = retryMatch{posts[i], names[ki], plain}
				envs[i] = nil // opened: not tried with later keys
			}
		}
	}
	var out []retryMatch
	for _, m := range found {
		if m.p != nil {
			out = append(out, m)
		}
	}
	return out
}
