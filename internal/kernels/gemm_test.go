package kernels

import (
	"fmt"
	"math"
	"math/rand"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/cpu"

	"github.com/diffuse-go/diffuse/internal/parallel"
)

// gemmKernelsUnderTest lists the micro-kernels available in this build, so the
// generic one is exercised even where the assembly one is the default.
func gemmKernelsUnderTest() []struct {
	name string
	k    microKernel
} {
	ks := []struct {
		name string
		k    microKernel
	}{{"generic", sgemmKernelGeneric}}
	if gemmKernelName != "generic" {
		ks = append(ks, struct {
			name string
			k    microKernel
		}{gemmKernelName, gemmKernel})
	}
	return ks
}

// withGemmKernel runs f with the micro-kernel k installed (and, for the
// generic one, no 4-row edge kernel).
func withGemmKernel(k microKernel, generic bool, f func()) {
	old, old4 := gemmKernel, gemmKernel4
	gemmKernel = k
	if generic {
		gemmKernel4 = nil
	}
	defer func() { gemmKernel, gemmKernel4 = old, old4 }()
	f()
}

func TestImpl(t *testing.T) {
	t.Logf("Impl() = %q", Impl())
	switch {
	case os.Getenv("DIFFUSE_NOASM") == "1":
		if Impl() != "generic" {
			t.Fatalf("DIFFUSE_NOASM=1 but Impl() = %q", Impl())
		}
	case !gemmAsmBuild:
		if Impl() != "generic" {
			t.Fatalf("build without assembly (-tags noasm or !amd64) but Impl() = %q", Impl())
		}
	default:
		if Impl() != "avx2-fma" && Impl() != "generic" {
			t.Fatalf("unexpected Impl() = %q", Impl())
		}
		if has := cpu.X86.HasAVX2 && cpu.X86.HasFMA; has != (Impl() == "avx2-fma") {
			t.Fatalf("CPU AVX2+FMA = %v but Impl() = %q", has, Impl())
		}
	}
}

func gemmRand(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = r.Float32()*2 - 1
	}
	return s
}

type gemmCase struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	padA, padB     int // extra row stride beyond the minimum
	padC           int
}

func (tc gemmCase) String() string {
	t := func(b bool) string {
		if b {
			return "T"
		}
		return "N"
	}
	return fmt.Sprintf("%s%s_m%d_n%d_k%d_a%g_b%g_pad%d.%d.%d", t(tc.transA), t(tc.transB), tc.m, tc.n, tc.k, tc.alpha, tc.beta, tc.padA, tc.padB, tc.padC)
}

// gemmRunCase runs Sgemm (through f) and sgemmRef on the same inputs and compares.
func gemmRunCase(t gemmFatalfer, r *rand.Rand, tc gemmCase) {
	t.Helper()
	ar, ac := tc.m, tc.k
	if tc.transA {
		ar, ac = tc.k, tc.m
	}
	br, bc := tc.k, tc.n
	if tc.transB {
		br, bc = tc.n, tc.k
	}
	lda, ldb, ldc := max(ac, 1)+tc.padA, max(bc, 1)+tc.padB, tc.n+tc.padC
	a := gemmRand(r, max(ar*lda, 1))
	b := gemmRand(r, max(br*ldb, 1))
	c := gemmRand(r, tc.m*ldc)
	if tc.beta == 0 {
		for i := range c {
			c[i] = float32(math.NaN())
		}
	}
	want := append([]float32(nil), c...)
	if tc.beta == 0 {
		for i := range want {
			want[i] = 0 // ref reads nothing either, but keep padding comparable
		}
	}
	sgemmRef(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, want, ldc)
	Sgemm(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	tol := 1e-5 * float64(tc.k+4) * float64(max(gemmAbs32(tc.alpha), 1)+gemmAbs32(tc.beta))
	for i := 0; i < tc.m; i++ {
		for j := 0; j < ldc; j++ {
			got, w := c[i*ldc+j], want[i*ldc+j]
			if j >= tc.n {
				// padding between rows must be untouched
				if tc.beta == 0 {
					if !math.IsNaN(float64(got)) {
						t.Fatalf("%v: padding C[%d,%d] overwritten: %v", tc, i, j, got)
					}
				} else if got != w {
					t.Fatalf("%v: padding C[%d,%d] changed: %v want %v", tc, i, j, got, w)
				}
				continue
			}
			if d := math.Abs(float64(got - w)); !(d <= tol*math.Max(1, math.Abs(float64(w)))) {
				t.Fatalf("%v: C[%d,%d] = %v, want %v (|diff| %g > tol %g)", tc, i, j, got, w, d, tol)
			}
		}
	}
}

func gemmAbs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

func gemmTestCases(short bool) []gemmCase {
	sizes := []int{1, 3, 7, 17, 33, 65}
	if !short {
		sizes = append(sizes, 129)
	}
	var cs []gemmCase
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			for _, s := range sizes {
				// Square, and rectangular shapes mixing the sizes.
				cs = append(cs, gemmCase{transA: ta, transB: tb, m: s, n: s, k: s, alpha: 1})
				cs = append(cs, gemmCase{transA: ta, transB: tb, m: s, n: 2*s + 5, k: s + 3, alpha: 1.5, beta: 0.5, padA: 3, padB: 1, padC: 2})
				cs = append(cs, gemmCase{transA: ta, transB: tb, m: 3*s + 1, n: s, k: 2*s + 1, alpha: -1, beta: 1})
			}
			// Edge/blocking stress: not multiples of gemmMR/gemmNR/kc/mc, K over gemmKC.
			cs = append(cs,
				gemmCase{transA: ta, transB: tb, m: gemmMR + 1, n: gemmNR + 1, k: gemmKC + 1, alpha: 1, beta: 0, padA: 5, padB: 7, padC: 3},
				gemmCase{transA: ta, transB: tb, m: gemmMC + gemmMR + 1, n: 3*gemmNR + 5, k: 2*gemmKC + 7, alpha: 0.5, beta: -2},
				gemmCase{transA: ta, transB: tb, m: 200, n: 2 * gemmNR, k: 290, alpha: 1, beta: 0.25, padA: 1},             // narrow B, unpacked A
				gemmCase{transA: ta, transB: tb, m: 2*gemmMR*gemmMC + 5, n: gemmNR + 3, k: 40, alpha: 1, beta: 0, padC: 1}, // parallel M
				gemmCase{transA: ta, transB: tb, m: 13, n: 40*gemmNR + 3, k: 70, alpha: 2, beta: 1, padB: 2},               // parallel N
				gemmCase{transA: ta, transB: tb, m: 72, n: 48, k: 64, alpha: 1, beta: 0},                                   // no k tail
				gemmCase{transA: ta, transB: tb, m: 24, n: 48, k: 16, alpha: 1, beta: 1, padA: 8, padB: 8},
				gemmCase{transA: ta, transB: tb, m: 34, n: 37, k: 200, alpha: 1, beta: 0.5, padA: 3, padB: 5, padC: 2}, // NT dot kernel
				gemmCase{transA: ta, transB: tb, m: 3, n: 4, k: 133, alpha: -1, beta: 0},
				gemmCase{transA: ta, transB: tb, m: 47, n: 130, k: 256, alpha: 0.5, beta: 1},
				gemmCase{transA: ta, transB: tb, m: 5, n: 4, k: 0, alpha: 1, beta: 0.5}, // k == 0
				gemmCase{transA: ta, transB: tb, m: 5, n: 4, k: 3, alpha: 0, beta: 0},   // alpha == 0
				gemmCase{transA: ta, transB: tb, m: 8, n: 20, k: 9, alpha: 0, beta: 2},
			)
		}
	}
	return cs
}

func TestSgemm(t *testing.T) {
	for _, kt := range gemmKernelsUnderTest() {
		t.Run(kt.name, func(t *testing.T) {
			withGemmKernel(kt.k, kt.name == "generic", func() {
				r := rand.New(rand.NewSource(1))
				for _, tc := range gemmTestCases(testing.Short() || gemmRaceEnabled) {
					gemmRunCase(t, r, tc)
				}
			})
		})
	}
}

// TestSgemmConcurrent is the small-size test meant for `go test -race`:
// concurrent Sgemm calls from several goroutines, some nested inside a
// parallel.For, sharing nothing but the read-only inputs.
func TestSgemmConcurrent(t *testing.T) {
	shapes := []gemmCase{
		{m: 70, n: 50, k: 33, alpha: 1, beta: 0},
		{transA: true, m: 31, n: 100, k: 17, alpha: 1, beta: 1},
		{transB: true, m: 300, n: 20, k: 40, alpha: 2, beta: 0.5},
		{transA: true, transB: true, m: 49, n: 49, k: 16, alpha: 0.25, beta: 0},
	}
	if !testing.Short() && !gemmRaceEnabled {
		shapes = append(shapes, gemmCase{m: 400, n: 300, k: 200, alpha: 1, beta: 0})
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(g)))
			for it := 0; it < 3; it++ {
				tc := shapes[(g+it)%len(shapes)]
				if msg := gemmCheckCase(r, tc); msg != "" {
					errs <- msg
					return
				}
			}
		}(g)
	}
	// Also from inside a parallel loop (Sgemm then runs serially per worker).
	parallel.For(8, 1, func(_, lo, hi int) {
		r := rand.New(rand.NewSource(int64(100 + lo)))
		for i := lo; i < hi; i++ {
			if msg := gemmCheckCase(r, shapes[i%len(shapes)]); msg != "" {
				errs <- msg
			}
		}
	})
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}

// gemmCheckCase is gemmRunCase without *testing.T (usable from other goroutines).
func gemmCheckCase(r *rand.Rand, tc gemmCase) string {
	var msg string
	ft := &gemmFakeT{}
	func() {
		defer func() {
			if e := recover(); e != nil {
				if e == gemmErrFatal {
					msg = ft.msg
					return
				}
				panic(e)
			}
		}()
		gemmRunCase(ft, r, tc)
	}()
	return msg
}

type gemmFatalfer interface {
	Helper()
	Fatalf(format string, args ...any)
}

type gemmFakeT struct{ msg string }

var gemmErrFatal = fmt.Errorf("fake fatal")

func (f *gemmFakeT) Helper() {}
func (f *gemmFakeT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(gemmErrFatal)
}

func TestSgemmBatched(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	for _, tc := range []struct {
		batch          int
		transA, transB bool
		m, n, k        int
		beta           float32
	}{
		{12, false, true, 49, 49, 16, 0},
		{5, false, false, 49, 16, 49, 1},
		{3, true, false, 20, 30, 40, 0.5},
		{1, false, false, 7, 9, 11, 0},
		{2, false, false, 100, 90, 80, 0}, // few large: per-GEMM parallel path
	} {
		ar, ac := tc.m, tc.k
		if tc.transA {
			ar, ac = ac, ar
		}
		br, bc := tc.k, tc.n
		if tc.transB {
			br, bc = bc, br
		}
		lda, ldb, ldc := ac+1, bc+2, tc.n+3
		sa, sb, sc := ar*lda+5, br*ldb+1, tc.m*ldc+2
		a := gemmRand(r, tc.batch*sa)
		b := gemmRand(r, tc.batch*sb)
		c := gemmRand(r, tc.batch*sc)
		want := append([]float32(nil), c...)
		for i := 0; i < tc.batch; i++ {
			sgemmRef(tc.transA, tc.transB, tc.m, tc.n, tc.k, 0.5, a[i*sa:], lda, b[i*sb:], ldb, tc.beta, want[i*sc:], ldc)
		}
		SgemmBatched(tc.batch, tc.transA, tc.transB, tc.m, tc.n, tc.k, 0.5, a, sa, lda, b, sb, ldb, tc.beta, c, sc, ldc)
		tol := 1e-5 * float64(tc.k+4) * 2
		for i := range c {
			if d := math.Abs(float64(c[i] - want[i])); d > tol*math.Max(1, math.Abs(float64(want[i]))) {
				t.Fatalf("batch %+v: c[%d] = %v want %v", tc, i, c[i], want[i])
			}
		}
	}
}

// TestSgemmAllocs checks that steady-state calls allocate nothing: serial
// sizes, nested inside a parallel loop, and batched. (The parallel path's
// only allocations are those parallel.For itself makes.)
func TestSgemmAllocs(t *testing.T) {
	if gemmRaceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	r := rand.New(rand.NewSource(3))
	m, n, k := 40, 70, 33
	a, b, c := gemmRand(r, m*k), gemmRand(r, k*n), gemmRand(r, m*n)
	if got := testing.AllocsPerRun(20, func() {
		Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
		Sgemm(true, true, m, n, k, 1, a, m, b, k, 1, c, n)
	}); got != 0 {
		t.Errorf("serial Sgemm: %v allocs per run, want 0", got)
	}
	// Large enough to take the parallel paths when run outside a For.
	M, N, K := 600, 64, 64
	A, B, C := gemmRand(r, M*K), gemmRand(r, K*N), gemmRand(r, M*N)
	// Nested: inside a parallel.For (which runs it serially), minus the
	// allocations of that enclosing For.
	nested := func(_, lo, _ int) {
		if lo == 0 {
			Sgemm(false, false, M, N, K, 1, A, K, B, N, 0, C, N)
		}
	}
	outer := func(_, lo, _ int) {
		if lo < 0 {
			Sgemm(false, false, M, N, K, 1, A, K, B, N, 0, C, N)
		}
	}
	base := testing.AllocsPerRun(20, func() { parallel.For(2, 1, outer) })
	if got := testing.AllocsPerRun(20, func() { parallel.For(2, 1, nested) }); got != base {
		t.Errorf("nested Sgemm: %v allocs per run, want 0", got-base)
	}
	empty := func(_, _, _ int) {}
	forAllocs := testing.AllocsPerRun(20, func() { parallel.For(2*parallel.Workers(), 1, empty) })
	const nFor = 2 // parallelM: at most two For calls per column block (one here)
	if got := testing.AllocsPerRun(20, func() { Sgemm(false, false, M, N, K, 1, A, K, B, N, 0, C, N) }); got > nFor*forAllocs {
		t.Errorf("parallel Sgemm: %v allocs per run, want <= %v (parallel.For itself: %v per call)", got, nFor*forAllocs, forAllocs)
	} else {
		t.Logf("parallel Sgemm: %v allocs per run (parallel.For itself: %v per call)", got, forAllocs)
	}
	qa, qb, qc := gemmRand(r, 8*49*16), gemmRand(r, 8*49*16), gemmRand(r, 8*49*49)
	if got := testing.AllocsPerRun(20, func() {
		SgemmBatched(8, false, true, 49, 49, 16, 1, qa, 49*16, 16, qb, 49*16, 16, 0, qc, 49*49, 49)
	}); got > forAllocs {
		t.Errorf("SgemmBatched: %v allocs per run, want <= %v", got, forAllocs)
	}
}

func TestSgemmPanicsOnShortSlices(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a too-short A")
		}
	}()
	Sgemm(false, false, 4, 4, 4, 1, make([]float32, 15), 4, make([]float32, 16), 4, 0, make([]float32, 16), 4)
}

func TestSgemmBatchedPanicsOnShortSlices(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a too-short C")
		}
	}()
	const batch, m, n, k = 8, 20, 20, 8
	a, b := make([]float32, batch*m*k), make([]float32, batch*k*n)
	c := make([]float32, batch*m*n-1)
	SgemmBatched(batch, false, false, m, n, k, 1, a, m*k, k, b, k*n, n, 0, c, m*n, n)
}

var gemmBenchShapes = []struct {
	name    string
	m, n, k int
}{
	{"1024x1024x1024", 1024, 1024, 1024},
	{"conv_M50176_K288_N32", 50176, 32, 288},
	{"img_M32_K288_N784", 32, 784, 288},
	{"img_M64_K576_N196", 64, 196, 576},
	{"img_M32_K864_N784", 32, 784, 864},
}

// BenchmarkSgemm reports GFLOP/s (2*m*n*k per call) for NN products.
func BenchmarkSgemm(b *testing.B) {
	b.Logf("kernel %s, %d workers", Impl(), parallel.Workers())
	for _, s := range gemmBenchShapes {
		b.Run(s.name, func(b *testing.B) {
			r := rand.New(rand.NewSource(1))
			A, B, C := gemmRand(r, s.m*s.k), gemmRand(r, s.k*s.n), make([]float32, s.m*s.n)
			Sgemm(false, false, s.m, s.n, s.k, 1, A, s.k, B, s.n, 0, C, s.n)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				Sgemm(false, false, s.m, s.n, s.k, 1, A, s.k, B, s.n, 0, C, s.n)
			}
			sec := time.Since(start).Seconds()
			b.ReportMetric(2*float64(s.m)*float64(s.n)*float64(s.k)*float64(b.N)/sec/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkSgemmBatched: attention-like batch of small products.
func BenchmarkSgemmBatched(b *testing.B) {
	const batch, m, n, k = 64, 49, 49, 16
	r := rand.New(rand.NewSource(1))
	A, B, C := gemmRand(r, batch*m*k), gemmRand(r, batch*n*k), make([]float32, batch*m*n)
	start := time.Now()
	for i := 0; i < b.N; i++ {
		SgemmBatched(batch, false, true, m, n, k, 1, A, m*k, k, B, n*k, k, 0, C, m*n, n)
	}
	b.ReportMetric(2*batch*m*n*k*float64(b.N)/time.Since(start).Seconds()/1e9, "GFLOP/s")
}

// BenchmarkPeakFMA measures the fp32 FMA peak with a register-only loop: on
// one core and on all cores (one goroutine per GOMAXPROCS).
func BenchmarkPeakFMA(b *testing.B) {
	if gemmPeakLoop == nil {
		b.Skip("no assembly peak loop in this build (kernel " + Impl() + ")")
	}
	const iters = 1 << 20 // 192 flops each
	for _, procs := range []int{1, runtime.GOMAXPROCS(0)} {
		name := "1core"
		if procs > 1 {
			name = fmt.Sprintf("%dcores", procs)
		}
		b.Run(name, func(b *testing.B) {
			start := time.Now()
			var wg sync.WaitGroup
			for g := 0; g < procs; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < b.N; i++ {
						gemmPeakLoop(iters)
					}
				}()
			}
			wg.Wait()
			sec := time.Since(start).Seconds()
			b.ReportMetric(192*iters*float64(procs)*float64(b.N)/sec/1e9, "GFLOP/s")
		})
	}
}
