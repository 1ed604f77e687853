package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func refSigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
func refSiLU(x float64) float64    { return x * refSigmoid(x) }
func refGELU(x float64) float64    { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }
func refGELUTanh(x float64) float64 {
	return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
}

// Analytic derivatives, written independently of the kernels.
func refSiLUGrad(x float64) float64 {
	s := refSigmoid(x)
	return s + x*s*(1-s)
}
func refGELUGrad(x float64) float64 {
	return 0.5*(1+math.Erf(x/math.Sqrt2)) + x*math.Exp(-x*x/2)/math.Sqrt(2*math.Pi)
}
func refGELUTanhGrad(x float64) float64 {
	k := math.Sqrt(2 / math.Pi)
	u := k * (x + 0.044715*x*x*x)
	t := math.Tanh(u)
	return 0.5*(1+t) + 0.5*x*(1-t*t)*k*(1+3*0.044715*x*x)
}

// actInputs returns test inputs: a grid over [-12, 12], extremes, and random
// values, sized so that the parallel path is used.
func actInputs(r *rand.Rand) []float32 {
	x := []float32{0, -0, 1e-8, -1e-8, 1e-4, -1e-4, 50, -50, 87.5, -87.5, 88.5, -88.5, 100, -100, 1e4, -1e4}
	for v := -12.0; v <= 12; v += 0.01 {
		x = append(x, float32(v))
	}
	for len(x) < 3*actGrain+17 {
		x = append(x, (r.Float32()*2-1)*8)
	}
	return x
}

// checkElem compares got[i] to f(x[i]) with |err| <= rel*|want| + abs.
func checkElem(t *testing.T, name string, got, x []float32, f func(float64) float64, rel, abs float64) {
	t.Helper()
	bad := 0
	for i, v := range x {
		want := f(float64(v))
		if d := math.Abs(float64(got[i]) - want); !(d <= rel*math.Abs(want)+abs) {
			if bad < 5 {
				t.Errorf("%s(%v) = %v, want %v (err %.3g)", name, v, got[i], want, d)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d bad elements", name, bad)
	}
}

func TestExpf(t *testing.T) {
	var maxRel float64
	for v := -87.0; v <= 88; v += 0.001 {
		x := float32(v)
		got := float64(expf(x))
		want := math.Exp(float64(x))
		maxRel = math.Max(maxRel, math.Abs(got-want)/want)
	}
	if maxRel > 2.5e-7 {
		t.Errorf("expf max relative error %.3g, want <= 2.5e-7", maxRel)
	}
	if v := expf(float32(math.NaN())); v == v {
		t.Errorf("expf(NaN) = %v", v)
	}
	if v := expf(float32(math.Inf(1))); !math.IsInf(float64(v), 1) {
		t.Errorf("expf(+Inf) = %v", v)
	}
	if v := expf(float32(math.Inf(-1))); v != 0 {
		t.Errorf("expf(-Inf) = %v", v)
	}
	if v := expf(-100); v != float32(math.Exp(-100)) {
		t.Errorf("expf(-100) = %v", v)
	}
}

func TestActivations(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	x := actInputs(r)
	dy := randF32(r, len(x), 1)
	y := make([]float32, len(x))
	dx := make([]float32, len(x))
	cases := []struct {
		name       string
		fwd        func(y, x []float32)
		bwd        func(dx, dy, x []float32)
		ref, grad  func(float64) float64
		relF, relB float64
	}{
		{"SiLU", SiLU, SiLUBackward, refSiLU, refSiLUGrad, 1e-6, 1e-6},
		{"GELU", GELU, GELUBackward, refGELU, refGELUGrad, 1e-6, 1e-6},
		{"GELUTanh", GELUTanh, GELUTanhBackward, refGELUTanh, refGELUTanhGrad, 1e-6, 2e-6},
	}
	for _, c := range cases {
		c.fwd(y, x)
		checkElem(t, c.name, y, x, c.ref, c.relF, 1e-12)
		// In place.
		yy := append([]float32(nil), x...)
		c.fwd(yy, yy)
		for i := range yy {
			if yy[i] != y[i] {
				t.Fatalf("%s in place differs at %d", c.name, i)
			}
		}
		c.bwd(dx, dy, x)
		want := func(i int) float64 { return float64(dy[i]) * c.grad(float64(x[i])) }
		bad := 0
		for i := range x {
			w := want(i)
			if d := math.Abs(float64(dx[i]) - w); !(d <= c.relB*math.Abs(w)+1e-7*math.Abs(float64(dy[i]))) {
				if bad < 5 {
					t.Errorf("%sBackward at x=%v: %v, want %v", c.name, x[i], dx[i], w)
				}
				bad++
			}
		}
		// Finite differences of the float64 forward, h = 1e-4: truncation
		// error O(h^2) ~ 1e-8, well under the 1e-5 tolerance.
		for i := 16; i < len(x); i += 97 {
			v := float64(x[i])
			fd := (c.ref(v+1e-4) - c.ref(v-1e-4)) / 2e-4 * float64(dy[i])
			if math.Abs(float64(dx[i])-fd) > 1e-5*(1+math.Abs(fd)) {
				t.Errorf("%sBackward at x=%v: %v, finite difference %v", c.name, v, dx[i], fd)
			}
		}
		// dx may alias dy.
		g := append([]float32(nil), dy...)
		c.bwd(g, g, x)
		for i := range g {
			if g[i] != dx[i] {
				t.Fatalf("%sBackward in place differs at %d", c.name, i)
			}
		}
	}
}

func refSoftmax(x []float64, rows, cols int) []float64 {
	y := make([]float64, len(x))
	for r := 0; r < rows; r++ {
		m := math.Inf(-1)
		for _, v := range x[r*cols : (r+1)*cols] {
			m = math.Max(m, v)
		}
		var s float64
		for c := 0; c < cols; c++ {
			y[r*cols+c] = math.Exp(x[r*cols+c] - m)
			s += y[r*cols+c]
		}
		for c := 0; c < cols; c++ {
			y[r*cols+c] /= s
		}
	}
	return y
}

func TestSoftmax(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, tc := range []struct {
		rows, cols int
		scale      float32
	}{{1, 1, 1}, {3, 5, 1}, {7, 49, 4}, {4, 10, 200}, {257, 49, 3}, {2, 1000, 1}} {
		name := fmt.Sprintf("%dx%d*%v", tc.rows, tc.cols, tc.scale)
		n := tc.rows * tc.cols
		x := randF32(r, n, tc.scale)
		if tc.scale > 100 {
			x[0] = 1e30 // stability: huge logits must not overflow
		}
		x64 := to64(x)
		y := make([]float32, n)
		SoftmaxForward(y, x, tc.rows, tc.cols)
		want := refSoftmax(x64, tc.rows, tc.cols)
		assertClose(t, name+" fwd", y, want, 1e-6)
		yy := append([]float32(nil), x...)
		SoftmaxForward(yy, yy, tc.rows, tc.cols)
		assertClose(t, name+" fwd in place", yy, want, 1e-6)

		dy := randF32(r, n, 1)
		dx := make([]float32, n)
		SoftmaxBackward(dx, dy, y, tc.rows, tc.cols)
		// Naive reference: the full Jacobian dy_j/dx_i = y_j(delta_ij - y_i).
		ref := make([]float64, n)
		for row := 0; row < tc.rows; row++ {
			for i := 0; i < tc.cols; i++ {
				var s float64
				for j := 0; j < tc.cols; j++ {
					yj := want[row*tc.cols+j]
					d := 0.0
					if i == j {
						d = 1
					}
					s += float64(dy[row*tc.cols+j]) * yj * (d - want[row*tc.cols+i])
				}
				ref[row*tc.cols+i] = s
			}
		}
		assertClose(t, name+" bwd", dx, ref, 1e-5)
		if n <= 600 && tc.scale < 100 {
			fd := fdGrad(x64, to64(dy), 1e-5, func(v []float64) []float64 { return refSoftmax(v, tc.rows, tc.cols) })
			assertClose(t, name+" bwd vs FD", dx, fd, 1e-5)
		}
	}
	// A fully masked row gives NaN, as in PyTorch.
	inf := float32(math.Inf(-1))
	y := make([]float32, 2)
	SoftmaxForward(y, []float32{inf, inf}, 1, 2)
	if y[0] == y[0] {
		t.Errorf("softmax of all -Inf = %v, want NaN", y)
	}
	// NaN propagates to the whole row; -Inf entries (masking) give exact 0.
	y = make([]float32, 6)
	SoftmaxForward(y, []float32{1, float32(math.NaN()), 2, 0, inf, 3}, 2, 3)
	if y[0] == y[0] || y[2] == y[2] {
		t.Errorf("softmax with NaN = %v, want NaN row", y[:3])
	}
	if y[4] != 0 || math.Abs(float64(y[3]+y[5])-1) > 1e-6 {
		t.Errorf("softmax with -Inf = %v, want [p 0 1-p]", y[3:])
	}
}

func BenchmarkActivations(b *testing.B) {
	r := rand.New(rand.NewPCG(17, 18))
	n := 64 * 32 * 784
	x := randF32(r, n, 4)
	y := make([]float32, n)
	dy := randF32(r, n, 1)
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"SiLU", func() { SiLU(y, x) }},
		{"SiLUBackward", func() { SiLUBackward(y, dy, x) }},
		{"GELU", func() { GELU(y, x) }},
		{"GELUBackward", func() { GELUBackward(y, dy, x) }},
		{"GELUTanh", func() { GELUTanh(y, x) }},
		{"GELUTanhBackward", func() { GELUTanhBackward(y, dy, x) }},
		{"Softmax_49", func() { SoftmaxForward(y, x, n/49, 49) }},
		{"SoftmaxBackward_49", func() { SoftmaxBackward(y, dy, x, n/49, 49) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(4 * n))
			for b.Loop() {
				c.f()
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
		})
	}
}
