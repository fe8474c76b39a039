package swarm

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"time"
)

// Discovery runs on one scheduler goroutine for all swarms, not one
// goroutine and timer per swarm: a node following 10,000 users whose
// swarms hold nothing keeps 10,000 heap entries, and wakes only when the
// next swarm is due. Each round (FindPeers, then AnnouncePeer when due)
// runs on one of at most maxLookups goroutines.
//
// Schedule per swarm (as twisterd's dht_announce_interval, dht-swarm
// §4.1, §4.10): a lookup and announce when the swarm starts, again every
// AnnounceInterval (15 min). A starving swarm (no connection, no address
// that has not failed twice) asks again after 2 s, doubling up to 2 min;
// one that stays starving past that doubles on up to AnnounceInterval, so
// users with nobody in their swarm cost a lookup every 15 min, not every
// 2 min. A connected swarm is looked at every healthCheck (a cheap check,
// no DHT work) to notice when it starves. Every wait is jittered by up to
// 1/8 so swarms joined together do not ask together.

// discHeap orders swarms by their next discovery time (s.mu held).
type discHeap []*torrent

func (h discHeap) Len() int           { return len(h) }
func (h discHeap) Less(i, j int) bool { return h[i].discAt.Before(h[j].discAt) }
func (h discHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].discIdx, h[j].discIdx = i, j
}
func (h *discHeap) Push(x any) {
	t := x.(*torrent)
	t.discIdx = len(*h)
	*h = append(*h, t)
}
func (h *discHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.discIdx = -1
	return t
}

// scheduleDiscovery puts t in the queue at at (s.mu held).
func (s *Swarm) scheduleDiscovery(t *torrent, at time.Time) {
	t.discAt = at
	if t.discIdx >= 0 {
		heap.Fix(&s.discQ, t.discIdx)
	} else {
		heap.Push(&s.discQ, t)
	}
	select {
	case s.discWake <- struct{}{}:
	default:
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + rand.N(d/8+1)
}

// discoverLoop is the scheduler: it pops due swarms and runs their rounds.
func (s *Swarm) discoverLoop() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		var due *torrent
		wait := time.Hour
		if len(s.discQ) > 0 {
			if d := time.Until(s.discQ[0].discAt); d <= 0 {
				due = heap.Pop(&s.discQ).(*torrent)
			} else {
				wait = d
			}
		}
		s.mu.Unlock()
		if due != nil {
			if !s.discoverStep(due) {
				return
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-s.ctx.Done():
			return
		case <-s.discWake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
}

// discoverStep handles one due swarm: a cheap health check, or a DHT round
// in the background. It reports false when the swarm is closing.
func (s *Swarm) discoverStep(t *torrent) bool {
	now := time.Now()
	s.mu.Lock()
	starving := t.starving()
	// A failed announce is retried at the backoff of a starving swarm:
	// others find us only through it (a node started before its DHT
	// bootstrap peer failed its first announces and waited 15 min).
	round := t.lookedUp.IsZero() || starving || now.Sub(t.lookedUp) >= s.cfg.AnnounceInterval || t.announceFailures > 0
	if !round {
		t.backoff = minLookupWait
		s.scheduleDiscovery(t, now.Add(jitter(min(healthCheck, s.cfg.AnnounceInterval))))
		s.mu.Unlock()
		return true
	}
	if (starving || t.announceFailures > 0) && !t.lookedUp.IsZero() {
		t.backoff = min(t.backoff*2, max(maxLookupWait, s.cfg.AnnounceInterval))
		if t.backoff > maxLookupWait && now.Sub(t.lookedUp) < maxLookupWait {
			t.backoff = maxLookupWait
		}
	}
	s.mu.Unlock()
	// At most maxLookups swarms ask the DHT at once: following 100 users
	// must not start 200 traversals in the same instant.
	if !s.lookupSlot(s.ctx) {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.lookups }()
		t.discoverRound(s.ctx)
	}()
	return true
}

// discoverRound is one lookup (and announce when due) for t, holding a
// lookup slot; then t is queued again.
func (t *torrent) discoverRound(ctx context.Context) {
	s := t.s
	// Until the DHT answers (a lookup waits out its slowest query, up to
	// 8 s, and DHT nodes cap their replies at 16 kB/s), try peers of our
	// other swarms: followers of one user mostly follow the same others.
	t.borrowCandidates()
	t.reconnect(time.Now())
	fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	peers, err := s.cfg.Finder.FindPeers(fctx, t.ih)
	cancel()
	if err != nil && ctx.Err() == nil {
		s.log.Debug("find peers", "user", t.user, "err", err)
	}
	t.addCandidates(peers)
	t.reconnect(time.Now())
	s.mu.Lock()
	announce := time.Since(t.lastAnnounce) >= s.cfg.AnnounceInterval
	s.mu.Unlock()
	announced := false
	if announce && ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := s.cfg.Finder.AnnouncePeer(fctx, t.ih, s.cfg.AnnouncePort)
		if err != nil && ctx.Err() == nil {
			s.log.Debug("announce", "user", t.user, "err", err)
		}
		announced = err == nil
		cancel()
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case announced:
		t.lastAnnounce = now
		t.announceFailures = 0
	case announce:
		t.announceFailures++
	}
	t.lookedUp = now
	if s.closed {
		return
	}
	wait := min(healthCheck, s.cfg.AnnounceInterval)
	if t.starving() || t.announceFailures > 0 {
		wait = t.backoff
	}
	s.scheduleDiscovery(t, now.Add(jitter(wait)))
}

// activate puts t in the set the tick visits (s.mu held).
func (t *torrent) activate() { t.s.active[t] = struct{}{} }

// deactivateIfIdle drops t from the tick's set when it has nothing to
// dial, wait for or talk to (s.mu held); a new address or connection
// activates it again.
func (t *torrent) deactivateIfIdle() {
	if len(t.peers) == 0 && len(t.dialingTo) == 0 && len(t.candidates) == 0 && len(t.inflight) == 0 {
		delete(t.s.active, t)
	}
}
