package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// withVec runs f with the assembly row kernels on or off.
func withVec(on bool, f func()) {
	old := vecAsm
	vecAsm = on
	defer func() { vecAsm = old }()
	f()
}

func skipNoVec(t testing.TB) {
	if !vecArch() {
		t.Skip("no assembly element-wise kernels in this build or on this CPU")
	}
}

// closeF32 reports whether a and b agree within rel*|b| + abs (NaN only
// matches NaN, infinities must be equal).
func closeF32(a, b float32, rel, abs float64) bool {
	if a != a || b != b {
		return a != a && b != b
	}
	if math.IsInf(float64(a), 0) || math.IsInf(float64(b), 0) {
		return a == b
	}
	return math.Abs(float64(a)-float64(b)) <= rel*math.Abs(float64(b))+abs
}

// siluExtremes are SiLU inputs at and beyond the clamping bounds of exp.
func siluExtremes() []float32 {
	inf := float32(math.Inf(1))
	x := []float32{0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 1e-45, -1e-45, 1e-8, -1e-8,
		0.5, -0.5, 1, -1, -1.2784645, 10, -10, 20, -20, 50, -50, 80, -80,
		86.4, -86.4, 86.5, -86.5, 86.6, -86.6, 88.6, -88.6, 88.7, -88.7, 88.8, -88.8,
		89, -89, 100, -100, 104, -104, 1e4, -1e4, 1e30, -1e30, math.MaxFloat32, -math.MaxFloat32,
		inf, -inf, float32(math.NaN())}
	for v := -100.0; v <= 100; v += 0.0625 {
		x = append(x, float32(v))
	}
	return x
}

func TestSiLUAsm(t *testing.T) {
	skipNoVec(t)
	r := rand.New(rand.NewPCG(31, 32))
	base := siluExtremes()
	for len(base) < 3*actGrain+5 {
		base = append(base, (r.Float32()*2-1)*12)
	}
	dyBase := randF32(r, len(base), 2)
	for _, n := range []int{0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 49, 785, len(base)} {
		x := base[:n]
		dy := dyBase[:n]
		const guard = 12345
		var yg, ya, dg, da []float32
		withVec(false, func() {
			yg = make([]float32, n)
			SiLU(yg, x)
			dg = make([]float32, n)
			SiLUBackward(dg, dy, x)
		})
		withVec(true, func() {
			ya = make([]float32, n+9)
			da = make([]float32, n+9)
			for i := range ya {
				ya[i], da[i] = guard, guard
			}
			SiLU(ya, x)
			SiLUBackward(da, dy, x)
		})
		for i := range n {
			if !closeF32(ya[i], yg[i], 1e-6, 1e-37) {
				t.Errorf("n=%d: SiLU(%v) asm %v, go %v", n, x[i], ya[i], yg[i])
			}
			if !closeF32(da[i], dg[i], 1e-6, 1e-7*math.Abs(float64(dy[i]))) {
				t.Errorf("n=%d: SiLUBackward(%v, dy %v) asm %v, go %v", n, x[i], dy[i], da[i], dg[i])
			}
		}
		for i := n; i < len(ya); i++ {
			if ya[i] != guard || da[i] != guard {
				t.Fatalf("n=%d: element %d beyond the end written", n, i)
			}
		}
		// In place.
		withVec(true, func() {
			yy := append([]float32(nil), x...)
			SiLU(yy, yy)
			dd := append([]float32(nil), dy...)
			SiLUBackward(dd, dd, x)
			for i := range n {
				if !same32(yy[i], ya[i]) || !same32(dd[i], da[i]) {
					t.Fatalf("n=%d: in-place result differs at %d", n, i)
				}
			}
		})
	}
	// Against float64 where the clamping of exp does not matter (as in
	// TestActivations).
	var x []float32
	for _, v := range base {
		if math.Abs(float64(v)) <= 1e4 {
			x = append(x, v)
		}
	}
	y := make([]float32, len(x))
	withVec(true, func() { SiLU(y, x) })
	checkElem(t, "SiLU asm", y, x, refSiLU, 1e-6, 1e-12)
}

func same32(a, b float32) bool { return a == b || (a != a && b != b) }

// gnAsmCase runs GroupNormForward and GroupNormBackward with the assembly
// kernels off and on and compares all outputs.
func gnAsmCase(t *testing.T, name string, x, dy, gamma, beta []float32, n, c, hw, groups int, silu bool, tol float64) {
	t.Helper()
	type out struct{ y, mean, rstd, dx, dg, db []float32 }
	run := func(on bool) (o out) {
		withVec(on, func() {
			o.y = make([]float32, len(x))
			o.mean = make([]float32, n*groups)
			o.rstd = make([]float32, n*groups)
			GroupNormForward(o.y, o.mean, o.rstd, x, gamma, beta, n, c, hw, groups, 1e-5, silu)
			o.dx = make([]float32, len(x))
			o.dg = make([]float32, c)
			o.db = make([]float32, c)
			GroupNormBackward(o.dx, o.dg, o.db, dy, x, o.mean, o.rstd, gamma, beta, n, c, hw, groups, silu)
		})
		return o
	}
	g, a := run(false), run(true)
	cmp := func(what string, got, want []float32, tol float64) {
		t.Helper()
		if e, at := maxErr(got, to64(want)); e > tol {
			t.Errorf("%s %s: asm vs go scaled error %.3g at %d (asm %v go %v), tol %.1g", name, what, e, at, got[at], want[at], tol)
		}
	}
	cmp("mean", a.mean, g.mean, 1e-6)
	cmp("rstd", a.rstd, g.rstd, 1e-6)
	cmp("y", a.y, g.y, tol)
	cmp("dx", a.dx, g.dx, 10*tol)
	cmp("dgamma", a.dg, g.dg, 10*tol)
	cmp("dbeta", a.db, g.db, 10*tol)

	// In place, assembly on: bitwise the same as out of place.
	withVec(true, func() {
		yy := append([]float32(nil), x...)
		GroupNormForward(yy, a.mean, a.rstd, yy, gamma, beta, n, c, hw, groups, 1e-5, silu)
		dd := append([]float32(nil), dy...)
		GroupNormBackward(dd, nil, nil, dd, x, a.mean, a.rstd, gamma, beta, n, c, hw, groups, silu)
		for i := range yy {
			if !same32(yy[i], a.y[i]) || !same32(dd[i], a.dx[i]) {
				t.Fatalf("%s: in-place result differs at %d", name, i)
			}
		}
	})
}

func TestGroupNormAsm(t *testing.T) {
	skipNoVec(t)
	r := rand.New(rand.NewPCG(33, 34))
	for _, hw := range []int{1, 7, 49, 196, 784, 785} {
		for _, silu := range []bool{false, true} {
			for _, affine := range []bool{false, true} {
				n, c, groups := 3, 8, 4
				if hw >= 784 {
					n = 2
				}
				name := fmt.Sprintf("hw=%d silu=%v affine=%v", hw, silu, affine)
				x := randF32(r, n*c*hw, 3)
				dy := randF32(r, len(x), 1)
				var gamma, beta []float32
				if affine {
					gamma = randF32(r, c, 2)
					beta = randF32(r, c, 1)
				}
				gnAsmCase(t, name, x, dy, gamma, beta, n, c, hw, groups, silu, 2e-6)
			}
		}
	}
	// Extreme inputs: |mean| >> std, constant groups (variance 0), huge
	// values, and gamma/beta that push the pre-activation to the clamping
	// bounds of exp (and beyond) in both directions.
	n, c, hw, groups := 2, 4, 49, 2
	size := n * c * hw
	dy := randF32(r, size, 1)
	gamma := []float32{200, -200, 1e-3, 30}
	beta := []float32{-90, 95, 0, -3}
	offs := randF32(r, size, 1)
	for _, tc := range []struct {
		name string
		x    func(i int) float32
		tol  float64
	}{
		{"offset 1000", func(i int) float32 { return 1000 + offs[i] }, 2e-6},
		{"offset -3e4", func(i int) float32 { return -3e4 + 10*offs[i] }, 2e-6},
		{"constant", func(i int) float32 { return 7 }, 2e-6},
		{"large", func(i int) float32 { return 1e15 * offs[i] }, 2e-6},
		{"tiny", func(i int) float32 { return 1e-20 * offs[i] }, 2e-6},
		{"spikes", func(i int) float32 {
			if i%37 == 0 {
				return 1e4
			}
			return offs[i]
		}, 2e-6},
	} {
		x := make([]float32, size)
		for i := range x {
			x[i] = tc.x(i)
		}
		for _, silu := range []bool{false, true} {
			gnAsmCase(t, fmt.Sprintf("%s silu=%v", tc.name, silu), x, dy, gamma, beta, n, c, hw, groups, silu, tc.tol)
		}
	}
}

// TestGroupNormRowsAsm checks the row kernels' tails directly: nothing past
// n is read into the sums or written.
func TestGroupNormRowsAsm(t *testing.T) {
	skipNoVec(t)
	r := rand.New(rand.NewPCG(35, 36))
	const guard = 777
	for n := 0; n <= 40; n++ {
		x := randF32(r, n+8, 2)
		dy := randF32(r, n+8, 1)
		for i := n; i < n+8; i++ {
			x[i], dy[i] = 1e30, float32(math.NaN())
		}
		xs, dys := x[:n], dy[:n]
		for _, silu := range []bool{false, true} {
			yg := make([]float32, n)
			ya := make([]float32, n+8)
			dg := make([]float32, n)
			da := make([]float32, n+8)
			for i := range ya {
				ya[i], da[i] = guard, guard
			}
			var sgG, sxG, sgA, sxA, sG, qG, sA, qA float64
			withVec(false, func() {
				sG, qG = gnStats(xs)
				gnRowForward(yg, xs, 0.1, 1.7, -0.3, silu)
				sgG, sxG = gnRowBackward1(dg, dys, xs, 0.1, 0.9, 1.7, -0.3, silu)
				gnRowBackward2(dg, xs, 0.1, 1.3, -0.2, 0.05)
			})
			withVec(true, func() {
				sA, qA = gnStats(xs)
				gnRowForward(ya[:n], xs, 0.1, 1.7, -0.3, silu)
				sgA, sxA = gnRowBackward1(da[:n], dys, xs, 0.1, 0.9, 1.7, -0.3, silu)
				gnRowBackward2(da[:n], xs, 0.1, 1.3, -0.2, 0.05)
			})
			for _, p := range [][2]float64{{sA, sG}, {qA, qG}, {sgA, sgG}, {sxA, sxG}} {
				if math.Abs(p[0]-p[1]) > 1e-5*(1+math.Abs(p[1])) {
					t.Errorf("n=%d silu=%v: sums asm %v go %v", n, silu, p[0], p[1])
				}
			}
			for i := range n {
				if !closeF32(ya[i], yg[i], 1e-6, 1e-7) || !closeF32(da[i], dg[i], 1e-5, 1e-6) {
					t.Errorf("n=%d silu=%v [%d]: y %v/%v dx %v/%v (asm/go)", n, silu, i, ya[i], yg[i], da[i], dg[i])
				}
			}
			for i := n; i < n+8; i++ {
				if ya[i] != guard || da[i] != guard {
					t.Fatalf("n=%d: element %d beyond the end written", n, i)
				}
			}
		}
	}
}

// BenchmarkGroupNormAsm compares the pure-Go and assembly paths in one run.
func BenchmarkGroupNormAsm(b *testing.B) {
	skipNoVec(b)
	r := rand.New(rand.NewPCG(23, 24))
	n, c, hw, groups := 64, 32, 784, 8
	x := randF32(r, n*c*hw, 2)
	y := make([]float32, len(x))
	dx := make([]float32, len(x))
	dy := randF32(r, len(x), 1)
	gamma := randF32(r, c, 1)
	beta := randF32(r, c, 1)
	dgamma := make([]float32, c)
	dbeta := make([]float32, c)
	mean := make([]float32, n*groups)
	rstd := make([]float32, n*groups)
	for _, on := range []bool{false, true} {
		impl := "go"
		if on {
			impl = "asm"
		}
		for _, silu := range []bool{false, true} {
			suffix := ""
			if silu {
				suffix = "_silu"
			}
			b.Run("fwd"+suffix+"/"+impl, func(b *testing.B) {
				b.SetBytes(int64(8 * len(x)))
				withVec(on, func() {
					for b.Loop() {
						GroupNormForward(y, mean, rstd, x, gamma, beta, n, c, hw, groups, 1e-5, silu)
					}
				})
			})
			b.Run("bwd"+suffix+"/"+impl, func(b *testing.B) {
				b.SetBytes(int64(12 * len(x)))
				withVec(on, func() {
					for b.Loop() {
						GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta, n, c, hw, groups, silu)
					}
				})
			})
		}
		b.Run("SiLU/"+impl, func(b *testing.B) {
			b.SetBytes(int64(8 * len(x)))
			withVec(on, func() {
				for b.Loop() {
					SiLU(y, x)
				}
			})
		})
		b.Run("SiLUBackward/"+impl, func(b *testing.B) {
			b.SetBytes(int64(12 * len(x)))
			withVec(on, func() {
				for b.Loop() {
					SiLUBackward(dx, dy, x)
				}
			})
		})
	}
}
