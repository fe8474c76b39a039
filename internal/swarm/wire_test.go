package swarm

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/twproto"
)

type captureSession struct {
	Transport string `json:"transport"`
	Kind      string `json:"kind"`
	Segments  []struct {
		Dir string `json:"dir"`
		Hex string `json:"hex"`
	} `json:"segments"`
	Parsed map[string]struct {
		StreamLen int `json:"stream_len"`
		Messages  []struct {
			Name        string `json:"name"`
			ID          *int   `json:"id"`
			PayloadHex  string `json:"payload_hex"`
			RawHex      string `json:"raw_hex"`
			ReservedHex string `json:"reserved_hex"`
			InfohashHex string `json:"infohash_hex"`
			Index       *int   `json:"index"`
			Port        *int   `json:"port"`
			ExtID       *int   `json:"ext_id"`
		} `json:"messages"`
		UnparsedTailHex string `json:"unparsed_tail_hex"`
	} `json:"parsed"`
}

func loadSessions(t testing.TB) map[string]captureSession {
	t.Helper()
	files, err := filepath.Glob("../../testdata/swarm/wire/peerwire_session_*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no capture sessions: %v", err)
	}
	out := make(map[string]captureSession)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var s captureSession
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = s
	}
	return out
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCaptureSessionsParse decodes every byte of every captured twisterd
// session with our codec and checks each message against the capture's
// independent decoding, then re-encodes it to the same bytes.
func TestCaptureSessionsParse(t *testing.T) {
	sessions := loadSessions(t)
	if len(sessions) != 30 {
		t.Fatalf("got %d sessions, want 30", len(sessions))
	}
	totalMsgs := 0
	for name, s := range sessions {
		for _, dir := range []string{"i2r", "r2i"} {
			var stream []byte
			for _, seg := range s.Segments {
				if seg.Dir == dir {
					stream = append(stream, mustHex(t, seg.Hex)...)
				}
			}
			want := s.Parsed[dir]
			if len(stream) != want.StreamLen {
				t.Fatalf("%s %s: stream %d bytes, capture says %d", name, dir, len(stream), want.StreamLen)
			}
			if len(stream) == 0 {
				continue
			}
			hs, err := ParseHandshake(stream[:HandshakeLen])
			if err != nil {
				t.Fatalf("%s %s: handshake: %v", name, dir, err)
			}
			if got := hs.AppendTo(nil); !bytes.Equal(got, stream[:HandshakeLen]) {
				t.Fatalf("%s %s: handshake re-encode differs", name, dir)
			}
			if hs.Reserved != twisterReserved {
				t.Errorf("%s %s: reserved %x, want twisterd's %x", name, dir, hs.Reserved, twisterReserved)
			}
			mr := newMessageReader(bytes.NewReader(stream[HandshakeLen:]))
			for i, wm := range want.Messages[1:] {
				m, _, err := mr.next()
				if err != nil {
					t.Fatalf("%s %s msg %d (%s): %v", name, dir, i+1, wm.Name, err)
				}
				totalMsgs++
				if wm.Name == "keep_alive" {
					if !m.KeepAlive {
						t.Fatalf("%s %s msg %d: want keep-alive", name, dir, i+1)
					}
					continue
				}
				if wm.ID == nil || int(m.ID) != *wm.ID {
					t.Fatalf("%s %s msg %d: id %d, capture %v (%s)", name, dir, i+1, m.ID, wm.ID, wm.Name)
				}
				if wm.Index != nil && int(m.Index) != *wm.Index {
					t.Errorf("%s %s msg %d: index %d, want %d", name, dir, i+1, m.Index, *wm.Index)
				}
				if wm.Port != nil && int(m.Port) != *wm.Port {
					t.Errorf("%s %s msg %d: port %d, want %d", name, dir, i+1, m.Port, *wm.Port)
				}
				if wm.ExtID != nil && int(m.ExtID) != *wm.ExtID {
					t.Errorf("%s %s msg %d: ext id %d, want %d", name, dir, i+1, m.ExtID, *wm.ExtID)
				}
				payload := mustHex(t, wm.PayloadHex)
				reenc := m.AppendTo(nil)
				if !bytes.Equal(reenc[5:], payload) {
					t.Errorf("%s %s msg %d: re-encoded payload %x, want %x", name, dir, i+1, reenc[5:], payload)
				}
				if m.ID == MsgExtended && m.ExtID == extHandshake {
					eh, err := ParseExtHandshake(m.Data)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					wantM := map[string]int{"lt_donthave": 7, "lt_tex": 19, "share_mode": 8, "upload_only": 3, "ut_holepunch": 4, "ut_pex": 1}
					if !reflect.DeepEqual(eh.M, wantM) || eh.Reqq != 250 || !strings.HasPrefix(eh.Version, "twisterd/") {
						t.Errorf("%s: extended handshake %+v", name, eh)
					}
				}
				if m.ID == MsgExtended && m.ExtID == extUTPex {
					peers, err := ParsePex(m.Data)
					if err != nil || len(peers) != 1 || peers[0].Addr() != netip.MustParseAddr("127.0.0.1") {
						t.Errorf("%s: pex %v %v", name, peers, err)
					}
				}
			}
			if _, _, err := mr.next(); err == nil {
				t.Errorf("%s %s: trailing message not in capture", name, dir)
			}
		}
	}
	if totalMsgs < 200 {
		t.Fatalf("only %d messages parsed", totalMsgs)
	}
}

// TestBitfieldAndAllowedFastLikeTwisterd compares what we would send with
// the bytes twisterd sent in the TCP data sessions (wire README, "+2" rule).
func TestBitfieldAndAllowedFastLikeTwisterd(t *testing.T) {
	sessions := loadSessions(t)
	cases := []struct {
		session, dir string
		lastHave     int64
		have         []int64
	}{
		// session 27 i2r: node2 (bob's node) serving alice's torrent with k 1..8;
		// r2i: node1 (alice) with k 1..8 too at that time.
		{"peerwire_session_27.json", "i2r", 8, []int64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"peerwire_session_27.json", "r2i", 8, []int64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"peerwire_session_28.json", "i2r", 7, []int64{1, 2, 3, 4, 5, 6, 7}},
		{"peerwire_session_7.json", "i2r", 6, []int64{1, 2, 3, 4, 5, 6}},
		{"peerwire_session_8.json", "i2r", 5, []int64{1, 2, 3, 4, 5}},
	}
	for _, c := range cases {
		s := sessions[c.session]
		var bf []byte
		var fast []uint32
		for _, m := range s.Parsed[c.dir].Messages {
			if m.ID == nil {
				continue
			}
			switch byte(*m.ID) {
			case MsgBitfield:
				bf = mustHex(t, m.PayloadHex)
			case MsgAllowedFast:
				fast = append(fast, uint32(*m.Index))
			}
		}
		got := newBitset()
		for _, k := range c.have {
			got.set(k)
		}
		if b := got.bytes(bitfieldBytes(c.lastHave)); !bytes.Equal(b, bf) {
			t.Errorf("%s %s: bitfield %x, twisterd sent %x", c.session, c.dir, b, bf)
		}
		ours := allowedFastSet(netip.MustParseAddr("127.0.0.1"), [20]byte{}, int(c.lastHave+2))
		if !reflect.DeepEqual(ours, fast) {
			t.Errorf("%s %s: allowed fast %v, twisterd sent %v", c.session, c.dir, ours, fast)
		}
	}
	// bob, max k 6 (1 byte 7e) and max k 7 (7f00), from the README.
	for _, c := range []struct {
		lastHave int64
		want     string
	}{{6, "7e"}, {7, "7f00"}, {-1, ""}, {0, "80"}, {5, "7c"}} {
		b := newBitset()
		for k := int64(1); k <= c.lastHave; k++ {
			b.set(k)
		}
		if c.lastHave == 0 {
			b.set(0)
		}
		if got := hex.EncodeToString(b.bytes(bitfieldBytes(c.lastHave))); got != c.want {
			t.Errorf("lastHave %d: bitfield %s, want %s", c.lastHave, got, c.want)
		}
	}
}

func TestAllowedFastLargeSet(t *testing.T) {
	ih := [20]byte{1, 2, 3}
	set := allowedFastSet(netip.MustParseAddr("10.0.0.1"), ih, 1000)
	if len(set) != 10 {
		t.Fatalf("len %d", len(set))
	}
	seen := map[uint32]bool{}
	for _, p := range set {
		if p >= 1000 || seen[p] {
			t.Fatalf("bad set %v", set)
		}
		seen[p] = true
	}
	if again := allowedFastSet(netip.MustParseAddr("10.0.0.1"), ih, 1000); !reflect.DeepEqual(set, again) {
		t.Fatal("not deterministic")
	}
}

// TestOurHandshakeMatchesTwisterd: our 68 bytes differ from twisterd's
// only in the random part of the peer id.
func TestOurHandshakeMatchesTwisterd(t *testing.T) {
	s := loadSessions(t)["peerwire_session_27.json"]
	raw := mustHex(t, s.Parsed["i2r"].Messages[0].RawHex)
	theirs, err := ParseHandshake(raw)
	if err != nil {
		t.Fatal(err)
	}
	id, err := newPeerID()
	if err != nil {
		t.Fatal(err)
	}
	ours := Handshake{Reserved: twisterReserved, InfoHash: theirs.InfoHash, PeerID: id}.AppendTo(nil)
	if !bytes.Equal(ours[:56], raw[:56]) {
		t.Fatalf("handshake prefix\n ours %x\n twisterd %x", ours[:56], raw[:56])
	}
	if !strings.HasPrefix(string(id[:]), "-TW1000-") {
		t.Fatalf("peer id %q", id)
	}
}

func TestParseMessageRejects(t *testing.T) {
	cases := map[string][]byte{
		"choke with payload": {MsgChoke, 0},
		"short have":         {MsgHave, 0, 0, 1},
		"long request":       {MsgRequest, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"short piece":        {MsgPiece, 0, 0, 0},
		"unknown 12":         {12},
		"unknown 21":         {21},
		"empty extended":     {MsgExtended},
		"long nonce":         append([]byte{MsgHashcashNonce}, make([]byte, 11)...),
		"big piece":          append([]byte{MsgPiece}, make([]byte, 8+BlockSize+1)...),
	}
	for name, b := range cases {
		if _, err := ParseMessage(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	var big bytes.Buffer
	big.Write([]byte{0, 0x10, 0, 0}) // 1 MiB
	if _, _, err := newMessageReader(&big).next(); !errors.Is(err, ErrMessageTooBig) {
		t.Errorf("oversized frame: %v", err)
	}
}

func TestMessageRoundTrip(t *testing.T) {
	msgs := []Message{
		{KeepAlive: true},
		{ID: MsgInterested},
		{ID: MsgHave, Index: 9},
		{ID: MsgRequest, Index: 9, Length: BlockSize},
		{ID: MsgPiece, Index: 3, Data: []byte("d4:postee")},
		{ID: MsgBitfield, Data: []byte{0x7f, 0x80}},
		{ID: MsgPort, Port: 31002},
		{ID: MsgHashcashNBits, NBits: 16},
		{ID: MsgExtended, ExtID: 1, Data: []byte("de")},
		{ID: MsgReject, Index: 1, Length: BlockSize},
	}
	var stream []byte
	for _, m := range msgs {
		stream = m.AppendTo(stream)
	}
	mr := newMessageReader(bytes.NewReader(stream))
	for i, want := range msgs {
		got, _, err := mr.next()
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if len(got.Data) == 0 {
			got.Data = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%d: got %+v want %+v", i, got, want)
		}
	}
}

func TestExtHandshakeBytes(t *testing.T) {
	ago := -1
	h := ExtHandshake{M: map[string]int{"ut_pex": 1, "lt_donthave": 7}, Port: 31002, Version: "twgroupd/x", YourIP: "\x7f\x00\x00\x01", Reqq: 250, CompleteAgo: &ago}
	b, err := h.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want := "d12:complete_agoi-1e1:md11:lt_donthavei7e6:ut_pexi1ee1:pi31002e4:reqqi250e1:v10:twgroupd/x6:yourip4:\x7f\x00\x00\x01e"
	if string(b) != want {
		t.Fatalf("got %q\nwant %q", b, want)
	}
	back, err := ParseExtHandshake(b)
	if err != nil || back.Port != 31002 || back.M["ut_pex"] != 1 {
		t.Fatalf("%+v %v", back, err)
	}
}

// FuzzParseMessage: no input may panic the framed reader or the
// extension decoders, and whatever parses re-encodes to the same bytes.
func FuzzParseMessage(f *testing.F) {
	sessions := loadSessions(f)
	for _, s := range sessions {
		for _, seg := range s.Segments {
			b, err := hex.DecodeString(seg.Hex)
			if err == nil && len(b) < 4096 {
				f.Add(b)
			}
		}
	}
	f.Add([]byte{0, 0, 0, 5, MsgHave, 0, 0, 0, 1})
	f.Add([]byte{0, 0, 0, 3, MsgExtended, 1, 'd'})
	f.Fuzz(func(t *testing.T, data []byte) {
		mr := newMessageReader(bytes.NewReader(data))
		for i := 0; i < 64; i++ {
			m, n, err := mr.next()
			if err != nil {
				return
			}
			if n > 4+MaxMessageLen {
				t.Fatalf("read %d bytes", n)
			}
			if !m.KeepAlive && m.ID != MsgExtended {
				// Re-encoding must give back the frame.
				b := m.AppendTo(nil)
				if m2, err := ParseMessage(b[4:]); err != nil || m2.ID != m.ID {
					t.Fatalf("re-parse: %v", err)
				}
			}
			if m.ID == MsgExtended {
				_, _ = ParseExtHandshake(m.Data)
				_, _ = ParsePex(m.Data)
			}
		}
	})
}

// FuzzPeerSession feeds arbitrary bytes, as sent by a peer after the
// handshake, to a node's connection handler: whatever arrives, the node
// must not panic, hang or store anything that does not verify.
func FuzzPeerSession(f *testing.F) {
	for _, s := range loadSessions(f) {
		for _, dir := range []string{"i2r", "r2i"} {
			var b []byte
			for _, seg := range s.Segments {
				if seg.Dir == dir {
					b = append(b, mustHex(f, seg.Hex)...)
				}
			}
			if len(b) > HandshakeLen {
				f.Add(b[HandshakeLen:])
			}
		}
	}
	f.Add(Message{ID: MsgHave, Index: 1}.AppendTo(nil))
	// A twg_swarms session: offer, HAVE, request, an unrequested piece.
	{
		ih := twproto.SwarmInfoHash("alice")
		eh, _ := ExtHandshake{M: map[string]int{xswarmName: 9}}.Bytes()
		b := Message{ID: MsgExtended, ExtID: extHandshake, Data: eh}.AppendTo(nil)
		for _, m := range []XMessage{
			{Have: []XRef{{IH: ih, K: 3}, {IH: ih, K: -1}}},
			{Req: []XRef{{IH: ih, K: 0}}, Reject: []XRef{{IH: ih, K: 1}}},
			{Piece: &XRef{IH: ih, K: 0}, Data: []byte("junk")},
		} {
			body, _ := m.Bytes()
			b = Message{ID: MsgExtended, ExtID: extTwgSwarms, Data: body}.AppendTo(b)
		}
		f.Add(b)
	}
	keys := newTestKeys(12)
	keys.add("alice", mustHex(f, "0289466f49cd83149b97fb61513d87e43ea62cafe646c42e7f53ac84778e41b475"), 1)
	cfg := fastConfig(f.TempDir(), keys)
	cfg.PeerTimeout = time.Second
	sw, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { sw.Close() })
	tor, err := sw.join("alice", true)
	if err != nil {
		f.Fatal(err)
	}
	hs := Handshake{Reserved: twisterReserved, InfoHash: tor.ih, PeerID: [20]byte{'-', 'F', 'Z'}}
	f.Fuzz(func(t *testing.T, data []byte) {
		ours, theirs := net.Pipe()
		go io.Copy(io.Discard, theirs)
		done := make(chan struct{})
		go func() {
			defer close(done)
			sw.runPeer(tor, ours, hs, false, netip.AddrPort{})
		}()
		theirs.SetWriteDeadline(time.Now().Add(2 * time.Second))
		theirs.Write(data)
		theirs.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("connection handler hung")
		}
		if n := sw.NumPieces("alice"); n != 0 {
			// Only genuine captured posts could be stored, and they must verify.
			for k := int64(0); k <= sw.LastHave("alice"); k++ {
				if raw, _ := sw.store.piece("alice", k); raw != nil {
					if _, err := twproto.ValidatePost(context.Background(), raw, "alice", k, keys); err != nil {
						t.Fatalf("stored an invalid piece %d: %v", k, err)
					}
				}
			}
		}
	})
}
