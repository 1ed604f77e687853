package tensor

import (
	"github.com/diffuse-go/diffuse/internal/kernels"
	"github.com/diffuse-go/diffuse/internal/parallel"
)

// CPU is the host backend: Go slices and the kernels of internal/kernels
// (assembly GEMM micro-kernels on amd64, pure Go elsewhere), parallel over
// all cores.
var CPU Backend = cpuBackend{}

type cpuBackend struct{}

func h(t *Tensor) []float32 {
	if t == nil {
		return nil
	}
	return t.st.Host[:t.st.n]
}

func (cpuBackend) Name() string { return "cpu" }

func (cpuBackend) Alloc(n int) *Storage {
	return &Storage{Host: make([]float32, n), Backend: CPU, n: n}
}

func (cpuBackend) CopyToHost(dst []float32, t *Tensor)   { copy(dst, h(t)) }
func (cpuBackend) CopyFromHost(t *Tensor, src []float32) { copy(h(t), src) }
func (cpuBackend) Copy(dst, src *Tensor)                 { copy(h(dst), h(src)) }

func (cpuBackend) Fill(t *Tensor, v float32) {
	d := h(t)
	if v == 0 {
		clear(d)
		return
	}
	for i := range d {
		d[i] = v
	}
}

func (cpuBackend) CopyStrided(dst *Tensor, dOff, dStride int, src *Tensor, sOff, sStride, rows, n int) {
	d, s := h(dst), h(src)
	parallel.For(rows, max(1, 1<<14/max(n, 1)), func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			copy(d[dOff+r*dStride:dOff+r*dStride+n], s[sOff+r*sStride:sOff+r*sStride+n])
		}
	})
}

func (cpuBackend) AddStrided(dst *Tensor, dOff, dStride int, src *Tensor, sOff, sStride, rows, n int) {
	d, s := h(dst), h(src)
	parallel.For(rows, max(1, 1<<14/max(n, 1)), func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			dd := d[dOff+r*dStride : dOff+r*dStride+n]
			ss := s[sOff+r*sStride : sOff+r*sStride+n]
			for i := range dd {
				dd[i] += ss[i]
			}
		}
	})
}

func (cpuBackend) Axpby(y *Tensor, a float32, x *Tensor, b float32) { kernels.Axpby(h(y), a, h(x), b) }
func (cpuBackend) Add(y, a, b *Tensor)                              { kernels.Add(h(y), h(a), h(b)) }
func (cpuBackend) Mul(y, a, b *Tensor)                              { kernels.Mul(h(y), h(a), h(b)) }
func (cpuBackend) Scale(y, x *Tensor, s float32)                    { kernels.Scale(h(y), h(x), s) }
func (cpuBackend) AddRowVector(y, x, v *Tensor, rows, n, inner, vRows int) {
	kernels.AddRowVector(h(y), h(x), h(v), rows, n, inner, vRows)
}
func (cpuBackend) SumRowVector(dv, dy *Tensor, rows, n, inner, vRows int) {
	kernels.SumRowVector(h(dv), h(dy), rows, n, inner, vRows)
}
func (cpuBackend) Sum(x *Tensor) float64    { return kernels.Sum(h(x)) }
func (cpuBackend) Dot(a, b *Tensor) float64 { return kernels.Dot(h(a), h(b)) }

func (cpuBackend) Gemm(transA, transB bool, m, n, k int, alpha float32, a, b *Tensor, beta float32, c *Tensor) {
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	kernels.Sgemm(transA, transB, m, n, k, alpha, h(a), lda, h(b), ldb, beta, h(c), n)
}

func (cpuBackend) GemmBatched(batch int, transA, transB bool, m, n, k int, alpha float32, a, b *Tensor, beta float32, c *Tensor) {
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	kernels.SgemmBatched(batch, transA, transB, m, n, k, alpha, h(a), m*k, lda, h(b), k*n, ldb, beta, h(c), m*n, n)
}

func kp(p ConvParams) kernels.ConvParams {
	return kernels.ConvParams{N: p.N, C: p.C, H: p.H, W: p.W, CO: p.CO, KH: p.KH, KW: p.KW, Stride: p.Stride, Pad: p.Pad}
}

func (cpuBackend) Conv2dForward(y, x, w, bias *Tensor, p ConvParams) {
	kernels.Conv2dForward(h(y), h(x), h(w), h(bias), kp(p))
}
func (cpuBackend) Conv2dBackwardData(dx, dy, w *Tensor, p ConvParams) {
	kernels.Conv2dBackwardData(h(dx), h(dy), h(w), kp(p))
}
func (cpuBackend) Conv2dBackwardFilter(dw, db, dy, x *Tensor, p ConvParams) {
	kernels.Conv2dBackwardFilter(h(dw), h(db), h(dy), h(x), kp(p))
}

func (cpuBackend) GroupNormForward(y, mean, rstd, x, gamma, beta *Tensor, n, c, hw, groups int, eps float32, silu bool) {
	kernels.GroupNormForward(h(y), h(mean), h(rstd), h(x), h(gamma), h(beta), n, c, hw, groups, eps, silu)
}
func (cpuBackend) GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta *Tensor, n, c, hw, groups int, silu bool) {
	kernels.GroupNormBackward(h(dx), h(dgamma), h(dbeta), h(dy), h(x), h(mean), h(rstd), h(gamma), h(beta), n, c, hw, groups, silu)
}
func (cpuBackend) LayerNormForward(y, mean, rstd, x, gamma, beta *Tensor, rows, cols int, eps float32) {
	kernels.LayerNormForward(h(y), h(mean), h(rstd), h(x), h(gamma), h(beta), rows, cols, eps)
}
func (cpuBackend) LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma *Tensor, rows, cols int) {
	kernels.LayerNormBackward(h(dx), h(dgamma), h(dbeta), h(dy), h(x), h(mean), h(rstd), h(gamma), rows, cols)
}
func (cpuBackend) SoftmaxForward(y, x *Tensor, rows, cols int) {
	kernels.SoftmaxForward(h(y), h(x), rows, cols)
}
func (cpuBackend) SoftmaxBackward(dx, dy, y *Tensor, rows, cols int) {
	kernels.SoftmaxBackward(h(dx), h(dy), h(y), rows, cols)
}

func (cpuBackend) Activation(kind Act, y, x *Tensor) {
	switch kind {
	case SiLU:
		kernels.SiLU(h(y), h(x))
	case GELU:
		kernels.GELU(h(y), h(x))
	case GELUTanh:
		kernels.GELUTanh(h(y), h(x))
	default:
		panic(shapeErr("Activation", "unknown activation %d", kind))
	}
}

func (cpuBackend) ActivationBackward(kind Act, dx, dy, x *Tensor) {
	switch kind {
	case SiLU:
		kernels.SiLUBackward(h(dx), h(dy), h(x))
	case GELU:
		kernels.GELUBackward(h(dx), h(dy), h(x))
	case GELUTanh:
		kernels.GELUTanhBackward(h(dx), h(dy), h(x))
	default:
		panic(shapeErr("ActivationBackward", "unknown activation %d", kind))
	}
}

func (cpuBackend) UpsampleNearest(y, x *Tensor, nc, hh, w, f int) {
	kernels.UpsampleNearest(h(y), h(x), nc, hh, w, f)
}
func (cpuBackend) UpsampleNearestBackward(dx, dy *Tensor, nc, hh, w, f int) {
	kernels.UpsampleNearestBackward(h(dx), h(dy), nc, hh, w, f)
}

func (cpuBackend) AdamStep(p, g, m, v *Tensor, hp AdamHyper) {
	kernels.AdamStep(h(p), h(g), h(m), h(v), hp.LR, hp.Beta1, hp.Beta2, hp.Eps, hp.WeightDecay, hp.Decoupled, hp.Step)
}
