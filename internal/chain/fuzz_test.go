package chain

import (
	"bytes"
	"math/big"
	"testing"

	"github.com/twgroupd/twgroupd/internal/chainwire"
)

// FuzzDecodeBlockData: chain.db's block records never panic and re-encode
// to the same bytes when they decode.
func FuzzDecodeBlockData(f *testing.F) {
	d := &blockData{Size: 245, Spam: Spam{User: "alice", Message: "hi"}, SpamScript: []byte{2, 'h', 'i'}, SpamSig: make([]byte, 65),
		TxIDs: []chainwire.Hash{{1}}, Records: []Record{{User: "bob", PubKey: make([]byte, 33), Tx: []byte{1, 2}}}}
	f.Add(d.encode())
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeBlockData(b)
		if err != nil {
			return
		}
		d2, err := decodeBlockData(d.encode())
		if err != nil || !bytes.Equal(d2.encode(), d.encode()) {
			t.Fatalf("unstable block data: %v", err)
		}
	})
}

// FuzzDecodeEntries: a user's key list from chain.db.
func FuzzDecodeEntries(f *testing.F) {
	f.Add(encodeEntries([]Entry{{Height: 6, PubKey: make([]byte, 33), Tx: []byte{1}}, {Height: 23, PubKey: make([]byte, 33)}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := decodeEntries(b)
		if err != nil {
			return
		}
		if es2, err := decodeEntries(encodeEntries(es)); err != nil || len(es2) != len(es) {
			t.Fatalf("unstable entries: %v", err)
		}
	})
}

func TestUint256MatchesBig(t *testing.T) {
	for _, bits := range []uint32{0x1f03ffff, 0x207fffff, 0x1d00ffff, 0x1b0404cb, 0x03123456} {
		w := blockWork(bits)
		sum := new(big.Int).Add(w, w)
		u := workOf(bits).add(workOf(bits))
		if uint256FromBig(sum) != u {
			t.Fatalf("%08x: sum differs", bits)
		}
		if workOf(bits).cmp(u) >= 0 || u.cmp(workOf(bits)) <= 0 || u.cmp(u) != 0 {
			t.Fatalf("%08x: cmp", bits)
		}
	}
}
