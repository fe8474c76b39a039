package chainwire

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

type recorded struct {
	Seq       int    `json:"seq"`
	Direction string `json:"direction"`
	Command   string `json:"command"`
	HeaderHex string `json:"header_hex"`
	PayloadHx string `json:"payload_hex"`
}

func (r recorded) frame(t testing.TB) []byte {
	t.Helper()
	h, err := hex.DecodeString(r.HeaderHex)
	if err != nil {
		t.Fatal(err)
	}
	p, err := hex.DecodeString(r.PayloadHx)
	if err != nil {
		t.Fatal(err)
	}
	return append(h, p...)
}

// loadSession reads a recorded twisterd session (testdata, copied from
// shared/chain).
func loadSession(t testing.TB, name string) []recorded {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []recorded
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r recorded
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Every message twisterd sent or received decodes, and re-encodes to the
// exact recorded bytes, framing included.
func TestRecordedSessionsRoundTrip(t *testing.T) {
	counts := map[string]int{}
	for _, file := range []string{"p2p_sync.jsonl", "p2p_headers_probe.jsonl"} {
		for _, rec := range loadSession(t, file) {
			frame := rec.frame(t)
			m, err := ReadMessage(bytes.NewReader(frame), 0)
			if err != nil {
				t.Fatalf("%s seq %d %s: %v", file, rec.Seq, rec.Command, err)
			}
			if m.Command() != rec.Command {
				t.Fatalf("seq %d: command %q, want %q", rec.Seq, m.Command(), rec.Command)
			}
			if _, ok := m.(*MsgUnknown); ok {
				t.Fatalf("seq %d: %s not decoded", rec.Seq, rec.Command)
			}
			var buf bytes.Buffer
			if err := WriteMessage(&buf, m); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), frame) {
				t.Fatalf("%s seq %d %s: re-encoded bytes differ", file, rec.Seq, rec.Command)
			}
			counts[rec.Command]++
		}
	}
	for _, c := range []string{"version", "verack", "getaddr", "getblocks", "getheaders", "headers", "inv", "getdata", "block"} {
		if counts[c] == 0 {
			t.Errorf("no recorded %s", c)
		}
	}
}

func TestRecordedFieldValues(t *testing.T) {
	sess := loadSession(t, "p2p_sync.jsonl")
	m, err := ReadMessage(bytes.NewReader(sess[1].frame(t)), 0)
	if err != nil {
		t.Fatal(err)
	}
	v := m.(*MsgVersion)
	if v.Version != ProtocolVersion || v.Services != 1 || v.UserAgent != "/twisterd:0.9.40/" || v.StartHeight != 70 || !v.HasRelay || !v.Relay {
		t.Fatalf("version: %+v", v)
	}
	gb, err := ReadMessage(bytes.NewReader(sess[5].frame(t)), 0)
	if err != nil {
		t.Fatal(err)
	}
	loc := gb.(*MsgGetBlocks)
	genesis := "9915158279673d101912be80f25c20627f1dd8bf5231e7c46bfec5ed19737f44"
	if len(loc.Hashes) != 2 || loc.Hashes[0].String() != genesis || loc.Hashes[1] != loc.Hashes[0] || !loc.Stop.IsZero() {
		t.Fatalf("getblocks locator: %+v", loc)
	}
	inv, _ := ReadMessage(bytes.NewReader(sess[6].frame(t)), 0)
	items := inv.(*MsgInv).Items
	if len(items) != 70 || items[0].Type != InvBlock {
		t.Fatalf("inv: %d items", len(items))
	}
	blk, _ := ReadMessage(bytes.NewReader(sess[8].frame(t)), 0)
	b := blk.(*MsgBlock).Block
	if b.Header.Height != 1 || b.Header.PrevBlock.String() != genesis || b.Header.Hash() != items[0].Hash {
		t.Fatalf("block 1: %+v", b.Header)
	}
	if b.MerkleRoot() != b.Header.MerkleRoot {
		t.Fatal("merkle root of block 1 differs")
	}
	probe := loadSession(t, "p2p_headers_probe.jsonl")
	for _, rec := range probe {
		if rec.Command != "headers" {
			continue
		}
		m, _ := ReadMessage(bytes.NewReader(rec.frame(t)), 0)
		hs := m.(*MsgHeaders).Headers
		if len(hs) == 70 && (hs[0].Hash() != items[0].Hash || hs[69].Hash() != items[69].Hash) {
			t.Fatal("headers answer does not match the inv")
		}
	}
}

func TestFramingErrors(t *testing.T) {
	good, err := AppendFrame(nil, CmdPing, (&MsgPing{Nonce: 7, HasNonce: true}).Encode(nil))
	if err != nil {
		t.Fatal(err)
	}
	mut := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	cases := []struct {
		name string
		b    []byte
		max  int
		want error
	}{
		{"magic", mut(func(b []byte) { b[0] = 0xf9 }), 0, ErrBadMagic},
		{"command not padded", mut(func(b []byte) { b[15] = 'x' }), 0, ErrBadCommand},
		{"command control char", mut(func(b []byte) { b[4] = 1 }), 0, ErrBadCommand},
		{"checksum", mut(func(b []byte) { b[20] ^= 1 }), 0, ErrBadChecksum},
		{"too large", good, 7, ErrTooLarge},
		{"huge length", mut(func(b []byte) { b[19] = 0xff }), 0, ErrTooLarge},
	}
	for _, c := range cases {
		_, err := ReadMessage(bytes.NewReader(c.b), c.max)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := AppendFrame(nil, "waytoolongcommand", nil); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("long command: %v", err)
	}
}

// Counts are refused before anything is allocated for them.
func TestDecodeBounds(t *testing.T) {
	huge := AppendCompactSize(nil, 1<<40)
	for _, cmd := range []string{CmdInv, CmdGetData, CmdHeaders, CmdAddr} {
		if _, err := Decode(cmd, huge); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s with 2^40 items: %v", cmd, err)
		}
	}
	// 2001 headers is over twisterd's answer size even if the bytes are there.
	over := AppendCompactSize(nil, MaxHeaders+1)
	over = append(over, make([]byte, (MaxHeaders+1)*(BlockHeaderSize+1))...)
	if _, err := Decode(CmdHeaders, over); !errors.Is(err, ErrMalformed) {
		t.Fatalf("2001 headers: %v", err)
	}
	if _, err := Decode(CmdBlock, make([]byte, MaxBlockSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized block: %v", err)
	}
	// Non-canonical compact size.
	if _, err := Decode(CmdInv, []byte{0xfd, 0x01, 0x00}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("non-canonical: %v", err)
	}
	if _, err := Decode(CmdPong, []byte{1, 2, 3}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short pong: %v", err)
	}
	if _, err := Decode(CmdVerack, []byte{0}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("verack with payload: %v", err)
	}
}

func TestMessagesRoundTrip(t *testing.T) {
	h, _ := ParseHash(strings.Repeat("ab", 32))
	msgs := []Message{
		&MsgVersion{Version: 70003, Services: 1, Timestamp: 1796114881, Nonce: 9, UserAgent: "/twgroupd:0.1/", StartHeight: 3},
		&MsgVerack{}, &MsgGetAddr{}, &MsgMempool{},
		&MsgPing{}, &MsgPing{Nonce: 1, HasNonce: true}, &MsgPong{Nonce: 2},
		&MsgAddr{Addrs: []TimedAddr{{Time: 5, NetAddr: NetAddr{Services: 1, Port: 28333}}}},
		&MsgGetHeaders{Locator{Version: 70003, Hashes: []Hash{h}, Stop: h}},
		&MsgGetBlocks{Locator{Version: 70003}},
		&MsgHeaders{Headers: []BlockHeader{{Version: 2, Height: 1, PrevBlock: h, Bits: 0x1f03ffff}}},
		&MsgInv{Items: []InvVect{{InvBlock, h}}}, &MsgGetData{Items: []InvVect{{InvTx, h}}}, &MsgNotFound{},
		&MsgTx{Tx: Tx{Version: 1, UserName: AppendPush(nil, []byte("alice")), PubKey: AppendPush(nil, make([]byte, 33))}},
		&MsgCP{Height: 6, Hash: h, Username: []byte("alice"), Sign: make([]byte, 65)},
		&MsgBlock{Block: &Block{Header: BlockHeader{Version: 2}, Txs: []Tx{{Version: 1}}}},
	}
	for _, m := range msgs {
		payload := m.Encode(nil)
		got, err := Decode(m.Command(), payload)
		if err != nil {
			t.Fatalf("%s: %v", m.Command(), err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(m)) {
			t.Fatalf("%s: got %#v, want %#v", m.Command(), got, m)
		}
	}
}

// normalize makes nil and empty slices compare equal.
func normalize(m Message) string {
	return hex.EncodeToString(m.Encode(nil)) + m.Command()
}

func TestPushData(t *testing.T) {
	script := AppendPush(AppendPush(nil, []byte("bob")), make([]byte, 65))
	script = append(script, 0x00, 0x51) // OP_0, OP_1
	script = AppendPush(script, make([]byte, 300))
	pushes, err := PushData(script)
	if err != nil {
		t.Fatal(err)
	}
	if len(pushes) != 5 || string(pushes[0]) != "bob" || len(pushes[1]) != 65 || len(pushes[2]) != 0 || len(pushes[3]) != 0 || len(pushes[4]) != 300 {
		t.Fatalf("pushes: %d", len(pushes))
	}
	for _, bad := range [][]byte{{0x05, 'a'}, {0x4c}, {0x4d, 1}, {0x4e, 0xff, 0xff, 0xff, 0xff}, {0x61}, {0xac}} {
		if _, err := PushData(bad); err == nil {
			t.Errorf("PushData(%x) accepted", bad)
		}
	}
	if name, ok := SmallString([]byte{5, 'a', 'l', 'i', 'c', 'e'}); !ok || name != "alice" {
		t.Fatal("small string")
	}
	if _, ok := SmallString([]byte{5, 'a'}); ok {
		t.Fatal("short small string accepted")
	}
}

func TestParseHash(t *testing.T) {
	s := "9915158279673d101912be80f25c20627f1dd8bf5231e7c46bfec5ed19737f44"
	h, err := ParseHash(s)
	if err != nil || h.String() != s || h[0] != 0x44 {
		t.Fatalf("%v %s", err, h)
	}
	if _, err := ParseHash("zz"); err == nil {
		t.Fatal("bad hash accepted")
	}
}
