package dht

import (
	"context"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

var (
	// ErrNoSigner: Put needs a Signer.
	ErrNoSigner = errors.New("dht: no signer configured")
	// ErrNotOwner: a single resource must be signed by its owner (dhtput's
	// "Username must be the same as sig_user for single").
	ErrNotOwner = errors.New("Username must be the same as sig_user for single")
	// ErrSeqRequired: a single resource needs seq >= 0.
	ErrSeqRequired = errors.New("Seq parameter required for single")
	// ErrValueTooBig: p would exceed 8192 bytes (single) or 768 (multi),
	// which every node refuses.
	ErrValueTooBig = errors.New("dht: value too big")
	// ErrUnknownSwarm: FindPeers/AnnouncePeer need the user behind an
	// info-hash (the tracker target is a dict); see AddSwarmUser.
	ErrUnknownSwarm = errors.New("dht: info-hash of no registered user")
	// ErrNoNodes: no node took part in the operation.
	ErrNoNodes = errors.New("dht: no node answered")
)

// Get reads a resource as dhtget does (dht-swarm §3.6): a getData lookup
// whose verified answers are merged, waiting up to timeout for the first
// answer carrying items and timeoutMulti for each next one while fewer
// than minMulti+1 answers were merged. Singles keep the highest seq, multi
// keeps every distinct sig_p. Items are raw bencoded {p, sig_p, sig_user}
// dicts (render them with twproto.HexcapeDHTItem).
func (n *Node) Get(ctx context.Context, user, resource string, multi bool, timeout, timeoutMulti time.Duration, minMulti int) ([][]byte, error) {
	if n.ctx.Err() != nil {
		return nil, ErrClosed
	}
	t := twproto.DHTTarget{N: user, R: resource, T: "s"}
	if multi {
		t.T = "m"
	}
	targetRaw := t.Bencode()
	hash := sha1.Sum(targetRaw)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	alerts := make(chan []acceptedItem, 64)
	done := make(chan struct{})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer close(done)
		n.lookup(lctx, krpc.ID(hash), bucketK, nil, methodGetData, func() *Args {
			return &Args{Target: targetRaw}
		}, func(_ nodeInfo, m *Msg) {
			if items := n.acceptData(lctx, t, hash, m.R); len(items) > 0 {
				select {
				case alerts <- items:
				case <-lctx.Done():
				}
			}
		})
	}()

	var ret [][]byte
	seen := make(map[string]bool)
	lastSeq := int64(-1)
	replies := 0
	wait := timeout
	doneCh := done
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ret, ctx.Err()
		case <-n.ctx.Done():
			return ret, ErrClosed
		case <-timer.C:
			return ret, nil
		case <-doneCh:
			doneCh = nil
			if replies == 0 && len(alerts) == 0 {
				return ret, nil // the lookup ended without any data
			}
			continue
		case items := <-alerts:
			for _, it := range items {
				if multi {
					if len(it.sigP) == 0 || !seen[string(it.sigP)] {
						ret = append(ret, it.raw)
						if len(it.sigP) > 0 {
							seen[string(it.sigP)] = true
						}
					}
				} else if it.seq > lastSeq {
					ret = [][]byte{it.raw}
					lastSeq = it.seq
				}
			}
			if replies >= minMulti {
				return ret, nil
			}
			replies++
			timer.Reset(timeoutMulti)
		}
	}
}

type acceptedItem struct {
	raw  []byte
	sigP []byte
	seq  int64
}

// acceptData keeps the items of a getData reply that twisterd's client
// accepts (dht-swarm §3.5): well-formed, signature verified, time set and
// not too far ahead. We also require the item's target to be the one we
// asked for. A tracker reply without data but with followers becomes the
// unsigned item twisterd fabricates.
func (n *Node) acceptData(ctx context.Context, t twproto.DHTTarget, hash [20]byte, r *Return) []acceptedItem {
	if r.Data == nil {
		if t.R == "tracker" && t.Multi() && r.Followers != nil && *r.Followers != 0 {
			return []acceptedItem{{raw: trackerItem(t, *r.Followers, r.Values)}}
		}
		return nil
	}
	var out []acceptedItem
	limit := n.now().Unix() + twproto.MaxTimeInFuture
	for _, raw := range r.Data {
		it, err := twproto.DecodeDHTItem(raw)
		if err != nil || it.P.Target != t {
			continue
		}
		if it.P.Time == 0 || it.P.Time > limit {
			continue
		}
		if n.keys == nil || it.Verify(ctx, n.keys) != nil {
			continue
		}
		n.items.confirm(hash, it.SigP, n.now())
		seq := int64(0)
		if it.P.HasSeq {
			seq = it.P.Seq
		}
		out = append(out, acceptedItem{raw: it.Raw, sigP: it.SigP, seq: seq})
	}
	return out
}

// trackerItem is {p: {target, v: {followers, values, values_size}}}, with
// no signatures, as dht_get_observer::reply builds it.
func trackerItem(t twproto.DHTTarget, followers int64, values [][]byte) []byte {
	v := map[string]any{"followers": followers}
	if values != nil {
		l := make([]any, len(values))
		for i, e := range values {
			l[i] = string(e)
		}
		v["values"] = l
		v["values_size"] = int64(len(values))
	}
	item := map[string]any{"p": map[string]any{
		"target": map[string]any{"n": t.N, "r": t.R, "t": t.T},
		"v":      v,
	}}
	b, _ := bencode.Marshal(item)
	return b
}

// Put builds, signs and publishes an item as dhtput does (dhtPutData):
// value is dhtput's JSON (converted with twproto.DHTValueFromJSON), p gets
// height = best height - 1 and the current time, sig_user signs it. The
// item is stored locally, then sent to the 8 closest nodes in the
// background and republished every minute until seen on the network. Like
// twisterd's dhtput it returns before the network has it.
func (n *Node) Put(ctx context.Context, user, resource string, multi bool, value json.RawMessage, sigUser string, seq int64) error {
	if n.cfg.Signer == nil {
		return ErrNoSigner
	}
	if !multi && user != sigUser {
		return ErrNotOwner
	}
	if !multi && seq < 0 {
		return ErrSeqRequired
	}
	v, err := twproto.DHTValueFromJSON(value)
	if err != nil {
		return err
	}
	t := twproto.DHTTarget{N: user, R: resource, T: "s"}
	if multi {
		t.T = "m"
	}
	now := n.now()
	raw := twproto.BuildDHTP(t, v, seq, n.bestHeight(ctx)-1, now.Unix())
	maxSize := twproto.MaxDHTSingleP
	if multi {
		maxSize = twproto.MaxDHTMultiP
	}
	if len(raw) > maxSize {
		return fmt.Errorf("%w: p is %d bytes, limit %d", ErrValueTooBig, len(raw), maxSize)
	}
	sig, err := n.cfg.Signer.SignAs(sigUser, raw)
	if err != nil {
		return fmt.Errorf("dht: sign as %s: %w", sigUser, err)
	}
	p, err := twproto.ParseDHTP(raw)
	if err != nil {
		return fmt.Errorf("dht: built p: %w", err)
	}
	it := newStoredItem(p, sig, sigUser)
	it.localAdd = now.Unix()
	n.items.store(t.Hash(), it, now)
	n.goTraverse(func(ctx context.Context) {
		if err := n.putItem(ctx, it); err != nil {
			n.log.Debug("dht: put", "user", user, "resource", resource, "err", err)
		}
	})
	return nil
}

// putItem sends a stored item to the closest nodes: a getData justtoken
// lookup, then putData to the first 8 responders that gave a token,
// closest first (dht_get::done + putData_fun).
func (n *Node) putItem(ctx context.Context, it *storedItem) error {
	targetRaw := it.target().Bencode()
	hash := sha1.Sum(targetRaw)
	toks := make(map[krpc.ID][]byte)
	res := n.lookup(ctx, krpc.ID(hash), bucketK, nil, methodGetData, func() *Args {
		return &Args{Target: targetRaw, JustToken: i64(1)}
	}, func(ni nodeInfo, m *Msg) {
		if m.R.Token != nil {
			toks[ni.ID] = m.R.Token
		}
	})
	var targets []nodeInfo
	var tokList [][]byte
	for _, r := range res {
		if tok, ok := toks[r.node.ID]; ok && len(targets) < bucketK {
			targets = append(targets, r.node)
			tokList = append(tokList, tok)
		}
	}
	ok := n.fanOut(ctx, targets, func(i int) (string, *Args) {
		return methodPutData, &Args{Token: tokList[i], P: it.p(), SigP: it.sigP(), SigUser: []byte(it.sigUser)}
	})
	if ok == 0 {
		return ErrNoNodes
	}
	return nil
}

// fanOut sends one query to each node concurrently and counts successes.
func (n *Node) fanOut(ctx context.Context, nodes []nodeInfo, build func(i int) (string, *Args)) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i, ni := range nodes {
		q, args := build(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := n.query(ctx, ni.Addr, q, args); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			} else {
				n.log.Debug("dht: "+q, "node", ni.Addr, "err", err)
			}
		}()
	}
	wg.Wait()
	return ok
}

// AddSwarmUser tells the node which user a swarm info-hash belongs to,
// so FindPeers and AnnouncePeer can address its tracker target, and
// returns the info-hash.
func (n *Node) AddSwarmUser(user string) [20]byte {
	ih := twproto.SwarmInfoHash(user)
	n.mu.Lock()
	n.users[ih] = user
	n.mu.Unlock()
	return ih
}

func (n *Node) userFor(ih [20]byte) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	u, ok := n.users[ih]
	return u, ok
}

// FindPeers returns the swarm peers of infoHash: a getData lookup on the
// user's tracker target (there is no get_peers in twister), merged with
// our own announce table. The user must be known (AddSwarmUser, or a
// previous FindUserPeers/AnnounceUser).
func (n *Node) FindPeers(ctx context.Context, infoHash [20]byte) ([]netip.AddrPort, error) {
	user, ok := n.userFor(infoHash)
	if !ok {
		return nil, fmt.Errorf("%w: %x", ErrUnknownSwarm, infoHash)
	}
	t := twproto.DHTTarget{N: user, R: "tracker", T: "m"}
	targetRaw := t.Bencode()
	found := make(map[netip.AddrPort]bool)
	var out []netip.AddrPort
	addPeer := func(p netip.AddrPort) {
		if p.IsValid() && p.Port() != 0 && !found[p] {
			found[p] = true
			out = append(out, p)
		}
	}
	local, _, _, _ := n.peers.lookup(infoHash, n.now())
	for _, p := range local {
		addPeer(p)
	}
	n.lookup(ctx, krpc.ID(infoHash), bucketK, nil, methodGetData, func() *Args {
		return &Args{Target: targetRaw, InfoHash: infoHash[:]}
	}, func(_ nodeInfo, m *Msg) {
		for _, p := range decodePeers(m.R.Values) {
			addPeer(p)
		}
	})
	if err := ctx.Err(); err != nil {
		return out, err
	}
	return out, nil
}

// FindUserPeers is FindPeers on user's swarm.
func (n *Node) FindUserPeers(ctx context.Context, user string) ([]netip.AddrPort, error) {
	return n.FindPeers(ctx, n.AddSwarmUser(user))
}

// AnnouncePeer announces that we serve infoHash's swarm on TCP port: a
// getData lookup on the tracker target for tokens, then announcePeer
// {infoHash, port, token, seed: 0} to the 8 closest responders.
func (n *Node) AnnouncePeer(ctx context.Context, infoHash [20]byte, port int) error {
	user, ok := n.userFor(infoHash)
	if !ok {
		return fmt.Errorf("%w: %x", ErrUnknownSwarm, infoHash)
	}
	if port <= 0 || port > 65535 {
		return fmt.Errorf("dht: announce: invalid port %d", port)
	}
	t := twproto.DHTTarget{N: user, R: "tracker", T: "m"}
	targetRaw := t.Bencode()
	if self := n.selfAddr(); self.IsValid() {
		// twisterd's announce adds us to our own table first, named after
		// the user and with our swarm's peer count as followers.
		followers := 0
		if n.cfg.Followers != nil {
			followers = n.cfg.Followers(infoHash)
		}
		n.peers.add(infoHash, user, netip.AddrPortFrom(self, uint16(port)), false, followers, n.now())
	}
	toks := make(map[krpc.ID][]byte)
	res := n.lookup(ctx, krpc.ID(infoHash), bucketK, nil, methodGetData, func() *Args {
		return &Args{Target: targetRaw, InfoHash: infoHash[:]}
	}, func(ni nodeInfo, m *Msg) {
		if m.R.Token != nil {
			toks[ni.ID] = m.R.Token
		}
	})
	var targets []nodeInfo
	var tokList [][]byte
	for _, r := range res {
		if tok, ok := toks[r.node.ID]; ok && len(targets) < bucketK {
			targets = append(targets, r.node)
			tokList = append(tokList, tok)
		}
	}
	if n.fanOut(ctx, targets, func(i int) (string, *Args) {
		return methodAnnouncePeer, &Args{InfoHash: infoHash[:], Port: i64(int64(port)), Token: tokList[i], Seed: i64(0)}
	}) == 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		return ErrNoNodes
	}
	return nil
}

// AnnounceUser is AnnouncePeer on user's swarm.
func (n *Node) AnnounceUser(ctx context.Context, user string, port int) error {
	return n.AnnouncePeer(ctx, n.AddSwarmUser(user), port)
}

// selfAddr is our address as peers see it: the learned external address,
// else the bound address when it is a specific one.
func (n *Node) selfAddr() netip.Addr {
	n.mu.Lock()
	ext := n.extIP
	n.mu.Unlock()
	if ext.IsValid() {
		return ext
	}
	if a := n.LocalAddr().Addr(); !a.IsUnspecified() {
		return a
	}
	return netip.Addr{}
}

// AddContact pings a node learned elsewhere (a swarm peer's PORT message);
// if it answers it joins the routing table. A remote controls how often
// this is called, so the pings go through a bounded queue to a fixed
// number of pingers, at most one per address (per IP under strict IP
// rules) per minute; twisterd pings on every PORT message.
func (n *Node) AddContact(addr netip.AddrPort) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if !validContact(addr) || n.ctx.Err() != nil {
		return
	}
	n.contacts.offer(addr, n.now())
}

// Bootstrap runs a bootstrap lookup now and waits for it.
func (n *Node) Bootstrap(ctx context.Context) error {
	return n.bootstrap(ctx, nil)
}

// republish re-puts due items to the current closest nodes, skipping
// expired ones and thinning prolific users' old posts, as refresh_storage
// does (dht-swarm §3.4).
func (n *Node) republish(now time.Time) {
	due := n.items.due(now)
	if len(due) == 0 {
		return
	}
	best := n.bestHeight(n.ctx)
	for _, it := range due {
		if best > 0 && it.height > best {
			continue
		}
		if shouldExpire(it.resource, it.multi, it.height, best) || !shouldRepublish(it, now) {
			continue
		}
		if n.items.thinOldPost(it) {
			continue
		}
		n.goTraverse(func(ctx context.Context) {
			select {
			case n.republishes <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-n.republishes }()
			if err := n.putItem(ctx, it); err != nil {
				n.log.Debug("dht: republish", "user", it.user, "resource", it.resource, "err", err)
			}
		})
	}
}
