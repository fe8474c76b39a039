package swarm

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

// oneConnConfig allows one connection between two nodes on 127.0.0.1, in
// whichever swarm it opens first: any other is refused (MaxConnsPerIP).
func oneConnConfig(t *testing.T, keys *testKeys, finder *mapFinder) Config {
	cfg := fastConfig(t.TempDir(), keys)
	cfg.MultiConnPerIP, cfg.MaxConnsPerIP = false, 1
	if finder != nil {
		cfg.Finder = finder
	}
	return cfg
}

func (s *Swarm) peersIn(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.byUser[user]; t != nil {
		return t.livePeers()
	}
	return 0
}

// TestCrossSwarmHaveDelivers: A and B both follow alice and carol but can
// hold only one connection between them, in carol's swarm. alice's posts
// published on A reach B over that connection (twg_swarms), B never
// connects in alice's swarm, and a restarted B catches up on what it
// missed from A's summary.
func TestCrossSwarmHaveDelivers(t *testing.T) {
	ctx := context.Background()
	keys := newTestKeys(100)
	alice, bob := newUser(t, keys, "alice"), newUser(t, keys, "bob")
	newUser(t, keys, "carol")
	a := startNodeConfig(t, oneConnConfig(t, keys, nil))
	for _, u := range []string{"alice", "carol"} {
		if err := a.Follow(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	finder := newMapFinder()
	finder.set("carol", a.Addr())
	bcfg := oneConnConfig(t, keys, finder)
	b := startNodeConfig(t, bcfg)
	for _, u := range []string{"carol", "alice"} {
		if err := b.Follow(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the carol connection", func() bool { return a.peersIn("carol") == 1 && b.peersIn("carol") == 1 })
	for k := int64(1); k <= 3; k++ {
		if err := a.Publish(ctx, "alice", k, dmPost(t, alice, k, bob, fmt.Sprint("m", k))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "alice's posts at B", func() bool { return b.HasPiece("alice", 1) && b.HasPiece("alice", 2) && b.HasPiece("alice", 3) })
	if n := b.peersIn("alice"); n != 0 {
		t.Fatalf("B has %d connections in alice's swarm; want 0 (only twg_swarms carried them)", n)
	}
	if got := b.sink.has("alice", 2); got != 1 {
		t.Fatalf("sink got alice/2 %d times", got)
	}

	// B goes away; A publishes 4 and 5; B comes back and reconnects in
	// carol's swarm only: A's summary tells it of alice 5.
	b.Close()
	waitFor(t, "A sees B gone", func() bool { return a.peersIn("carol") == 0 })
	for k := int64(4); k <= 5; k++ {
		if err := a.Publish(ctx, "alice", k, dmPost(t, alice, k, bob, fmt.Sprint("m", k))); err != nil {
			t.Fatal(err)
		}
	}
	b2 := startNodeConfig(t, bcfg)
	waitFor(t, "alice 4 and 5 at the restarted B", func() bool { return b2.HasPiece("alice", 4) && b2.HasPiece("alice", 5) })
	if n := b2.peersIn("alice"); n != 0 {
		t.Fatalf("restarted B has %d connections in alice's swarm; want 0", n)
	}
}

// TestCrossSwarmOffNotSent: with NoCrossSwarm a node neither offers
// twg_swarms nor answers it, and the one-connection setup leaves alice's
// post at A (the control of TestCrossSwarmHaveDelivers).
func TestCrossSwarmOffNotSent(t *testing.T) {
	keys := newTestKeys(100)
	newUser(t, keys, "carol")
	cfg := fastConfig(t.TempDir(), keys)
	cfg.NoCrossSwarm = true
	n := startNodeConfig(t, cfg)
	if err := n.Follow(context.Background(), "carol"); err != nil {
		t.Fatal(err)
	}
	_, mr := rawClient(t, n, "carol", twisterReserved)
	for {
		m, _, err := mr.next()
		if err != nil {
			t.Fatal(err)
		}
		if m.ID == MsgExtended && m.ExtID == extHandshake {
			eh, err := ParseExtHandshake(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := eh.M[xswarmName]; ok {
				t.Fatalf("NoCrossSwarm node offers %s: %v", xswarmName, eh.M)
			}
			return
		}
	}
}

// xclient is a raw twg_swarms peer of node n in carol's swarm.
type xclient struct {
	t    *testing.T
	c    net.Conn
	mr   *messageReader
	node [8]byte
}

func newXClient(t *testing.T, n *testNode, offer bool) *xclient {
	return newXClientID(t, n, offer, [20]byte{'-', 'R', 'C'})
}

func newXClientID(t *testing.T, n *testNode, offer bool, id [20]byte) *xclient {
	c, mr := rawClientID(t, n, "carol", twisterReserved, id)
	m := map[string]int{"ut_pex": 1}
	if offer {
		m[xswarmName] = 42
	}
	body, err := ExtHandshake{M: m, Port: 1}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	x := &xclient{t: t, c: c, mr: mr}
	x.write(Message{ID: MsgExtended, ExtID: extHandshake, Data: body})
	return x
}

func (x *xclient) write(m Message) {
	if _, err := x.c.Write(m.AppendTo(nil)); err != nil {
		x.t.Fatal(err)
	}
}

func (x *xclient) sendX(m XMessage) {
	body, err := m.Bytes()
	if err != nil {
		x.t.Fatal(err)
	}
	x.write(Message{ID: MsgExtended, ExtID: extTwgSwarms, Data: body})
}

// nextX returns the next twg_swarms message the node sends (under our id 42).
func (x *xclient) nextX() XMessage {
	x.t.Helper()
	x.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		m, _, err := x.mr.next()
		if err != nil {
			x.t.Fatalf("waiting for a twg_swarms message: %v", err)
		}
		if m.ID == MsgExtended && m.ExtID == 42 {
			xm, err := ParseXMessage(m.Data)
			if err != nil {
				x.t.Fatal(err)
			}
			return xm
		}
	}
}

// nextReply is nextX skipping HAVE-only messages: the node's flush of a
// new piece may come at any point.
func (x *xclient) nextReply() XMessage {
	x.t.Helper()
	for {
		m := x.nextX()
		if len(m.Req) > 0 || len(m.Reject) > 0 || m.Piece != nil {
			return m
		}
	}
}

func xnode(t *testing.T) (*testNode, *testKeys, user, user) {
	keys := newTestKeys(100)
	alice, bob := newUser(t, keys, "alice"), newUser(t, keys, "bob")
	newUser(t, keys, "carol")
	n := startNode(t, t.TempDir(), keys)
	for _, u := range []string{"alice", "carol"} {
		if err := n.Follow(context.Background(), u); err != nil {
			t.Fatal(err)
		}
	}
	return n, keys, alice, bob
}

// TestCrossSwarmWire drives a node over twg_swarms from a raw peer: it
// fetches an announced piece, serves what it holds, refuses what it does
// not, drops an unrequested piece, bounds its requests to one peer however
// high the announced piece, and bans the peer for an invalid piece.
func TestCrossSwarmWire(t *testing.T) {
	n, _, alice, bob := xnode(t)
	aliceIH := twproto.SwarmInfoHash("alice")
	if err := n.Publish(context.Background(), "alice", 0, dmPost(t, alice, 0, bob, "zero")); err != nil {
		t.Fatal(err)
	}
	x := newXClient(t, n, true)
	// The summary: alice up to 0, then carol, run and empty (-1).
	if m := x.nextX(); len(m.Have) != 2 || m.Have[0] != (XRef{IH: aliceIH, K: 0, Low: 1}) || m.Have[1] != (XRef{IH: carolIH(), K: -1}) {
		t.Fatalf("summary %+v, want alice 0, carol -1", m)
	}
	// Served: alice 0; refused: alice 7 (not held) and an unknown swarm.
	other := XRef{IH: twproto.SwarmInfoHash("nobody"), K: 1}
	x.sendX(XMessage{Req: []XRef{{IH: aliceIH, K: 0}, {IH: aliceIH, K: 7}, other}})
	m := x.nextReply()
	want, _ := n.store.piece("alice", 0)
	if m.Piece == nil || *m.Piece != (XRef{IH: aliceIH, K: 0}) || !bytes.Equal(m.Data, want) {
		t.Fatalf("got %+v, want piece alice 0", m)
	}
	if m := x.nextReply(); len(m.Reject) != 2 || m.Reject[0].K != 7 || m.Reject[1] != other {
		t.Fatalf("got %+v, want rejects of alice 7 and nobody 1", m)
	}

	// An unrequested piece is dropped, not stored.
	x.sendX(XMessage{Piece: &XRef{IH: aliceIH, K: 1}, Data: dmPost(t, alice, 1, bob, "one")})
	// We announce alice up to 1,000,000: the node asks for 1 .. 32 only.
	x.sendX(XMessage{Have: []XRef{{IH: aliceIH, K: 1_000_000}}})
	m = x.nextReply()
	if len(m.Req) != maxXRequests || m.Req[0].K != 1 || m.Req[maxXRequests-1].K != maxXRequests {
		t.Fatalf("requests %d (%v..), want %d from 1", len(m.Req), m.Req[0], maxXRequests)
	}
	if n.HasPiece("alice", 1) {
		t.Fatal("the unrequested piece was stored")
	}
	// A valid piece is stored and the window moves on by one request.
	x.sendX(XMessage{Piece: &XRef{IH: aliceIH, K: 1}, Data: dmPost(t, alice, 1, bob, "one")})
	m = x.nextReply()
	if len(m.Req) != 1 || m.Req[0].K != maxXRequests+1 {
		t.Fatalf("after one piece the node asked %v, want one request for %d", m.Req, maxXRequests+1)
	}
	waitFor(t, "alice 1 stored", func() bool { return n.HasPiece("alice", 1) })
	// A forged piece (signed by bob) bans us from alice's swarm and ends
	// the connection.
	x.sendX(XMessage{Piece: &XRef{IH: aliceIH, K: 2}, Data: dmPost(t, user{name: "alice", key: bob.key}, 2, bob, "forged")})
	x.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	readUntilClosed(t, x.mr)
	if n.HasPiece("alice", 2) {
		t.Fatal("the forged piece was stored")
	}
	n.mu.Lock()
	banned := n.byUser["alice"].isBanned(string([]byte{'-', 'R', 'C', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}), time.Now())
	n.mu.Unlock()
	if !banned {
		t.Fatal("the peer is not banned from alice's swarm")
	}
}

// TestCrossSwarmNotOffered: a peer that did not offer twg_swarms and sends
// it anyway is disconnected; one that offered gets no twg_swarms before
// its handshake says so.
func TestCrossSwarmNotOffered(t *testing.T) {
	n, _, _, _ := xnode(t)
	x := newXClient(t, n, false)
	x.sendX(XMessage{Have: []XRef{{IH: twproto.SwarmInfoHash("alice"), K: 1}}})
	x.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	readUntilClosed(t, x.mr)
}

// TestCrossSwarmServeBound: requests beyond maxXServe a second are refused.
func TestCrossSwarmServeBound(t *testing.T) {
	n, _, alice, bob := xnode(t)
	aliceIH := twproto.SwarmInfoHash("alice")
	if err := n.Publish(context.Background(), "alice", 0, dmPost(t, alice, 0, bob, "zero")); err != nil {
		t.Fatal(err)
	}
	x := newXClient(t, n, true)
	x.nextX() // summary
	reqs := make([]XRef, maxXEntries)
	for i := range reqs {
		reqs[i] = XRef{IH: aliceIH, K: 0}
	}
	const rounds = 4 // 1024 requests within a second or so
	start := time.Now()
	for range rounds {
		x.sendX(XMessage{Req: reqs})
	}
	pieces, rejects := 0, 0
	for pieces+rejects < rounds*maxXEntries {
		m := x.nextReply()
		if m.Piece != nil {
			pieces++
		}
		rejects += len(m.Reject)
	}
	if time.Since(start) < time.Second && pieces > maxXServe {
		t.Fatalf("served %d pieces within a second, bound %d", pieces, maxXServe)
	}
	if pieces == 0 {
		t.Fatal("served nothing")
	}
}

func TestXMessageRoundTrip(t *testing.T) {
	ih := twproto.SwarmInfoHash("alice")
	for _, m := range []XMessage{
		{Have: []XRef{{IH: ih, K: 0, Low: 1}, {IH: ih, K: maxPieceIndex - 1, Low: 7}, {IH: ih, K: -1}}},
		{Req: []XRef{{IH: ih, K: 5}}, Reject: []XRef{{IH: ih, K: 6}}},
		{Piece: &XRef{IH: ih, K: 3}, Data: []byte("post")},
	} {
		b, err := m.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseXMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got.Have, got.Req, got.Reject, got.Data) != fmt.Sprint(m.Have, m.Req, m.Reject, m.Data) ||
			(got.Piece == nil) != (m.Piece == nil) || (m.Piece != nil && *got.Piece != *m.Piece) {
			t.Fatalf("round trip %+v -> %+v", m, got)
		}
	}
	for _, bad := range []string{
		"",
		"d1:h3:abce",
		"d1:p24:" + string(ih[:]) + "\x00\x00\x00\x01e", // piece without data
		"d1:d1:xe", // data without piece
		"d1:h24:" + string(ih[:]) + "\x00\x20\x00\x00e",                      // index beyond maxPieceIndex
		"d1:r24:" + string(ih[:]) + "\xff\xff\xff\xffe",                      // "none" is for HAVEs only
		"d1:h24:" + string(ih[:]) + "\x00\x00\x00\x011:l4:\x00\x00\x00\x03e", // low above top+1
		"d1:h24:" + string(ih[:]) + "\x00\x00\x00\x011:l2:\x00\x00e",         // lows do not match
		"d1:p48:" + string(ih[:]) + "\x00\x00\x00\x01" + string(ih[:]) + "\x00\x00\x00\x02" + "1:d1:xe",
	} {
		if _, err := ParseXMessage([]byte(bad)); err == nil {
			t.Errorf("ParseXMessage(%q) accepted", bad)
		}
	}
	many := make([]byte, 0, (maxXEntries+1)*xRefLen)
	for range maxXEntries + 1 {
		many = appendRefs(many, []XRef{{IH: ih}})
	}
	if _, err := ParseXMessage([]byte(fmt.Sprintf("d1:r%d:%se", len(many), many))); err == nil {
		t.Error("a request list over maxXEntries accepted")
	}
}

func FuzzParseXMessage(f *testing.F) {
	ih := twproto.SwarmInfoHash("alice")
	f.Add([]byte("d1:h24:" + string(ih[:]) + "\x00\x00\x00\x01e"))
	f.Add([]byte("d1:d4:post1:p24:" + string(ih[:]) + "\x00\x00\x00\x03e"))
	f.Add([]byte("d1:x0:e"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseXMessage(b)
		if err != nil {
			return
		}
		if len(m.Have) > maxXEntries || len(m.Req) > maxXEntries || len(m.Reject) > maxXEntries || len(m.Data) > BlockSize {
			t.Fatalf("over the bounds: %d %d %d %d", len(m.Have), len(m.Req), len(m.Reject), len(m.Data))
		}
		if _, err := m.Bytes(); err != nil {
			t.Fatalf("parsed message does not encode: %v", err)
		}
	})
}

func TestBitsetNextClear(t *testing.T) {
	b := newBitset()
	for _, k := range []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 10} {
		b.set(k)
	}
	for _, c := range [][2]int64{{0, 9}, {9, 9}, {10, 11}, {-3, 9}, {100, 100}} {
		if got := b.nextClear(c[0]); got != c[1] {
			t.Errorf("nextClear(%d) = %d, want %d", c[0], got, c[1])
		}
	}
}

// TestCrossSwarmHaveFloodIgnored: past maxXHaveMsgs HAVE messages a second
// from one peer the rest are ignored (each could start a schedule), and the
// connection stays up.
func TestCrossSwarmHaveFloodIgnored(t *testing.T) {
	n, _, _, _ := xnode(t)
	aliceIH := twproto.SwarmInfoHash("alice")
	x := newXClient(t, n, true)
	start := time.Now()
	for i := range maxXHaveMsgs {
		// Tops 0 .. maxXHaveMsgs-1 of a swarm of nothing: nothing to ask for
		// beyond a first window, but every message is taken.
		x.sendX(XMessage{Have: []XRef{{IH: carolIH(), K: int64(i)}}})
	}
	x.sendX(XMessage{Have: []XRef{{IH: aliceIH, K: 3}}}) // over the bound
	x.sendX(XMessage{Req: []XRef{{IH: aliceIH, K: 9}}})  // still answered
	for {
		m := x.nextX()
		if len(m.Req) > 0 {
			for _, r := range m.Req {
				if r.IH == aliceIH && time.Since(start) < time.Second {
					t.Fatalf("the node acted on a HAVE past the bound: %+v", m.Req)
				}
			}
		}
		if len(m.Reject) == 1 && m.Reject[0].K == 9 {
			break
		}
	}
	n.mu.Lock()
	top, ok := n.byUser["alice"].xholders, false
	for p := range top {
		_, ok = p.x.has[n.byUser["alice"]]
	}
	n.mu.Unlock()
	if ok && time.Since(start) < time.Second {
		t.Fatal("alice's HAVE past the bound was recorded")
	}
}

func carolIH() [20]byte { return twproto.SwarmInfoHash("carol") }

// TestCoveredSwarmTargetZero: a swarm a twg_swarms peer holds needs no
// connection while we hold twg_swarms connections with xMinNodes nodes;
// with fewer, or when hot, the budget's usual target applies.
func TestCoveredSwarmTargetZero(t *testing.T) {
	keys := newTestKeys(100)
	s, err := New(fastConfig(t.TempDir(), keys))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tr := newTorrent(s, "alice")
	s.byUser["alice"] = tr
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if got := s.target(tr, now); got != s.cfg.TargetPeers {
		t.Fatalf("uncovered target %d, want %d", got, s.cfg.TargetPeers)
	}
	tr.xholders = map[*peer]struct{}{{}: {}}
	s.xnodes = xMinNodes - 1
	if got := s.target(tr, now); got != s.cfg.TargetPeers {
		t.Fatalf("covered with %d twg_swarms nodes: target %d, want %d", s.xnodes, got, s.cfg.TargetPeers)
	}
	s.xnodes = xMinNodes
	if got := s.target(tr, now); got != 0 {
		t.Fatalf("covered with %d twg_swarms nodes: target %d, want 0", s.xnodes, got)
	}
	tr.hotUntil, tr.pushLeft = now.Add(time.Second), 1
	if got := s.target(tr, now); got != s.cfg.HotPeers {
		t.Fatalf("covered and hot: target %d, want %d", got, s.cfg.HotPeers)
	}
}

// TestCrossSwarmAsksCertainHolders: a peer whose HAVE says it holds every
// piece (low above them) is asked for them; a second peer announcing the
// same top with a low of 0 (it may still be fetching) is asked for none.
func TestCrossSwarmAsksCertainHolders(t *testing.T) {
	n, _, _, _ := xnode(t)
	aliceIH := twproto.SwarmInfoHash("alice")
	c := newXClient(t, n, true)
	c.nextX() // summary
	c.sendX(XMessage{Have: []XRef{{IH: aliceIH, K: 9, Low: 10}}})
	if m := c.nextReply(); len(m.Req) != 10 {
		t.Fatalf("the certain holder was asked for %v, want pieces 0..9", m.Req)
	}
	u := newXClientID(t, n, true, [20]byte{'-', 'R', 'U'})
	u.nextX()
	u.sendX(XMessage{Have: []XRef{{IH: aliceIH, K: 9, Low: 0}}})
	// Messages on u's connection are handled in order: requests for its
	// HAVE would come before the refusal of this request.
	u.sendX(XMessage{Req: []XRef{{IH: aliceIH, K: 99}}})
	if m := u.nextReply(); len(m.Req) > 0 || len(m.Reject) != 1 {
		t.Fatalf("the uncertain holder got %+v, want only the refusal", m)
	}
}

// TestCrossSwarmPieceAfterOtherPath: a piece requested over twg_swarms that
// arrives by another path first (here published on the node itself) is
// stored once; the late twg_swarms copy is dropped as unrequested, the
// sink sees the post once and the peer is not punished.
func TestCrossSwarmPieceAfterOtherPath(t *testing.T) {
	n, _, alice, bob := xnode(t)
	aliceIH := twproto.SwarmInfoHash("alice")
	x := newXClient(t, n, true)
	x.nextX() // summary
	x.sendX(XMessage{Have: []XRef{{IH: aliceIH, K: 0, Low: 1}}})
	if m := x.nextReply(); len(m.Req) != 1 || m.Req[0].K != 0 {
		t.Fatalf("requests %v, want alice 0", m.Req)
	}
	raw := dmPost(t, alice, 0, bob, "zero")
	if err := n.Publish(context.Background(), "alice", 0, raw); err != nil {
		t.Fatal(err)
	}
	x.sendX(XMessage{Piece: &XRef{IH: aliceIH, K: 0}, Data: raw})
	// Still connected and served: a request after the late piece is answered.
	x.sendX(XMessage{Req: []XRef{{IH: aliceIH, K: 0}}})
	if m := x.nextReply(); m.Piece == nil || m.Piece.K != 0 {
		t.Fatalf("after the late piece: %+v, want piece alice 0", m)
	}
	n.mu.Lock()
	inflight := len(n.byUser["alice"].xinflight)
	n.mu.Unlock()
	if inflight != 0 {
		t.Fatalf("%d twg_swarms requests still in flight", inflight)
	}
	waitFor(t, "the post at the sink", func() bool { return n.sink.has("alice", 0) >= 1 })
	if got := n.sink.has("alice", 0); got != 1 {
		t.Fatalf("sink got alice/0 %d times", got)
	}
}
