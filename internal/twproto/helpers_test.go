package twproto

import (
	"bytes"

	"github.com/btcsuite/btcd/btcec/v2"
)

// highS turns a compact signature into its high-S twin: s' = n - s with the
// recovery parity flipped; both recover the same key.
func highS(sig []byte) []byte {
	var s btcec.ModNScalar
	s.SetByteSlice(sig[33:])
	s.Negate()
	out := bytes.Clone(sig)
	b := s.Bytes()
	copy(out[33:], b[:])
	rec := (out[0] - 27) ^ 1
	out[0] = 27 + rec
	return out
}
