package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/diffuse-go/diffuse/internal/parallel"
)

// Shared test helpers for the non-GEMM kernels.

func randF32(r *rand.Rand, n int, scale float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = (r.Float32()*2 - 1) * scale
	}
	return s
}

func to64(s []float32) []float64 {
	d := make([]float64, len(s))
	for i, v := range s {
		d[i] = float64(v)
	}
	return d
}

// maxErr returns max|got-want| / max(1, max|want|).
func maxErr(got []float32, want []float64) (float64, int) {
	var e, scale float64 = 0, 1
	at := -1
	for _, w := range want {
		scale = math.Max(scale, math.Abs(w))
	}
	for i := range want {
		d := math.Abs(float64(got[i]) - want[i])
		if d > e || math.IsNaN(d) {
			e, at = d, i
			if math.IsNaN(d) {
				return math.Inf(1), i
			}
		}
	}
	return e / scale, at
}

func assertClose(t *testing.T, name string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) < len(want) {
		t.Fatalf("%s: len %d < %d", name, len(got), len(want))
	}
	if e, at := maxErr(got, want); e > tol {
		t.Errorf("%s: max scaled error %.3g at %d (got %v want %v), tol %.1g", name, e, at, got[at], want[at], tol)
	}
}

// fdGrad returns the central-difference gradient of sum(f(x) * dy) with
// respect to x, for a float64 function f.
func fdGrad(x []float64, dy []float64, h float64, f func(x []float64) []float64) []float64 {
	g := make([]float64, len(x))
	loss := func() float64 {
		y := f(x)
		var s float64
		for i := range y {
			s += y[i] * dy[i]
		}
		return s
	}
	for i := range x {
		old := x[i]
		x[i] = old + h
		lp := loss()
		x[i] = old - h
		lm := loss()
		x[i] = old
		g[i] = (lp - lm) / (2 * h)
	}
	return g
}

// allocsNested returns the allocations per run of f when it runs inside a
// parallel.For (so every parallel loop of f runs serially), minus those of
// the enclosing For itself: the allocations attributable to f.
func allocsNested(f func()) float64 {
	// The enclosing closure captures f in both runs, so that its own
	// allocation cancels out.
	base := testing.AllocsPerRun(20, func() {
		parallel.For(2, 1, func(_, lo, _ int) {
			if lo < 0 {
				f()
			}
		})
	})
	got := testing.AllocsPerRun(20, func() {
		parallel.For(2, 1, func(_, lo, _ int) {
			if lo == 0 {
				f()
			}
		})
	})
	return got - base
}

// poolIsLossy reports whether sync.Pool drops items at random, as it does
// under the race detector.
func poolIsLossy() bool {
	var p sync.Pool
	x := new(int)
	for i := 0; i < 200; i++ {
		p.Put(x)
		if p.Get() == nil {
			return true
		}
	}
	return false
}

var noopBody = func(_, _, _ int) {}

// forAllocs is the number of allocations of one top-level parallel.For that
// runs in parallel (parallel.For itself heap-allocates its counter and
// WaitGroup).
func forAllocs() float64 {
	return testing.AllocsPerRun(20, func() { parallel.For(1<<20, 1, noopBody) })
}

func refUpsample(x []float32, nc, h, w, f int) []float64 {
	y := make([]float64, nc*h*w*f*f)
	for i := 0; i < nc; i++ {
		for r := 0; r < h*f; r++ {
			for c := 0; c < w*f; c++ {
				y[(i*h*f+r)*w*f+c] = float64(x[(i*h+r/f)*w+c/f])
			}
		}
	}
	return y
}

func refUpsampleBack(dy []float32, nc, h, w, f int) []float64 {
	dx := make([]float64, nc*h*w)
	for i := 0; i < nc; i++ {
		for r := 0; r < h*f; r++ {
			for c := 0; c < w*f; c++ {
				dx[(i*h+r/f)*w+c/f] += float64(dy[(i*h*f+r)*w*f+c])
			}
		}
	}
	return dx
}

func TestUpsampleNearest(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct{ nc, h, w, f int }{
		{1, 1, 1, 1}, {1, 3, 5, 2}, {3, 7, 7, 2}, {2, 4, 3, 3}, {5, 2, 6, 1}, {64, 7, 7, 2}, {2, 3, 2, 4},
	} {
		name := fmt.Sprintf("%v", tc)
		x := randF32(r, tc.nc*tc.h*tc.w, 1)
		y := randF32(r, tc.nc*tc.h*tc.w*tc.f*tc.f, 1) // garbage: must be overwritten
		UpsampleNearest(y, x, tc.nc, tc.h, tc.w, tc.f)
		assertClose(t, name+" fwd", y, refUpsample(x, tc.nc, tc.h, tc.w, tc.f), 0)
		dy := randF32(r, len(y), 1)
		dx := randF32(r, len(x), 1)
		UpsampleNearestBackward(dx, dy, tc.nc, tc.h, tc.w, tc.f)
		assertClose(t, name+" bwd", dx, refUpsampleBack(dy, tc.nc, tc.h, tc.w, tc.f), 1e-6)
		// The backward is the adjoint of the forward: <up(x), dy> = <x, up^T(dy)>.
		var a, b float64
		for i := range y {
			a += float64(y[i]) * float64(dy[i])
		}
		for i := range x {
			b += float64(x[i]) * float64(dx[i])
		}
		if math.Abs(a-b) > 1e-4*(1+math.Abs(a)) {
			t.Errorf("%s: adjoint mismatch %v vs %v", name, a, b)
		}
	}
}

func TestChunkRange(t *testing.T) {
	for n := 0; n < 20; n++ {
		for k := 1; k < 6; k++ {
			next := 0
			for c := 0; c < k; c++ {
				lo, hi := chunkRange(n, k, c)
				if lo != next || hi < lo {
					t.Fatalf("chunkRange(%d,%d,%d) = %d,%d", n, k, c, lo, hi)
				}
				next = hi
			}
			if next != n {
				t.Fatalf("chunkRange(%d,%d) covers %d", n, k, next)
			}
		}
	}
}

// TestNoAllocs checks that the kernels do not allocate in steady state: 0
// allocations when run nested (all loops serial), and no more than the
// parallel.For calls themselves allocate when run at top level.
func TestNoAllocs(t *testing.T) {
	if poolIsLossy() {
		t.Skip("sync.Pool drops items (race detector): allocation counts are not meaningful")
	}
	// Start the worker pool before AllocsPerRun lowers GOMAXPROCS to 1,
	// which would otherwise size the pool to one worker.
	if parallel.Workers() < 2 {
		t.Log("only one worker: the parallel paths are not exercised")
	}
	r := rand.New(rand.NewPCG(3, 4))
	n, c, hw, g := 4, 8, 36, 4
	x := randF32(r, n*c*hw, 1)
	y := make([]float32, len(x))
	dy := randF32(r, len(x), 1)
	dx := make([]float32, len(x))
	gamma := randF32(r, c, 1)
	beta := randF32(r, c, 1)
	dgamma := make([]float32, c)
	dbeta := make([]float32, c)
	mean := make([]float32, n*g)
	rstd := make([]float32, n*g)
	lnMean := make([]float32, n*c*hw)
	lnRstd := make([]float32, n*c*hw)
	p := ConvParams{N: n, C: c, H: 6, W: 6, CO: 8, KH: 3, KW: 3, Stride: 1, Pad: 1}
	p1 := ConvParams{N: 1, C: c, H: 6, W: 6, CO: 8, KH: 3, KW: 3, Stride: 1, Pad: 1}
	pw := ConvParams{N: n, C: c, H: 6, W: 6, CO: 8, KH: 1, KW: 1, Stride: 1}
	w := randF32(r, 8*c*9, 1)
	dw := make([]float32, len(w))
	db := make([]float32, 8)
	up := make([]float32, len(x)*4)
	kernels := []struct {
		name string
		fors float64 // parallel.For calls that may run in parallel
		f    func()
	}{
		{"SiLU", 1, func() { SiLU(y, x) }},
		{"SiLUBackward", 1, func() { SiLUBackward(dx, dy, x) }},
		{"GELU", 1, func() { GELU(y, x) }},
		{"GELUBackward", 1, func() { GELUBackward(dx, dy, x) }},
		{"GELUTanh", 1, func() { GELUTanh(y, x) }},
		{"GELUTanhBackward", 1, func() { GELUTanhBackward(dx, dy, x) }},
		{"SoftmaxForward", 1, func() { SoftmaxForward(y, x, n*c, hw) }},
		{"SoftmaxBackward", 1, func() { SoftmaxBackward(dx, dy, y, n*c, hw) }},
		{"GroupNormForward", 1, func() { GroupNormForward(y, mean, rstd, x, gamma, beta, n, c, hw, g, 1e-5, true) }},
		{"GroupNormBackward", 1, func() { GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta, n, c, hw, g, true) }},
		{"LayerNormForward", 1, func() { LayerNormForward(y, lnMean, lnRstd, x, gamma[:4], beta[:4], n*c*hw/4, 4, 1e-5) }},
		{"LayerNormBackward", 1, func() { LayerNormBackward(dx, dgamma[:4], dbeta[:4], dy, x, lnMean, lnRstd, gamma[:4], n*c*hw/4, 4) }},
		{"UpsampleNearest", 1, func() { UpsampleNearest(up, x, n*c, 6, 6, 2) }},
		{"UpsampleNearestBackward", 1, func() { UpsampleNearestBackward(dx, up, n*c, 6, 6, 2) }},
		{"Conv2dForward", 1, func() { Conv2dForward(y, x, w, db, p) }},
		{"Conv2dForward/N1", 1, func() { Conv2dForward(y, x, w, db, p1) }},
		{"Conv2dForward/1x1", 1, func() { Conv2dForward(y, x, w[:8*c], db, pw) }},
		{"Conv2dBackwardData", 1, func() { Conv2dBackwardData(dx, y, w, p) }},
		{"Conv2dBackwardData/N1", 1, func() { Conv2dBackwardData(dx, y, w, p1) }},
		{"Conv2dBackwardFilter", 1, func() { Conv2dBackwardFilter(dw, db, y, x, p) }},
		{"Conv2dBackwardFilter/N1", 1, func() { Conv2dBackwardFilter(dw, db, y, x, p1) }},
	}
	fa := forAllocs()
	for _, k := range kernels {
		k.f() // warm-up: grows the pooled scratch
		if a := allocsNested(k.f); a > 0 {
			t.Errorf("%s: %v allocations per call when nested, want 0", k.name, a)
		}
		// At top level, only parallel.For's own allocations are allowed.
		a := testing.AllocsPerRun(20, k.f)
		t.Logf("%s: %v allocs/call at top level (parallel.For alone: %v)", k.name, a, fa)
		if a > k.fors*fa {
			t.Errorf("%s: %v allocations per call at top level (parallel.For alone: %v)", k.name, a, fa)
		}
	}
}

// TestConcurrentCalls runs kernels from several goroutines at once (each
// with its own operands) and checks the results against a serial run: the
// pooled scratch must never be shared. Run under -race in CI.
func TestConcurrentCalls(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	p := ConvParams{N: 5, C: 3, H: 9, W: 9, CO: 4, KH: 3, KW: 3, Stride: 1, Pad: 1}
	ps := ConvParams{N: 1, C: 3, H: 9, W: 9, CO: 4, KH: 3, KW: 3, Stride: 2, Pad: 1}
	const G = 4
	type operands struct {
		x, w, dy, y, dx, dw, db, gy, gdx, gm, gr, dg, dbt []float32
	}
	ops := make([]operands, G)
	run := func(o *operands, q ConvParams) {
		Conv2dForward(o.y, o.x, o.w, o.dy[:q.CO], q)
		Conv2dBackwardData(o.dx, o.dy, o.w, q)
		Conv2dBackwardFilter(o.dw, o.db, o.dy, o.x, q)
		GroupNormForward(o.gy, o.gm, o.gr, o.x, nil, nil, q.N, q.C, q.H*q.W, 3, 1e-5, true)
		GroupNormBackward(o.gdx, o.dg, o.dbt, o.x, o.x, o.gm, o.gr, nil, nil, q.N, q.C, q.H*q.W, 3, true)
	}
	for g := range ops {
		q := p
		if g%2 == 1 {
			q = ps
		}
		ops[g] = operands{
			x: randF32(r, q.N*q.C*q.H*q.W, 1), w: randF32(r, q.CO*q.C*9, 1),
			dy: randF32(r, q.N*q.CO*q.OH()*q.OW(), 1), y: make([]float32, q.N*q.CO*q.OH()*q.OW()),
			dx: make([]float32, q.N*q.C*q.H*q.W), dw: make([]float32, q.CO*q.C*9), db: make([]float32, q.CO),
			gy: make([]float32, q.N*q.C*q.H*q.W), gdx: make([]float32, q.N*q.C*q.H*q.W),
			gm: make([]float32, q.N*3), gr: make([]float32, q.N*3), dg: make([]float32, q.C), dbt: make([]float32, q.C),
		}
	}
	want := make([]operands, G)
	for g := range ops {
		q := p
		if g%2 == 1 {
			q = ps
		}
		o := ops[g]
		o.y, o.dx, o.dw, o.db = make([]float32, len(o.y)), make([]float32, len(o.dx)), make([]float32, len(o.dw)), make([]float32, len(o.db))
		o.gy, o.gdx, o.gm, o.gr = make([]float32, len(o.gy)), make([]float32, len(o.gdx)), make([]float32, len(o.gm)), make([]float32, len(o.gr))
		o.dg, o.dbt = make([]float32, len(o.dg)), make([]float32, len(o.dbt))
		run(&o, q)
		want[g] = o
	}
	var wg sync.WaitGroup
	for g := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := p
			if g%2 == 1 {
				q = ps
			}
			for it := 0; it < 3; it++ {
				run(&ops[g], q)
			}
		}()
	}
	wg.Wait()
	for g := range ops {
		for name, pair := range map[string][2][]float32{
			"y": {ops[g].y, want[g].y}, "dx": {ops[g].dx, want[g].dx}, "dw": {ops[g].dw, want[g].dw},
			"gy": {ops[g].gy, want[g].gy}, "gdx": {ops[g].gdx, want[g].gdx}, "dgamma": {ops[g].dg, want[g].dg},
		} {
			for i := range pair[0] {
				if pair[0][i] != pair[1][i] {
					t.Fatalf("goroutine %d: %s[%d] = %v, serial %v", g, name, i, pair[0][i], pair[1][i])
				}
			}
		}
	}
}
