package twproto

import (
	"crypto/hmac"
	"crypto/sha512"
	"fmt"
	"math/rand/v2"
	"testing"

	secp "github.com/decred/dcrd/dcrec/secp256k1/v4"
)

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

// plainTrial is the trial decryption before shared work: per key one
// btcec.GenerateSharedSecret, the KDF and a crypto/hmac MAC.
func plainTrial(e *Envelope, keys []*PrivateKey) (int, error) {
	pub, err := ParsePubKey(e.Key)
	if err != nil {
		return -1, err
	}
	sum := make([]byte, 0, sha512.Size)
	for i, k := range keys {
		_, macKey := eciesKeys(k.Key, pub)
		m := hmac.New(sha512.New, macKey)
		m.Write(e.Body)
		if hmac.Equal(m.Sum(sum[:0]), e.Mac) {
			return i, nil
		}
	}
	return -1, ErrMAC
}

// BenchmarkTrialDecryption is one DM post tried with a wallet of n keys,
// none of which opens it: /plain as before (one scalar multiplication per
// key), /shared with the work on the post's point shared (DecryptAny).
// Compare shared/plain within one run.
func BenchmarkTrialDecryption(b *testing.B) {
	_, _, env := benchEnvelope(b)
	all := make([]*PrivateKey, 1000)
	for i := range all {
		all[i], _ = NewPrivateKey()
	}
	for _, n := range []int{1, 10, 100, 1000} {
		keys := all[:n]
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			b.Run("plain", func(b *testing.B) {
				for b.Loop() {
					if _, err := plainTrial(env, keys); err != ErrMAC {
						b.Fatal(err)
					}
				}
			})
			b.Run("shared", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := env.DecryptAny(keys); err != ErrMAC {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkECDHPlans times every plan at a few key counts, to check the
// cost model of planECDH (ns/op per post, secrets only).
func BenchmarkECDHPlans(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	pub := secp.NewPrivateKey(randomScalar(r)).PubKey()
	var rj secp.JacobianPoint
	pub.AsJacobian(&rj)
	all := make([]*secp.ModNScalar, 1000)
	for i := range all {
		all[i] = randomScalar(r)
	}
	for _, n := range []int{1, 3, 10, 30, 100, 1000} {
		keys, out := all[:n], make([][32]byte, n)
		for _, plan := range allPlans() {
			if plan.w > 0 && (plan.w < 3 || plan.w > 9) || n > 10 && plan.w < 4 || plan.comb > 0 && (plan.comb < 4 || plan.comb > 8) {
				continue
			}
			b.Run(fmt.Sprintf("keys=%d/w=%d/affine=%v/wnaf=%v/comb=%d", n, plan.w, plan.affine, plan.wnaf, plan.comb), func(b *testing.B) {
				for b.Loop() {
					sharedSecretsPlan(&rj, keys, out, plan)
				}
			})
		}
		b.Run(fmt.Sprintf("keys=%d/chosen=%+v", n, planECDH(n)), func(b *testing.B) {
			for b.Loop() {
				sharedSecretsPlan(&rj, keys, out, planECDH(n))
			}
		})
	}
}

// BenchmarkRetryDecryption is one new key tried on 512 pending posts (the
// retry after an invite), none of which it opens: /plain one DecryptAny
// per post as before, /shared DecryptEach (the key recoded once, the
// points batched). ns/op per 512 posts.
func BenchmarkRetryDecryption(b *testing.B) {
	key, _ := NewPrivateKey()
	other, _ := NewPrivateKey()
	envs := make([]*Envelope, 512)
	for i := range envs {
		envs[i], _ = Encrypt(other.PubKey(), EncodeMessage("a typical direct message of some sixty bytes", "bob"))
	}
	keys := []*PrivateKey{key}
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			for _, e := range envs {
				if _, err := plainTrial(e, keys); err != ErrMAC {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("shared", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, p := range DecryptEach(envs, key) {
				if p != nil {
					b.Fatal("opened")
				}
			}
		}
	})
}
