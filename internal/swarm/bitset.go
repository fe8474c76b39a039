package swarm

import "math/bits"

// maxPieceIndex is a hard ceiling on piece indices we track, whatever a
// registry says; it bounds the memory one peer's bitfield can claim
// (MaxMessageLen*8 bits already is below it).
const maxPieceIndex = 1 << 21

// bitset is a growable MSB-first bit array, the layout of a BITFIELD.
type bitset struct{ b []byte }

func newBitset() *bitset { return &bitset{} }

func (s *bitset) has(k int64) bool {
	if k < 0 || k/8 >= int64(len(s.b)) {
		return false
	}
	return s.b[k/8]&(0x80>>(k%8)) != 0
}

// set marks k; it reports false (and does nothing) for an index out of range.
func (s *bitset) set(k int64) bool {
	if k < 0 || k >= maxPieceIndex {
		return false
	}
	if n := int(k/8) + 1; n > len(s.b) {
		s.b = append(s.b, make([]byte, n-len(s.b))...)
	}
	s.b[k/8] |= 0x80 >> (k % 8)
	return true
}

func (s *bitset) clear(k int64) {
	if k >= 0 && k/8 < int64(len(s.b)) {
		s.b[k/8] &^= 0x80 >> (k % 8)
	}
}

// highest returns the highest set index, or -1.
func (s *bitset) highest() int64 {
	for i := len(s.b) - 1; i >= 0; i-- {
		if s.b[i] != 0 {
			return int64(i)*8 + 7 - int64(bits.TrailingZeros8(s.b[i]))
		}
	}
	return -1
}

// count returns the number of set bits.
func (s *bitset) count() int {
	n := 0
	for _, c := range s.b {
		n += bits.OnesCount8(c)
	}
	return n
}

// bytes returns the bits in exactly n bytes (padded or truncated).
func (s *bitset) bytes(n int) []byte {
	out := make([]byte, n)
	copy(out, s.b)
	return out
}

// each calls fn for every set index in ascending order until fn returns false.
func (s *bitset) each(fn func(k int64) bool) {
	for i, c := range s.b {
		for c != 0 {
			j := bits.LeadingZeros8(c)
			if !fn(int64(i)*8 + int64(j)) {
				return
			}
			c &^= 0x80 >> j
		}
	}
}

// nextClear returns the lowest index >= k that is not set (every index
// past the end is clear), skipping full bytes.
func (s *bitset) nextClear(k int64) int64 {
	if k < 0 {
		k = 0
	}
	for k/8 < int64(len(s.b)) {
		c := s.b[k/8] | ^(0xFF >> (k % 8)) // bits before k count as set
		if c != 0xFF {
			return k/8*8 + int64(bits.LeadingZeros8(^c))
		}
		k = (k/8 + 1) * 8
	}
	return k
}
