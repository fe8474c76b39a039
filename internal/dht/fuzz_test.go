package dht

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/anacrolix/torrent/bencode"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

// Any datagram gets a bounded, well-formed reaction or none.
func FuzzHandleDatagram(f *testing.F) {
	for _, p := range loadPackets(f) {
		raw, _ := hex.DecodeString(p.Hex)
		f.Add(raw)
	}
	for _, s := range []string{
		"d1:q4:ping1:t2:aa1:xd2:id20:aaaaaaaaaaaaaaaaaaaae1:z1:qe",
		"d1:q7:getData1:t2:aa1:xd2:id20:aaaaaaaaaaaaaaaaaaaa6:targetd1:n5:alice1:r7:tracker1:t1:mee1:z1:qe",
		"d1:q7:putData1:t2:aa1:xd2:id20:aaaaaaaaaaaaaaaaaaaa1:pd1:vi1ee5:sig_p1:x8:sig_user1:u5:token4:abcde1:z1:qe",
		"d1:eli203e3:bade1:t2:aa1:z1:ee",
		"d1:q1:x1:t0:1:z1:qe",
		"d1:zllllllllllllllleeeeeeeeeeeeeeee",
	} {
		f.Add([]byte(s))
	}
	reg := newTestRegistry(f, "alice")
	n := openNode(f, testConfig(f, reg))
	// Something to serve, so getData answers carry data.
	target := twproto.DHTTarget{N: "alice", R: "mention", T: "m"}
	for i := 0; i < 3; i++ {
		p, sig := reg.signedP(f, "alice", target, string(rune('a'+i)), -1, 1, 1)
		pd, _ := twproto.ParseDHTP(p)
		n.items.store(target.Hash(), newStoredItem(pd, sig, "alice"), n.now())
	}
	srcs := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:6881"),
		netip.MustParseAddrPort("198.51.100.7:6881"),
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, src := range srcs {
			reply := n.handleDatagram(context.Background(), pkt, src)
			if reply == nil {
				continue
			}
			if len(reply) > maxReplySize+1000 {
				t.Fatalf("reply of %d bytes", len(reply))
			}
			m, err := DecodeMsg(reply)
			if err != nil {
				t.Fatalf("undecodable reply %q: %v", reply, err)
			}
			if m.Z != "r" && m.Z != "e" {
				t.Fatalf("reply type %q", m.Z)
			}
			if m.Z == "e" && (m.E == nil || m.E.Code != errorCode) {
				t.Fatalf("bad error reply %q", reply)
			}
			in, _ := DecodeMsg(pkt)
			if in != nil && string(in.T) != string(m.T) {
				t.Fatalf("t not echoed: %q vs %q", in.T, m.T)
			}
		}
	})
}

func FuzzDecodeMsg(f *testing.F) {
	for _, p := range loadPackets(f) {
		raw, _ := hex.DecodeString(p.Hex)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		m, err := DecodeMsg(pkt)
		if err != nil {
			return
		}
		out, err := m.Marshal()
		if err != nil {
			return // e.g. an empty raw value cannot be re-encoded
		}
		again, err := DecodeMsg(out)
		if err != nil {
			t.Fatalf("re-encoded message undecodable: %v", err)
		}
		out2, _ := again.Marshal()
		if string(out) != string(out2) {
			t.Fatalf("encoding not stable")
		}
	})
}

// rawDict's hand scanner agrees with anacrolix's decoder wherever it
// answers (it may decline and leave the input to anacrolix).
func FuzzScanDict(f *testing.F) {
	for _, p := range loadPackets(f) {
		raw, _ := hex.DecodeString(p.Hex)
		f.Add(raw)
	}
	for _, s := range []string{
		"de", "d1:ai0ee", "d1:ai-0ee", "d1:ai03ee", "d1:a01:xe", "d1:ai1e1:ai2ee",
		"d1:ald1:bi-12eee1:c0:e", "d1:ai9223372036854775808ee", "d1:b1:x1:a1:ye",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || b[0] != 'd' {
			return
		}
		got, ok := scanDict(b)
		if !ok {
			return
		}
		var want map[string]bencode.Bytes
		if err := bencode.Unmarshal(b, &want); err != nil {
			t.Fatalf("scanDict accepted %q, anacrolix: %v", b, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d keys, anacrolix %d", b, len(got), len(want))
		}
		for k, v := range want {
			if !bytes.Equal(got[k], v) {
				t.Fatalf("%q: key %q = %q, anacrolix %q", b, k, got[k], v)
			}
		}
	})
}

// The captured twisterd datagrams all take the fast path.
func TestScanDictTakesCapturedPackets(t *testing.T) {
	for _, p := range loadPackets(t) {
		raw, _ := hex.DecodeString(p.Hex)
		if _, ok := scanDict(raw); !ok {
			t.Fatalf("scanDict declined a captured datagram: %q", raw)
		}
	}
}

// The hand encoder writes what anacrolix's reflective one writes, for any
// message a datagram decodes to.
func FuzzMsgMarshal(f *testing.F) {
	for _, p := range loadPackets(f) {
		raw, _ := hex.DecodeString(p.Hex)
		f.Add(raw)
	}
	f.Add([]byte("d1:eli203e3:bade1:t2:aa1:z1:ee"))
	f.Add([]byte("d1:rd4:datale2:id0:5:nodes0:6:valuesl0:ee1:t0:1:z1:re"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMsg(b)
		if err != nil {
			return
		}
		compareMarshal(t, m)
	})
}

func compareMarshal(t *testing.T, m *Msg) {
	t.Helper()
	want, werr := m.marshalReflect()
	got, ok := appendMsg(nil, m)
	if !ok {
		return // Marshal itself falls back to marshalReflect
	}
	if werr != nil || !bytes.Equal(got, want) {
		t.Fatalf("%+v:\n got %q\nwant %q (%v)", m, got, want, werr)
	}
}

// Nil and empty variants of every field encode as anacrolix encodes them.
func TestMsgMarshalMatchesReflect(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 15))
	str := func() []byte {
		switch r.IntN(3) {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		b := make([]byte, r.IntN(30))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	num := func() *int64 {
		if r.IntN(2) == 0 {
			return nil
		}
		return i64(r.Int64N(1<<40) - 1<<39)
	}
	list := func() [][]byte {
		if r.IntN(3) == 0 {
			return nil
		}
		l := make([][]byte, r.IntN(4))
		for i := range l {
			l[i] = str()
		}
		return l
	}
	raw := func() bencode.Bytes {
		if r.IntN(2) == 0 {
			return nil
		}
		return bencode.Bytes(fmt.Appendf(nil, "d1:xi%dee", r.IntN(100)))
	}
	for i := 0; i < 5000; i++ {
		m := &Msg{T: str(), V: str(), Z: string(str())}
		if r.IntN(2) == 0 {
			m.Q = string(str())
		}
		if r.IntN(3) == 0 {
			m.E = &KRPCError{Code: r.Int64N(1000) - 10, Msg: string(str())}
		}
		if r.IntN(2) == 0 {
			m.R = &Return{Followers: num(), ID: str(), IP: str(), N: str(), Nodes: str(), Nodes2: list(), Token: str(), Values: list()}
			if r.IntN(2) == 0 {
				m.R.Data = []bencode.Bytes{}
				for j := r.IntN(3); j > 0; j-- {
					m.R.Data = append(m.R.Data, raw())
				}
			}
		}
		if r.IntN(2) == 0 {
			m.X = &Args{ID: str(), ImpliedPort: num(), InfoHash: str(), JustToken: num(), N: str(), NoSeed: num(),
				P: raw(), Port: num(), Seed: num(), SigP: str(), SigUser: str(), Target: raw(), Token: str()}
		}
		compareMarshal(t, m)
	}
}
