package dht

import (
	"bytes"
	"context"
	"encoding/hex"
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
