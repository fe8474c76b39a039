package twproto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"

	"github.com/anacrolix/torrent/bencode"
	"github.com/btcsuite/btcd/btcec/v2"
	secp "github.com/decred/dcrd/dcrec/secp256k1/v4"
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
// step 2). The envelope is checked and its ephemeral key parsed once, and
// the ECDH work is shared across the keys (ecdh.go); each key then costs
// one KDF and one HMAC. ErrMAC when no key fits.
func (e *Envelope) DecryptAny(keys []*PrivateKey) (int, []byte, error) {
	t, err := e.NewTrial(len(keys))
	if err != nil {
		return -1, nil, err
	}
	return t.Open(keys)
}

// Trial is one envelope prepared for trial decryption by about n keys:
// checked, its ephemeral point parsed and its table of multiples built.
// Open is safe for concurrent use, so a caller may split a large key set
// over goroutines and share the table.
type Trial struct {
	env   *Envelope
	r     secp.JacobianPoint
	plan  ecdhPlan
	table *rTable
	odd   *oddTable
	comb  *combTable
}

// NewTrial checks e and prepares it for n keys.
func (e *Envelope) NewTrial(n int) (*Trial, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	pub, err := ParsePubKey(e.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: ephemeral key: %v", ErrEnvelope, err)
	}
	t := &Trial{env: e, plan: planECDH(n)}
	pub.AsJacobian(&t.r)
	switch {
	case t.plan.wnaf:
		t.odd = newOddTable(&t.r)
	case t.plan.comb > 0:
		t.comb = newCombTable(&t.r, t.plan.comb)
	case t.plan.w > 0:
		t.table = newRTable(&t.r, t.plan.w)
	}
	return t, nil
}

// Open returns the index of the first key in keys that opens the envelope
// and the plaintext; ErrMAC when none does. Nil keys are skipped.
func (t *Trial) Open(keys []*PrivateKey) (int, []byte, error) {
	scalars := make([]*secp.ModNScalar, 0, len(keys))
	idx := make([]int, 0, len(keys))
	for i, k := range keys {
		if k == nil || k.Key == nil {
			continue
		}
		scalars = append(scalars, &k.Key.Key)
		idx = append(idx, i)
	}
	secrets := make([][32]byte, len(scalars))
	switch {
	case t.odd != nil:
		t.odd.secrets(&t.r, scalars, secrets)
	case t.comb != nil:
		t.comb.secrets(&t.r, scalars, secrets)
	case t.table == nil:
		plainSecrets(&t.r, scalars, secrets)
	case t.plan.affine:
		t.table.affineSecrets(&t.r, scalars, secrets)
	default:
		t.table.jacobianSecrets(&t.r, scalars, secrets)
	}
	var m macer
	for n, x := range secrets {
		if aesKey, ok := m.check(&x, t.env.Body, t.env.Mac); ok {
			plain, err := t.env.open(aesKey)
			if err != nil {
				return -1, nil, err
			}
			return idx[n], plain, nil
		}
	}
	return -1, nil, ErrMAC
}

// DecryptEach tries one key on many envelopes (a retry of pending posts
// with a new key): the key's scalar is recoded once and the ECDH work is
// batched across the envelopes' points (ecdh.go). out[i] is the plaintext
// of envs[i], or nil where k does not open it or the envelope is malformed.
func DecryptEach(envs []*Envelope, k *PrivateKey) [][]byte {
	if k == nil || k.Key == nil {
		return make([][]byte, len(envs))
	}
	return NewRetryKey(k).DecryptEach(envs)
}

// RetryKey is a key prepared for DecryptEach over many batches: its scalar
// split and recoded once.
type RetryKey struct{ rk *recodedKey }

// NewRetryKey prepares k (not nil).
func NewRetryKey(k *PrivateKey) *RetryKey { return &RetryKey{rk: recodeKey(&k.Key.Key)} }

// DecryptEach is the package's DecryptEach with the prepared key.
func (r *RetryKey) DecryptEach(envs []*Envelope) [][]byte {
	out := make([][]byte, len(envs))
	idx := make([]int, 0, len(envs))
	points := make([]secp.JacobianPoint, 0, len(envs))
	for i, e := range envs {
		if e == nil || e.check() != nil {
			continue
		}
		pub, err := ParsePubKey(e.Key)
		if err != nil {
			continue
		}
		var p secp.JacobianPoint
		pub.AsJacobian(&p)
		points = append(points, p)
		idx = append(idx, i)
	}
	secrets := make([][32]byte, len(points))
	r.rk.sharedSecrets(points, secrets)
	var m macer
	for n, x := range secrets {
		e := envs[idx[n]]
		if aesKey, ok := m.check(&x, e.Body, e.Mac); ok {
			if plain, err := e.open(aesKey); err == nil {
				out[idx[n]] = plain
			}
		}
	}
	return out
}

// check is the envelope's shape, before any key is tried.
func (e *Envelope) check() error {
	if len(e.Mac) != sha512.Size {
		return fmt.Errorf("%w: mac length %d", ErrEnvelope, len(e.Mac))
	}
	if len(e.Body)%aes.BlockSize != 0 {
		return fmt.Errorf("%w: body length %d not a multiple of 16", ErrEnvelope, len(e.Body))
	}
	if e.Orig < 0 || e.Orig > MaxOrig {
		return fmt.Errorf("%w: orig %d", ErrEnvelope, e.Orig)
	}
	return nil
}

// open decrypts the body with a key whose MAC matched.
func (e *Envelope) open(aesKey []byte) ([]byte, error) {
	block, err := aes.NewCipher(aesKey)
	if err != nil {
		return nil, err
	}
	plain := make([]byte, max(len(e.Body), int(e.Orig)))
	cipher.NewCBCDecrypter(block, make([]byte, aes.BlockSize)).CryptBlocks(plain[:len(e.Body)], e.Body)
	// orig truncates, or zero-extends as twisterd's pre-zeroed buffer does.
	return plain[:e.Orig], nil
}

// macer checks HMAC-SHA512 for many keys with two reused hash states
// (crypto/hmac allocates both per key).
type macer struct {
	inner, outer hash.Hash
	pad          [sha512.BlockSize]byte
	sum          [sha512.Size]byte
	k            [sha512.Size]byte
}

// check derives the keys from the ECDH x (spec §4.1) and compares the MAC
// in constant time; it returns the AES key when the MAC matches.
func (m *macer) check(x *[32]byte, body, mac []byte) ([]byte, bool) {
	if m.inner == nil {
		m.inner, m.outer = sha512.New(), sha512.New()
	}
	m.k = sha512.Sum512(x[:])
	macKey := m.k[32:]
	m.pad = [sha512.BlockSize]byte{}
	copy(m.pad[:], macKey)
	for i := range m.pad {
		m.pad[i] ^= 0x36
	}
	m.inner.Reset()
	m.inner.Write(m.pad[:])
	m.inner.Write(body)
	inner := m.inner.Sum(m.sum[:0])
	for i := range m.pad {
		m.pad[i] ^= 0x36 ^ 0x5c
	}
	m.outer.Reset()
	m.outer.Write(m.pad[:])
	m.outer.Write(inner)
	if !hmac.Equal(m.outer.Sum(m.sum[:0]), mac) {
		return nil, false
	}
	return m.k[:32], true
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

// envelopeFromSpan is DecodeEnvelope for a dict validated by scanEntry.
func envelopeFromSpan(d []byte) *Envelope {
	e := &Envelope{Body: []byte{}, Key: []byte{}, Mac: []byte{}}
	_, _ = scanDict(d, 0, 0, func(k, v []byte) {
		var dst *[]byte
		switch string(k) {
		case "body":
			dst = &e.Body
		case "key":
			dst = &e.Key
		case "mac":
			dst = &e.Mac
		case "orig":
			e.Orig, _ = spanInt(v)
			return
		default:
			return
		}
		if v[0] >= '0' && v[0] <= '9' {
			s, _, _ := scanString(v, 0)
			*dst = bytes.Clone(s)
		} else {
			*dst = []byte{}
		}
	})
	return e
}

var _ bencode.Marshaler = (*Envelope)(nil)
