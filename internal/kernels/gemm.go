package kernels

import (
	"os"
	"sync"
	"unsafe"

	"github.com/diffuse-go/diffuse/internal/parallel"
)

// GEMM design (BLIS/GotoBLAS style).
//
// op(B) is packed into NR-column panels (k-major: panel[p*NR+j]) and op(A)
// into MR-row panels (panel[p*MR+i]), both zero padded at the edges, so the
// micro-kernel sees one layout for all four transpose cases. The micro-kernel
// computes an MR×NR (6×16) tile of C = alpha*Apanel*Bpanel + beta*C; edge
// tiles are computed into a scratch tile and merged.
//
// The micro-kernel addresses A through two byte strides (rsa between rows,
// csa between successive k) and B through one (rsb between successive k), so
// either operand can also be read in place, unpacked:
//   - A, when op(B) has at most two panels (tall-skinny products such as the
//     im2col convolution shape M=50176,K=288,N=32), where packing A would
//     cost as much as the multiplication itself; the kernel then prefetches
//     the A row panel a few panels ahead (software prefetch is what lets
//     this DRAM-streaming shape run near peak);
//   - B (when not transposed), when C has few rows (per-image convolution
//     shapes such as M=32,K=288,N=784), where packing B would not be
//     amortized over enough A panels.
//
// For op(A) = A, op(B) = B^T with few rows of C and a long K (the weight
// gradient of a convolution, dW = dY·col^T), a second AVX2 kernel computes
// 3×4 tiles of C as dot products of rows contiguous along k, with no packing
// at all; the last k%8 steps go through the blocked path.
//
// Blocking: K is cut into kc ≤ KC blocks of equal size (the kc×NR B
// micro-panel stays in L1/L2 while the MR×kc A micro-panels stream through
// it; KC = 512 measured a little better than 256-320 on Zen 3, as C is then
// read and written half as often), M into mc-row blocks (the packed mc×kc A
// block stays in L2), N into nc ≤ NC columns (the packed kc×nc B block stays
// in L3).
//
// Parallelism: blocks of M run on the workers of internal/parallel, sharing
// one packed B block; when M is too short to split, column ranges are split
// instead. All scratch comes from a sync.Pool, so Sgemm may be called
// concurrently from several goroutines and allocates nothing in steady state.
const (
	gemmMR = 6  // micro-tile rows
	gemmNR = 16 // micro-tile columns (two 8-float vectors)

	gemmKC = 512  // max K block
	gemmMC = 144  // max M block (multiple of gemmMR)
	gemmNC = 4096 // max N block (multiple of gemmNR)

	// B is used in place, unpacked, when op(B) = B and C has at most this
	// many rows (B's packing would not be amortized over enough A panels).
	gemmUnpackedBMaxM = 64

	// When A is read in place (narrow B), the kernel prefetches the A row
	// panel this many panels ahead.
	gemmPrefetchPanels = 4

	// parallelM packs op(B) for all of K and at most this many floats
	// (8 MiB) worth of columns at a time, shared by the workers in L3.
	gemmParBFloats = 2 << 20

	// The dot kernel (op(A) = A, op(B) = B^T, no packing) is used for C
	// with at most gemmDotMaxM rows and K of at least gemmDotMinK (there it
	// beats packing B^T, e.g. 85 vs 64 GFLOP/s at M=32,N=288,K=784).
	gemmDotMaxM = 48
	gemmDotMinK = 128

	// Problems with fewer multiply-adds than this run serially.
	gemmParMinWork = 48 * 48 * 48
)

// microKernel computes the gemmMR×gemmNR tile
//
//	C[i*ldc+j] = alpha * sum_p A(i,p)*B(p,j) + beta*C[i*ldc+j]
//
// for i < gemmMR, j < gemmNR, p < k, where A(i,p) is the float32 at byte
// offset i*rsa + p*csa from a and B(p,j) the one at byte offset p*rsb + 4*j
// from b (rsb = 64 for a packed panel). With beta == 0, C is not read.
// pf is a prefetch hint: the kernel touches one 64-byte line from pf on per
// 4 steps of k (it must be a valid pointer; reads past it are prefetches
// only). k ≥ 1.
type microKernel func(k int, a *float32, rsa, csa int, b *float32, rsb int, c *float32, ldc int, alpha, beta float32, pf *float32)

// gemmImpl is a set of kernels for one instruction set.
type gemmImpl struct {
	name   string
	kernel microKernel
	// kernel4, when set, is kernel for the first 4 rows of the tile only
	// (rows 4 and 5 are neither read nor written): used for the last row
	// panel when M%6 is 1..4.
	kernel4 microKernel
	// peak, when set, runs n iterations of 12 independent 8-wide FMAs on
	// registers only (192 flops per iteration); used by BenchmarkPeakFMA.
	peak func(n int)
	// transpose8, when set, transposes nblk blocks of 8 columns of rows
	// (6 or 8) rows from src (row stride sstride bytes) into dst, column c
	// at byte offset c*dstride (rows 6 and 7 zero when rows == 6); see
	// gemm_amd64.s. Used for the packing that transposes.
	transpose8 func(dst *float32, dstride int, src *float32, sstride int, rows int, nblk int)
	// copy16, when set, copies n rows of 16 floats from src (row stride
	// sstride bytes) to consecutive rows at dst: packing of op(B) = B.
	copy16 func(dst *float32, src *float32, sstride int, n int)
	// dot, when set, computes a 3×4 tile of C = alpha*A*B^T + beta*C from
	// 3 rows of A and 4 rows of B contiguous along k (byte strides lda,
	// ldb), k = 8*k8: the op(A) = A, op(B) = B^T kernel used for short M
	// and long K, which needs no packing.
	dot func(k8 int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)
}

var (
	gemmKernel     microKernel = sgemmKernelGeneric
	gemmKernel4    microKernel
	gemmKernelName = "generic"
	gemmPeakLoop   func(n int)
	gemmTranspose8 func(dst *float32, dstride int, src *float32, sstride int, rows int, nblk int)
	gemmCopy16     func(dst *float32, src *float32, sstride int, n int)
	gemmDot        func(k8 int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)
)

func init() {
	if os.Getenv("DIFFUSE_NOASM") == "1" {
		return
	}
	// archKernel is defined per architecture/build tag (nil when there is
	// no assembly for this CPU or build).
	if im := archKernel(); im != nil {
		gemmKernel, gemmKernel4, gemmKernelName, gemmPeakLoop = im.kernel, im.kernel4, im.name, im.peak
		gemmTranspose8, gemmCopy16, gemmDot = im.transpose8, im.copy16, im.dot
	}
}

// Impl returns the name of the GEMM micro-kernel in use: "avx2-fma" or
// "generic".
func Impl() string { return gemmKernelName }

// Sgemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices, where
// op(X) is X or its transpose. op(A) is m×k, op(B) is k×n, C is m×n.
// lda, ldb, ldc are the row strides of A, B and C as stored (A is m×k when
// !transA, else k×m; likewise B). With beta == 0, C is overwritten (NaNs in C
// are not propagated). Runs in parallel when the problem is large and the
// caller is not already inside a parallel loop. Safe for concurrent use.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	g := gemmArgs{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc}
	if !g.check() {
		return
	}
	if k == 0 || alpha == 0 {
		g.scaleC()
		return
	}
	w := parallel.Workers()
	if w == 1 || m*n*k < gemmParMinWork || parallel.Nested() {
		g.serial(0, n)
		return
	}
	if m >= 2*w*gemmMR*4 || m >= n {
		g.parallelM(w)
		return
	}
	g.parallelN(w)
}

// SgemmBatched runs batch independent GEMMs: for i < batch,
//
//	Sgemm(transA, transB, m, n, k, alpha, a[i*strideA:], lda, b[i*strideB:], ldb, beta, c[i*strideC:], ldc)
//
// in parallel over the batch (strides are in elements).
func SgemmBatched(batch int, transA, transB bool, m, n, k int, alpha float32, a []float32, strideA, lda int, b []float32, strideB, ldb int, beta float32, c []float32, strideC, ldc int) {
	if batch <= 0 || m <= 0 || n <= 0 {
		if batch < 0 || m < 0 || n < 0 || k < 0 {
			panic("kernels: SgemmBatched: negative dimension")
		}
		return
	}
	w := parallel.Workers()
	if batch == 1 || (batch < 2*w && m*n*k >= 4*gemmParMinWork) || parallel.Nested() {
		// Few large GEMMs: let each one use all cores (or run serially when
		// already inside a parallel loop).
		for i := 0; i < batch; i++ {
			Sgemm(transA, transB, m, n, k, alpha, a[i*strideA:], lda, b[i*strideB:], ldb, beta, c[i*strideC:], ldc)
		}
		return
	}
	// Validate here, on the caller's goroutine (a panic on a worker could not
	// be recovered): with non-negative strides the last GEMM's slices are
	// the shortest.
	if strideA < 0 || strideB < 0 || strideC < 0 {
		panic("kernels: SgemmBatched: negative stride")
	}
	last := gemmArgs{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, lda: lda, ldb: ldb, beta: beta, ldc: ldc}
	last.a, last.b, last.c = a[(batch-1)*strideA:], b[(batch-1)*strideB:], c[(batch-1)*strideC:]
	last.check()
	bc := gemmBatchPool.Get().(*gemmBatchCtx)
	bc.g = gemmArgs{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc}
	bc.sa, bc.sb, bc.sc = strideA, strideB, strideC
	grain := batch / (4 * w)
	if grain < 1 {
		grain = 1
	}
	parallel.For(batch, grain, bc.fn)
	bc.g = gemmArgs{}
	gemmBatchPool.Put(bc)
}

type gemmBatchCtx struct {
	g          gemmArgs
	sa, sb, sc int
	fn         func(worker, lo, hi int)
}

var gemmBatchPool = sync.Pool{New: func() any {
	bc := &gemmBatchCtx{}
	bc.fn = bc.run
	return bc
}}

func (bc *gemmBatchCtx) run(_, lo, hi int) {
	for i := lo; i < hi; i++ {
		g := bc.g
		g.a = g.a[i*bc.sa:]
		g.b = g.b[i*bc.sb:]
		g.c = g.c[i*bc.sc:]
		if !g.check() {
			continue
		}
		if g.k == 0 || g.alpha == 0 {
			g.scaleC()
			continue
		}
		g.serial(0, g.n)
	}
}

type gemmArgs struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a              []float32
	lda            int
	b              []float32
	ldb            int
	c              []float32
	ldc            int
}

// check validates dimensions and slice lengths (the assembly kernel reads
// without bounds checks, so this is what keeps it memory safe) and reports
// whether there is anything to compute.
func (g *gemmArgs) check() bool {
	if g.m < 0 || g.n < 0 || g.k < 0 {
		panic("kernels: Sgemm: negative dimension")
	}
	if g.m == 0 || g.n == 0 {
		return false
	}
	ar, ac := g.m, g.k
	if g.transA {
		ar, ac = ac, ar
	}
	br, bc := g.k, g.n
	if g.transB {
		br, bc = bc, br
	}
	if g.ldc < g.n || len(g.c) < (g.m-1)*g.ldc+g.n {
		panic("kernels: Sgemm: C too short or ldc < n")
	}
	if g.k > 0 && g.alpha != 0 {
		if g.lda < max(ac, 1) || len(g.a) < (ar-1)*g.lda+ac {
			panic("kernels: Sgemm: A too short or lda too small")
		}
		if g.ldb < max(bc, 1) || len(g.b) < (br-1)*g.ldb+bc {
			panic("kernels: Sgemm: B too short or ldb too small")
		}
	}
	return true
}

// scaleC sets C = beta*C (C = 0 when beta == 0).
func (g *gemmArgs) scaleC() {
	for i := 0; i < g.m; i++ {
		row := g.c[i*g.ldc : i*g.ldc+g.n]
		if g.beta == 0 {
			clear(row)
		} else if g.beta != 1 {
			for j := range row {
				row[j] *= g.beta
			}
		}
	}
}

// gemmKBlock returns the K block size: K cut into equal blocks of at most gemmKC.
func gemmKBlock(k int) int {
	nk := (k + gemmKC - 1) / gemmKC
	return (k + nk - 1) / nk
}

// gemmMBlock returns the M block size for m rows shared by w workers.
func gemmMBlock(m, w int) int {
	mc := gemmMC
	if w > 1 {
		// At least 4 blocks per worker for load balance, but not tiny.
		per := (m + 4*w - 1) / (4 * w)
		per = (per + gemmMR - 1) / gemmMR * gemmMR
		mc = min(gemmMC, max(per, 8*gemmMR))
	}
	return mc
}

// serial computes columns [j0, j1) of C, all rows, on the calling goroutine.
func (g *gemmArgs) serial(j0, j1 int) {
	if gemmDot != nil && !g.transA && g.transB && g.m <= gemmDotMaxM && g.m >= 3 && j1-j0 >= 4 && g.k >= gemmDotMinK {
		g.serialDot(j0, j1)
		if kt := g.k &^ 7; kt < g.k {
			// The last k%8 steps, through the blocked path.
			t := *g
			t.k, t.a, t.b, t.beta = g.k-kt, g.a[kt:], g.b[kt:], 1
			t.serialBlocked(j0, j1)
		}
		return
	}
	g.serialBlocked(j0, j1)
}

// serialBlocked is serial with the packing (blocked) algorithm.
func (g *gemmArgs) serialBlocked(j0, j1 int) {
	s := getGemmScratch()
	kc := gemmKBlock(g.k)
	for jc := j0; jc < j1; jc += gemmNC {
		ncb := min(gemmNC, j1-jc)
		for pc := 0; pc < g.k; pc += kc {
			kcb := min(kc, g.k-pc)
			beta := g.beta
			if pc > 0 {
				beta = 1
			}
			npan := (ncb + gemmNR - 1) / gemmNR
			bp := s.growB(npan * gemmNR * kcb)
			// With few rows, B is read by few A panels: use it in place
			// (only a partial edge panel is packed).
			unpB := !g.transB && g.m <= gemmUnpackedBMaxM && ncb > 2*gemmNR
			if unpB {
				if ncb%gemmNR != 0 {
					g.packB(bp, pc, kcb, jc, ncb, npan-1, npan)
				}
			} else {
				g.packB(bp, pc, kcb, jc, ncb, 0, npan)
			}
			for ic := 0; ic < g.m; ic += gemmMC {
				g.macro(s, bp, unpB, ic, min(gemmMC, g.m-ic), jc, ncb, pc, kcb, beta)
			}
		}
	}
	putGemmScratch(s)
}

// serialDot computes columns [j0, j1) of C = alpha*A*B^T + beta*C over the
// first k&^7 steps of K with the dot kernel (rows of A and of B contiguous
// along k; no packing). Edge tiles
// are shifted back inside C (m ≥ 3, j1-j0 ≥ 4), computed into scratch and
// only their new part merged.
func (g *gemmArgs) serialDot(j0, j1 int) {
	dot := gemmDot
	s := getGemmScratch()
	a, b, c := g.a, g.b, g.c
	lda, ldb, ldc := g.lda, g.ldb, g.ldc
	alpha, beta := g.alpha, g.beta
	k8 := g.k / 8
	for j := j0; j < j1; j += 4 {
		jj := min(j, j1-4)
		for i := 0; i < g.m; i += 3 {
			ii := min(i, g.m-3)
			if ii == i && jj == j {
				dot(k8, &a[ii*lda], 4*lda, &b[jj*ldb], 4*ldb, &c[ii*ldc+jj], ldc, alpha, beta)
				continue
			}
			t := &s.tmp
			dot(k8, &a[ii*lda], 4*lda, &b[jj*ldb], 4*ldb, &t[0], 4, alpha, 0)
			for r := i - ii; r < 3; r++ {
				for q := j - jj; q < 4; q++ {
					ci := (ii+r)*ldc + jj + q
					if beta == 0 {
						c[ci] = t[r*4+q]
					} else {
						c[ci] = t[r*4+q] + beta*c[ci]
					}
				}
			}
		}
	}
	putGemmScratch(s)
}

// gemmCtx carries one parallel Sgemm call; pooled so that the closures given
// to parallel.For are allocated once.
type gemmCtx struct {
	g        gemmArgs
	bp       []float32 // shared packed B block
	jc, ncb  int       // current column block
	npan     int       // its number of gemmNR panels
	kc, mc   int       // K and M block sizes
	nchunk   int       // number of column chunks for parallelN
	packBFn  func(worker, lo, hi int)
	mBlockFn func(worker, lo, hi int)
	nChunkFn func(worker, lo, hi int)
}

var gemmCtxPool = sync.Pool{New: func() any {
	x := &gemmCtx{}
	x.packBFn = x.packBRange
	x.mBlockFn = x.mBlocks
	x.nChunkFn = x.nChunks
	return x
}}

// packBRange packs panels [lo, hi) of the current column block for all of K
// (K block pc at x.bp[pc*npan*gemmNR:]).
func (x *gemmCtx) packBRange(_, lo, hi int) {
	for pc := 0; pc < x.g.k; pc += x.kc {
		kcb := min(x.kc, x.g.k-pc)
		x.g.packB(x.bp[pc*x.npan*gemmNR:], pc, kcb, x.jc, x.ncb, lo, hi)
	}
}

// mBlocks computes row blocks [lo, hi) of the current column block, all of K.
func (x *gemmCtx) mBlocks(_, lo, hi int) {
	s := getGemmScratch()
	for blk := lo; blk < hi; blk++ {
		ic := blk * x.mc
		mcb := min(x.mc, x.g.m-ic)
		for pc := 0; pc < x.g.k; pc += x.kc {
			beta := x.g.beta
			if pc > 0 {
				beta = 1
			}
			x.g.macro(s, x.bp[pc*x.npan*gemmNR:], false, ic, mcb, x.jc, x.ncb, pc, min(x.kc, x.g.k-pc), beta)
		}
	}
	putGemmScratch(s)
}

func (x *gemmCtx) nChunks(_, lo, hi int) {
	// Chunk c holds panels [c*npan/nchunk, (c+1)*npan/nchunk).
	j0 := lo * x.npan / x.nchunk * gemmNR
	j1 := min(hi*x.npan/x.nchunk*gemmNR, x.g.n)
	x.g.serial(j0, j1)
}

// parallelM splits M into blocks run in parallel. op(B) is packed (itself in
// parallel when large) for all of K and up to gemmParBFloats/K columns at a
// time, and shared; each worker then runs whole row blocks through all of K,
// so there is one barrier per column block.
func (g *gemmArgs) parallelM(w int) {
	x := gemmCtxPool.Get().(*gemmCtx)
	x.g = *g
	s := getGemmScratch()
	x.kc = gemmKBlock(g.k)
	x.mc = gemmMBlock(g.m, w)
	nblk := (g.m + x.mc - 1) / x.mc
	nc := max(gemmNR, min(gemmNC, gemmParBFloats/g.k/gemmNR*gemmNR))
	for jc := 0; jc < g.n; jc += nc {
		x.jc, x.ncb = jc, min(nc, g.n-jc)
		x.npan = (x.ncb + gemmNR - 1) / gemmNR
		x.bp = s.growB(x.npan * gemmNR * g.k)
		if x.npan*gemmNR*g.k >= 64*1024 {
			parallel.For(x.npan, (x.npan+2*w-1)/(2*w), x.packBFn)
		} else {
			x.packBRange(0, 0, x.npan)
		}
		parallel.For(nblk, 1, x.mBlockFn)
	}
	putGemmScratch(s)
	x.g = gemmArgs{}
	x.bp = nil
	gemmCtxPool.Put(x)
}

// parallelN splits N into column ranges (multiples of gemmNR) computed
// independently (each packs its own A, which is small when this is chosen).
func (g *gemmArgs) parallelN(w int) {
	x := gemmCtxPool.Get().(*gemmCtx)
	x.g = *g
	// A multiple of w chunks of (nearly) equal width, at most about 8
	// panels each.
	x.npan = (g.n + gemmNR - 1) / gemmNR
	x.nchunk = min(w*max(1, (x.npan+8*w-1)/(8*w)), x.npan)
	parallel.For(x.nchunk, 1, x.nChunkFn)
	x.g = gemmArgs{}
	gemmCtxPool.Put(x)
}

// macro computes C[ic:ic+mcb, jc:jc+ncb] (+)= A[ic:ic+mcb, pc:pc+kcb] * Bblock
// where bp holds op(B)[pc:pc+kcb, jc:jc+ncb] packed into gemmNR-column panels.
func (g *gemmArgs) macro(s *gemmScratch, bp []float32, unpB bool, ic, mcb, jc, ncb, pc, kcb int, beta float32) {
	kern, kern4 := gemmKernel, gemmKernel4
	alpha := g.alpha
	ldc := g.ldc
	c := g.c
	if ncb > 2*gemmNR {
		// Pack the A block (stays in L2) and stream it once per B
		// micro-panel (which stays in L1).
		mpan := (mcb + gemmMR - 1) / gemmMR
		ap := s.growA(mpan * gemmMR * kcb)
		g.packA(ap, ic, mcb, pc, kcb)
		for jr := 0; jr < ncb; jr += gemmNR {
			nrb := min(gemmNR, ncb-jr)
			bptr, rsb := &bp[jr*kcb], 64
			if unpB && nrb == gemmNR {
				bptr, rsb = &g.b[pc*g.ldb+jc+jr], 4*g.ldb
			}
			for ir := 0; ir < mcb; ir += gemmMR {
				mrb := min(gemmMR, mcb-ir)
				aptr := &ap[ir*kcb]
				ci := (ic+ir)*ldc + jc + jr
				pf := aptr // prefetch the next A micro-panel
				if ir+gemmMR < mcb {
					pf = &ap[(ir+gemmMR)*kcb]
				}
				k := kern
				if mrb <= 4 && kern4 != nil {
					k = kern4
				}
				if nrb == gemmNR && (mrb == gemmMR || mrb == 4 && kern4 != nil) {
					k(kcb, aptr, 4, 4*gemmMR, bptr, rsb, &c[ci], ldc, alpha, beta, pf)
				} else {
					k(kcb, aptr, 4, 4*gemmMR, bptr, rsb, &s.tmp[0], gemmNR, alpha, 0, pf)
					s.merge(c[ci:], ldc, mrb, nrb, beta)
				}
			}
		}
		return
	}
	// Narrow B (≤ 2 panels): read A in place, row panel by row panel; the
	// A micro-panel stays in L1 across the B panels.
	for ir := 0; ir < mcb; ir += gemmMR {
		mrb := min(gemmMR, mcb-ir)
		var aptr *float32
		var rsa, csa int
		switch {
		case mrb < gemmMR:
			ap := s.growA(gemmMR * kcb)
			g.packA(ap, ic+ir, mrb, pc, kcb)
			aptr, rsa, csa = &ap[0], 4, 4*gemmMR
		case !g.transA:
			aptr, rsa, csa = &g.a[(ic+ir)*g.lda+pc], 4*g.lda, 4
		default:
			aptr, rsa, csa = &g.a[pc*g.lda+ic+ir], 4, 4*g.lda
		}
		// Prefetch the next row panel of A while computing this one
		// (linear from its start; it is contiguous when lda == k).
		pfo := (ic+ir+gemmPrefetchPanels*gemmMR)*g.lda + pc
		if g.transA {
			pfo = pc*g.lda + ic + ir + gemmMR
		}
		for jr := 0; jr < ncb; jr += gemmNR {
			nrb := min(gemmNR, ncb-jr)
			bptr := &bp[jr*kcb]
			ci := (ic+ir)*ldc + jc + jr
			pf := aptr
			if o := pfo + (jr/gemmNR)*(kcb/4)*16; o < len(g.a) {
				pf = &g.a[o]
			}
			k := kern
			if mrb <= 4 && kern4 != nil {
				k = kern4
			}
			if nrb == gemmNR && (mrb == gemmMR || mrb == 4 && kern4 != nil) {
				k(kcb, aptr, rsa, csa, bptr, 64, &c[ci], ldc, alpha, beta, pf)
			} else {
				k(kcb, aptr, rsa, csa, bptr, 64, &s.tmp[0], gemmNR, alpha, 0, pf)
				s.merge(c[ci:], ldc, mrb, nrb, beta)
			}
		}
	}
}

// packB packs panels [q0, q1) of op(B)[pc:pc+kcb, jc:jc+ncb] into bp: panel q
// holds columns jc+q*gemmNR.. as bp[q*gemmNR*kcb + p*gemmNR + j], zero padded.
func (g *gemmArgs) packB(bp []float32, pc, kcb, jc, ncb, q0, q1 int) {
	b, ldb := g.b, g.ldb
	for q := q0; q < q1; q++ {
		j := q * gemmNR
		w := min(gemmNR, ncb-j)
		dst := bp[q*gemmNR*kcb : (q+1)*gemmNR*kcb]
		if !g.transB {
			// op(B)(p, j) = b[p*ldb + j]: rows of the panel are contiguous.
			off := pc*ldb + jc + j
			if cp := gemmCopy16; cp != nil && w == gemmNR {
				cp(&dst[0], &b[off], 4*ldb, kcb)
			} else if w == gemmNR {
				for p := 0; p < kcb; p++ {
					*(*[gemmNR]float32)(dst[p*gemmNR:]) = *(*[gemmNR]float32)(b[off+p*ldb:])
				}
			} else {
				for p := 0; p < kcb; p++ {
					d := dst[p*gemmNR : p*gemmNR+gemmNR]
					copy(d, b[off+p*ldb:off+p*ldb+w])
					clear(d[w:])
				}
			}
			continue
		}
		// op(B)(p, j) = b[j*ldb + p]: columns of the panel are contiguous.
		p0 := 0
		if tr := gemmTranspose8; tr != nil && w == gemmNR && kcb >= 8 {
			nb := kcb / 8
			off := (jc+j)*ldb + pc
			tr(&dst[0], 4*gemmNR, &b[off], 4*ldb, 8, nb)
			tr(&dst[8], 4*gemmNR, &b[off+8*ldb], 4*ldb, 8, nb)
			p0 = nb * 8
		}
		if w < gemmNR {
			clear(dst)
		}
		for jj := 0; jj < w; jj++ {
			src := b[(jc+j+jj)*ldb+pc:]
			src = src[p0:kcb]
			for p, v := range src {
				dst[(p0+p)*gemmNR+jj] = v
			}
		}
	}
}

// packA packs op(A)[ic:ic+mcb, pc:pc+kcb] into gemmMR-row panels: panel r holds
// rows ic+r*gemmMR.. as ap[r*gemmMR*kcb + p*gemmMR + i], zero padded.
func (g *gemmArgs) packA(ap []float32, ic, mcb, pc, kcb int) {
	a, lda := g.a, g.lda
	for ir := 0; ir < mcb; ir += gemmMR {
		h := min(gemmMR, mcb-ir)
		dst := ap[ir*kcb : ir*kcb+gemmMR*kcb]
		if g.transA {
			// op(A)(i, p) = a[p*lda + i]: panel rows are contiguous.
			off := pc*lda + ic + ir
			if h == gemmMR {
				for p := 0; p < kcb; p++ {
					*(*[gemmMR]float32)(dst[p*gemmMR:]) = *(*[gemmMR]float32)(a[off+p*lda:])
				}
			} else {
				for p := 0; p < kcb; p++ {
					d := dst[p*gemmMR : p*gemmMR+gemmMR]
					copy(d, a[off+p*lda:off+p*lda+h])
					clear(d[h:])
				}
			}
			continue
		}
		// op(A)(i, p) = a[i*lda + p]: rows of A are contiguous.
		off := (ic+ir)*lda + pc
		if h == gemmMR {
			p0 := 0
			if tr := gemmTranspose8; tr != nil && kcb >= 8 {
				// Writes 2 floats past the last column it packs: in
				// the tail below, the next panel (packed later) or the
				// buffer's slack (see gemmAligned).
				nb := kcb / 8
				tr(&dst[0], 4*gemmMR, &a[off], 4*lda, gemmMR, nb)
				p0 = nb * 8
			}
			r0 := a[off+p0 : off+kcb]
			r1 := a[off+lda+p0 : off+lda+kcb]
			r2 := a[off+2*lda+p0 : off+2*lda+kcb]
			r3 := a[off+3*lda+p0 : off+3*lda+kcb]
			r4 := a[off+4*lda+p0 : off+4*lda+kcb]
			r5 := a[off+5*lda+p0 : off+5*lda+kcb]
			for p := range r0 {
				d := (*[gemmMR]float32)(dst[(p0+p)*gemmMR:])
				d[0], d[1], d[2], d[3], d[4], d[5] = r0[p], r1[p], r2[p], r3[p], r4[p], r5[p]
			}
			continue
		}
		clear(dst)
		for i := 0; i < h; i++ {
			row := a[off+i*lda : off+i*lda+kcb]
			for p, v := range row {
				dst[p*gemmMR+i] = v
			}
		}
	}
}

// gemmScratch is per-goroutine packing space, taken from gemmScratchPool.
type gemmScratch struct {
	rawA, rawB []float32
	tmp        [gemmMR * gemmNR]float32 // edge tile
}

var gemmScratchPool = sync.Pool{New: func() any { return new(gemmScratch) }}

func getGemmScratch() *gemmScratch  { return gemmScratchPool.Get().(*gemmScratch) }
func putGemmScratch(s *gemmScratch) { gemmScratchPool.Put(s) }

func (s *gemmScratch) growA(n int) []float32 { return gemmAligned(&s.rawA, n) }
func (s *gemmScratch) growB(n int) []float32 { return gemmAligned(&s.rawB, n) }

// gemmAligned returns n floats of *raw starting on a 64-byte boundary, growing
// *raw (once, with headroom) when too small.
func gemmAligned(raw *[]float32, n int) []float32 {
	// 16 floats of slack for the alignment, 16 more past the end (packing
	// with transpose8 may store a few floats past what it packs).
	if cap(*raw) < n+32 {
		*raw = make([]float32, n+n/4+32)
	}
	r := (*raw)[:cap(*raw)]
	off := int((64 - uintptr(unsafe.Pointer(&r[0]))%64) % 64 / 4)
	return r[off : off+n]
}

// merge writes the edge tile s.tmp (already scaled by alpha) into the top-left
// h×w corner of c: c = tmp + beta*c.
func (s *gemmScratch) merge(c []float32, ldc, h, w int, beta float32) {
	for i := 0; i < h; i++ {
		t := s.tmp[i*gemmNR : i*gemmNR+w]
		row := c[i*ldc : i*ldc+w]
		if beta == 0 {
			copy(row, t)
			continue
		}
		for j, v := range t {
			row[j] = v + beta*row[j]
		}
	}
}

// sgemmRef is the obviously-correct reference used by tests.
func sgemmRef(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += av * bv
			}
			if beta == 0 {
				c[i*ldc+j] = alpha * s
			} else {
				c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
			}
		}
	}
}
