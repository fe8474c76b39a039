package swarm

import (
	"net/netip"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Saved peers (bucket "peers" next to the swarm's others, store.go:
// user -> listen addresses, one per line): the addresses we were connected to in each swarm, redialed first
// at the next start, before the DHT answers (issue: a restarted pair must
// find each other again without waiting for a lookup).
var bucketPeers = []byte("peers")

const (
	maxSavedPeers     = 16
	savePeersInterval = 30 * time.Second
)

func peersText(addrs []netip.AddrPort) string {
	var b strings.Builder
	for _, a := range addrs {
		b.WriteString(a.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// peersToSave lists, per swarm whose list changed, the listen addresses
// of connected peers and then of those connected most recently, at most
// maxSavedPeers (s.mu held). It records the lists as saved.
func (s *Swarm) peersToSave() map[string]string {
	out := map[string]string{}
	for t := range s.active { // nothing to save for the others
		user := t.user
		seen := map[netip.AddrPort]bool{}
		var addrs []netip.AddrPort
		for p := range t.peers {
			if p.listenKnown && !p.closing && !seen[p.listen] && len(addrs) < maxSavedPeers {
				seen[p.listen] = true
				addrs = append(addrs, p.listen)
			}
		}
		type ac struct {
			a  netip.AddrPort
			at time.Time
		}
		var rest []ac
		for a, c := range t.candidates {
			if !c.lastConnected.IsZero() && !c.self && !seen[a] {
				rest = append(rest, ac{a, c.lastConnected})
			}
		}
		sort.Slice(rest, func(i, j int) bool { return rest[i].at.After(rest[j].at) })
		for _, r := range rest {
			if len(addrs) >= maxSavedPeers {
				break
			}
			addrs = append(addrs, r.a)
		}
		if len(addrs) == 0 {
			continue // keep what an earlier session saved
		}
		sort.Slice(addrs, func(i, j int) bool { return addrs[i].Compare(addrs[j]) < 0 })
		txt := peersText(addrs)
		if txt != t.savedPeers {
			out[user] = txt
			t.savedPeers = txt
		}
	}
	return out
}

func (s *store) savePeers(lists map[string]string) error {
	if len(lists) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := s.root(tx).CreateBucketIfNotExists(bucketPeers)
		if err != nil {
			return err
		}
		for user, txt := range lists {
			if err := b.Put([]byte(user), []byte(txt)); err != nil {
				return err
			}
		}
		return nil
	})
}

// loadPeers reads user's saved addresses; unparsable lines are skipped.
func (s *store) loadPeers(user string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	err := s.db.View(func(tx *bolt.Tx) error {
		b := s.root(tx).Bucket(bucketPeers)
		if b == nil {
			return nil
		}
		out = parsePeers(b.Get([]byte(user)))
		return nil
	})
	return out, err
}

// parsePeers reads a saved list: at most maxSavedPeers addresses, lines
// that do not parse skipped.
func parsePeers(b []byte) []netip.AddrPort {
	var out []netip.AddrPort
	for _, line := range strings.Split(string(b), "\n") {
		if len(out) == maxSavedPeers {
			break
		}
		if a, err := netip.ParseAddrPort(line); err == nil && a.Port() != 0 {
			out = append(out, a)
		}
	}
	return out
}

// saveSwarms records the swarms joined since the last call in one commit.
func (s *Swarm) saveSwarms() {
	s.mu.Lock()
	users := make([]string, 0, len(s.unsaved))
	for u := range s.unsaved {
		users = append(users, u)
	}
	clear(s.unsaved)
	s.mu.Unlock()
	if len(users) == 0 {
		return
	}
	err := s.store.db.Update(func(tx *bolt.Tx) error {
		b := s.store.root(tx).Bucket(bucketSwarms)
		for _, u := range users {
			if err := b.Put([]byte(u), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.log.Error("record joined swarms", "err", err)
		s.mu.Lock()
		for _, u := range users {
			s.unsaved[u] = true
		}
		s.mu.Unlock()
	}
}
