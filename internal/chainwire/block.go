package chainwire

import (
	"encoding/binary"
	"fmt"
)

// BlockHeaderSize is twister's header: bitcoin's 80 bytes plus nHeight.
const BlockHeaderSize = 84

// BlockHeader is twister's block header (core.h CBlockHeader), all fields
// little-endian on the wire in this order: nVersion, nHeight, hashPrevBlock,
// hashMerkleRoot, nTime, nBits, nNonce.
type BlockHeader struct {
	Version    int32
	Height     int32
	PrevBlock  Hash
	MerkleRoot Hash
	Time       uint32
	Bits       uint32
	Nonce      uint32
}

// Bytes is the 84-byte serialization (input of both the block hash and the
// scrypt proof of work).
func (h *BlockHeader) Bytes() [BlockHeaderSize]byte {
	var b [BlockHeaderSize]byte
	binary.LittleEndian.PutUint32(b[0:], uint32(h.Version))
	binary.LittleEndian.PutUint32(b[4:], uint32(h.Height))
	copy(b[8:40], h.PrevBlock[:])
	copy(b[40:72], h.MerkleRoot[:])
	binary.LittleEndian.PutUint32(b[72:], h.Time)
	binary.LittleEndian.PutUint32(b[76:], h.Bits)
	binary.LittleEndian.PutUint32(b[80:], h.Nonce)
	return b
}

// Hash is the block hash: sha256d of the 84 header bytes.
func (h *BlockHeader) Hash() Hash {
	b := h.Bytes()
	return DoubleSHA256(b[:])
}

// ParseBlockHeader decodes exactly 84 bytes.
func ParseBlockHeader(b []byte) (BlockHeader, error) {
	if len(b) != BlockHeaderSize {
		return BlockHeader{}, fmt.Errorf("%w: header of %d bytes", ErrMalformed, len(b))
	}
	r := &reader{b: b}
	h := readHeader(r)
	return h, r.err
}

func readHeader(r *reader) BlockHeader {
	return BlockHeader{
		Version:    int32(r.u32()),
		Height:     int32(r.u32()),
		PrevBlock:  r.hash(),
		MerkleRoot: r.hash(),
		Time:       r.u32(),
		Bits:       r.u32(),
		Nonce:      r.u32(),
	}
}

// Tx is twister's transaction (core.h CTransaction): no inputs or outputs.
// The three scripts are kept as raw CScript bytes; PushData splits them.
type Tx struct {
	Version  int32
	Message  []byte // CScript: empty for registrations, the spam text in tx[0]
	UserName []byte // CScript
	PubKey   []byte // CScript
	Nonce    uint32
}

// AppendTo appends the serialization.
func (t *Tx) AppendTo(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(t.Version))
	dst = AppendVarBytes(dst, t.Message)
	dst = AppendVarBytes(dst, t.UserName)
	dst = AppendVarBytes(dst, t.PubKey)
	return binary.LittleEndian.AppendUint32(dst, t.Nonce)
}

// Hash is the txid: sha256d of the serialization.
func (t *Tx) Hash() Hash { return DoubleSHA256(t.AppendTo(nil)) }

func readTx(r *reader) Tx {
	return Tx{
		Version:  int32(r.u32()),
		Message:  r.varBytes(MaxTxSize, "message"),
		UserName: r.varBytes(MaxTxSize, "userName"),
		PubKey:   r.varBytes(MaxTxSize, "pubKey"),
		Nonce:    r.u32(),
	}
}

// ParseTx decodes one serialized transaction (the tx message payload).
func ParseTx(b []byte) (Tx, error) {
	r := &reader{b: b}
	t := readTx(r)
	return t, r.done("tx")
}

// Block is a header and its transactions; tx[0] is the spam ("coinbase") tx.
type Block struct {
	Header BlockHeader
	Txs    []Tx
}

// minTxSize is the smallest serialized tx: version, three empty scripts, nonce.
const minTxSize = 4 + 3 + 4

// AppendTo appends the serialization (header || CompactSize(n) || txs).
func (b *Block) AppendTo(dst []byte) []byte {
	hb := b.Header.Bytes()
	dst = append(dst, hb[:]...)
	dst = AppendCompactSize(dst, uint64(len(b.Txs)))
	for i := range b.Txs {
		dst = b.Txs[i].AppendTo(dst)
	}
	return dst
}

// ParseBlock decodes a block of at most MaxBlockSize bytes.
func ParseBlock(b []byte) (*Block, error) {
	if len(b) > MaxBlockSize {
		return nil, fmt.Errorf("%w: block of %d bytes (max %d)", ErrTooLarge, len(b), MaxBlockSize)
	}
	r := &reader{b: b}
	blk := &Block{Header: readHeader(r)}
	n := r.count(MaxBlockSize/minTxSize, minTxSize, "txs")
	if r.err == nil && n > 0 {
		blk.Txs = make([]Tx, n)
		for i := range blk.Txs {
			blk.Txs[i] = readTx(r)
		}
	}
	if err := r.done("block"); err != nil {
		return nil, err
	}
	return blk, nil
}

// MerkleRoot is bitcoin's merkle root over the txids (last hash duplicated
// on odd levels). It does not detect bitcoin's CVE-2012-2459 duplicate
// trick; callers reject duplicate txids separately, as twisterd does.
func (b *Block) MerkleRoot() Hash {
	if len(b.Txs) == 0 {
		return Hash{}
	}
	level := make([]Hash, len(b.Txs))
	for i := range b.Txs {
		level[i] = b.Txs[i].Hash()
	}
	var buf [64]byte
	for len(level) > 1 {
		next := make([]Hash, 0, (len(level)+1)/2)
		for i := 0; i < len(level); i += 2 {
			j := i + 1
			if j == len(level) {
				j = i
			}
			copy(buf[:32], level[i][:])
			copy(buf[32:], level[j][:])
			next = append(next, DoubleSHA256(buf[:]))
		}
		level = next
	}
	return level[0]
}

// Script opcodes used by twister's push-only scripts.
const (
	opPushData1 = 0x4c
	opPushData2 = 0x4d
	opPushData4 = 0x4e
	opPush16    = 0x60
)

// PushData splits a push-only CScript into its pushes (OP_0 is an empty
// push; so are OP_1NEGATE..OP_16, whose data GetOp leaves empty), as
// twisterd's CScript::ExtractPushData. Any other opcode, or a
// push running past the end, is an error.
func PushData(script []byte) ([][]byte, error) {
	var out [][]byte
	for i := 0; i < len(script); {
		op := script[i]
		i++
		var n int
		switch {
		case op == 0:
			n = 0
		case op < opPushData1:
			n = int(op)
		case op == opPushData1:
			if i+1 > len(script) {
				return nil, fmt.Errorf("%w: truncated PUSHDATA1", ErrMalformed)
			}
			n = int(script[i])
			i++
		case op == opPushData2:
			if i+2 > len(script) {
				return nil, fmt.Errorf("%w: truncated PUSHDATA2", ErrMalformed)
			}
			n = int(binary.LittleEndian.Uint16(script[i:]))
			i += 2
		case op == opPushData4:
			if i+4 > len(script) {
				return nil, fmt.Errorf("%w: truncated PUSHDATA4", ErrMalformed)
			}
			m := binary.LittleEndian.Uint32(script[i:])
			i += 4
			if uint64(m) > uint64(len(script)) {
				return nil, fmt.Errorf("%w: push of %d bytes", ErrMalformed, m)
			}
			n = int(m)
		case op <= opPush16:
			n = 0 // OP_1NEGATE, OP_RESERVED, OP_1..OP_16: ExtractPushData yields an empty vch
		default:
			return nil, fmt.Errorf("%w: opcode 0x%02x in a push-only script", ErrMalformed, op)
		}
		if n > len(script)-i {
			return nil, fmt.Errorf("%w: push of %d bytes, %d left", ErrMalformed, n, len(script)-i)
		}
		out = append(out, script[i:i+n])
		i += n
	}
	return out, nil
}

// AppendPush appends a minimal push of data (what CScript << vch writes).
func AppendPush(dst, data []byte) []byte {
	switch n := len(data); {
	case n < opPushData1:
		dst = append(dst, byte(n))
	case n <= 0xff:
		dst = append(dst, opPushData1, byte(n))
	case n <= 0xffff:
		dst = binary.LittleEndian.AppendUint16(append(dst, opPushData2), uint16(n))
	default:
		dst = binary.LittleEndian.AppendUint32(append(dst, opPushData4), uint32(n))
	}
	return append(dst, data...)
}

// SmallString returns the name of a "small string" script (one direct push
// of 0..75 bytes filling the script, twisterd's IsSmallString).
func SmallString(script []byte) (string, bool) {
	if len(script) < 1 || int(script[0]) >= opPushData1 || int(script[0]) != len(script)-1 {
		return "", false
	}
	return string(script[1:]), true
}
