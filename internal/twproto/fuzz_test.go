package twproto

import (
	"context"
	"encoding/hex"
	"testing"
)

func fuzzSeeds(f *testing.F) {
	for _, v := range loadPostVectors(f) {
		raw, _ := hex.DecodeString(v.PostHex)
		f.Add(raw)
	}
	f.Add([]byte("d12:sig_userpost1:x8:userpostdee"))
	f.Add([]byte("d2:dmd4:body3:abc4:origi99999999999eee"))
}

// FuzzValidatePost: any bytes get a post or an error, never a panic.
func FuzzValidatePost(f *testing.F) {
	fuzzSeeds(f)
	alice, _ := ParseWIF("L5k7ajAiJxiSm8CEHGJf5jALJXyWZmsiQ9Ngy1KJ5jZkWNup8bUK")
	ks := memKeys{keys: map[string]*PrivateKey{"alice": alice}, reg: 1, best: 50}
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := DecodePost(raw)
		if err != nil {
			return
		}
		if _, err := HexcapePost(raw); err != nil {
			t.Fatalf("decoded post does not hexcape: %v", err)
		}
		if _, err := ValidatePost(context.Background(), raw, p.N, p.K, ks); err == nil && p.N != "alice" {
			t.Fatalf("post by %q validated without a key", p.N)
		}
		if p.DM != nil {
			_, _ = p.DM.Decrypt(alice)
		}
	})
}

// FuzzDecryptEnvelope: malformed envelopes fail with an error.
func FuzzDecryptEnvelope(f *testing.F) {
	key, _ := ParseWIF("KwMZKH3afx3A6mxmsb3feBU1R7srkURvpZu6MEJdpG7stxJPqWTL")
	env, _ := Encrypt(key.PubKey(), []byte("d3:msg2:hi2:to3:bobe"))
	good, _ := env.MarshalBencode()
	f.Add(good)
	f.Add([]byte("d4:body15:aaaaaaaaaaaaaaa3:key1:x3:mac0:4:origi-1ee"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := DecodeEnvelope(raw)
		if err != nil {
			return
		}
		plain, err := e.Decrypt(key)
		if err == nil && int64(len(plain)) != e.Orig {
			t.Fatalf("plaintext %d bytes, orig %d", len(plain), e.Orig)
		}
	})
}

// FuzzDecodePayload: every plaintext decodes to something.
func FuzzDecodePayload(f *testing.F) {
	f.Add(EncodeMessage("hi", "bob"))
	f.Add(EncodeGroupInvite("desc", "KzTAkjGZu9xbVgeFyuWkcR4A3X7U8cvigCsBYdKoZrx6p4Mxc8m8"))
	f.Add(EncodeGroupMembers([]string{"alice", "bob"}))
	f.Add(EncodeGroupInviteMoved("desc", "KzTAkjGZu9xbVgeFyuWkcR4A3X7U8cvigCsBYdKoZrx6p4Mxc8m8", GroupMove{Removed: []string{"carol"}}))
	f.Add([]byte("d12:group_invited4:desc1:d3:key1:k5:movedd4:from3:abc7:removedi1eeee"))
	f.Add([]byte("plain"))
	f.Fuzz(func(t *testing.T, plain []byte) {
		p := DecodePayload(plain)
		if p.Kind == PayloadText && p.NewFormat && string(EncodeMessage(p.Msg, p.To)) == "" {
			t.Fatal("unreachable")
		}
	})
}

// FuzzParseWIF: a key that parses renders back to the same text.
func FuzzParseWIF(f *testing.F) {
	f.Add("KynomPNDtXpgUmTGLYaNupehB3LHJ9AqBEoFCC9nf88T1sixKjMw")
	f.Add("5JQ4oJkn4X6NBNQApUYaWe5TmsNb3ygPF6qzbFm8dH7fyRyCJ6D")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseWIF(s)
		if err != nil {
			return
		}
		if k.WIF() != s {
			t.Fatalf("WIF %q round trips to %q", s, k.WIF())
		}
	})
}
