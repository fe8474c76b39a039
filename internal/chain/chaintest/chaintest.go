// Package chaintest builds small twister chains for tests: easy-difficulty
// parameters, a miner for blocks, registrations and key replacements, and
// (peer.go) a P2P peer serving blocks the way twisterd does. Test code only.
package chaintest

import (
	"encoding/binary"
	"math/big"

	"github.com/twgroupd/twgroupd/internal/chain"
	"github.com/twgroupd/twgroupd/internal/chainwire"
	"github.com/twgroupd/twgroupd/internal/twproto"
)

// EasyBits is the compact form of the test PoW limit: about every second
// scrypt hash meets it.
const EasyBits = 0x207fffff

// GenesisTime is the test genesis block's timestamp.
const GenesisTime = 1796000000

// Params returns a test network: mainnet rules with the easiest targets for
// blocks and registrations, no checkpoints, no DNS seeds, and a retarget
// every interval blocks (2016 as mainnet if interval <= 0).
func Params(interval int) *chain.Params {
	if interval <= 0 {
		interval = 2016
	}
	limit := new(big.Int).Rsh(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1)), 1)
	p := &chain.Params{
		Name:           "chaintest",
		PowLimit:       limit,
		TxBits:         EasyBits,
		TargetSpacing:  600,
		TargetTimespan: 600 * int64(interval),
		Checkpoints:    map[int32]chainwire.Hash{},
		ScryptN:        1024,
		DefaultPort:    chainwire.DefaultPort,
	}
	g := &chainwire.Block{Header: chainwire.BlockHeader{Version: 1, Time: GenesisTime, Bits: EasyBits}}
	g.Txs = []chainwire.Tx{SpamTx("nobody", "chaintest genesis", 0)}
	g.Header.MerkleRoot = g.MerkleRoot()
	p.Genesis = g.AppendTo(nil)
	return p
}

// SpamTx is an unsigned spam ("coinbase") transaction; salt varies it.
func SpamTx(user, msg string, salt uint32) chainwire.Tx {
	un := chainwire.AppendPush(nil, []byte(user))
	un = append(un, 0) // OP_0: no signature
	un = chainwire.AppendPush(un, binary.LittleEndian.AppendUint32(nil, salt))
	return chainwire.Tx{Version: 1, Message: chainwire.AppendPush(nil, []byte(msg)), UserName: un,
		PubKey: chainwire.AppendPush(chainwire.AppendPush(nil, []byte{1}), []byte("/P2SH/"))}
}

// SignedSpamTx is a spam transaction signed by user's key k (ConnectBlock
// checks it against the user's key of record).
func SignedSpamTx(user, msg string, salt uint32, k *twproto.PrivateKey) chainwire.Tx {
	tx := SpamTx(user, msg, salt)
	sig, err := twproto.Sign(k, tx.Message)
	if err != nil {
		panic(err)
	}
	un := chainwire.AppendPush(nil, []byte(user))
	un = chainwire.AppendPush(un, sig)
	tx.UserName = chainwire.AppendPush(un, binary.LittleEndian.AppendUint32(nil, salt))
	return tx
}

// AddSpam mines a block whose spam tx is spam, after the tip.
func (b *Builder) AddSpam(spam chainwire.Tx, txs ...chainwire.Tx) *chainwire.Block {
	prev := b.Tip()
	blk := &chainwire.Block{Header: chainwire.BlockHeader{
		Version: 2, Height: prev.Header.Height + 1, PrevBlock: prev.Header.Hash(),
		Time: prev.Header.Time + 600, Bits: b.NextBits(),
	}}
	blk.Txs = append([]chainwire.Tx{spam}, txs...)
	blk.Header.MerkleRoot = blk.MerkleRoot()
	MineHeader(&blk.Header, b.P)
	b.Blocks = append(b.Blocks, blk)
	return blk
}

// minePoW increments nonce until sha256d(tx) meets bits.
func mineTx(tx chainwire.Tx, bits uint32) chainwire.Tx {
	target := chain.CompactToBig(bits)
	for ; ; tx.Nonce++ {
		if hashNum(tx.Hash()).Cmp(target) <= 0 {
			return tx
		}
	}
}

func hashNum(h chainwire.Hash) *big.Int {
	var be [32]byte
	for i := range h {
		be[31-i] = h[i]
	}
	return new(big.Int).SetBytes(be[:])
}

// Registration is a mined registration of name with pub.
func Registration(p *chain.Params, name string, pub []byte) chainwire.Tx {
	return mineTx(chainwire.Tx{Version: 1, UserName: chainwire.AppendPush(nil, []byte(name)),
		PubKey: chainwire.AppendPush(nil, pub)}, p.TxBits)
}

// Replacement is a mined key replacement: newPub signed by old.
func Replacement(p *chain.Params, name string, newPub []byte, old *twproto.PrivateKey) chainwire.Tx {
	sig, err := twproto.Sign(old, newPub)
	if err != nil {
		panic(err)
	}
	pk := chainwire.AppendPush(chainwire.AppendPush(nil, newPub), sig)
	return mineTx(chainwire.Tx{Version: 1, UserName: chainwire.AppendPush(nil, []byte(name)), PubKey: pk}, p.TxBits)
}

// Builder extends a chain block by block. Blocks[0] is the genesis.
type Builder struct {
	P      *chain.Params
	Blocks []*chainwire.Block
	salt   uint32
}

// NewBuilder starts at p's genesis.
func NewBuilder(p *chain.Params) *Builder {
	g, err := p.GenesisBlock()
	if err != nil {
		panic(err)
	}
	return &Builder{P: p, Blocks: []*chainwire.Block{g}}
}

// Fork returns a builder sharing the blocks up to height.
func (b *Builder) Fork(height int) *Builder {
	return &Builder{P: b.P, Blocks: append([]*chainwire.Block(nil), b.Blocks[:height+1]...), salt: b.salt + 1000}
}

// Tip is the last block.
func (b *Builder) Tip() *chainwire.Block { return b.Blocks[len(b.Blocks)-1] }

// NextBits is the nBits GetNextWorkRequired demands of the next block.
func (b *Builder) NextBits() uint32 {
	interval := b.P.RetargetInterval()
	last := b.Tip()
	h := last.Header.Height
	if (h+1)%interval != 0 {
		return last.Header.Bits
	}
	first := b.Blocks[h-(interval-1)]
	return chain.Retarget(last.Header.Bits, int64(last.Header.Time)-int64(first.Header.Time), b.P)
}

// Add mines a block with txs after the tip, spacing seconds later. Bits 0
// means what the difficulty rule wants.
func (b *Builder) Add(spacing uint32, bits uint32, txs ...chainwire.Tx) *chainwire.Block {
	if bits == 0 {
		bits = b.NextBits()
	}
	prev := b.Tip()
	b.salt++
	blk := &chainwire.Block{Header: chainwire.BlockHeader{
		Version: 2, Height: prev.Header.Height + 1, PrevBlock: prev.Header.Hash(),
		Time: prev.Header.Time + spacing, Bits: bits,
	}}
	blk.Txs = append([]chainwire.Tx{SpamTx("nobody", "chaintest", b.salt)}, txs...)
	blk.Header.MerkleRoot = blk.MerkleRoot()
	MineHeader(&blk.Header, b.P)
	b.Blocks = append(b.Blocks, blk)
	return blk
}

// Extend adds n empty blocks 600 s apart.
func (b *Builder) Extend(n int) {
	for i := 0; i < n; i++ {
		b.Add(600, 0)
	}
}

// MineHeader finds a nonce meeting h.Bits (fast only for easy targets).
func MineHeader(h *chainwire.BlockHeader, p *chain.Params) {
	target := chain.CompactToBig(h.Bits)
	for ; ; h.Nonce++ {
		pow, err := chain.PoWHash(h, p.ScryptN)
		if err != nil {
			panic(err)
		}
		if hashNum(pow).Cmp(target) <= 0 {
			return
		}
	}
}

// BadPoW returns a copy of h whose nonce fails the proof of work.
func BadPoW(h chainwire.BlockHeader, p *chain.Params) chainwire.BlockHeader {
	target := chain.CompactToBig(h.Bits)
	for ; ; h.Nonce++ {
		pow, _ := chain.PoWHash(&h, p.ScryptN)
		if hashNum(pow).Cmp(target) > 0 {
			return h
		}
	}
}

// Headers returns the headers of blocks.
func Headers(blocks []*chainwire.Block) []chainwire.BlockHeader {
	out := make([]chainwire.BlockHeader, len(blocks))
	for i, b := range blocks {
		out[i] = b.Header
	}
	return out
}
