package chain

import (
	"math/big"
	"math/bits"
)

// uint256 is cumulative chain work in four little-endian 64-bit limbs: a
// fixed-size value, so the in-memory header index does not hold a big.Int
// (and its heap slice) per header.
type uint256 [4]uint64

func (a uint256) add(b uint256) uint256 {
	var out uint256
	var carry uint64
	for i := range a {
		out[i], carry = bits.Add64(a[i], b[i], carry)
	}
	return out
}

func (a uint256) cmp(b uint256) int {
	for i := 3; i >= 0; i-- {
		switch {
		case a[i] > b[i]:
			return 1
		case a[i] < b[i]:
			return -1
		}
	}
	return 0
}

func uint256FromBig(n *big.Int) uint256 {
	var out uint256
	words := new(big.Int).Set(n)
	mask := new(big.Int).SetUint64(^uint64(0))
	for i := range out {
		out[i] = new(big.Int).And(words, mask).Uint64()
		words.Rsh(words, 64)
	}
	return out
}

// workOf is blockWork as a uint256.
func workOf(bits uint32) uint256 { return uint256FromBig(blockWork(bits)) }
