package swarm

import (
	"net"
	"net/netip"
	"time"
)

// Admission limits (docs/swarm.md "Limits").
const (
	// maxPendingHandshakes bounds accepted connections still in the
	// handshake, so a connection flood costs a bounded number of goroutines.
	maxPendingHandshakes = 256
	// defaultMaxPendingPerIP bounds one IP's share of those slots, so one
	// host holding half-open connections leaves the rest to others.
	defaultMaxPendingPerIP = 8
	// defaultBanTime: twisterd's -bantime (24 h). twisterd's own swarm bans
	// last until restart; ours expire so a reassigned address recovers.
	defaultBanTime = 24 * time.Hour
	// maxBansPerSwarm bounds the ban list; past it the ban ending first
	// goes.
	maxBansPerSwarm = 1024
	// portInterval: a peer's PORT messages reach the DHT at most once a
	// minute per connection (twisterd pings on every one).
	portInterval = time.Minute
)

func remoteIP(c net.Conn) netip.Addr {
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return ap.Addr().Unmap()
}

// admitPending takes a handshake slot for c; s.mu is held.
func (s *Swarm) admitPending(c net.Conn) bool {
	ip := remoteIP(c)
	if len(s.incoming) >= maxPendingHandshakes || s.pendingByIP[ip] >= s.cfg.MaxPendingPerIP {
		return false
	}
	s.incoming[c] = struct{}{}
	s.pendingByIP[ip]++
	return true
}

// endPending releases c's handshake slot (once; later calls do nothing).
func (s *Swarm) endPending(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.incoming[c]; !ok {
		return
	}
	delete(s.incoming, c)
	ip := remoteIP(c)
	if s.pendingByIP[ip]--; s.pendingByIP[ip] <= 0 {
		delete(s.pendingByIP, ip)
	}
}

// ipTaken reports whether, without MultiConnPerIP, ip may not have one
// more connection in t: it holds one to a peer other than id (twisterd:
// one connection per IP per torrent unless -multiconnperip), or
// MaxConnsPerIP over all swarms. s.mu is held.
func (t *torrent) ipTaken(ip netip.Addr, id [20]byte) bool {
	if t.s.cfg.MultiConnPerIP {
		return false
	}
	ip = ip.Unmap()
	if t.s.connsByIP[ip] >= t.s.cfg.MaxConnsPerIP {
		return true
	}
	for q := range t.peers {
		if q.remote.Addr().Unmap() == ip && q.hs.PeerID != id && !q.closing && !q.isClosed() {
			return true
		}
	}
	return false
}

// countConn adds d to ip's registered connections; s.mu is held.
func (s *Swarm) countConn(ip netip.Addr, d int) {
	ip = ip.Unmap()
	if s.connsByIP[ip] += d; s.connsByIP[ip] <= 0 {
		delete(s.connsByIP, ip)
	}
}

// isBanned reports a live ban on key (a peer id or a banKey); expired
// bans are forgotten. s.mu is held.
func (t *torrent) isBanned(key string, now time.Time) bool {
	until, ok := t.banned[key]
	if !ok {
		return false
	}
	if now.Before(until) {
		return true
	}
	delete(t.banned, key)
	return false
}

// addBan bans key until now+BanTime; s.mu is held.
func (t *torrent) addBan(key string, now time.Time) {
	if _, ok := t.banned[key]; !ok && len(t.banned) >= maxBansPerSwarm {
		first := ""
		var firstEnd time.Time
		for k, until := range t.banned {
			if !now.Before(until) {
				delete(t.banned, k)
				continue
			}
			if first == "" || until.Before(firstEnd) {
				first, firstEnd = k, until
			}
		}
		if len(t.banned) >= maxBansPerSwarm {
			delete(t.banned, first)
		}
	}
	if t.banned == nil {
		t.banned = map[string]time.Time{}
	}
	t.banned[key] = now.Add(t.s.cfg.BanTime)
}

// liveBans counts bans not yet expired; s.mu is held.
func (t *torrent) liveBans(now time.Time) int {
	n := 0
	for _, until := range t.banned {
		if now.Before(until) {
			n++
		}
	}
	return n
}
