package dht

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// Storage constants (dht-swarm §2.9, §3.3, §3.4).
const (
	maxEntriesPerMulti = 32
	maxTorrents        = 2000
	maxPeersReply      = 100
	peerLifetime       = 45 * time.Minute // announce_interval 30 min × 1.5
	refreshConfirmed   = 60 * time.Minute
	refreshUnconfirmed = 1 * time.Minute
	localRecent        = 48 * time.Hour

	maxPeersPerTorrent   = 1000
	defaultMaxStoreBytes = 64 << 20

	blockAgeToExpireDHTEntry = 2016 // ~2 weeks (twister.h)
	blockAgeToExpireDHTPosts = 8640 // ~2 months
)

// storedItem is one signed item as served: raw is the canonical item dict
// {p, sig_p, sig_user}; p, v and sig_p are located in it by offsets (an
// item is at most ~8.3 KB), which keeps the per-item overhead small.
type storedItem struct {
	raw            []byte
	pEnd           uint16 // p is raw[4:pEnd]
	vOff, vEnd     uint16
	sigOff, sigEnd uint16
	nvalues        uint16 // bencoded values in raw, for the reply budget
	multi          bool
	confirmed      bool
	sigUser        string
	user, resource string // target n and r
	seq, height    int64
	localAdd       int64 // unix seconds, 0 when learned from the network
	nextRefresh    int64 // unix nanoseconds
}

// newStoredItem wraps a parsed p and its signature. Callers bound p to
// twproto.MaxDHTSingleP.
func newStoredItem(p *twproto.DHTP, sigP []byte, sigUser string) *storedItem {
	raw := twproto.EncodeDHTItem(p.Raw, sigP, sigUser)
	// raw is "d1:p" + p + "5:sig_p" + len + ":" + sig + ...
	// p.V is a copy; any occurrence of its bytes in p is the same value,
	// which is all the multi dedup compares.
	vOff := 4 + bytes.Index(p.Raw, p.V)
	sigOff := 4 + len(p.Raw) + len("5:sig_p") + len(strconv.Itoa(len(sigP))) + 1
	nvalues, _ := checkBencode(raw, 64, 1<<16)
	return &storedItem{
		raw:      raw,
		pEnd:     uint16(4 + len(p.Raw)),
		vOff:     uint16(vOff),
		vEnd:     uint16(vOff + len(p.V)),
		sigOff:   uint16(sigOff),
		sigEnd:   uint16(sigOff + len(sigP)),
		nvalues:  uint16(nvalues),
		multi:    p.Target.Multi(),
		sigUser:  sigUser,
		user:     p.Target.N,
		resource: p.Target.R,
		seq:      p.Seq,
		height:   p.Height,
	}
}

func (it *storedItem) p() []byte    { return it.raw[4:it.pEnd] }
func (it *storedItem) v() []byte    { return it.raw[it.vOff:it.vEnd] }
func (it *storedItem) sigP() []byte { return it.raw[it.sigOff:it.sigEnd] }

func (it *storedItem) target() twproto.DHTTarget {
	t := twproto.DHTTarget{N: it.user, R: it.resource, T: "s"}
	if it.multi {
		t.T = "m"
	}
	return t
}

// itemStore is the signed storage table (node.cpp m_storage_table).
// Its size is bounded by maxBytes of item dicts (twisterd's max_dht_items
// is a FIXME there); our own items are always kept.
type itemStore struct {
	mu       sync.Mutex
	m        map[[20]byte][]*storedItem
	dirty    map[[20]byte]struct{}
	bytes    int
	maxBytes int
	posts    map[string]postStats // by user, for republish thinning
}

// postStats is twisterd's m_posts_by_user: post<k> items seen for a user
// and the highest k.
type postStats struct{ total, last int }

func newItemStore(maxBytes int) *itemStore {
	return &itemStore{
		m:        make(map[[20]byte][]*storedItem),
		dirty:    make(map[[20]byte]struct{}),
		maxBytes: maxBytes,
		posts:    make(map[string]postStats),
	}
}

// fullLocked reports whether it does not fit; replaced bytes are freed.
func (s *itemStore) fullLocked(it *storedItem, freed int) bool {
	return it.localAdd == 0 && s.bytes-freed+len(it.raw) > s.maxBytes
}

// store applies twisterd's store_dht_item rules (dht-swarm §3.3): a single
// is replaced only by a strictly higher seq; a multi list drops a value
// already present byte for byte, keeps newest height first and at most 32
// entries. It reports whether the item was stored.
func (s *itemStore) store(target [20]byte, it *storedItem, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	it.nextRefresh = nextRefreshTime(now, it.confirmed)
	l := s.m[target]
	if l == nil {
		if s.fullLocked(it, 0) {
			return false
		}
		s.m[target] = []*storedItem{it}
		s.bytes += len(it.raw)
		s.dirty[target] = struct{}{}
		return true
	}
	if !it.multi {
		if it.seq <= l[0].seq {
			return false
		}
		freed := len(l[0].raw)
		if s.fullLocked(it, freed) {
			return false
		}
		l[0] = it
		s.bytes += len(it.raw) - freed
		s.dirty[target] = struct{}{}
		return true
	}
	if s.fullLocked(it, 0) {
		return false
	}
	insert := len(l)
	for i := len(l) - 1; i >= 0; i-- {
		old := l[i]
		if bytes.Equal(old.v(), it.v()) {
			return false
		}
		if it.height >= old.height {
			insert = i
		}
	}
	l = slices.Insert(l, insert, it)
	s.bytes += len(it.raw)
	if len(l) > maxEntriesPerMulti {
		for _, dropped := range l[maxEntriesPerMulti:] {
			s.bytes -= len(dropped.raw)
		}
		clear(l[maxEntriesPerMulti:])
		l = slices.Clip(l[:maxEntriesPerMulti])
	}
	s.m[target] = l
	s.dirty[target] = struct{}{}
	return true
}

// postNumber is atoi(resource + 4) for a "post..." resource.
func postNumber(resource string) (int, bool) {
	if !strings.HasPrefix(resource, "post") {
		return 0, false
	}
	k := 0
	for _, c := range resource[4:] {
		if c < '0' || c > '9' || k > 1e9 {
			break
		}
		k = k*10 + int(c-'0')
	}
	return k, true
}

// notePost counts a stored network item in the post statistics
// (process_newly_stored_entry; our own puts are not counted, as there).
func (s *itemStore) notePost(it *storedItem) {
	k, ok := postNumber(it.resource)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.posts[it.user]
	st.total++
	st.last = max(st.last, k)
	s.posts[it.user] = st
}

// thinOldPost reports whether refresh_storage would skip this post this
// time: for a user with over 25 known posts, a post more than 100 behind
// the newest is republished only with probability 25/(known-25).
func (s *itemStore) thinOldPost(it *storedItem) bool {
	k, ok := postNumber(it.resource)
	if !ok {
		return false
	}
	s.mu.Lock()
	st := s.posts[it.user]
	s.mu.Unlock()
	if k < st.last-100 && st.total > 25 {
		return rand.Float64() > 25/float64(st.total-25)
	}
	return false
}

// get returns the items stored under target (a copy of the list).
func (s *itemStore) get(target [20]byte) []*storedItem {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.m[target]
	if l == nil {
		return nil
	}
	return slices.Clone(l)
}

// confirm marks our unconfirmed item with this signature as seen on the
// network (node.cpp putData_confirm).
func (s *itemStore) confirm(target [20]byte, sigP []byte, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range s.m[target] {
		if !it.confirmed && bytes.Equal(it.sigP(), sigP) {
			it.confirmed = true
			it.nextRefresh = nextRefreshTime(now, true)
			s.dirty[target] = struct{}{}
		}
	}
}

// due returns the items whose refresh time has come and schedules their
// next refresh, as refresh_storage does whether or not it republishes.
func (s *itemStore) due(now time.Time) []*storedItem {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*storedItem
	for target, l := range s.m {
		for _, it := range l {
			if it.nextRefresh > now.UnixNano() {
				continue
			}
			if !it.confirmed && it.localAdd != 0 && now.Unix() > it.localAdd+int64(localRecent/time.Second) {
				it.confirmed = true // force confirm by age
				s.dirty[target] = struct{}{}
			}
			out = append(out, it)
			it.nextRefresh = nextRefreshTime(now, it.confirmed)
		}
	}
	return out
}

func (s *itemStore) count() (targets, items int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.m {
		targets++
		items += len(l)
	}
	return targets, items
}

// takeDirty snapshots the lists changed since the last call (nil: the
// target is gone), in dht.db's saved form.
func (s *itemStore) takeDirty() map[[20]byte][]savedItem {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[[20]byte][]savedItem, len(s.dirty))
	for t := range s.dirty {
		l := s.m[t]
		if l == nil {
			out[t] = nil
			continue
		}
		list := make([]savedItem, 0, len(l))
		for _, it := range l {
			si := savedItem{P: it.p(), SigP: it.sigP(), SigUser: it.sigUser, LocalAddTime: it.localAdd}
			if it.confirmed {
				si.Confirmed = 1
			}
			list = append(list, si)
		}
		out[t] = list
	}
	clear(s.dirty)
	return out
}

// nextRefreshTime is now + 60 min (1 min when unconfirmed) ± 10%, in
// unix nanoseconds.
func nextRefreshTime(now time.Time, confirmed bool) int64 {
	d := refreshUnconfirmed
	if confirmed {
		d = refreshConfirmed
	}
	return now.Add(time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))).UnixNano()
}

// shouldExpire is twisterd's shouldDhtResourceExpire (dht-swarm §3.4).
func shouldExpire(resource string, multi bool, height, best int64) bool {
	if best < 1 || height+blockAgeToExpireDHTEntry >= best {
		return false
	}
	if multi {
		return true
	}
	basic := 0
	for basic < len(resource) && isAlpha(resource[basic]) {
		basic++
	}
	name, suffix := resource[:basic], resource[basic:]
	number := -1
	if suffix != "" && !(suffix[0] == '0' && len(suffix) > 1) {
		allDigits := true
		for i := 0; i < len(suffix); i++ {
			if suffix[i] < '0' || suffix[i] > '9' {
				allDigits = false
			}
		}
		if allDigits {
			if n, err := strconv.Atoi(suffix); err == nil {
				number = n
			}
		}
	}
	switch name {
	case "avatar", "profile", "status":
		return suffix != ""
	case "following":
		return number < 0 || number > 200
	case "post":
		return number < 0 || height+blockAgeToExpireDHTPosts < best
	}
	return true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// shouldRepublish is refresh_storage's filter: singles, mention lists and
// our own recent items.
func shouldRepublish(it *storedItem, now time.Time) bool {
	localRecentItem := it.localAdd != 0 && it.localAdd+int64(localRecent/time.Second) > now.Unix()
	return !it.multi || it.resource == "mention" || localRecentItem
}

type peerEntry struct {
	added time.Time
	seed  bool
}

type torrentEntry struct {
	name      string
	listPeers int // peers our own swarm knows (twisterd's list_peers)
	peers     map[netip.AddrPort]peerEntry
}

// peerStore is the announce table (node.cpp m_map): peers per info-hash.
type peerStore struct {
	mu sync.Mutex
	m  map[[20]byte]*torrentEntry
}

func newPeerStore() *peerStore { return &peerStore{m: make(map[[20]byte]*torrentEntry)} }

// add records an announce; beyond maxTorrents the info-hash with the
// fewest peers is evicted first.
func (ps *peerStore) add(ih [20]byte, name string, peer netip.AddrPort, seed bool, listPeers int, now time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	te := ps.m[ih]
	if te == nil {
		if len(ps.m) >= maxTorrents {
			var victim [20]byte
			fewest := -1
			for k, v := range ps.m {
				if fewest < 0 || len(v.peers) < fewest {
					victim, fewest = k, len(v.peers)
				}
			}
			delete(ps.m, victim)
		}
		te = &torrentEntry{peers: make(map[netip.AddrPort]peerEntry)}
		ps.m[ih] = te
	}
	if name != "" && te.name == "" {
		if len(name) > 50 {
			name = name[:50]
		}
		te.name = name
	}
	if _, known := te.peers[peer]; !known && len(te.peers) >= maxPeersPerTorrent {
		var oldest netip.AddrPort
		var oldestAt time.Time
		for p, e := range te.peers {
			if !oldest.IsValid() || e.added.Before(oldestAt) {
				oldest, oldestAt = p, e.added
			}
		}
		delete(te.peers, oldest)
	}
	if listPeers != 0 {
		te.listPeers = listPeers
	}
	te.peers[peer] = peerEntry{added: now, seed: seed}
}

// lookup returns up to maxPeersReply live peers of ih, randomly sampled,
// the stored name and followers count, and whether the info-hash is known.
func (ps *peerStore) lookup(ih [20]byte, now time.Time) (peers []netip.AddrPort, name string, followers int, known bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	te := ps.m[ih]
	if te == nil {
		return nil, "", 0, false
	}
	for p, e := range te.peers {
		if now.Sub(e.added) < peerLifetime {
			peers = append(peers, p)
		}
	}
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	if len(peers) > maxPeersReply {
		peers = peers[:maxPeersReply]
	}
	return peers, te.name, te.listPeers, true
}

// purge drops expired peers and empty info-hashes (every 2 minutes).
func (ps *peerStore) purge(now time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for ih, te := range ps.m {
		for p, e := range te.peers {
			if now.Sub(e.added) >= peerLifetime {
				delete(te.peers, p)
			}
		}
		if len(te.peers) == 0 {
			delete(ps.m, ih)
		}
	}
}
