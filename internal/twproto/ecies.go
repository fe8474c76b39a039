package twproto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha512"
	"errors"
	"fmt"

	"github.com/anacrolix/torrent/bencode"
	"github.com/btcsuite/btcd/btcec/v2"
)

// ECIES errors. A wrong key shows as ErrMAC, which is what the receive path
// sees for every wallet key but the right one.
var (
	ErrMAC      = errors.New("ecies: mac mismatch")
	ErrEnvelope = errors.New("ecies: malformed envelope")
)

// MaxOrig bounds the plaintext length an envelope may claim. twisterd
// zero-extends to orig (spec §4.2 step 5); a post is at most 2048 bytes, so
// anything above that is absurd and refused rather than allocated.
const MaxOrig = 2048

// Envelope is the ECIES `dm` dict {body, key, mac, orig} (spec §4.3).
type Envelope struct {
	Body []byte // AES-256-CBC ciphertext, zero IV, zero padding
	Key  []byte // ephemeral public key, 33 bytes compressed
	Mac  []byte // HMAC-SHA512 over Body
	Orig int64  // plaintext length
}

// Encrypt seals plaintext to a serialized public key (spec §4.1).
func Encrypt(pubkey, plaintext []byte) (*Envelope, error) {
	eph, err := btcec.NewPrivateKey()
	if err != nil {
		return nil, fmt.Errorf("ecies: ephemeral key: %w", err)
	}
	return EncryptWithEphemeral(pubkey, plaintext, eph)
}

// EncryptWithEphemeral is Encrypt with a given ephemeral key; tests use it to
// reproduce the fixed vector of spec §10.
func EncryptWithEphemeral(pubkey, plaintext []byte, eph *btcec.PrivateKey) (*Envelope, error) {
	pub, err := ParsePubKey(pubkey)
	if err != nil {
		return nil, fmt.Errorf("ecies: recipient key: %w", err)
	}
	aesKey, macKey := eciesKeys(eph, pub)
	padded := make([]byte, (len(plaintext)+15)/16*16)
	copy(padded, plaintext)
	block, err := aes.NewCipher(aesKey)
	if err != nil {
		return nil, err
	}
	cipher.NewCBCEncrypter(block, make([]byte, aes.BlockSize)).CryptBlocks(padded, padded)
	m := hmac.New(sha512.New, macKey)
	m.Write(padded)
	return &Envelope{
		Body: padded,
		Key:  eph.PubKey().SerializeCompressed(),
		Mac:  m.Sum(nil),
		Orig: int64(len(plaintext)),
	}, nil
}

// eciesKeys derives AES and HMAC keys: SHA512 of the 32-byte ECDH x (spec §4.1).
func eciesKeys(priv *btcec.PrivateKey, pub *btcec.PublicKey) (aesKey, macKey []byte) {
	x := btcec.GenerateSharedSecret(priv, pub)
	k := sha512.Sum512(x)
	return k[:32], k[32:]
}

// Decrypt opens the envelope with k. The MAC is checked (constant time)
// before any AES work, so a wrong key costs one ECDH and one HMAC.
func (e *Envelope) Decrypt(k *PrivateKey) ([]byte, error) {
	_, plain, err := e.DecryptAny([]*PrivateKey{k})
	return plain, err
}

// DecryptAny tries keys in order and returns the index of the first that
// opens the envelope, as processReceivedDM's wallet loop does (spec §5.3
// step 2). The envelope is checked and its ephemeral key parsed once; each
// failed trial costs one ECDH and one HMAC. ErrMAC when no key fits.
func (e *Envelope) DecryptAny(keys []*PrivateKey) (int, []byte, error) {
	if len(e.Mac) != sha512.Size {
		return -1, nil, fmt.Errorf("%w: mac length %d", ErrEnvelope, len(e.Mac))
	}
	if len(e.Body)%aes.BlockSize != 0 {
		return -1, nil, fmt.Errorf("%w: body length %d not a multiple of 16", ErrEnvelope, len(e.Body))
	}
	if e.Orig < 0 || e.Orig > MaxOrig {
		return -1, nil, fmt.Errorf("%w: orig %d", ErrEnvelope, e.Orig)
	}
	pub, err := ParsePubKey(e.Key)
	if err != nil {
		return -1, nil, fmt.Errorf("%w: ephemeral key: %v", ErrEnvelope, err)
	}
	sum := make([]byte, 0, sha512.Size)
	for i, k := range keys {
		if k == nil || k.Key == nil {
			continue
		}
		aesKey, macKey := eciesKeys(k.Key, pub)
		m := hmac.New(sha512.New, macKey)
		m.Write(e.Body)
		if !hmac.Equal(m.Sum(sum[:0]), e.Mac) {
			continue
		}
		block, err := aes.NewCipher(aesKey)
		if err != nil {
			return -1, nil, err
		}
		plain := make([]byte, max(len(e.Body), int(e.Orig)))
		cipher.NewCBCDecrypter(block, make([]byte, aes.BlockSize)).CryptBlocks(plain[:len(e.Body)], e.Body)
		// orig truncates, or zero-extends as twisterd's pre-zeroed buffer does.
		return i, plain[:e.Orig], nil
	}
	return -1, nil, ErrMAC
}

// MarshalBencode encodes the `dm` dict.
func (e *Envelope) MarshalBencode() ([]byte, error) {
	var b []byte
	b = append(b, 'd')
	b = appendString(b, []byte("body"))
	b = appendString(b, e.Body)
	b = appendString(b, []byte("key"))
	b = appendString(b, e.Key)
	b = appendString(b, []byte("mac"))
	b = appendString(b, e.Mac)
	b = appendString(b, []byte("orig"))
	b = appendInt(b, e.Orig)
	return append(b, 'e'), nil
}

// DecodeEnvelope reads a `dm` dict like processReceivedDM: missing or
// mistyped strings read as empty and orig defaults to 0 (spec §4.3), which
// then fail Decrypt with a clear error.
func DecodeEnvelope(raw []byte) (*Envelope, error) {
	m, err := rawDict(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEnvelope, err)
	}
	body, _ := bstring(m["body"])
	key, _ := bstring(m["key"])
	mac, _ := bstring(m["mac"])
	orig, _ := bint(m["orig"])
	return &Envelope{Body: []byte(body), Key: []byte(key), Mac: []byte(mac), Orig: orig}, nil
}

var _ bencode.Marshaler = (*Envelope)(nil)
