package chain

import (
	"fmt"
	"math/big"

	"github.com/twgroupd/twgroupd/internal/chainwire"
	"golang.org/x/crypto/scrypt"
)

// CompactToBig decodes nBits (bitcoin's CBigNum::SetCompact): a 3-byte
// mantissa with a sign bit and a byte exponent.
func CompactToBig(bits uint32) *big.Int {
	mant := int64(bits & 0x007fffff)
	exp := uint(bits >> 24)
	n := big.NewInt(mant)
	if exp <= 3 {
		n.Rsh(n, 8*(3-exp))
	} else {
		n.Lsh(n, 8*(exp-3))
	}
	if bits&0x00800000 != 0 {
		n.Neg(n)
	}
	return n
}

// BigToCompact encodes a non-negative target as nBits (CBigNum::GetCompact).
func BigToCompact(n *big.Int) uint32 {
	if n.Sign() == 0 {
		return 0
	}
	size := uint32((n.BitLen() + 7) / 8)
	var mant uint32
	if size <= 3 {
		mant = uint32(n.Uint64()) << (8 * (3 - size))
	} else {
		mant = uint32(new(big.Int).Rsh(n, uint(8*(size-3))).Uint64())
	}
	if mant&0x00800000 != 0 {
		mant >>= 8
		size++
	}
	return size<<24 | mant
}

// hashToBig reads a hash as bitcoin's uint256 (little-endian).
func hashToBig(h chainwire.Hash) *big.Int {
	var be [32]byte
	for i := range h {
		be[31-i] = h[i]
	}
	return new(big.Int).SetBytes(be[:])
}

// PoWHash is twister's block proof-of-work hash: scrypt(N, r=1, p=1) with
// the whole 84-byte header as both password and salt (not the first 80
// bytes as litecoin; shared/chain README, confirmed on every recorded block).
func PoWHash(h *chainwire.BlockHeader, n int) (chainwire.Hash, error) {
	b := h.Bytes()
	out, err := scrypt.Key(b[:], b[:], n, 1, 1, 32)
	if err != nil {
		return chainwire.Hash{}, fmt.Errorf("scrypt: %w", err)
	}
	return chainwire.Hash(out), nil
}

// checkProofOfWork is main.cpp CheckProofOfWork: the target must be in
// (0, limit] and the hash, as a number, at most the target.
func checkProofOfWork(hash chainwire.Hash, bits uint32, limit *big.Int) error {
	target := CompactToBig(bits)
	if target.Sign() <= 0 || target.Cmp(limit) > 0 {
		return fmt.Errorf("%w: nBits %08x below minimum work", ErrInvalid, bits)
	}
	if hashToBig(hash).Cmp(target) > 0 {
		return fmt.Errorf("%w: proof of work %s does not meet nBits %08x", ErrInvalid, hash, bits)
	}
	return nil
}

// blockWork is the expected number of hashes for a target: 2^256/(target+1),
// as bitcoin's GetBlockWork.
func blockWork(bits uint32) *big.Int {
	target := CompactToBig(bits)
	if target.Sign() <= 0 {
		return new(big.Int)
	}
	num := new(big.Int).Lsh(big.NewInt(1), 256)
	return num.Div(num, target.Add(target, big.NewInt(1)))
}

// nextWorkRequired is main.cpp GetNextWorkRequired (mainnet rules): the
// previous nBits except every RetargetInterval blocks, where the target
// scales by the time the last interval took (clamped to [1/4, 4] of the
// target timespan) and never exceeds the limit.
func (c *Chain) nextWorkRequired(last *node) uint32 {
	p := c.p
	interval := p.RetargetInterval()
	if (last.height+1)%interval != 0 {
		return last.bits
	}
	first := last
	for i := int32(0); first.prev != nil && i < interval-1; i++ {
		first = first.prev
	}
	return Retarget(last.bits, int64(last.time)-int64(first.time), p)
}

// Retarget is GetNextWorkRequired's new nBits from the old one and the
// seconds the last interval took.
func Retarget(bits uint32, actual int64, p *Params) uint32 {
	if actual < p.TargetTimespan/4 {
		actual = p.TargetTimespan / 4
	}
	if actual > p.TargetTimespan*4 {
		actual = p.TargetTimespan * 4
	}
	n := CompactToBig(bits)
	n.Mul(n, big.NewInt(actual))
	n.Div(n, big.NewInt(p.TargetTimespan))
	if n.Cmp(p.PowLimit) > 0 {
		n.Set(p.PowLimit)
	}
	return BigToCompact(n)
}
