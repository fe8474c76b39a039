package dht

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"net/netip"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

// Reply budget: under twisterd's 10000-byte read buffer and 500-item
// bdecode limit (dht-swarm §3.3), with room for the envelope and nodes.
const (
	maxReplyDataBytes = maxReplySize - 600
	maxReplyValues    = maxPacketItems - 40
)

// handleQuery answers one query following node.cpp incoming_request,
// check for check and message for message (dht-swarm §2.2, §2.3). It
// always returns a reply.
func (n *Node) handleQuery(ctx context.Context, m *Msg, src netip.AddrPort) *Msg {
	t := m.T
	if t == nil {
		t = []byte{}
	}
	fail := func(r *Return, msg string) *Msg {
		return &Msg{Z: typeError, T: t, R: r, E: &KRPCError{Code: errorCode, Msg: msg}}
	}
	switch {
	case m.Q == "":
		return fail(nil, "missing 'q' key")
	case m.X == nil:
		return fail(nil, "missing 'x' key")
	case m.X.ID == nil:
		return fail(nil, "missing 'id' key")
	case len(m.X.ID) != 20:
		return fail(nil, "invalid value for 'id'")
	}
	id := krpc.ID(m.X.ID)
	n.table.heardAbout(id, src)
	own := n.table.ownID()
	r := &Return{ID: own[:]}
	reply := &Msg{Z: typeResponse, T: t, R: r}

	// A node whose id does not match its address gets its address and no
	// service (twisterd's "[MF] enforce ID verification").
	if !VerifyID(id, src.Addr()) {
		r.IP = src.Addr().AsSlice()
		return reply
	}

	x := m.X
	switch m.Q {
	case methodPing:
	case methodFindNode:
		target, ok := bstr(x.Target)
		if !ok {
			return fail(r, "missing 'target' key")
		}
		if len(target) != 20 {
			return fail(r, "invalid value for 'target'")
		}
		r.Nodes = encodeNodes(n.table.closest(krpc.ID(target), bucketK, true))
	case methodAnnouncePeer:
		if msg := n.handleAnnounce(x, id, src); msg != "" {
			return fail(r, msg)
		}
	case methodPutData:
		if msg := n.handlePut(ctx, x, id, src); msg != "" {
			return fail(r, msg)
		}
	case methodGetData:
		if msg := n.handleGet(x, r, src); msg != "" {
			return fail(r, msg)
		}
	default:
		// Unknown method with a 20-byte target or infoHash: a findNode
		// answer, for forward compatibility.
		target, ok := bstr(x.Target)
		if !ok || len(target) != 20 {
			target = x.InfoHash
			if len(target) != 20 {
				return fail(r, "unknown message")
			}
		}
		r.Nodes = encodeNodes(n.table.closest(krpc.ID(target), bucketK, true))
	}
	return reply
}

func (n *Node) handleAnnounce(x *Args, id krpc.ID, src netip.AddrPort) string {
	switch {
	case x.InfoHash == nil:
		return "missing 'infoHash' key"
	case len(x.InfoHash) != 20:
		return "invalid value for 'infoHash'"
	case x.Port == nil:
		return "missing 'port' key"
	case x.Token == nil:
		return "missing 'token' key"
	}
	port := *x.Port
	if x.ImpliedPort != nil && *x.ImpliedPort != 0 {
		port = int64(src.Port())
	}
	if port < 0 || port >= 65536 {
		return "invalid port"
	}
	ih := [20]byte(x.InfoHash)
	if !n.tokens.verify(x.Token, src.Addr(), ih) {
		return "invalid token"
	}
	// The token proves the address: let the table take the node.
	n.table.nodeSeen(id, src)
	seed := x.Seed != nil && *x.Seed != 0
	n.peers.add(ih, string(x.N), netip.AddrPortFrom(src.Addr(), uint16(port)), seed, 0, n.now())
	return ""
}

// handlePut stores a signed item, or returns twisterd's error message. A
// put that fails only the neighbour filter is answered as a success and
// not stored (dht-swarm §2.3 putData step 12).
func (n *Node) handlePut(ctx context.Context, x *Args, id krpc.ID, src netip.AddrPort) string {
	switch {
	case x.Token == nil:
		return "missing 'token' key"
	case x.SigP == nil:
		return "missing 'sig_p' key"
	case x.SigUser == nil:
		return "missing 'sig_user' key"
	case x.P == nil:
		return "missing 'p' key"
	}
	p, err := twproto.ParseDHTP(x.P)
	if err != nil {
		return err.Error()
	}
	multi := p.Target.Multi()
	maxSize := twproto.MaxDHTSingleP
	if multi {
		maxSize = twproto.MaxDHTMultiP
	}
	if len(p.Raw) > maxSize {
		return "message too big"
	}
	if p.TargetKeys != 3 {
		return "target dict size != 3"
	}
	target := sha1.Sum(p.TargetRaw)
	if !n.tokens.verify(x.Token, src.Addr(), target) {
		return "invalid token"
	}
	sigUser := string(x.SigUser)
	if n.keys == nil {
		return "invalid signature" // no registry: like twisterd without a chain
	}
	if err := twproto.VerifyDHTSignature(ctx, n.keys, p.Raw, x.SigP, sigUser); err != nil {
		if !errors.Is(err, twproto.ErrDHTSignature) {
			n.log.Warn("dht: putData: cannot check signature", "user", sigUser, "err", err)
		}
		return "invalid signature"
	}
	if !multi && sigUser != p.Target.N {
		return "only owner is allowed"
	}
	if len(p.Target.R) > twproto.MaxDHTResource {
		return "resource name too big"
	}
	if !multi && (!p.HasSeq || p.Seq < 0) {
		return "seq is required for single"
	}
	best := n.bestHeight(ctx)
	if best > 0 && p.Height > best+1 {
		return "height > getBestHeight"
	}
	if p.Time > n.now().Unix()+twproto.MaxTimeInFuture {
		return "time > GetAdjustedTime"
	}
	n.table.nodeSeen(id, src)
	if !n.possiblyNeighbor(target) {
		return ""
	}
	// twisterd serves p re-encoded, which breaks the signature of a
	// non-canonical p; we serve stored bytes verbatim, so we keep only
	// canonical ones and our replies stay canonical bencode.
	if !isCanonical(p.Raw) {
		return ""
	}
	it := newStoredItem(p, x.SigP, sigUser)
	if n.items.store(target, it, n.now()) {
		n.items.notePost(it)
	}
	return ""
}

// possiblyNeighbor: with at least k confirmed nodes known around target,
// we are a neighbour only if we are closer than the farthest of the 2k
// closest.
func (n *Node) possiblyNeighbor(target [20]byte) bool {
	near := n.table.closest(krpc.ID(target), 2*bucketK, true)
	if len(near) < bucketK {
		return true
	}
	return closer(krpc.ID(target), n.table.ownID(), near[len(near)-1].ID)
}

func (n *Node) handleGet(x *Args, r *Return, src netip.AddrPort) string {
	if len(x.Target) == 0 || x.Target[0] != 'd' {
		return "missing 'target' key"
	}
	tm, err := rawDict(x.Target)
	if err != nil {
		return "missing 'target' key"
	}
	var parts [3][]byte
	for i, k := range []string{"n", "r", "t"} {
		s, ok := bstr(tm[k])
		if !ok {
			return fmt.Sprintf("missing '%s' key", k)
		}
		parts[i] = s
	}
	if len(tm) != 3 {
		return "target dict size != 3"
	}
	if tt := string(parts[2]); tt != "s" && tt != "m" {
		return "invalid target.t value"
	}
	target := sha1.Sum(x.Target)
	justToken := x.JustToken != nil && *x.JustToken != 0
	r.Token = n.tokens.generate(src.Addr(), target)
	r.Nodes = encodeNodes(n.table.closest(krpc.ID(target), bucketK, true))
	if string(parts[1]) == "tracker" {
		peers, name, followers, known := n.peers.lookup(target, n.now())
		r.Values = make([][]byte, 0, len(peers))
		for _, p := range peers {
			r.Values = append(r.Values, encodePeer(p))
		}
		if known {
			if name != "" {
				r.N = []byte(name)
			}
			r.Followers = i64(int64(followers))
		}
		return ""
	}
	items := n.items.get(target)
	if items == nil {
		return ""
	}
	r.Data = []bencode.Bytes{}
	if justToken {
		return ""
	}
	size, values := 0, 0
	for _, it := range items {
		if size+len(it.raw) > maxReplyDataBytes || values+int(it.nvalues)+1 > maxReplyValues {
			break
		}
		size += len(it.raw)
		values += int(it.nvalues) + 1
		r.Data = append(r.Data, it.raw)
	}
	return ""
}

// isCanonical reports whether b re-encodes to itself (sorted unique keys,
// minimal integers), decoding with anacrolix's strict interface decoder.
func isCanonical(b []byte) bool {
	var v any
	if bencode.Unmarshal(b, &v) != nil {
		return false
	}
	out, err := bencode.Marshal(v)
	return err == nil && bytes.Equal(out, b)
}
