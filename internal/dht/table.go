package dht

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
)

// Routing constants (dht-swarm §2.9).
const (
	bucketK         = 8
	maxFailCount    = 20
	refreshInterval = 15 * time.Minute
	refreshSpacing  = 45 * time.Second
	pingBackoff     = 10 * time.Second // between maintenance pings of a node
)

// bucketLimit is libtorrent's extended_routing_table: the four farthest
// buckets hold 16, 8, 4 and 2 times k.
func bucketLimit(cpl int) int {
	switch cpl {
	case 0:
		return 16 * bucketK
	case 1:
		return 8 * bucketK
	case 2:
		return 4 * bucketK
	case 3:
		return 2 * bucketK
	}
	return bucketK
}

type tableEntry struct {
	nodeInfo
	lastSeen time.Time
	pinged   bool // answered one of our queries
	fails    int
	pingedAt time.Time // last maintenance ping sent
}

// confirmed is libtorrent's node_entry::confirmed: pinged and not failing.
// Only confirmed nodes are handed out in nodes replies.
func (e *tableEntry) confirmed() bool { return e.pinged && e.fails == 0 }

type bucket struct {
	live, repl []*tableEntry
	lastActive time.Time
}

// table is the routing table: buckets by common prefix length with our id.
// With strict IP rules (twisterd's restrict_routing_ips) it keeps one node
// per IP address and no two nodes of one /24 in a bucket; loopback test
// networks relax both, keyed by IP and port instead.
type table struct {
	mu          sync.Mutex
	own         krpc.ID
	strict      bool
	now         func() time.Time
	buckets     [160]bucket
	ips         map[netip.Addr]int
	lastRefresh time.Time
}

func newTable(own krpc.ID, strict bool, now func() time.Time) *table {
	return &table{own: own, strict: strict, now: now, ips: make(map[netip.Addr]int), lastRefresh: now()}
}

func (t *table) bucketFor(id krpc.ID) *bucket {
	cpl := commonPrefixLen(t.own, id)
	if cpl >= 160 {
		return nil
	}
	return &t.buckets[cpl]
}

// heardAbout records a node that queried us, unverified (node.cpp
// incoming_request: m_table.heard_about).
func (t *table) heardAbout(id krpc.ID, addr netip.AddrPort) {
	t.add(id, addr, false)
}

// nodeSeen records a node that answered us, or proved its address with a
// token.
func (t *table) nodeSeen(id krpc.ID, addr netip.AddrPort) {
	t.add(id, addr, true)
}

func same24(a, b netip.Addr) bool {
	if !a.Is4() || !b.Is4() {
		return a == b
	}
	x, y := a.As4(), b.As4()
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2]
}

func validContact(addr netip.AddrPort) bool {
	return addr.IsValid() && addr.Port() != 0 && !addr.Addr().IsUnspecified() && !addr.Addr().IsMulticast()
}

func (t *table) add(id krpc.ID, addr netip.AddrPort, pinged bool) {
	if !validContact(addr) {
		return
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.bucketFor(id)
	if b == nil {
		return
	}
	now := t.now()
	// Known id: refresh it, never move it to another address.
	for _, list := range [][]*tableEntry{b.live, b.repl} {
		for _, e := range list {
			if e.ID != id {
				continue
			}
			if e.Addr != addr {
				return
			}
			if pinged {
				e.pinged, e.fails, e.lastSeen = true, 0, now
				b.lastActive = now
				t.promoteLocked(b)
			}
			return
		}
	}
	if t.strict {
		if t.ips[addr.Addr()] > 0 {
			return
		}
		for _, list := range [][]*tableEntry{b.live, b.repl} {
			for _, e := range list {
				if same24(e.Addr.Addr(), addr.Addr()) {
					return
				}
			}
		}
	} else {
		// The same endpoint came back with a new id (a restarted node).
		t.removeAddrLocked(addr)
	}
	e := &tableEntry{nodeInfo: nodeInfo{ID: id, Addr: addr}, pinged: pinged}
	if pinged {
		e.lastSeen = now
		b.lastActive = now
	}
	limit := bucketLimit(commonPrefixLen(t.own, id))
	switch {
	case len(b.live) < limit:
		b.live = append(b.live, e)
	case pinged && t.replaceStaleLocked(b, e):
	default:
		if len(b.repl) >= bucketK {
			// Drop the oldest unconfirmed replacement, else the oldest.
			drop := 0
			for i, r := range b.repl {
				if !r.confirmed() {
					drop = i
					break
				}
			}
			t.forgetIPLocked(b.repl[drop].Addr)
			b.repl = slices.Delete(b.repl, drop, drop+1)
		}
		b.repl = append(b.repl, e)
	}
	t.ips[addr.Addr()]++
}

// replaceStaleLocked puts e in place of a live entry that is not confirmed.
func (t *table) replaceStaleLocked(b *bucket, e *tableEntry) bool {
	for i, old := range b.live {
		if !old.confirmed() {
			t.forgetIPLocked(old.Addr)
			b.live[i] = e
			return true
		}
	}
	return false
}

// promoteLocked moves confirmed replacements into free or stale live slots.
func (t *table) promoteLocked(b *bucket) {
	for i := 0; i < len(b.repl); i++ {
		r := b.repl[i]
		if !r.confirmed() {
			continue
		}
		limit := bucketLimit(commonPrefixLen(t.own, r.ID))
		if len(b.live) < limit {
			b.live = append(b.live, r)
		} else {
			placed := false
			for j, old := range b.live {
				if !old.confirmed() {
					b.live[j] = r
					b.repl[i] = old
					placed = true
					break
				}
			}
			if placed {
				continue
			}
			return
		}
		b.repl = slices.Delete(b.repl, i, i+1)
		i--
	}
}

func (t *table) forgetIPLocked(addr netip.AddrPort) {
	if t.ips[addr.Addr()] <= 1 {
		delete(t.ips, addr.Addr())
	} else {
		t.ips[addr.Addr()]--
	}
}

func (t *table) removeAddrLocked(addr netip.AddrPort) {
	for i := range t.buckets {
		b := &t.buckets[i]
		for _, list := range []*[]*tableEntry{&b.live, &b.repl} {
			for j, e := range *list {
				if e.Addr == addr {
					t.forgetIPLocked(addr)
					*list = slices.Delete(*list, j, j+1)
					return
				}
			}
		}
	}
}

// nodeFailed counts a timeout. A never-answering node, or one failing too
// often, is removed; a failing live node gives way to a replacement.
func (t *table) nodeFailed(id krpc.ID, addr netip.AddrPort) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.bucketFor(id)
	if b == nil {
		return
	}
	for j, e := range b.live {
		if e.ID != id || e.Addr != addr {
			continue
		}
		e.fails++
		if !e.pinged || e.fails >= maxFailCount || len(b.repl) > 0 {
			t.forgetIPLocked(e.Addr)
			b.live = slices.Delete(b.live, j, j+1)
			t.promoteLocked(b)
			if len(b.repl) > 0 && len(b.live) < bucketLimit(commonPrefixLen(t.own, id)) {
				b.live = append(b.live, b.repl[len(b.repl)-1])
				b.repl = b.repl[:len(b.repl)-1]
			}
		}
		return
	}
	for j, e := range b.repl {
		if e.ID == id && e.Addr == addr {
			t.forgetIPLocked(e.Addr)
			b.repl = slices.Delete(b.repl, j, j+1)
			return
		}
	}
}

// closest returns up to count live nodes nearest target, closest first.
// It runs for every find_node, getData and announce we answer, so small
// counts keep the best candidates in a fixed-size sorted array instead of
// sorting the whole table (issue #15); ids are unique in the table, so the
// result equals a full sort by XOR distance.
func (t *table) closest(target krpc.ID, count int, onlyConfirmed bool) []nodeInfo {
	if count <= 0 {
		return []nodeInfo{}
	}
	if count > maxSelect {
		return t.closestSorted(target, count, onlyConfirmed)
	}
	var best [maxSelect]distNode
	n := 0
	t.mu.Lock()
	for i := range t.buckets {
		for _, e := range t.buckets[i].live {
			if onlyConfirmed && !e.confirmed() {
				continue
			}
			d := xorDist(e.ID, target)
			if n == count && !d.less(best[n-1].d) {
				continue
			}
			j := n
			if n < count {
				n++
			} else {
				j = n - 1
			}
			for ; j > 0 && d.less(best[j-1].d); j-- {
				best[j] = best[j-1]
			}
			best[j] = distNode{d, e.nodeInfo}
		}
	}
	t.mu.Unlock()
	out := make([]nodeInfo, n)
	for i := range out {
		out[i] = best[i].n
	}
	return out
}

// maxSelect bounds the insertion selection; larger counts (persistence,
// KnownNodes) sort everything.
const maxSelect = 4 * bucketK

type distNode struct {
	d xdist
	n nodeInfo
}

func (t *table) closestSorted(target krpc.ID, count int, onlyConfirmed bool) []nodeInfo {
	t.mu.Lock()
	all := make([]nodeInfo, 0, 64)
	for i := range t.buckets {
		for _, e := range t.buckets[i].live {
			if !onlyConfirmed || e.confirmed() {
				all = append(all, e.nodeInfo)
			}
		}
	}
	t.mu.Unlock()
	sortByDistance(all, target)
	if len(all) > count {
		all = all[:count]
	}
	return all
}

// xdist is the XOR distance as big-endian words: comparing them in order
// equals int160.Cmp on the distance, without building int160 values.
type xdist struct {
	hi, mid uint64
	lo      uint32
}

func xorDist(id, target krpc.ID) xdist {
	be := binary.BigEndian
	return xdist{
		be.Uint64(id[0:]) ^ be.Uint64(target[0:]),
		be.Uint64(id[8:]) ^ be.Uint64(target[8:]),
		be.Uint32(id[16:]) ^ be.Uint32(target[16:]),
	}
}

func (x xdist) less(y xdist) bool {
	if x.hi != y.hi {
		return x.hi < y.hi
	}
	if x.mid != y.mid {
		return x.mid < y.mid
	}
	return x.lo < y.lo
}

func (x xdist) cmp(y xdist) int {
	switch {
	case x.less(y):
		return -1
	case y.less(x):
		return 1
	}
	return 0
}

func sortByDistance(nodes []nodeInfo, target krpc.ID) {
	slices.SortFunc(nodes, func(a, b nodeInfo) int {
		return xorDist(a.ID, target).cmp(xorDist(b.ID, target))
	})
}

// size returns the number of live and of confirmed nodes.
func (t *table) size() (live, confirmed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.buckets {
		for _, e := range t.buckets[i].live {
			live++
			if e.confirmed() {
				confirmed++
			}
		}
	}
	return live, confirmed
}

// toPing returns up to n live nodes to ping: those that never answered
// us, then failing ones and those not heard from for refreshInterval, so
// that dead nodes are confirmed gone and live ones stay confirmed.
func (t *table) toPing(n int) []nodeInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var out []nodeInfo
	for pass := 0; pass < 2; pass++ {
		for i := range t.buckets {
			for _, e := range t.buckets[i].live {
				if len(out) >= n {
					return out
				}
				if now.Sub(e.pingedAt) < pingBackoff {
					continue
				}
				switch {
				case pass == 0 && !e.pinged:
				case pass == 1 && e.pinged && (e.fails > 0 || now.Sub(e.lastSeen) > refreshInterval):
				default:
					continue
				}
				e.pingedAt = now
				out = append(out, e.nodeInfo)
			}
		}
	}
	return out
}

// lookupSeeds is closest for starting a lookup: failing nodes are left
// out while enough others are known.
func (t *table) lookupSeeds(target krpc.ID, count int) []nodeInfo {
	t.mu.Lock()
	var good, failing []nodeInfo
	for i := range t.buckets {
		for _, e := range t.buckets[i].live {
			if e.fails > 0 {
				failing = append(failing, e.nodeInfo)
			} else {
				good = append(good, e.nodeInfo)
			}
		}
	}
	t.mu.Unlock()
	if len(good) < bucketK {
		good = append(good, failing...)
	}
	sortByDistance(good, target)
	if len(good) > count {
		good = good[:count]
	}
	return good
}

// needRefresh picks a bucket idle for refreshInterval (at most one per
// refreshSpacing) and returns a random id inside it to look up.
func (t *table) needRefresh() (krpc.ID, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if now.Sub(t.lastRefresh) < refreshSpacing {
		return krpc.ID{}, false
	}
	deepest := 0
	for i := range t.buckets {
		if len(t.buckets[i].live) > 0 {
			deepest = i
		}
	}
	for cpl := 0; cpl <= deepest; cpl++ {
		b := &t.buckets[cpl]
		if now.Sub(b.lastActive) > refreshInterval {
			b.lastActive = now
			t.lastRefresh = now
			return randomIDInBucket(t.own, cpl), true
		}
	}
	return krpc.ID{}, false
}

// all returns every live node (persistence).
func (t *table) all() []nodeInfo {
	return t.closest(t.ownID(), 1<<30, false)
}

func (t *table) ownID() krpc.ID {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.own
}

// setOwn changes our id (a new external address) and re-files every node.
func (t *table) setOwn(id krpc.ID) {
	t.mu.Lock()
	var entries []*tableEntry
	for i := range t.buckets {
		entries = append(entries, t.buckets[i].live...)
		entries = append(entries, t.buckets[i].repl...)
		t.buckets[i] = bucket{}
	}
	t.own = id
	t.ips = make(map[netip.Addr]int)
	t.mu.Unlock()
	for _, e := range entries {
		t.add(e.ID, e.Addr, e.pinged)
	}
}
