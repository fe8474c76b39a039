package twproto

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestECIESRoundTrip(t *testing.T) {
	key, err := NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewPrivateKey()
	lengths := []int{1000}
	for n := 0; n <= 64; n++ {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		plain := bytes.Repeat([]byte{byte(n)}, n)
		env, err := Encrypt(key.PubKey(), plain)
		if err != nil {
			t.Fatal(err)
		}
		if len(env.Body) != (n+15)/16*16 || env.Orig != int64(n) || len(env.Key) != 33 {
			t.Fatalf("len %d: body %d orig %d", n, len(env.Body), env.Orig)
		}
		got, err := env.Decrypt(key)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("len %d: %v", n, err)
		}
		if _, err := env.Decrypt(other); !errors.Is(err, ErrMAC) {
			t.Fatalf("len %d: wrong key gave %v", n, err)
		}
		// Round trip through the bencoded dict.
		raw, _ := env.MarshalBencode()
		env2, err := DecodeEnvelope(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := env2.Decrypt(key); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("len %d after bencode: %v", n, err)
		}
	}
}

func TestECIESTamper(t *testing.T) {
	key, _ := NewPrivateKey()
	env, err := Encrypt(key.PubKey(), []byte("d3:msg5:hello2:to3:bobe"))
	if err != nil {
		t.Fatal(err)
	}
	key0 := env.Key[0]
	for _, field := range []*[]byte{&env.Body, &env.Mac, &env.Key} {
		for i := range *field {
			if field == &env.Key && i == 0 {
				// 02 <-> 03 names the point's negation, which has the same x:
				// x-only ECDH (spec §4.1) makes it decrypt in twisterd too.
				// Any other prefix must fail.
				for _, p := range []byte{0x00, 0x04, 0x05, 0xff} {
					env.Key[0] = p
					if _, err := env.Decrypt(key); err == nil {
						t.Fatalf("key prefix %#x accepted", p)
					}
				}
				env.Key[0] = key0
				continue
			}
			orig := (*field)[i]
			(*field)[i] ^= 0x01
			if _, err := env.Decrypt(key); err == nil {
				t.Fatalf("tampered byte %d accepted", i)
			}
			(*field)[i] = orig
		}
	}
	bad := []Envelope{
		{Body: make([]byte, 15), Key: env.Key, Mac: env.Mac, Orig: 1},
		{Body: env.Body, Key: []byte{2, 1, 2}, Mac: env.Mac, Orig: 1},
		{Body: env.Body, Key: env.Key, Mac: env.Mac[:10], Orig: 1},
		{Body: env.Body, Key: env.Key, Mac: env.Mac, Orig: 1 << 40},
		{Body: env.Body, Key: env.Key, Mac: env.Mac, Orig: -1},
	}
	for i, e := range bad {
		if _, err := e.Decrypt(key); err == nil {
			t.Errorf("malformed envelope %d accepted", i)
		}
	}
	// orig beyond the body zero-extends, as twisterd does.
	env.Orig = int64(len(env.Body) + 5)
	got, err := env.Decrypt(key)
	if err != nil || len(got) != len(env.Body)+5 || !bytes.Equal(got[len(env.Body):], make([]byte, 5)) {
		t.Fatalf("zero-extension: %d %v", len(got), err)
	}
}

func TestSignatureRules(t *testing.T) {
	key, _ := NewPrivateKey()
	msg := []byte("d1:ki1ee")
	sig, err := Sign(key, msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySignature(msg, sig, key.PubKey()); err != nil {
		t.Fatal(err)
	}
	for i := range msg {
		m := bytes.Clone(msg)
		m[i] ^= 1
		if VerifySignature(m, sig, key.PubKey()) == nil {
			t.Fatalf("tampered message byte %d verified", i)
		}
	}
	// The compression bit must match the registered key's (spec §2.2).
	unc := &PrivateKey{Key: key.Key, Compressed: false}
	if VerifySignature(msg, sig, unc.PubKey()) == nil {
		t.Fatal("compressed signature verified against uncompressed key")
	}
	usig, _ := Sign(unc, msg)
	if VerifySignature(msg, usig, unc.PubKey()) != nil {
		t.Fatal("uncompressed signature")
	}
	// Recid 3 is refused whatever follows.
	s3 := bytes.Clone(sig)
	s3[0] = 27 + 4 + 3
	if _, err := RecoverPubKey(msg, s3); err == nil {
		t.Fatal("recid 3 accepted")
	}
	// High-S (s' = n - s, recid parity flipped) is accepted.
	hs := highS(sig)
	if err := VerifySignature(msg, hs, key.PubKey()); err != nil {
		t.Fatalf("high-S refused: %v", err)
	}
	if _, err := RecoverPubKey(msg, sig[:64]); err == nil {
		t.Fatal("short signature accepted")
	}
}

func TestWIFRejects(t *testing.T) {
	good := "KynomPNDtXpgUmTGLYaNupehB3LHJ9AqBEoFCC9nf88T1sixKjMw"
	if _, err := ParseWIF(good); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"checksum": good[:len(good)-1] + "N",
		"base58":   "0OIl" + good[4:],
		"empty":    "",
		"testnet":  base58CheckEncode(append([]byte{0xEF}, bytes.Repeat([]byte{1}, 32)...)),
		"zero":     base58CheckEncode(append([]byte{0x80}, make([]byte, 32)...)),
		"over-n":   base58CheckEncode(append([]byte{0x80}, bytes.Repeat([]byte{0xff}, 32)...)),
		"flag":     base58CheckEncode(append(append([]byte{0x80}, bytes.Repeat([]byte{1}, 32)...), 2)),
		"short":    base58CheckEncode(append([]byte{0x80}, bytes.Repeat([]byte{1}, 31)...)),
	}
	for name, s := range cases {
		if _, err := ParseWIF(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// memKeys is a KeySource for rule tests.
type memKeys struct {
	keys map[string]*PrivateKey
	reg  int64
	best int64
}

func (m memKeys) UserKey(_ context.Context, u string, _ int64) (UserKey, error) {
	k, ok := m.keys[u]
	if !ok {
		return UserKey{}, ErrUnknownUser
	}
	return UserKey{PubKey: k.PubKey(), RegHeight: m.reg}, nil
}
func (m memKeys) BestHeight(context.Context) (int64, error) { return m.best, nil }

func TestValidatePostRules(t *testing.T) {
	alice, _ := NewPrivateKey()
	ks := memKeys{keys: map[string]*PrivateKey{"alice": alice}, reg: 10, best: 100}
	env, _ := Encrypt(alice.PubKey(), []byte("x"))
	good, err := BuildDMPost(alice, "alice", 5, 99, 1, env)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := ValidatePost(ctx, good, "alice", 5, ks); err != nil {
		t.Fatal(err)
	}
	sign := func(up string) []byte {
		sig, _ := Sign(alice, []byte(up))
		return WrapSignedPost(sig, []byte(up))
	}
	cases := []struct {
		raw  []byte
		user string
		k    int64
		want string
	}{
		{nil, "alice", 5, "bad bencoded post size"},
		{bytes.Repeat([]byte("x"), 2049), "alice", 5, "bad bencoded post size"},
		{[]byte("le"), "alice", 5, "missing post or signature."},
		{[]byte("d8:userpostd1:ki5eee"), "alice", 5, "missing post or signature."},
		{good, "bob", 5, "expected username 'bob' got 'alice'"},
		{good, "alice", 6, "expected piece '6' got '5'"},
		{sign("d6:heighti99e1:ki201e1:n5:alicee"), "alice", 201, "too much posts from user 'alice' rejecting post"},
		{sign("d6:heighti102e1:ki5e1:n5:alicee"), "alice", 5, "post from future not accepted (height: 102 > 101)"},
		{sign("d6:heighti99e1:ki5e3:msg2:\xff\xfe1:n5:alicee"), "alice", 5, "invalid utf8 string"},
		{sign("d6:heighti99e1:ki5e3:msg141:" + strings.Repeat("a", 141) + "1:n5:alicee"), "alice", 5, "msg too big (141 > 140)"},
		{append(bytes.Clone(good[:len(good)-3]), 'x', 'e', 'e'), "alice", 5, ""},
	}
	for i, c := range cases {
		_, err := ValidatePost(ctx, c.raw, c.user, c.k, ks)
		var pe *PostError
		if !errors.As(err, &pe) {
			t.Errorf("case %d: err %v, want PostError %q", i, err, c.want)
			continue
		}
		if c.want != "" && pe.Msg != c.want {
			t.Errorf("case %d: %q, want %q", i, pe.Msg, c.want)
		}
	}
	// Tampering with any signed byte breaks the signature.
	p, _ := DecodePost(good)
	off := bytes.Index(good, p.UserpostRaw)
	for i := range p.UserpostRaw {
		b := bytes.Clone(good)
		b[off+i] ^= 0x20
		if _, err := ValidatePost(ctx, b, "alice", 5, ks); err == nil {
			t.Fatalf("tampered byte %d accepted", i)
		}
	}
	// 140 code points of multibyte text are fine.
	if _, err := ValidatePost(ctx, sign("d6:heighti99e1:ki5e3:msg280:"+strings.Repeat("é", 140)+"1:n5:alicee"), "alice", 5, ks); err != nil {
		t.Fatal(err)
	}
	// The k bound: 2*(best-reg)+20 = 200 is the last accepted k.
	if _, err := ValidatePost(ctx, sign("d6:heighti99e1:ki200e1:n5:alicee"), "alice", 200, ks); err != nil {
		t.Fatal(err)
	}
}

func TestPayloads(t *testing.T) {
	p := DecodePayload([]byte("plain old text"))
	if p.Kind != PayloadText || p.NewFormat || p.Msg != "plain old text" {
		t.Fatalf("%+v", p)
	}
	p = DecodePayload(EncodeGroupMembers([]string{"alice", "", "bob"}))
	if p.Kind != PayloadGroupMembers || len(p.Members) != 2 {
		t.Fatalf("%+v", p)
	}
	p = DecodePayload([]byte("d12:group_invited4:desc1:xee"))
	if p.Kind != PayloadGroupInvite || p.InviteValid {
		t.Fatalf("invite without key: %+v", p)
	}
	other := []byte("d3:fooi1ee")
	if p = DecodePayload(other); p.Kind != PayloadText || p.Msg != string(other) || p.To != "" {
		t.Fatalf("other dict: %+v", p)
	}
	if p = DecodePayload(EncodeGroupInvite("d", "w")); p.InviteDesc != "d" || p.InviteKey != "w" || !p.InviteValid {
		t.Fatalf("%+v", p)
	}
}

func TestHexcapeMatchesTwisterd(t *testing.T) {
	var v postVector
	for _, pv := range loadPostVectors(t) {
		if pv.File == "dm_alice_k2.json" {
			v = pv
		}
	}
	want, err := os.ReadFile(filepath.Join("../../testdata/twproto", "newdirectmsg_alice_k2.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := HexcapePost(mustHex(t, v.PostHex))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(bytes.TrimSpace(want)) {
		t.Fatalf("hexcape:\n got %s\nwant %s", got, want)
	}
}
