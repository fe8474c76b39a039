package twproto

import (
	"encoding/binary"
	"encoding/hex"
	"math/bits"

	secp "github.com/decred/dcrd/dcrec/secp256k1/v4"
)

// Shared-work ECDH for trial decryption. Every wallet key is tried on every
// DM post, and all the trials of one post multiply the same ephemeral point
// R. So the work that depends only on R is done once per post:
//
//   - a fixed-window table of R: d·2^(w·j)·R for signed digits d, window j;
//     with the GLV endomorphism φ(x,y) = (βx, y) = λ·(x,y) a key k splits
//     into k1 + k2·λ of ~128 bits each, so the table covers 130 bits and
//     φ of an entry is one field multiplication, stored beside it;
//   - then each key's k1·R + k2·φ(R) is only additions of table entries, no
//     doublings; for many keys these are affine additions in lockstep, with
//     one field inversion per step for all keys (Montgomery's trick).
//
// The window and the accumulation (Jacobian per key, or batched affine) are
// chosen by key count from a cost model (planECDH). Results equal
// btcec.GenerateSharedSecret (TestSharedSecretsMatch); anything exceptional
// (two equal x in one affine addition) falls back to the plain
// multiplication for that key. None of this is constant time: the receive
// path's trial decryption was not either (ScalarMultNonConst), and what it
// leaks is timing of work on our own keys against a point chosen by a
// remote, the same as twisterd's.

// GLV constants of secp256k1, as decred's curve.go (read-only).
var (
	endoNegLambda = scalarHex("-5363ad4cc05c30e0a5261c028812645a122e22ea20816678df02967c1b23bd72")
	endoBeta      = fieldHex("7ae96a2b657c07106e64479eac3434e99cf0497512f58995c1396c28719501ee")
	endoNegB1     = scalarHex("e4437ed6010e88286f547fa90abfe4c3")
	endoNegB2     = scalarHex("-3086d221a7d46bcde86c90e49284eb15")
	endoZ1        = scalarHex("3086d221a7d46bcde86c90e49284eb153daa8a1471e8ca7f")
	endoZ2        = scalarHex("e4437ed6010e88286f547fa90abfe4c4221208ac9df506c6")
)

func scalarHex(h string) secp.ModNScalar {
	neg := h[0] == '-'
	if neg {
		h = h[1:]
	}
	if len(h)%2 == 1 {
		h = "0" + h
	}
	var s secp.ModNScalar
	if s.SetByteSlice(constHex(h)) {
		panic("twproto: scalar constant overflows")
	}
	if neg {
		s.Negate()
	}
	return s
}

func fieldHex(h string) secp.FieldVal {
	var f secp.FieldVal
	if f.SetByteSlice(constHex(h)) {
		panic("twproto: field constant overflows")
	}
	return f
}

func constHex(h string) []byte {
	b, err := hex.DecodeString(h)
	if err != nil {
		panic("twproto: bad hex constant")
	}
	return b
}

// glvBits bounds |k1| and |k2| of splitScalar: the decomposition's halves
// are below 2^129 (GECC §3.5); the table covers one bit more for the carry
// of the signed recoding.
const glvBits = 130

// limbs is a 256-bit number, little-endian 64-bit words.
type limbs [4]uint64

func scalarLimbs(s *secp.ModNScalar) limbs {
	b := s.Bytes()
	return limbs{
		binary.BigEndian.Uint64(b[24:]), binary.BigEndian.Uint64(b[16:]),
		binary.BigEndian.Uint64(b[8:]), binary.BigEndian.Uint64(b[:]),
	}
}

// mulShift320 is round(a·b / 2^320) for a, b < 2^256 (decred's
// mul512Rsh320Round, which splitK uses and does not export).
func mulShift320(a, b *secp.ModNScalar) secp.ModNScalar {
	x, y := scalarLimbs(a), scalarLimbs(b)
	var r [8]uint64
	for i := range 4 {
		var carry uint64
		for j := range 4 {
			hi, lo := bits.Mul64(x[i], y[j])
			var c uint64
			lo, c = bits.Add64(lo, r[i+j], 0)
			hi += c
			lo, c = bits.Add64(lo, carry, 0)
			hi += c
			r[i+j], carry = lo, hi
		}
		r[i+4] = carry
	}
	round := r[4] >> 63
	var c uint64
	var out [32]byte
	r0, c := bits.Add64(r[5], round, 0)
	r1, c := bits.Add64(r[6], 0, c)
	r2, _ := bits.Add64(r[7], 0, c)
	binary.BigEndian.PutUint64(out[24:], r0)
	binary.BigEndian.PutUint64(out[16:], r1)
	binary.BigEndian.PutUint64(out[8:], r2)
	var s secp.ModNScalar
	s.SetBytes(&out)
	return s
}

// glvScalar is k = s1·k1 + s2·k2·λ (mod n) with k1, k2 >= 0 and signs s.
type glvScalar struct {
	k1, k2     limbs
	neg1, neg2 bool
}

// splitScalar is decred's splitK with the halves made non-negative.
func splitScalar(k *secp.ModNScalar) glvScalar {
	c1 := mulShift320(k, &endoZ1)
	c2 := mulShift320(k, &endoZ2)
	var k1, k2 secp.ModNScalar
	k2.Add2(c1.Mul(&endoNegB1), c2.Mul(&endoNegB2))
	k1.Mul2(&k2, &endoNegLambda).Add(k)
	var g glvScalar
	if k1.IsOverHalfOrder() {
		k1.Negate()
		g.neg1 = true
	}
	if k2.IsOverHalfOrder() {
		k2.Negate()
		g.neg2 = true
	}
	g.k1, g.k2 = scalarLimbs(&k1), scalarLimbs(&k2)
	return g
}

// recode writes the signed fixed-window digits of v, d[j] in
// [-2^(w-1), 2^(w-1)], v = Σ d[j]·2^(w·j). False if v needs more digits.
func recode(v limbs, w uint, d []int32) bool {
	half, full := int64(1)<<(w-1), int64(1)<<w
	mask := uint64(full - 1)
	var carry int64
	for j := range d {
		x := int64(v[0]&mask) + carry
		v[0] = v[0]>>w | v[1]<<(64-w)
		v[1] = v[1]>>w | v[2]<<(64-w)
		v[2] = v[2]>>w | v[3]<<(64-w)
		v[3] >>= w
		carry = 0
		if x > half {
			x -= full
			carry = 1
		}
		d[j] = int32(x)
	}
	return carry == 0 && v == limbs{}
}

// affinePoint holds normalized coordinates; xb is β·x, the x of φ(P).
type affinePoint struct {
	x, xb, y secp.FieldVal
}

// load sets x, y to the point, to φ of it, negated as asked: the four
// signed endomorphic variants every table lookup needs.
func (e *affinePoint) load(phi, neg bool, x, y *secp.FieldVal) {
	if phi {
		x.Set(&e.xb)
	} else {
		x.Set(&e.x)
	}
	if neg {
		y.NegateVal(&e.y, 1).Normalize()
	} else {
		y.Set(&e.y)
	}
}

// batchInverse replaces every v[i] by 1/v[i] with one field inversion
// (Montgomery's trick); scratch has len(v) entries. All v[i] are nonzero
// and of magnitude <= 8.
func batchInverse(v, scratch []secp.FieldVal) {
	if len(v) == 0 {
		return
	}
	scratch[0].Set(&v[0])
	for i := 1; i < len(v); i++ {
		scratch[i].Mul2(&scratch[i-1], &v[i])
	}
	var inv secp.FieldVal
	inv.Set(&scratch[len(v)-1]).Inverse()
	for i := len(v) - 1; i > 0; i-- {
		var t secp.FieldVal
		t.Mul2(&inv, &scratch[i-1]) // 1/v[i]
		inv.Mul(&v[i])              // 1/(v[0]..v[i-1])
		v[i].Set(&t)
	}
	v[0].Set(&inv)
}

// toAffine normalizes Jacobian points (none at infinity) into out with one
// inversion for all.
func toAffine(jac []secp.JacobianPoint, out []affinePoint, zs, scratch []secp.FieldVal) {
	for i := range jac {
		zs[i].Set(&jac[i].Z)
	}
	batchInverse(zs[:len(jac)], scratch)
	for i := range jac {
		var z2, z3 secp.FieldVal
		z2.SquareVal(&zs[i])
		z3.Mul2(&z2, &zs[i])
		out[i].x.Mul2(&jac[i].X, &z2).Normalize()
		out[i].y.Mul2(&jac[i].Y, &z3).Normalize()
		out[i].xb.Mul2(&out[i].x, &endoBeta).Normalize()
	}
}

// rTable is the fixed-window table of one point R: entry (j, d) is
// d·2^(w·j)·R for d in 1..2^(w-1), j in 0..m-1.
type rTable struct {
	w, m, h int
	pts     []affinePoint
}

func windows(w int) int { return (glvBits + w - 1) / w }

func newRTable(r *secp.JacobianPoint, w int) *rTable {
	m, h := windows(w), 1<<(w-1)
	jac := make([]secp.JacobianPoint, m*h)
	var base secp.JacobianPoint
	base.Set(r)
	for j := range m {
		row := jac[j*h : (j+1)*h]
		row[0].Set(&base)
		for d := 2; d <= h; d++ {
			if d%2 == 0 {
				secp.DoubleNonConst(&row[d/2-1], &row[d-1])
			} else {
				secp.AddNonConst(&row[d-2], &base, &row[d-1])
			}
		}
		secp.DoubleNonConst(&row[h-1], &base) // 2^w · base
	}
	t := &rTable{w: w, m: m, h: h, pts: make([]affinePoint, m*h)}
	zs := make([]secp.FieldVal, 2*len(jac))
	toAffine(jac, t.pts, zs[:len(jac)], zs[len(jac):])
	return t
}

// entry sets p to d·2^(w·j)·R, or to φ of it, negated as asked.
func (t *rTable) entry(j int, d int32, phi, neg bool, x, y *secp.FieldVal) {
	if d < 0 {
		d, neg = -d, !neg
	}
	e := &t.pts[j*t.h+int(d)-1]
	e.load(phi, neg, x, y)
}

// ecdhPlan is how one post's keys are multiplied.
type ecdhPlan struct {
	w      int  // window; 0 means plain multiplication per key
	affine bool // batched affine accumulation, else Jacobian per key
	wnaf   bool // per key double-and-add over a small table (w unused)
	comb   int  // teeth of a Lim-Lee comb (w unused), 0 if none
}

// Costs in tenths of a microsecond on the 2-core amd64 CI machine
// (BenchmarkECDHPlans): a plain multiplication, a mixed Jacobian addition,
// one batched affine addition, an inversion, one table entry. Only their
// ratios matter.
const (
	costPlain     = 1850
	costMixedAdd  = 10
	costAffineAdd = 5
	costInverse   = 100
	costEntry     = 20
	costWNAFTable = 270  // odd multiples of R to 15·R, with one inversion
	costWNAFKey   = 1330 // 128 doublings and ~43 mixed additions
	costDouble    = 7
	costAdd       = 16 // a Jacobian addition of two Jacobian points
)

// combCost is a Lim-Lee comb with t teeth for n keys: the table of the
// 2^t - 1 sums of R·2^(d·i), then per key d doublings and 2d additions.
func combCost(t, n int) int {
	d := (glvBits + t - 1) / t
	entries := 1<<t - 1
	table := (t-1)*d*costDouble + (entries-t)*costAdd + costInverse + entries*6
	return table + n*d*(costDouble+2*costMixedAdd) + costInverse
}

// planECDH picks the cheapest way for n keys.
func planECDH(n int) ecdhPlan {
	best, bestCost := ecdhPlan{}, n*costPlain+costInverse
	if c := costWNAFTable + n*costWNAFKey + costInverse; c < bestCost {
		best, bestCost = ecdhPlan{wnaf: true}, c
	}
	for t := 2; t <= 10; t++ {
		if c := combCost(t, n); c < bestCost {
			best, bestCost = ecdhPlan{comb: t}, c
		}
	}
	for w := 2; w <= 10; w++ {
		m := windows(w)
		table := m*(1<<(w-1))*costEntry + costInverse
		jac := table + n*2*m*costMixedAdd + costInverse
		aff := table + 2*n*(m+1)*costAffineAdd + (m+1)*costInverse
		if jac < bestCost {
			best, bestCost = ecdhPlan{w: w}, jac
		}
		if aff < bestCost {
			best, bestCost = ecdhPlan{w: w, affine: true}, aff
		}
	}
	return best
}

// sharedSecrets sets out[i] to the x coordinate of keys[i]·R, as
// btcec.GenerateSharedSecret. R must be on the curve (a parsed key).
func sharedSecrets(r *secp.PublicKey, keys []*secp.ModNScalar, out [][32]byte) {
	var rj secp.JacobianPoint
	r.AsJacobian(&rj)
	sharedSecretsPlan(&rj, keys, out, planECDH(len(keys)))
}

func sharedSecretsPlan(r *secp.JacobianPoint, keys []*secp.ModNScalar, out [][32]byte, plan ecdhPlan) {
	if plan.wnaf {
		newOddTable(r).secrets(r, keys, out)
		return
	}
	if plan.comb > 0 {
		newCombTable(r, plan.comb).secrets(r, keys, out)
		return
	}
	if plan.w == 0 {
		plainSecrets(r, keys, out)
		return
	}
	t := newRTable(r, plan.w)
	if plan.affine {
		t.affineSecrets(r, keys, out)
	} else {
		t.jacobianSecrets(r, keys, out)
	}
}

// plainSecrets multiplies per key, with one inversion for all results.
func plainSecrets(r *secp.JacobianPoint, keys []*secp.ModNScalar, out [][32]byte) {
	jac := make([]secp.JacobianPoint, len(keys))
	for i, k := range keys {
		secp.ScalarMultNonConst(k, r, &jac[i])
	}
	finishJacobian(r, keys, jac, out)
}

// finishJacobian writes the x of each result; a point at infinity (not
// reachable for keys in [1, n-1]) is recomputed the plain way.
func finishJacobian(r *secp.JacobianPoint, keys []*secp.ModNScalar, jac []secp.JacobianPoint, out [][32]byte) {
	zs := make([]secp.FieldVal, 2*len(jac))
	idx := make([]int, 0, len(jac))
	for i := range jac {
		if jac[i].Z.IsZero() {
			plainOne(r, keys[i], &out[i])
			continue
		}
		zs[len(idx)].Set(&jac[i].Z)
		idx = append(idx, i)
	}
	batchInverse(zs[:len(idx)], zs[len(jac):])
	for n, i := range idx {
		var z2, x secp.FieldVal
		z2.SquareVal(&zs[n])
		x.Mul2(&jac[i].X, &z2).Normalize()
		x.PutBytes(&out[i])
	}
}

func plainOne(r *secp.JacobianPoint, k *secp.ModNScalar, out *[32]byte) {
	var q secp.JacobianPoint
	secp.ScalarMultNonConst(k, r, &q)
	q.ToAffine()
	q.X.PutBytes(out)
}

// jacobianSecrets adds each key's table entries in Jacobian coordinates:
// for few keys, where one inversion per step would cost more than it saves.
func (t *rTable) jacobianSecrets(r *secp.JacobianPoint, keys []*secp.ModNScalar, out [][32]byte) {
	jac := make([]secp.JacobianPoint, len(keys))
	d1, d2 := make([]int32, t.m), make([]int32, t.m)
	var p secp.JacobianPoint
	p.Z.SetInt(1)
	for i, k := range keys {
		g := splitScalar(k)
		if !recode(g.k1, uint(t.w), d1) || !recode(g.k2, uint(t.w), d2) {
			secp.ScalarMultNonConst(k, r, &jac[i])
			continue
		}
		q := &jac[i]
		for j := range t.m {
			if d1[j] != 0 {
				t.entry(j, d1[j], false, g.neg1, &p.X, &p.Y)
				secp.AddNonConst(q, &p, q)
			}
			if d2[j] != 0 {
				t.entry(j, d2[j], true, g.neg2, &p.X, &p.Y)
				secp.AddNonConst(q, &p, q)
			}
		}
	}
	finishJacobian(r, keys, jac, out)
}

// accum is one running affine sum of the batched path.
type accum struct {
	x, y  secp.FieldVal
	empty bool
}

// affineSecrets runs two accumulators per key (the k1 and the k2·λ part)
// in lockstep over the windows, one batched inversion per window, and adds
// the two at the end in one more batched step.
func (t *rTable) affineSecrets(r *secp.JacobianPoint, keys []*secp.ModNScalar, out [][32]byte) {
	n := len(keys)
	acc := make([]accum, 2*n)
	digits := make([]int32, 2*n*t.m) // acc a's digit j at a*m+j
	neg := make([]bool, 2*n)
	failed := make([]bool, n)
	for i, k := range keys {
		g := splitScalar(k)
		a, b := 2*i, 2*i+1
		ok1 := recode(g.k1, uint(t.w), digits[a*t.m:(a+1)*t.m])
		ok2 := recode(g.k2, uint(t.w), digits[b*t.m:(b+1)*t.m])
		failed[i] = !ok1 || !ok2
		neg[a], neg[b] = g.neg1, g.neg2
		acc[a].empty, acc[b].empty = true, true
	}
	b := newAffineBatch(2 * n)
	var x, y secp.FieldVal
	for j := range t.m {
		b.reset()
		for a := range acc {
			d := digits[a*t.m+j]
			if d == 0 || failed[a/2] {
				continue
			}
			t.entry(j, d, a%2 == 1, neg[a], &x, &y)
			if !b.add(&acc[a], &x, &y) {
				failed[a/2] = true
			}
		}
		b.finish()
	}
	// acc[2i] += acc[2i+1]
	b.reset()
	for i := range n {
		p, q := &acc[2*i], &acc[2*i+1]
		if failed[i] || q.empty {
			continue
		}
		if !b.add(p, &q.x, &q.y) {
			failed[i] = true
		}
	}
	b.finish()
	for i := range n {
		if failed[i] || acc[2*i].empty {
			plainOne(r, keys[i], &out[i])
			continue
		}
		acc[2*i].x.PutBytes(&out[i])
	}
}

// affineBatch collects affine additions acc += (x, y) and does them with
// one inversion: add queues one, finish completes them all.
type affineBatch struct {
	acc     []*accum
	px, py  []secp.FieldVal
	dx, tmp []secp.FieldVal
}

func newAffineBatch(n int) *affineBatch {
	return &affineBatch{
		acc: make([]*accum, 0, n),
		px:  make([]secp.FieldVal, n), py: make([]secp.FieldVal, n),
		dx: make([]secp.FieldVal, n), tmp: make([]secp.FieldVal, n),
	}
}

func (b *affineBatch) reset() { b.acc = b.acc[:0] }

// add queues acc += (x, y); an empty acc just takes the point. False when
// the two x are equal (a doubling or the point at infinity): the caller
// falls back for that key.
func (b *affineBatch) add(acc *accum, x, y *secp.FieldVal) bool {
	if acc.empty {
		acc.x.Set(x)
		acc.y.Set(y)
		acc.empty = false
		return true
	}
	i := len(b.acc)
	b.dx[i].NegateVal(&acc.x, 1).Add(x).Normalize()
	if b.dx[i].IsZero() {
		return false
	}
	b.px[i].Set(x)
	b.py[i].Set(y)
	b.acc = append(b.acc, acc)
	return true
}

// finish completes the queued additions.
func (b *affineBatch) finish() {
	n := len(b.acc)
	batchInverse(b.dx[:n], b.tmp)
	for i, a := range b.acc {
		var lambda, t, x3 secp.FieldVal
		lambda.NegateVal(&a.y, 1).Add(&b.py[i]).Mul(&b.dx[i]) // (y2-y1)/(x2-x1)
		x3.SquareVal(&lambda)
		t.NegateVal(&a.x, 1)
		x3.Add(&t)
		t.NegateVal(&b.px[i], 1)
		x3.Add(&t).Normalize() // λ² - x1 - x2
		t.NegateVal(&x3, 1).Add(&a.x)
		t.Mul(&lambda)
		a.y.Negate(1).Add(&t).Normalize() // λ(x1 - x3) - y1
		a.x.Set(&x3)
	}
}

// The mirror case, a retry: one new key tried on many posts' points. The
// scalar is split and recoded once (GLV halves in wNAF), and all points run
// the same double-and-add sequence in lockstep in affine coordinates, so
// each doubling or addition step costs one inversion for all the points.

// retryWindow is the wNAF window of the retry path: tables of 2^(w-2) odd
// multiples per point.
const retryWindow = 5

// wnaf writes the width-w NAF of v (below 2^129) into d, least significant
// digit first, and returns the digits used: each nonzero digit is odd and
// below 2^(w-1) in magnitude, and of any w consecutive digits at most one
// is nonzero.
func wnaf(v limbs, w uint, d []int32) int {
	var x [5]uint64
	copy(x[:], v[:])
	full, half := int64(1)<<w, int64(1)<<(w-1)
	n := 0
	for x != [5]uint64{} {
		if n == len(d) {
			return -1
		}
		var digit int64
		if x[0]&1 == 1 {
			digit = int64(x[0] & uint64(full-1))
			if digit >= half {
				digit -= full
			}
			// x -= digit
			if digit > 0 {
				var b uint64
				x[0], b = bits.Sub64(x[0], uint64(digit), 0)
				for i := 1; i < 5 && b != 0; i++ {
					x[i], b = bits.Sub64(x[i], 0, b)
				}
			} else {
				var c uint64
				x[0], c = bits.Add64(x[0], uint64(-digit), 0)
				for i := 1; i < 5 && c != 0; i++ {
					x[i], c = bits.Add64(x[i], 0, c)
				}
			}
		}
		d[n] = int32(digit)
		n++
		for i := range 4 {
			x[i] = x[i]>>1 | x[i+1]<<63
		}
		x[4] >>= 1
	}
	return n
}

// pointBatch is M affine points advanced in lockstep.
type pointBatch struct {
	acc     []accum
	ptrs    []*accum
	failed  []bool
	den     []secp.FieldVal
	scratch []secp.FieldVal
}

func newPointBatch(m int) *pointBatch {
	return &pointBatch{
		acc: make([]accum, m), ptrs: make([]*accum, 0, m), failed: make([]bool, m),
		den: make([]secp.FieldVal, m), scratch: make([]secp.FieldVal, 3*m),
	}
}

// double sets acc[i] = 2·acc[i] for every live point (all non-empty).
func (b *pointBatch) double() {
	live := b.den[:0]
	for i := range b.acc {
		if b.failed[i] {
			continue
		}
		var d secp.FieldVal
		d.Set(&b.acc[i].y).MulInt(2).Normalize()
		if d.IsZero() { // a point of order 2: none on secp256k1
			b.failed[i] = true
			continue
		}
		live = append(live, d)
	}
	batchInverse(live, b.scratch)
	n := 0
	for i := range b.acc {
		if b.failed[i] {
			continue
		}
		a := &b.acc[i]
		var lambda, t, x3 secp.FieldVal
		lambda.SquareVal(&a.x).MulInt(3).Mul(&live[n]) // 3x²/2y
		n++
		x3.SquareVal(&lambda)
		t.Set(&a.x).MulInt(2).Negate(2)
		x3.Add(&t).Normalize() // λ² - 2x
		t.NegateVal(&x3, 1).Add(&a.x).Mul(&lambda)
		a.y.Negate(1).Add(&t).Normalize() // λ(x - x3) - y
		a.x.Set(&x3)
	}
}

// add sets acc[i] += pt(i) for every live point; pt fills x, y. Empty
// accumulators take the point.
func (b *pointBatch) add(pt func(i int, x, y *secp.FieldVal)) {
	ab := affineBatch{acc: b.ptrs[:0], px: b.px(), py: b.py(), dx: b.den, tmp: b.scratch[:len(b.acc)]}
	var x, y secp.FieldVal
	for i := range b.acc {
		if b.failed[i] {
			continue
		}
		pt(i, &x, &y)
		if !ab.add(&b.acc[i], &x, &y) {
			b.failed[i] = true
		}
	}
	ab.finish()
}

// px and py are the added points' scratch, beside the inversion's.
func (b *pointBatch) px() []secp.FieldVal { return b.scratch[len(b.acc) : 2*len(b.acc)] }

func (b *pointBatch) py() []secp.FieldVal { return b.scratch[2*len(b.acc) : 3*len(b.acc)] }

// sharedSecretsOneKey sets out[i] to the x of k·points[i].
func sharedSecretsOneKey(k *secp.ModNScalar, points []secp.JacobianPoint, out [][32]byte) {
	recodeKey(k).sharedSecrets(points, out)
}

// recodedKey is a scalar split and recoded once for any number of batches
// of points.
type recodedKey struct {
	k      secp.ModNScalar
	g      glvScalar
	d1, d2 [glvBits + 2]int32
	n1, n2 int
}

func recodeKey(k *secp.ModNScalar) *recodedKey {
	rk := &recodedKey{k: *k, g: splitScalar(k)}
	rk.n1 = wnaf(rk.g.k1, retryWindow, rk.d1[:])
	rk.n2 = wnaf(rk.g.k2, retryWindow, rk.d2[:])
	return rk
}

func (rk *recodedKey) sharedSecrets(points []secp.JacobianPoint, out [][32]byte) {
	m := len(points)
	if m == 0 {
		return
	}
	const w = retryWindow
	h := 1 << (w - 2) // odd multiples 1, 3, ..., 2^(w-1)-1
	k, g := &rk.k, rk.g
	d1, d2, n1, n2 := &rk.d1, &rk.d2, rk.n1, rk.n2
	if n1 < 0 || n2 < 0 {
		for i := range points {
			plainOne(&points[i], k, &out[i])
		}
		return
	}
	// Tables: tab[i*h+j] = (2j+1)·P_i, built in lockstep: 2P, then +2P.
	tab := make([]affinePoint, m*h)
	b := newPointBatch(m)
	for i := range points {
		b.acc[i].x.Set(&points[i].X)
		b.acc[i].y.Set(&points[i].Y)
		tab[i*h].x.Set(&points[i].X)
		tab[i*h].y.Set(&points[i].Y)
	}
	b.double()
	twoP := make([]accum, m)
	copy(twoP, b.acc)
	for j := 1; j < h; j++ {
		for i := range b.acc {
			b.acc[i] = accum{x: tab[i*h+j-1].x, y: tab[i*h+j-1].y}
		}
		b.add(func(i int, x, y *secp.FieldVal) { x.Set(&twoP[i].x); y.Set(&twoP[i].y) })
		for i := range b.acc {
			tab[i*h+j].x.Set(&b.acc[i].x)
			tab[i*h+j].y.Set(&b.acc[i].y)
		}
	}
	for i := range tab {
		tab[i].xb.Mul2(&tab[i].x, &endoBeta).Normalize()
	}
	entry := func(i int, d int32, phi, neg bool, x, y *secp.FieldVal) {
		if d < 0 {
			d, neg = -d, !neg
		}
		e := &tab[i*h+int(d-1)/2]
		e.load(phi, neg, x, y)
	}
	// Left to right over the digits; until the first addition the sum is
	// the point at infinity (all accumulators empty together).
	for i := range b.acc {
		b.acc[i].empty = true
	}
	started := false
	for bit := max(n1, n2) - 1; bit >= 0; bit-- {
		if started {
			b.double()
		}
		if bit < n1 && d1[bit] != 0 {
			dd := d1[bit]
			b.add(func(i int, x, y *secp.FieldVal) { entry(i, dd, false, g.neg1, x, y) })
			started = true
		}
		if bit < n2 && d2[bit] != 0 {
			dd := d2[bit]
			b.add(func(i int, x, y *secp.FieldVal) { entry(i, dd, true, g.neg2, x, y) })
			started = true
		}
	}
	for i := range points {
		if b.failed[i] || b.acc[i].empty {
			plainOne(&points[i], k, &out[i])
			continue
		}
		b.acc[i].x.PutBytes(&out[i])
	}
}

// oddTable is R, 3R, ..., 15R (and φ of each) in affine coordinates: the
// table of a width-5 wNAF multiplication, shared by a post's few keys.
type oddTable [1 << (retryWindow - 2)]affinePoint

func newOddTable(r *secp.JacobianPoint) *oddTable {
	var jac [len(oddTable{})]secp.JacobianPoint
	var two secp.JacobianPoint
	jac[0].Set(r)
	secp.DoubleNonConst(r, &two)
	for i := 1; i < len(jac); i++ {
		secp.AddNonConst(&jac[i-1], &two, &jac[i])
	}
	var t oddTable
	var zs, scratch [len(jac)]secp.FieldVal
	toAffine(jac[:], t[:], zs[:], scratch[:])
	return &t
}

// secrets is k·R per key by left-to-right wNAF of the GLV halves, in
// Jacobian coordinates with mixed additions, one inversion for all keys.
func (t *oddTable) secrets(r *secp.JacobianPoint, keys []*secp.ModNScalar, out [][32]byte) {
	jac := make([]secp.JacobianPoint, len(keys))
	var d1, d2 [glvBits + 2]int32
	var p secp.JacobianPoint
	p.Z.SetInt(1)
	entry := func(d int32, phi, neg bool) {
		if d < 0 {
			d, neg = -d, !neg
		}
		e := &t[(d-1)/2]
		e.load(phi, neg, &p.X, &p.Y)
	}
	for i, k := range keys {
		g := splitScalar(k)
		n1, n2 := wnaf(g.k1, retryWindow, d1[:]), wnaf(g.k2, retryWindow, d2[:])
		if n1 < 0 || n2 < 0 {
			secp.ScalarMultNonConst(k, r, &jac[i])
			continue
		}
		q := &jac[i]
		for bit := max(n1, n2) - 1; bit >= 0; bit-- {
			secp.DoubleNonConst(q, q)
			if bit < n1 && d1[bit] != 0 {
				entry(d1[bit], false, g.neg1)
				secp.AddNonConst(q, &p, q)
			}
			if bit < n2 && d2[bit] != 0 {
				entry(d2[bit], true, g.neg2)
				secp.AddNonConst(q, &p, q)
			}
		}
	}
	finishJacobian(r, keys, jac, out)
}

// combTable is a Lim-Lee comb of R: entry c-1 is Σ 2^(d·i)·R over the set
// bits i of c, for c in 1..2^t-1, with d = ceil(130/t). A key's half is
// then d doublings and d additions of entries picked by the bits d apart.
type combTable struct {
	t, d int
	pts  []affinePoint
}

func newCombTable(r *secp.JacobianPoint, t int) *combTable {
	d := (glvBits + t - 1) / t
	jac := make([]secp.JacobianPoint, 1<<t-1)
	var base secp.JacobianPoint
	base.Set(r)
	for i := range t {
		if i > 0 {
			for range d {
				secp.DoubleNonConst(&base, &base)
			}
		}
		jac[1<<i-1].Set(&base)
	}
	for c := 1; c < 1<<t; c++ {
		if low := c & -c; low != c {
			secp.AddNonConst(&jac[c-low-1], &jac[low-1], &jac[c-1])
		}
	}
	ct := &combTable{t: t, d: d, pts: make([]affinePoint, len(jac))}
	zs := make([]secp.FieldVal, 2*len(jac))
	toAffine(jac, ct.pts, zs[:len(jac)], zs[len(jac):])
	return ct
}

// column is the comb index of v's bits j, j+d, j+2d, ...
func (ct *combTable) column(v *limbs, j int) int {
	c := 0
	for i := range ct.t {
		if n := i*ct.d + j; n < 256 && v[n/64]>>(n%64)&1 == 1 {
			c |= 1 << i
		}
	}
	return c
}

func (ct *combTable) secrets(r *secp.JacobianPoint, keys []*secp.ModNScalar, out [][32]byte) {
	jac := make([]secp.JacobianPoint, len(keys))
	var p secp.JacobianPoint
	p.Z.SetInt(1)
	set := func(c int, phi, neg bool) {
		e := &ct.pts[c-1]
		e.load(phi, neg, &p.X, &p.Y)
	}
	for i, k := range keys {
		g := splitScalar(k)
		q := &jac[i]
		for j := ct.d - 1; j >= 0; j-- {
			secp.DoubleNonConst(q, q)
			if c := ct.column(&g.k1, j); c != 0 {
				set(c, false, g.neg1)
				secp.AddNonConst(q, &p, q)
			}
			if c := ct.column(&g.k2, j); c != 0 {
				set(c, true, g.neg2)
				secp.AddNonConst(q, &p, q)
			}
		}
	}
	finishJacobian(r, keys, jac, out)
}
