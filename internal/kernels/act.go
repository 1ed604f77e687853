package kernels

import (
	"math"
)

// exp2Tab[i] = 2**(i/256), for expFast.
var exp2Tab = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(math.Exp2(float64(i) / 256))
	}
	return t
}()

// Bounds of the argument of expFast. Callers clamp to them; at the bounds
// e**x is 2.9e-38 and 3.3e38.
const (
	expLo = -86.5
	expHi = 88.7
)

// expFast returns e**x in float32 with an error of about 1 ulp, for x in
// [expLo, expHi] (callers clamp; NaN gives garbage). x = (n/256)*ln 2 + r
// with |r| <= ln2/512; e**x = 2**(n>>8) * 2**((n&255)/256) * (1 + r + r*r/2).
// It is kept within the inlining budget so that element-wise loops stay
// call-free.
func expFast(x float32) float32 {
	const (
		magic = 12582912 // 1.5 * 2**23: adding it rounds to an integer
		// ln2/256 split so that nf*ln2Hi is exact for |nf| < 2**16.
		ln2Hi = 0.69140625 / 256
		ln2Lo = (math.Ln2 - 0.69140625) / 256
	)
	kf := x*(256*math.Log2E) + magic
	n := int32(math.Float32bits(kf)) - 0x4B400000 // round(x*256/ln2)
	nf := kf - magic
	r := x - nf*ln2Hi - nf*ln2Lo
	p := 1 + r*(1+0.5*r)
	return math.Float32frombits(math.Float32bits(p*exp2Tab[n&255]) + uint32(n>>8)<<23)
}

// expf returns e**x in float32 for any x (about 1 ulp); arguments outside
// [expLo, expHi] and NaN go through math.Exp.
func expf(x float32) float32 {
	if !(x >= expLo && x <= expHi) {
		return float32(math.Exp(float64(x)))
	}
	return expFast(x)
}

// clampExp clamps x to [expLo, expHi]; NaN passes through.
func clampExp(x float32) float32 {
	if x < expLo {
		return expLo
	}
	if x > expHi {
		return expHi
	}
	return x
}

// actGrain is the chunk size of the element-wise kernels.
const actGrain = 1 << 14

type actArgs struct {
	y, dy, x []float32
}

var (
	siluLoop      = parLoop[actArgs]{body: siluBody}
	siluBackLoop  = parLoop[actArgs]{body: siluBackBody}
	geluLoop      = parLoop[actArgs]{body: geluBody}
	geluBackLoop  = parLoop[actArgs]{body: geluBackBody}
	gelutLoop     = parLoop[actArgs]{body: geluTanhBody}
	gelutBackLoop = parLoop[actArgs]{body: geluTanhBackBody}
)

func checkAct(name string, n int, s ...[]float32) {
	for _, v := range s {
		if len(v) < n {
			panic("kernels: " + name + ": slice too short")
		}
	}
}

// SiLU computes y = x * sigmoid(x) element-wise over len(x) elements; y has
// at least len(x) elements and may alias x.
func SiLU(y, x []float32) {
	checkAct("SiLU", len(x), y)
	siluLoop.For(actArgs{y: y, x: x}, len(x), actGrain)
}

func siluBody(a *actArgs, _, lo, hi int) {
	x := a.x[lo:hi]
	y := a.y[lo:hi]
	y = y[:len(x)]
	if vecAsm && len(x) > 0 {
		siluAVX2(&y[0], &x[0], len(x))
		return
	}
	for i, v := range x {
		y[i] = v / (1 + expFast(clampExp(-v)))
	}
}

// SiLUBackward computes dx = dy * silu'(x) with silu'(x) = s*(1 + x*(1-s)),
// s = sigmoid(x), where x is the forward INPUT. dx, dy and x have the same
// length; dx may alias dy.
func SiLUBackward(dx, dy, x []float32) {
	checkAct("SiLUBackward", len(x), dx, dy)
	siluBackLoop.For(actArgs{y: dx, dy: dy, x: x}, len(x), actGrain)
}

func siluBackBody(a *actArgs, _, lo, hi int) {
	x := a.x[lo:hi]
	dy := a.dy[lo:hi]
	dx := a.y[lo:hi]
	dy = dy[:len(x)]
	dx = dx[:len(x)]
	if vecAsm && len(x) > 0 {
		siluBackAVX2(&dx[0], &dy[0], &x[0], len(x))
		return
	}
	for i, v := range x {
		s := 1 / (1 + expFast(clampExp(-v)))
		dx[i] = dy[i] * (s * (1 + v*(1-s)))
	}
}

const (
	invSqrt2    = 0.70710678118654752440
	invSqrt2Pi  = 0.39894228040143267794
	sqrt2OverPi = 0.79788456080286535588
	geluTanhC   = 0.044715
)

// GELU computes the exact GELU y = x/2 * (1 + erf(x/sqrt(2))) element-wise
// (PyTorch's default approximate='none'); y may alias x.
func GELU(y, x []float32) {
	checkAct("GELU", len(x), y)
	geluLoop.For(actArgs{y: y, x: x}, len(x), actGrain)
}

func geluBody(a *actArgs, _, lo, hi int) {
	x := a.x[lo:hi]
	y := a.y[lo:hi]
	y = y[:len(x)]
	for i, v := range x {
		d := float64(v)
		y[i] = float32(0.5 * d * (1 + math.Erf(d*invSqrt2)))
	}
}

// GELUBackward computes dx = dy * gelu'(x) for the exact GELU, with
// gelu'(x) = Phi(x) + x*phi(x); x is the forward input. dx may alias dy.
func GELUBackward(dx, dy, x []float32) {
	checkAct("GELUBackward", len(x), dx, dy)
	geluBackLoop.For(actArgs{y: dx, dy: dy, x: x}, len(x), actGrain)
}

func geluBackBody(a *actArgs, _, lo, hi int) {
	x := a.x[lo:hi]
	dy := a.dy[lo:hi]
	dx := a.y[lo:hi]
	dy = dy[:len(x)]
	dx = dx[:len(x)]
	for i, v := range x {
		d := float64(v)
		cdf := 0.5 * (1 + math.Erf(d*invSqrt2))
		pdf := invSqrt2Pi * math.Exp(-0.5*d*d)
		dx[i] = dy[i] * float32(cdf+d*pdf)
	}
}

// GELUTanh computes the tanh approximation of GELU,
// y = x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) (PyTorch
// approximate='tanh'); y may alias x.
func GELUTanh(y, x []float32) {
	checkAct("GELUTanh", len(x), y)
	gelutLoop.For(actArgs{y: y, x: x}, len(x), actGrain)
}

func geluTanhBody(a *actArgs, _, lo, hi int) {
	x := a.x[lo:hi]
	y := a.y[lo:hi]
	y = y[:len(x)]
	// 0.5*(1 + tanh(u)) = sigmoid(2u): no cancellation for negative u.
	// The argument is formed in float64: it reaches |u2| ~ 20 where
	// float32 rounding alone would cost 1e-6 relative in the tail.
	for i, v := range x {
		d := float64(v)
		u2 := float32(2 * sqrt2OverPi * (d + geluTanhC*d*d*d))
		y[i] = v / (1 + expFast(clampExp(-u2)))
	}
}

// GELUTanhBackward computes dx = dy * d/dx GELUTanh(x); x is the forward
// input. dx may alias dy.
func GELUTanhBackward(dx, dy, x []float32) {
	checkAct("GELUTanhBackward", len(x), dx, dy)
	gelutBackLoop.For(actArgs{y: dx, dy: dy, x: x}, len(x), actGrain)
}

func geluTanhBackBody(a *actArgs, _, lo, hi int) {
	x := a.x[lo:hi]
	dy := a.dy[lo:hi]
	dx := a.y[lo:hi]
	dy = dy[:len(x)]
	dx = dx[:len(x)]
	// With s = sigmoid(2u) = (1+tanh u)/2 and 1 - tanh^2 u = 4s(1-s):
	// d/dx = s + 2x*s*(1-s)*sqrt(2/pi)*(1 + 3*0.044715*x^2).
	for i, v := range x {
		v2 := v * v
		d := float64(v)
		s := 1 / (1 + expFast(clampExp(-float32(2*sqrt2OverPi*(d+geluTanhC*d*d*d)))))
		g := s + 2*v*s*(1-s)*sqrt2OverPi*(1+3*geluTanhC*v2)
		dx[i] = dy[i] * g
	}
}

// ---------------------------------------------------------------------------
// Softmax over the last dimension.

type softmaxArgs struct {
	y, dy, x []float32
	cols     int
}

var (
	softmaxLoop     = parLoop[softmaxArgs]{body: softmaxBody}
	softmaxBackLoop = parLoop[softmaxArgs]{body: softmaxBackBody}
)

// SoftmaxForward computes a numerically stable softmax of each row of the
// [rows, cols] matrix x into y ([rows, cols]); y may alias x.
func SoftmaxForward(y, x []float32, rows, cols int) {
	checkAct("SoftmaxForward", rows*cols, x, y)
	softmaxLoop.For(softmaxArgs{y: y, x: x, cols: cols}, rows, grainFor(1<<13, cols))
}

func softmaxBody(a *softmaxArgs, _, lo, hi int) {
	cols := a.cols
	for r := lo; r < hi; r++ {
		x := a.x[r*cols : (r+1)*cols]
		y := a.y[r*cols : (r+1)*cols]
		y = y[:len(x)]
		m := float32(math.Inf(-1))
		nan := false
		for _, v := range x {
			if v > m {
				m = v
			}
			nan = nan || v != v
		}
		if nan || math.IsInf(float64(m), 0) {
			// NaN in the row, +Inf, or every entry -Inf (a fully masked
			// row): PyTorch yields NaN (for +Inf, NaN where x is +Inf).
			softmaxSpecial(y, x, m)
			continue
		}
		var s float64
		for i, v := range x {
			// Entries far below the max (masked with -Inf, say) are 0.
			e := float32(0)
			if d := v - m; d >= expLo {
				e = expFast(d)
			}
			y[i] = e
			s += float64(e)
		}
		inv := float32(1 / s)
		for i := range y {
			y[i] *= inv
		}
	}
}

// softmaxSpecial handles a row with NaN or infinite max m the way PyTorch
// does: computed in float64 with math.Exp (NaN propagates).
func softmaxSpecial(y, x []float32, m float32) {
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - float64(m))
	}
	for i, v := range x {
		y[i] = float32(math.Exp(float64(v)-float64(m)) / s)
	}
}

// SoftmaxBackward computes dx = y * (dy - sum(dy*y)) row by row, where y is
// the [rows, cols] softmax output and dy its gradient; dx ([rows, cols]) may
// alias dy.
func SoftmaxBackward(dx, dy, y []float32, rows, cols int) {
	checkAct("SoftmaxBackward", rows*cols, dx, dy, y)
	softmaxBackLoop.For(softmaxArgs{y: y, dy: dy, x: dx, cols: cols}, rows, grainFor(1<<13, cols))
}

func softmaxBackBody(a *softmaxArgs, _, lo, hi int) {
	cols := a.cols
	for r := lo; r < hi; r++ {
		y := a.y[r*cols : (r+1)*cols]
		dy := a.dy[r*cols : (r+1)*cols]
		dx := a.x[r*cols : (r+1)*cols]
		dy = dy[:len(y)]
		dx = dx[:len(y)]
		var s float64
		for i, v := range y {
			s += float64(v * dy[i])
		}
		sf := float32(s)
		for i, v := range y {
			dx[i] = v * (dy[i] - sf)
		}
	}
}
