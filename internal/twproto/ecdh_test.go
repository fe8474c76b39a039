package twproto

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	secp "github.com/decred/dcrd/dcrec/secp256k1/v4"
)

// allPlans is every way sharedSecretsPlan can run.
func allPlans() []ecdhPlan {
	plans := []ecdhPlan{{}, {wnaf: true}}
	for t := 2; t <= 10; t++ {
		plans = append(plans, ecdhPlan{comb: t})
	}
	for w := 2; w <= 10; w++ {
		plans = append(plans, ecdhPlan{w: w}, ecdhPlan{w: w, affine: true})
	}
	return plans
}

// edgeScalars are keys whose GLV halves or digits are extreme.
func edgeScalars(t *testing.T) []*secp.ModNScalar {
	var out []*secp.ModNScalar
	add := func(s secp.ModNScalar) { out = append(out, &s) }
	var s secp.ModNScalar
	for _, v := range []uint32{1, 2, 3, 127, 128, 129, 255, 256, 1 << 20} {
		s.SetInt(v)
		add(s)
		s.Negate()
		add(s) // n - v
	}
	lambda := endoNegLambda
	lambda.Negate()
	add(lambda) // k1 = 0, k2 = 1
	var one secp.ModNScalar
	one.SetInt(1)
	lp1 := lambda
	lp1.Add(&one)
	add(lp1)
	var half [32]byte
	half[0] = 0x7f
	for i := 1; i < 32; i++ {
		half[i] = 0xff
	}
	s.SetBytes(&half)
	add(s)
	// 2^129 - 1 and around: the largest halves the table must hold.
	var big [32]byte
	big[15] = 0x01
	for i := 16; i < 32; i++ {
		big[i] = 0xff
	}
	s.SetBytes(&big)
	add(s)
	return out
}

func randomScalar(r *rand.Rand) *secp.ModNScalar {
	var b [32]byte
	for {
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		var s secp.ModNScalar
		if s.SetBytes(&b) == 0 && !s.IsZero() {
			return &s
		}
	}
}

// TestSharedSecretsMatch: every plan gives btcec.GenerateSharedSecret's
// secret, for random points and keys and for edge keys.
func TestSharedSecretsMatch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	keys := edgeScalars(t)
	for range 12 {
		keys = append(keys, randomScalar(r))
	}
	// A key twice, and a key with its negation, in one batch.
	keys = append(keys, keys[len(keys)-1])
	neg := *keys[len(keys)-1]
	neg.Negate()
	keys = append(keys, &neg)

	points := []*secp.PublicKey{secp.NewPrivateKey(func() *secp.ModNScalar { var s secp.ModNScalar; s.SetInt(1); return &s }()).PubKey()}
	for range 3 {
		points = append(points, secp.NewPrivateKey(randomScalar(r)).PubKey())
	}
	for pi, pub := range points {
		want := make([][]byte, len(keys))
		for i, k := range keys {
			want[i] = btcec.GenerateSharedSecret(secp.NewPrivateKey(k), pub)
		}
		var rj secp.JacobianPoint
		pub.AsJacobian(&rj)
		for _, plan := range allPlans() {
			if pi > 1 && (plan.w > 6 || plan.comb > 6) {
				continue // big tables: two points are enough
			}
			out := make([][32]byte, len(keys))
			sharedSecretsPlan(&rj, keys, out, plan)
			for i := range keys {
				if !bytes.Equal(out[i][:], want[i]) {
					t.Fatalf("plan %+v key %d: got %x want %x", plan, i, out[i], want[i])
				}
			}
		}
		out := make([][32]byte, len(keys))
		sharedSecrets(pub, keys, out)
		for i := range keys {
			if !bytes.Equal(out[i][:], want[i]) {
				t.Fatalf("chosen plan key %d: got %x want %x", i, out[i], want[i])
			}
		}
	}
}

// TestSplitScalarBound: GLV halves fit the table (glvBits) and recombine.
func TestSplitScalarBound(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	keys := edgeScalars(t)
	for range 2000 {
		keys = append(keys, randomScalar(r))
	}
	lambda := endoNegLambda
	lambda.Negate()
	d := make([]int32, windows(2))
	for _, k := range keys {
		g := splitScalar(k)
		for _, h := range []limbs{g.k1, g.k2} {
			if h[3] != 0 || h[2]>>1 != 0 {
				t.Fatalf("half %x of %x over 2^129", h, k.Bytes())
			}
			if !recode(h, 2, d) {
				t.Fatalf("recode %x", h)
			}
		}
		k1, k2 := limbScalar(g.k1), limbScalar(g.k2)
		if g.neg1 {
			k1.Negate()
		}
		if g.neg2 {
			k2.Negate()
		}
		k2.Mul(&lambda).Add(&k1)
		if !k2.Equals(k) {
			t.Fatalf("split of %x does not recombine", k.Bytes())
		}
	}
}

func limbScalar(l limbs) secp.ModNScalar {
	var b [32]byte
	for i := range 4 {
		for j := range 8 {
			b[31-8*i-j] = byte(l[i] >> (8 * j))
		}
	}
	var s secp.ModNScalar
	s.SetBytes(&b)
	return s
}

// TestRecode: signed digits recombine to the value, and a value too long
// for the digits is refused.
func TestRecode(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for w := uint(2); w <= 10; w++ {
		d := make([]int32, windows(int(w)))
		for range 200 {
			v := limbs{r.Uint64(), r.Uint64(), r.Uint64() & 1} // below 2^129, as GLV halves
			if !recode(v, w, d) {
				t.Fatalf("w %d: recode %x failed", w, v)
			}
			// Σ d[j]·2^(w·j) == v, evaluated mod n.
			var acc, base, pow secp.ModNScalar
			pow.SetInt(1)
			base.SetInt(1 << w)
			for _, x := range d {
				var term secp.ModNScalar
				if x < 0 {
					term.SetInt(uint32(-x))
					term.Negate()
				} else {
					term.SetInt(uint32(x))
				}
				acc.Add(term.Mul(&pow))
				pow.Mul(&base)
			}
			want := limbScalar(v)
			if !acc.Equals(&want) {
				t.Fatalf("w %d: digits of %x recombine wrong", w, v)
			}
		}
		if recode(limbs{0, 0, 0, 1}, w, d) {
			t.Fatalf("w %d: 2^192 fits %d digits", w, len(d))
		}
	}
}

// TestAffineBatchEqualX: an addition of a point to itself or to its
// negation is refused (the caller falls back), never fed to the inversion.
func TestAffineBatchEqualX(t *testing.T) {
	var one secp.ModNScalar
	one.SetInt(1)
	var g secp.JacobianPoint
	secp.NewPrivateKey(&one).PubKey().AsJacobian(&g)
	b := newAffineBatch(2)
	acc := accum{x: g.X, y: g.Y}
	if b.add(&acc, &g.X, &g.Y) {
		t.Fatal("P + P accepted")
	}
	var ny secp.FieldVal
	ny.NegateVal(&g.Y, 1).Normalize()
	if b.add(&acc, &g.X, &ny) {
		t.Fatal("P - P accepted")
	}
	b.finish()
}

func TestDecryptAnySharedFindsKey(t *testing.T) {
	keys := make([]*PrivateKey, 300)
	for i := range keys {
		keys[i], _ = NewPrivateKey()
	}
	for _, n := range []int{1, 2, 10, 50, 300} {
		right := keys[n-1]
		env, err := Encrypt(right.PubKey(), []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		idx, plain, err := env.DecryptAny(keys[:n])
		if err != nil || idx != n-1 || string(plain) != "hello" {
			t.Fatalf("n %d: idx %d plain %q err %v", n, idx, plain, err)
		}
		if _, _, err := env.DecryptAny(keys[:n-1]); err != ErrMAC {
			t.Fatalf("n %d without the key: %v", n, err)
		}
	}
}

// TestSharedSecretsOneKeyMatch: one key on many points (the retry path)
// gives btcec.GenerateSharedSecret's secret for each, for edge keys too.
func TestSharedSecretsOneKeyMatch(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	pubs := []*secp.PublicKey{}
	for range 37 {
		pubs = append(pubs, secp.NewPrivateKey(randomScalar(r)).PubKey())
	}
	pubs = append(pubs, pubs[3]) // the same point twice
	points := make([]secp.JacobianPoint, len(pubs))
	for i, p := range pubs {
		p.AsJacobian(&points[i])
	}
	keys := edgeScalars(t)
	for range 10 {
		keys = append(keys, randomScalar(r))
	}
	for _, k := range keys {
		out := make([][32]byte, len(points))
		sharedSecretsOneKey(k, points, out)
		for i, pub := range pubs {
			if want := btcec.GenerateSharedSecret(secp.NewPrivateKey(k), pub); !bytes.Equal(out[i][:], want) {
				t.Fatalf("key %x point %d: got %x want %x", k.Bytes(), i, out[i], want)
			}
		}
	}
	// One point only, and the key's own public point among the others.
	out := make([][32]byte, 1)
	sharedSecretsOneKey(keys[0], points[:1], out)
	if want := btcec.GenerateSharedSecret(secp.NewPrivateKey(keys[0]), pubs[0]); !bytes.Equal(out[0][:], want) {
		t.Fatal("single point")
	}
}

func TestWNAF(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	d := make([]int32, glvBits+2)
	for range 500 {
		v := limbs{r.Uint64(), r.Uint64(), r.Uint64() & 1}
		n := wnaf(v, retryWindow, d)
		if n < 0 {
			t.Fatalf("wnaf %x: too long", v)
		}
		var acc, pow, two secp.ModNScalar
		pow.SetInt(1)
		two.SetInt(2)
		last := -retryWindow
		for i, x := range d[:n] {
			if x != 0 {
				if x%2 == 0 || x >= 1<<(retryWindow-1) || x <= -(1<<(retryWindow-1)) || i-last < retryWindow {
					t.Fatalf("wnaf %x: digit %d at %d (last nonzero %d)", v, x, i, last)
				}
				last = i
				var term secp.ModNScalar
				if x < 0 {
					term.SetInt(uint32(-x))
					term.Negate()
				} else {
					term.SetInt(uint32(x))
				}
				acc.Add(term.Mul(&pow))
			}
			pow.Mul(&two)
		}
		if want := limbScalar(v); !acc.Equals(&want) {
			t.Fatalf("wnaf %x does not recombine", v)
		}
	}
}

// TestDecryptEach: one key over many envelopes opens exactly its own,
// malformed ones included in the batch.
func TestDecryptEach(t *testing.T) {
	mine, _ := NewPrivateKey()
	other, _ := NewPrivateKey()
	var envs []*Envelope
	for i := range 40 {
		to := other
		if i%7 == 3 {
			to = mine
		}
		env, err := Encrypt(to.PubKey(), []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, env)
	}
	envs = append(envs, &Envelope{Key: []byte{2, 1}, Mac: make([]byte, 64)}, nil)
	out := DecryptEach(envs, mine)
	for i, p := range out {
		want := i < 40 && i%7 == 3
		if want != (p != nil) || (want && !bytes.Equal(p, []byte{byte(i)})) {
			t.Fatalf("envelope %d: %x", i, p)
		}
	}
}
