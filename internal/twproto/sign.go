package twproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
)

// MessageMagic prefixes every signed message (spec §2.1).
const MessageMagic = "twister Signed Message:\n"

// SignatureSize is the compact signature length (spec §2.2).
const SignatureSize = 65

// ErrBadSignature means the signature does not recover the expected key.
var ErrBadSignature = errors.New("bad signature")

// appendCompactSize appends Bitcoin's varint length prefix.
func appendCompactSize(dst []byte, n uint64) []byte {
	switch {
	case n < 253:
		return append(dst, byte(n))
	case n <= 0xffff:
		dst = append(dst, 0xfd)
		return binary.LittleEndian.AppendUint16(dst, uint16(n))
	case n <= 0xffffffff:
		dst = append(dst, 0xfe)
		return binary.LittleEndian.AppendUint32(dst, uint32(n))
	default:
		dst = append(dst, 0xff)
		return binary.LittleEndian.AppendUint64(dst, n)
	}
}

// MessageHash is SHA256d(varstr(magic) || varstr(msg)), the digest bytes in
// the order ECDSA consumes them (spec §2.1; no reversal).
func MessageHash(msg []byte) [32]byte {
	buf := make([]byte, 0, 1+len(MessageMagic)+9+len(msg))
	buf = appendCompactSize(buf, uint64(len(MessageMagic)))
	buf = append(buf, MessageMagic...)
	buf = appendCompactSize(buf, uint64(len(msg)))
	buf = append(buf, msg...)
	return sha256d(buf)
}

// Sign returns the 65-byte compact signature of msg, header
// 27+recid+(4 if the key is compressed). btcec signs deterministically
// (RFC 6979); twisterd's are random, and verifiers accept both.
func Sign(k *PrivateKey, msg []byte) ([]byte, error) {
	if k == nil || k.Key == nil {
		return nil, errors.New("sign: no key")
	}
	h := MessageHash(msg)
	return ecdsa.SignCompact(k.Key, h[:], k.Compressed), nil
}

// RecoverPubKey recovers the signer's serialized key, compressed or not as
// the header says. Recid 3 is refused as twisterd does (spec §2.2); high-S is
// accepted.
func RecoverPubKey(msg, sig []byte) ([]byte, error) {
	if len(sig) != SignatureSize {
		return nil, fmt.Errorf("%w: length %d", ErrBadSignature, len(sig))
	}
	rec := int(sig[0]) - 27
	if rec < 0 || rec&^4 >= 3 {
		return nil, fmt.Errorf("%w: header %d", ErrBadSignature, sig[0])
	}
	h := MessageHash(msg)
	pub, compressed, err := ecdsa.RecoverCompact(sig, h[:])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if compressed {
		return pub.SerializeCompressed(), nil
	}
	return pub.SerializeUncompressed(), nil
}

// VerifySignature accepts sig when the key it recovers has the same Hash160
// as pubkey, so the header's compression bit must match the registered key's
// (spec §2.2, pitfall 3).
func VerifySignature(msg, sig, pubkey []byte) error {
	rec, err := RecoverPubKey(msg, sig)
	if err != nil {
		return err
	}
	a, b := Hash160(rec), Hash160(pubkey)
	if !bytes.Equal(a[:], b[:]) {
		return ErrBadSignature
	}
	return nil
}
