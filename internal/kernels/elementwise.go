package kernels

import (
	"math"

	"github.com/diffuse-go/diffuse/internal/parallel"
)

const ewGrain = 1 << 15

// Axpby sets y[i] = a*x[i] + b*y[i].
func Axpby(y []float32, a float32, x []float32, b float32) {
	x = x[:len(y)]
	parallel.For(len(y), ewGrain, func(_, lo, hi int) {
		ys, xs := y[lo:hi], x[lo:hi]
		if b == 0 {
			for i := range ys {
				ys[i] = a * xs[i]
			}
			return
		}
		if b == 1 && a == 1 {
			for i := range ys {
				ys[i] += xs[i]
			}
			return
		}
		for i := range ys {
			ys[i] = a*xs[i] + b*ys[i]
		}
	})
}

// Add sets y[i] = a[i] + b[i]; y may alias a or b.
func Add(y, a, b []float32) {
	a, b = a[:len(y)], b[:len(y)]
	parallel.For(len(y), ewGrain, func(_, lo, hi int) {
		ys, as, bs := y[lo:hi], a[lo:hi], b[lo:hi]
		for i := range ys {
			ys[i] = as[i] + bs[i]
		}
	})
}

// Mul sets y[i] = a[i] * b[i]; y may alias a or b.
func Mul(y, a, b []float32) {
	a, b = a[:len(y)], b[:len(y)]
	parallel.For(len(y), ewGrain, func(_, lo, hi int) {
		ys, as, bs := y[lo:hi], a[lo:hi], b[lo:hi]
		for i := range ys {
			ys[i] = as[i] * bs[i]
		}
	})
}

// Scale sets y[i] = s * x[i]; y may alias x.
func Scale(y, x []float32, s float32) {
	x = x[:len(y)]
	parallel.For(len(y), ewGrain, func(_, lo, hi int) {
		ys, xs := y[lo:hi], x[lo:hi]
		for i := range ys {
			ys[i] = s * xs[i]
		}
	})
}

// AddRowVector sets y[r,i,s] = x[r,i,s] + v[(r%vRows),i] for x, y viewed as
// [rows, n, inner] and v as [vRows, n]. y may alias x.
func AddRowVector(y, x, v []float32, rows, n, inner, vRows int) {
	parallel.For(rows*n, max(1, ewGrain/max(inner, 1)), func(_, lo, hi int) {
		for ri := lo; ri < hi; ri++ {
			r, i := ri/n, ri%n
			b := v[(r%vRows)*n+i]
			ys := y[ri*inner : (ri+1)*inner]
			xs := x[ri*inner : (ri+1)*inner]
			for s := range ys {
				ys[s] = xs[s] + b
			}
		}
	})
}

// SumRowVector is the gradient of AddRowVector with respect to v:
// dv[q,i] = Σ_{r%vRows==q} Σ_s dy[r,i,s]. dv ([vRows, n]) is overwritten.
// The summation order is fixed, so results are reproducible.
func SumRowVector(dv, dy []float32, rows, n, inner, vRows int) {
	parallel.For(vRows*n, max(1, ewGrain/max(inner*rows/vRows, 1)), func(_, lo, hi int) {
		for qi := lo; qi < hi; qi++ {
			q, i := qi/n, qi%n
			var acc float64
			for r := q; r < rows; r += vRows {
				s := dy[(r*n+i)*inner : (r*n+i+1)*inner]
				var part float32
				for _, v := range s {
					part += v
				}
				acc += float64(part)
			}
			dv[qi] = float32(acc)
		}
	})
}

// Sum returns Σ x[i], accumulated in float64 per fixed-size block so the
// result does not depend on the number of workers.
func Sum(x []float32) float64 {
	const blk = 4096
	nb := (len(x) + blk - 1) / blk
	if nb == 0 {
		return 0
	}
	var stack [64]float64
	parts := stack[:0]
	if nb <= len(stack) {
		parts = stack[:nb]
	} else {
		parts = make([]float64, nb)
	}
	parallel.For(nb, 8, func(_, lo, hi int) {
		for b := lo; b < hi; b++ {
			var s float64
			for _, v := range x[b*blk : min((b+1)*blk, len(x))] {
				s += float64(v)
			}
			parts[b] = s
		}
	})
	var s float64
	for _, p := range parts {
		s += p
	}
	return s
}

// Dot returns Σ a[i]*b[i] with the same blocking as Sum.
func Dot(a, b []float32) float64 {
	const blk = 4096
	b = b[:len(a)]
	nb := (len(a) + blk - 1) / blk
	if nb == 0 {
		return 0
	}
	var stack [64]float64
	parts := stack[:0]
	if nb <= len(stack) {
		parts = stack[:nb]
	} else {
		parts = make([]float64, nb)
	}
	parallel.For(nb, 8, func(_, lo, hi int) {
		for k := lo; k < hi; k++ {
			var s float64
			e := min((k+1)*blk, len(a))
			for i := k * blk; i < e; i++ {
				s += float64(a[i]) * float64(b[i])
			}
			parts[k] = s
		}
	})
	var s float64
	for _, p := range parts {
		s += p
	}
	return s
}

// AdamStep applies one PyTorch Adam (decoupled=false, L2 weight decay added
// to the gradient) or AdamW (decoupled=true) update in place, following
// torch.optim's single-tensor implementation operation for operation:
// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g²;
// p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
func AdamStep(p, g, m, v []float32, lr, b1, b2, eps, wd float32, decoupled bool, step int) {
	bc1 := 1 - math.Pow(float64(b1), float64(step))
	bc2 := 1 - math.Pow(float64(b2), float64(step))
	stepSize := float32(float64(lr) / bc1)
	bc2s := float32(math.Sqrt(bc2))
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	decay := 1 - lr*wd
	parallel.For(len(p), ewGrain, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			gi := g[i]
			if wd != 0 {
				if decoupled {
					p[i] *= decay
				} else {
					gi += wd * p[i]
				}
			}
			mi := m[i]*b1 + gi*(1-b1)
			vi := v[i]*b2 + (1-b2)*gi*gi
			m[i], v[i] = mi, vi
			denom := float32(math.Sqrt(float64(vi)))/bc2s + eps
			p[i] -= stepSize * (mi / denom)
		}
	})
}
