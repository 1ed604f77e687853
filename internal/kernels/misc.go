package kernels

import (
	"sync"

	"github.com/diffuse-go/diffuse/internal/parallel"
)

// This file holds the allocation-free plumbing shared by the non-GEMM kernels
// (pooled scratch, pooled parallel-loop bodies, deterministic chunking) and
// the nearest-neighbour upsampling kernels.

// f32Scratch is a pool of float32 scratch slices. A slice taken from it is
// grown on first use and keeps its capacity when returned, so steady-state
// calls do not allocate. Each caller (a worker of a parallel loop, or a
// whole kernel call) takes its own slice: scratch is never shared by index.
type f32Scratch struct{ p sync.Pool }

// get returns a scratch slice of length n with unspecified contents.
func (s *f32Scratch) get(n int) *[]float32 {
	b, _ := s.p.Get().(*[]float32)
	if b == nil {
		b = new([]float32)
	}
	if cap(*b) < n {
		*b = make([]float32, n)
	}
	*b = (*b)[:n]
	return b
}

func (s *f32Scratch) put(b *[]float32) { s.p.Put(b) }

// f64Scratch is the float64 counterpart of f32Scratch.
type f64Scratch struct{ p sync.Pool }

func (s *f64Scratch) get(n int) *[]float64 {
	b, _ := s.p.Get().(*[]float64)
	if b == nil {
		b = new([]float64)
	}
	if cap(*b) < n {
		*b = make([]float64, n)
	}
	*b = (*b)[:n]
	return b
}

func (s *f64Scratch) put(b *[]float64) { s.p.Put(b) }

var (
	colScratch   f32Scratch // im2col buffers (large)
	smallScratch f32Scratch // partial sums and other small buffers
	f64Partials  f64Scratch // float64 partial sums for deterministic reductions
)

// runner binds a loop body to its arguments so that parallel.For can be
// called without allocating a closure per call: fn is the method value
// r.call, created once when the runner is first made and then reused from a
// pool.
type parRunner[A any] struct {
	a    A
	body func(a *A, worker, lo, hi int)
	fn   func(worker, lo, hi int)
}

func (r *parRunner[A]) call(worker, lo, hi int) { r.body(&r.a, worker, lo, hi) }

// loop is a pool of runners for one loop body.
type parLoop[A any] struct {
	p    sync.Pool
	body func(a *A, worker, lo, hi int)
}

// For runs body(&a, worker, lo, hi) over [0, n) with parallel.For.
func (l *parLoop[A]) For(a A, n, grain int) {
	if n <= 0 {
		return
	}
	r, _ := l.p.Get().(*parRunner[A])
	if r == nil {
		r = &parRunner[A]{body: l.body}
		r.fn = r.call
	}
	r.a = a
	parallel.For(n, grain, r.fn)
	var zero A
	r.a = zero // drop references to the caller's slices
	l.p.Put(r)
}

// chunkRange returns the half-open range of chunk k when n items are split
// into nchunks contiguous chunks of near-equal size. The split depends only
// on (n, nchunks), which makes chunked reductions deterministic.
func chunkRange(n, nchunks, k int) (lo, hi int) {
	return k * n / nchunks, (k + 1) * n / nchunks
}

// numChunks returns how many chunks a reduction over n items with at least
// minPer items per chunk should use: at most parallel.Workers(). It depends
// only on n, minPer and the worker count, never on scheduling.
func numChunks(n, minPer int) int {
	if minPer < 1 {
		minPer = 1
	}
	k := n / minPer
	if w := parallel.Workers(); k > w {
		k = w
	}
	if k < 1 {
		k = 1
	}
	return k
}

// grainFor returns a parallel.For grain so that each chunk covers about
// target elements of work, given perItem elements per index.
func grainFor(target, perItem int) int {
	if perItem < 1 {
		perItem = 1
	}
	g := target / perItem
	if g < 1 {
		g = 1
	}
	return g
}

// ---------------------------------------------------------------------------
// Nearest-neighbour upsampling.

type upArgs struct {
	y, x    []float32
	h, w, f int
}

var upFwdLoop = parLoop[upArgs]{body: upsampleBody}
var upBwdLoop = parLoop[upArgs]{body: upsampleBackBody}

// UpsampleNearest upsamples by an integer factor f with nearest-neighbour
// interpolation: x is [nc, h, w] (nc = batch*channels), y is
// [nc, h*f, w*f] and is overwritten: y[i, r, c] = x[i, r/f, c/f].
func UpsampleNearest(y, x []float32, nc, h, w, f int) {
	if f < 1 {
		panic("kernels: UpsampleNearest: factor must be >= 1")
	}
	if len(x) < nc*h*w || len(y) < nc*h*w*f*f {
		panic("kernels: UpsampleNearest: slice too short")
	}
	upFwdLoop.For(upArgs{y: y, x: x, h: h, w: w, f: f}, nc, grainFor(1<<14, h*w*f*f))
}

func upsampleBody(a *upArgs, _, lo, hi int) {
	h, w, f := a.h, a.w, a.f
	ow := w * f
	for i := lo; i < hi; i++ {
		xs := a.x[i*h*w : (i+1)*h*w]
		ys := a.y[i*h*w*f*f : (i+1)*h*w*f*f]
		for r := 0; r < h; r++ {
			src := xs[r*w : (r+1)*w]
			dst := ys[r*f*ow : (r*f+1)*ow]
			switch f {
			case 1:
				copy(dst, src)
			case 2:
				dst = dst[:2*len(src)]
				for c, v := range src {
					dst[2*c] = v
					dst[2*c+1] = v
				}
			default:
				for c, v := range src {
					d := dst[c*f : c*f+f]
					for k := range d {
						d[k] = v
					}
				}
			}
			for k := 1; k < f; k++ {
				copy(ys[(r*f+k)*ow:(r*f+k+1)*ow], dst)
			}
		}
	}
}

// UpsampleNearestBackward is the gradient of UpsampleNearest: dy is
// [nc, h*f, w*f], dx is [nc, h, w] and is overwritten with the sum of each
// f×f block of dy.
func UpsampleNearestBackward(dx, dy []float32, nc, h, w, f int) {
	if f < 1 {
		panic("kernels: UpsampleNearestBackward: factor must be >= 1")
	}
	if len(dx) < nc*h*w || len(dy) < nc*h*w*f*f {
		panic("kernels: UpsampleNearestBackward: slice too short")
	}
	upBwdLoop.For(upArgs{y: dy, x: dx, h: h, w: w, f: f}, nc, grainFor(1<<14, h*w*f*f))
}

func upsampleBackBody(a *upArgs, _, lo, hi int) {
	h, w, f := a.h, a.w, a.f
	ow := w * f
	for i := lo; i < hi; i++ {
		dx := a.x[i*h*w : (i+1)*h*w]
		dy := a.y[i*h*w*f*f : (i+1)*h*w*f*f]
		for r := 0; r < h; r++ {
			d := dx[r*w : (r+1)*w]
			if f == 2 {
				s0 := dy[2*r*ow : 2*r*ow+ow]
				s1 := dy[(2*r+1)*ow : (2*r+1)*ow+ow]
				s0 = s0[:2*len(d)]
				s1 = s1[:2*len(d)]
				for c := range d {
					d[c] = (s0[2*c] + s0[2*c+1]) + (s1[2*c] + s1[2*c+1])
				}
				continue
			}
			clear(d)
			for k := 0; k < f; k++ {
				src := dy[(r*f+k)*ow : (r*f+k+1)*ow]
				for c := range d {
					var s float32
					for _, v := range src[c*f : c*f+f] {
						s += v
					}
					d[c] += s
				}
			}
		}
	}
}
