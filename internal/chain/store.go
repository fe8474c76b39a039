package chain

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/twgroupd/twgroupd/internal/chainwire"
)

// chain.db layout (one bbolt file in the datadir):
//
//	meta  "genesis" -> genesis hash (a file of another network is refused)
//	hdr   block hash -> 84-byte header || status byte      (every valid header)
//	blk   block hash -> encoded blockData                   (checked bodies)
//	main  height (uint32 BE) -> block hash                  (the connected chain)
//	user  username -> entries, ascending height             (main chain only)
var (
	bktMeta = []byte("meta")
	bktHdr  = []byte("hdr")
	bktBlk  = []byte("blk")
	bktMain = []byte("main")
	bktUser = []byte("user")
	keyGen  = []byte("genesis")
)

var errCorrupt = errors.New("chain.db: corrupt record")

// blockData is what the chain keeps of a checked block body.
type blockData struct {
	Size       uint32 // serialized block size (getblock's "size")
	Spam       Spam
	SpamScript []byte // tx[0]'s message script: what the spam signature signs
	SpamSig    []byte // second push of tx[0]'s userName; empty for "nobody"
	TxIDs      []chainwire.Hash
	Records    []Record
}

func (d *blockData) encode() []byte {
	b := []byte{1}
	b = binary.LittleEndian.AppendUint32(b, d.Size)
	b = chainwire.AppendVarBytes(b, []byte(d.Spam.User))
	b = chainwire.AppendVarBytes(b, []byte(d.Spam.Message))
	b = chainwire.AppendVarBytes(b, d.SpamScript)
	b = chainwire.AppendVarBytes(b, d.SpamSig)
	b = chainwire.AppendCompactSize(b, uint64(len(d.TxIDs)))
	for _, id := range d.TxIDs {
		b = append(b, id[:]...)
	}
	b = chainwire.AppendCompactSize(b, uint64(len(d.Records)))
	for _, r := range d.Records {
		b = chainwire.AppendVarBytes(b, []byte(r.User))
		b = chainwire.AppendVarBytes(b, r.PubKey)
		b = chainwire.AppendVarBytes(b, r.Sig)
		b = chainwire.AppendVarBytes(b, r.Tx)
	}
	return b
}

func decodeBlockData(b []byte) (*blockData, error) {
	r := &dbReader{b: b}
	if r.u8() != 1 {
		return nil, fmt.Errorf("%w: block data version", errCorrupt)
	}
	d := &blockData{}
	d.Size = binary.LittleEndian.Uint32(r.bytes(4))
	d.Spam.User = string(r.varBytes())
	d.Spam.Message = string(r.varBytes())
	d.SpamScript = r.varBytes()
	d.SpamSig = r.varBytes()
	n := r.count(32)
	for i := 0; i < n && r.err == nil; i++ {
		var h chainwire.Hash
		copy(h[:], r.bytes(32))
		d.TxIDs = append(d.TxIDs, h)
	}
	n = r.count(4)
	for i := 0; i < n && r.err == nil; i++ {
		d.Records = append(d.Records, Record{
			User: string(r.varBytes()), PubKey: r.varBytes(), Sig: r.varBytes(), Tx: r.varBytes(),
		})
	}
	if r.err == nil && r.off != len(b) {
		r.err = fmt.Errorf("%w: trailing bytes", errCorrupt)
	}
	return d, r.err
}

// Entry is one key of a user on the main chain: valid from Height on, until
// the next entry's height (exclusive).
type Entry struct {
	Height int32
	Block  chainwire.Hash
	PubKey []byte
	Tx     []byte // the registration or replacement transaction
}

func appendEntry(b []byte, e Entry) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(e.Height))
	b = append(b, e.Block[:]...)
	b = chainwire.AppendVarBytes(b, e.PubKey)
	return chainwire.AppendVarBytes(b, e.Tx)
}

func decodeEntries(b []byte) ([]Entry, error) {
	r := &dbReader{b: b}
	var out []Entry
	for r.err == nil && r.off < len(b) {
		var e Entry
		e.Height = int32(binary.BigEndian.Uint32(r.bytes(4)))
		copy(e.Block[:], r.bytes(32))
		e.PubKey = r.varBytes()
		e.Tx = r.varBytes()
		out = append(out, e)
	}
	return out, r.err
}

func encodeEntries(es []Entry) []byte {
	var b []byte
	for _, e := range es {
		b = appendEntry(b, e)
	}
	return b
}

// dbReader decodes our own records; errors (never panics) on bad bytes.
type dbReader struct {
	b   []byte
	off int
	err error
}

func (r *dbReader) bytes(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b)-r.off {
		if r.err == nil {
			r.err = fmt.Errorf("%w: truncated", errCorrupt)
		}
		return make([]byte, max(n, 0))
	}
	out := r.b[r.off : r.off+n]
	r.off += n
	return out
}

func (r *dbReader) u8() byte { return r.bytes(1)[0] }

func (r *dbReader) compact() uint64 {
	switch f := r.u8(); f {
	case 0xfd:
		return uint64(binary.LittleEndian.Uint16(r.bytes(2)))
	case 0xfe:
		return uint64(binary.LittleEndian.Uint32(r.bytes(4)))
	case 0xff:
		return binary.LittleEndian.Uint64(r.bytes(8))
	default:
		return uint64(f)
	}
}

func (r *dbReader) count(minSize int) int {
	n := r.compact()
	if r.err == nil && n*uint64(minSize) > uint64(len(r.b)-r.off) {
		r.err = fmt.Errorf("%w: count %d", errCorrupt, n)
		return 0
	}
	return int(n)
}

func (r *dbReader) varBytes() []byte {
	n := r.count(1)
	if r.err != nil {
		return nil
	}
	return append([]byte(nil), r.bytes(n)...)
}

func heightKey(h int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(h)) }
