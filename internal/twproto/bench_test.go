package twproto

import "testing"

func benchEnvelope(b *testing.B) (*PrivateKey, *PrivateKey, *Envelope) {
	right, _ := NewPrivateKey()
	wrong, _ := NewPrivateKey()
	env, err := Encrypt(right.PubKey(), EncodeMessage("a typical direct message of some sixty bytes", "bob"))
	if err != nil {
		b.Fatal(err)
	}
	return right, wrong, env
}

// BenchmarkTrialDecryptFail is the cost of one wallet key that does not open
// a DM: one ECDH and one HMAC.
func BenchmarkTrialDecryptFail(b *testing.B) {
	_, wrong, env := benchEnvelope(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := env.Decrypt(wrong); err != ErrMAC {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt(b *testing.B) {
	right, _, env := benchEnvelope(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := env.Decrypt(right); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncrypt(b *testing.B) {
	right, _, _ := benchEnvelope(b)
	msg := EncodeMessage("a typical direct message of some sixty bytes", "bob")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encrypt(right.PubKey(), msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	key, _ := NewPrivateKey()
	msg := make([]byte, 300)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign(key, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	key, _ := NewPrivateKey()
	msg := make([]byte, 300)
	sig, _ := Sign(key, msg)
	pub := key.PubKey()
	b.ReportAllocs()
	for b.Loop() {
		if err := VerifySignature(msg, sig, pub); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecryptAny100 is a DM tried against 100 wallet keys, none right:
// the receive path's cost per post for a 100-key wallet.
func BenchmarkDecryptAny100(b *testing.B) {
	_, _, env := benchEnvelope(b)
	keys := make([]*PrivateKey, 100)
	for i := range keys {
		keys[i], _ = NewPrivateKey()
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := env.DecryptAny(keys); err != ErrMAC {
			b.Fatal(err)
		}
	}
}
