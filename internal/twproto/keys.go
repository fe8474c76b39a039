package twproto

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"

	"github.com/btcsuite/btcd/btcec/v2"
	"golang.org/x/crypto/ripemd160" //nolint:staticcheck // Hash160 is RIPEMD160(SHA256), as in twisterd.
)

// WIFVersion is the mainnet SECRET_KEY prefix (spec §1.3).
const WIFVersion = 0x80

// Errors of key parsing.
var (
	ErrWIFChecksum = errors.New("wif: bad checksum")
	ErrWIFVersion  = errors.New("wif: wrong version byte")
	ErrWIFLength   = errors.New("wif: bad payload length")
	ErrWIFSecret   = errors.New("wif: secret out of range")
	ErrBase58      = errors.New("wif: invalid base58")
)

// PrivateKey is a secp256k1 secret with twisterd's fCompressed flag, which
// decides how its public key is serialized (spec §1.1).
type PrivateKey struct {
	Key        *btcec.PrivateKey
	Compressed bool
}

// NewPrivateKey makes a fresh compressed key, as twisterd does for new wallet
// and group keys.
func NewPrivateKey() (*PrivateKey, error) {
	k, err := btcec.NewPrivateKey()
	if err != nil {
		return nil, fmt.Errorf("new private key: %w", err)
	}
	return &PrivateKey{Key: k, Compressed: true}, nil
}

// PrivateKeyFromBytes builds a key from a 32-byte secret, rejecting zero and
// values >= n (CKey::Check).
func PrivateKeyFromBytes(secret []byte, compressed bool) (*PrivateKey, error) {
	if len(secret) != 32 {
		return nil, ErrWIFLength
	}
	d := new(big.Int).SetBytes(secret)
	if d.Sign() == 0 || d.Cmp(btcec.S256().N) >= 0 {
		return nil, ErrWIFSecret
	}
	k, _ := btcec.PrivKeyFromBytes(secret)
	return &PrivateKey{Key: k, Compressed: compressed}, nil
}

// PubKey returns the serialized public key: 33 bytes if compressed, else 65.
func (k *PrivateKey) PubKey() []byte {
	if k.Compressed {
		return k.Key.PubKey().SerializeCompressed()
	}
	return k.Key.PubKey().SerializeUncompressed()
}

// Secret returns the 32 secret bytes.
func (k *PrivateKey) Secret() []byte { return k.Key.Serialize() }

// WIF renders the key as base58check(0x80 || secret || [0x01]) (spec §1.3).
func (k *PrivateKey) WIF() string {
	payload := make([]byte, 0, 34)
	payload = append(payload, WIFVersion)
	payload = append(payload, k.Key.Serialize()...)
	if k.Compressed {
		payload = append(payload, 0x01)
	}
	return base58CheckEncode(payload)
}

// String never prints the secret.
func (k *PrivateKey) String() string { return "PrivateKey(redacted)" }

// ParseWIF parses a mainnet WIF: 32-byte payload, or 33 with a trailing 0x01.
func ParseWIF(s string) (*PrivateKey, error) {
	payload, err := base58CheckDecode(s)
	if err != nil {
		return nil, err
	}
	if len(payload) < 1 || payload[0] != WIFVersion {
		return nil, ErrWIFVersion
	}
	body := payload[1:]
	compressed := false
	switch {
	case len(body) == 32:
	case len(body) == 33 && body[32] == 0x01:
		compressed = true
	default:
		return nil, ErrWIFLength
	}
	return PrivateKeyFromBytes(body[:32], compressed)
}

// ParsePubKey parses a serialized public key (33 or 65 bytes, hybrid too).
func ParsePubKey(b []byte) (*btcec.PublicKey, error) {
	if len(b) == 65 && (b[0] == 6 || b[0] == 7) {
		// Hybrid encoding: same as uncompressed once the parity byte is checked.
		if (b[0] == 7) != (b[64]&1 == 1) {
			return nil, errors.New("pubkey: hybrid parity mismatch")
		}
		u := append([]byte{4}, b[1:]...)
		return btcec.ParsePubKey(u)
	}
	return btcec.ParsePubKey(b)
}

// Hash160 is RIPEMD160(SHA256(b)), the CKeyID of a serialized pubkey.
func Hash160(b []byte) [20]byte {
	s := sha256.Sum256(b)
	r := ripemd160.New()
	r.Write(s[:])
	var out [20]byte
	copy(out[:], r.Sum(nil))
	return out
}

func sha256d(b []byte) [32]byte {
	a := sha256.Sum256(b)
	return sha256.Sum256(a[:])
}

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

func base58CheckEncode(payload []byte) string {
	sum := sha256d(payload)
	b := append(append([]byte{}, payload...), sum[:4]...)
	x := new(big.Int).SetBytes(b)
	base, mod := big.NewInt(58), new(big.Int)
	var out []byte
	for x.Sign() > 0 {
		x.DivMod(x, base, mod)
		out = append(out, base58Alphabet[mod.Int64()])
	}
	for _, c := range b {
		if c != 0 {
			break
		}
		out = append(out, '1')
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return string(out)
}

func base58CheckDecode(s string) ([]byte, error) {
	if len(s) == 0 || len(s) > 128 {
		return nil, ErrBase58
	}
	x := new(big.Int)
	base := big.NewInt(58)
	for i := 0; i < len(s); i++ {
		d := bytes.IndexByte([]byte(base58Alphabet), s[i])
		if d < 0 {
			return nil, ErrBase58
		}
		x.Mul(x, base)
		x.Add(x, big.NewInt(int64(d)))
	}
	b := x.Bytes()
	for i := 0; i < len(s) && s[i] == '1'; i++ {
		b = append([]byte{0}, b...)
	}
	if len(b) < 5 {
		return nil, ErrWIFChecksum
	}
	payload, check := b[:len(b)-4], b[len(b)-4:]
	sum := sha256d(payload)
	if !bytes.Equal(sum[:4], check) {
		return nil, ErrWIFChecksum
	}
	return payload, nil
}
