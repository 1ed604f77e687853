package autograd

import (
	"math"

	"github.com/diffuse-go/diffuse/tensor"
)

func shapeStr(v *Var) []int { return v.Value.Shape() }

// Linear computes x·wᵀ + b: x [B, in], w [out, in], b [out] or nil → [B, out].
func (g *Graph) Linear(x, w, b *Var) *Var {
	xs, ws := shapeStr(x), shapeStr(w)
	if len(xs) != 2 || len(ws) != 2 || xs[1] != ws[1] {
		bad("Linear", "input %v and weight %v: want x [B, in] and w [out, in] with equal in", xs, ws)
	}
	if b != nil && (b.Value.Rank() != 1 || b.Value.Dim(0) != ws[0]) {
		bad("Linear", "bias %v does not match weight %v", shapeStr(b), ws)
	}
	B, in, out := xs[0], xs[1], ws[0]
	y := g.arena.Get(B, out)
	g.be.Gemm(false, true, B, out, in, 1, x.Value, w.Value, 0, y)
	if b != nil {
		g.be.AddRowVector(y, y, b.Value, B, out, 1, 1)
	}
	return g.newVar(y, func(o *Var) {
		g.accum(x, func(dx *tensor.Tensor) { g.be.Gemm(false, false, B, in, out, 1, o.Grad, w.Value, 0, dx) })
		g.accum(w, func(dw *tensor.Tensor) { g.be.Gemm(true, false, out, in, B, 1, o.Grad, x.Value, 0, dw) })
		g.accum(b, func(db *tensor.Tensor) { g.be.SumRowVector(db, o.Grad, B, out, 1, 1) })
	}, x, w, b)
}

// Conv2d convolves x [N, C, H, W] with w [CO, C, KH, KW] plus bias b [CO]
// (or nil), with the given stride and zero padding → [N, CO, OH, OW].
func (g *Graph) Conv2d(x, w, b *Var, stride, pad int) *Var {
	xs, ws := shapeStr(x), shapeStr(w)
	if len(xs) != 4 || len(ws) != 4 || xs[1] != ws[1] {
		bad("Conv2d", "input %v and weight %v: want x [N, C, H, W] and w [CO, C, KH, KW] with equal C", xs, ws)
	}
	if stride < 1 || pad < 0 {
		bad("Conv2d", "stride %d and pad %d: want stride ≥ 1, pad ≥ 0", stride, pad)
	}
	if b != nil && (b.Value.Rank() != 1 || b.Value.Dim(0) != ws[0]) {
		bad("Conv2d", "bias %v does not match weight %v", shapeStr(b), ws)
	}
	p := tensor.ConvParams{N: xs[0], C: xs[1], H: xs[2], W: xs[3], CO: ws[0], KH: ws[2], KW: ws[3], Stride: stride, Pad: pad}
	if p.OH() < 1 || p.OW() < 1 {
		bad("Conv2d", "kernel %dx%d with pad %d does not fit input %dx%d", p.KH, p.KW, pad, p.H, p.W)
	}
	y := g.arena.Get(p.N, p.CO, p.OH(), p.OW())
	var bv *tensor.Tensor
	if b != nil {
		bv = b.Value
	}
	g.be.Conv2dForward(y, x.Value, w.Value, bv, p)
	return g.newVar(y, func(o *Var) {
		g.accum(x, func(dx *tensor.Tensor) { g.be.Conv2dBackwardData(dx, o.Grad, w.Value, p) })
		if need(w) || need(b) {
			if need(w) && need(b) && !w.hasGrad && !b.hasGrad {
				g.accum(w, func(dw *tensor.Tensor) {
					g.accum(b, func(db *tensor.Tensor) { g.be.Conv2dBackwardFilter(dw, db, o.Grad, x.Value, p) })
				})
				return
			}
			g.accum(w, func(dw *tensor.Tensor) { g.be.Conv2dBackwardFilter(dw, nil, o.Grad, x.Value, p) })
			g.accum(b, func(db *tensor.Tensor) { g.be.SumRowVector(db, o.Grad, p.N, p.CO, p.OH()*p.OW(), 1) })
		}
	}, x, w, b)
}

// GroupNorm normalizes x [N, C, ...] over groups of C/groups channels and
// all spatial positions, then applies the per-channel affine gamma, beta [C]
// (PyTorch semantics, biased variance). With silu, the output is
// SiLU(GroupNorm(x)) computed in one pass (only x is kept for backward).
func (g *Graph) GroupNorm(x, gamma, beta *Var, groups int, eps float32, silu bool) *Var {
	xs := shapeStr(x)
	if len(xs) < 2 || groups < 1 || xs[1]%groups != 0 {
		bad("GroupNorm", "input %v with %d groups: want [N, C, ...] with C divisible by groups", xs, groups)
	}
	n, c := xs[0], xs[1]
	hw := x.Value.Numel() / (n * c)
	if gamma.Value.Numel() != c || beta.Value.Numel() != c {
		bad("GroupNorm", "gamma %v / beta %v must have %d elements", shapeStr(gamma), shapeStr(beta), c)
	}
	y := g.arena.Get(xs...)
	mean := g.arena.Get(n * groups)
	rstd := g.arena.Get(n * groups)
	g.be.GroupNormForward(y, mean, rstd, x.Value, gamma.Value, beta.Value, n, c, hw, groups, eps, silu)
	return g.newVar(y, func(o *Var) {
		if !need(x) && !need(gamma) && !need(beta) {
			return
		}
		dx, cx := g.gradDst(x)
		dg, cg := g.gradDst(gamma)
		db, cb := g.gradDst(beta)
		if dx == nil {
			dx = g.arena.Get(xs...)
			defer g.arena.Release(dx)
		}
		if dg == nil {
			dg = g.arena.Get(c)
			defer g.arena.Release(dg)
		}
		if db == nil {
			db = g.arena.Get(c)
			defer g.arena.Release(db)
		}
		g.be.GroupNormBackward(dx, dg, db, o.Grad, x.Value, mean, rstd, gamma.Value, beta.Value, n, c, hw, groups, silu)
		cx()
		cg()
		cb()
	}, x, gamma, beta)
}

// LayerNorm normalizes over the last dim of x; gamma and beta (that dim's
// size, or both nil) are the affine parameters.
func (g *Graph) LayerNorm(x, gamma, beta *Var, eps float32) *Var {
	xs := shapeStr(x)
	if len(xs) < 1 {
		bad("LayerNorm", "scalar input")
	}
	cols := xs[len(xs)-1]
	rows := x.Value.Numel() / max(cols, 1)
	var gv, bv *tensor.Tensor
	if gamma != nil {
		if gamma.Value.Numel() != cols || beta == nil || beta.Value.Numel() != cols {
			bad("LayerNorm", "gamma and beta must both have %d elements", cols)
		}
		gv, bv = gamma.Value, beta.Value
	}
	y := g.arena.Get(xs...)
	mean := g.arena.Get(rows)
	rstd := g.arena.Get(rows)
	g.be.LayerNormForward(y, mean, rstd, x.Value, gv, bv, rows, cols, eps)
	return g.newVar(y, func(o *Var) {
		dx := g.arena.Get(xs...)
		var dg, db *tensor.Tensor
		if gamma != nil {
			dg, db = g.arena.Get(cols), g.arena.Get(cols)
		}
		g.be.LayerNormBackward(dx, dg, db, o.Grad, x.Value, mean, rstd, gv, rows, cols)
		g.accum(x, func(d *tensor.Tensor) { g.be.Copy(d, dx) })
		if gamma != nil {
			g.accum(gamma, func(d *tensor.Tensor) { g.be.Copy(d, dg) })
			g.accum(beta, func(d *tensor.Tensor) { g.be.Copy(d, db) })
		}
		g.arena.Release(dx)
		g.arena.Release(dg)
		g.arena.Release(db)
	}, x, gamma, beta)
}

// Act applies an elementwise activation (tensor.SiLU, GELU, GELUTanh).
func (g *Graph) Act(kind tensor.Act, x *Var) *Var {
	y := g.arena.Get(shapeStr(x)...)
	g.be.Activation(kind, y, x.Value)
	return g.newVar(y, func(o *Var) {
		g.accum(x, func(dx *tensor.Tensor) { g.be.ActivationBackward(kind, dx, o.Grad, x.Value) })
	}, x)
}

// SiLU is x·sigmoid(x).
func (g *Graph) SiLU(x *Var) *Var { return g.Act(tensor.SiLU, x) }

// GELU is the exact (erf) GELU.
func (g *Graph) GELU(x *Var) *Var { return g.Act(tensor.GELU, x) }

func sameShape(op string, a, b *Var) {
	if !tensor.SameShape(shapeStr(a), shapeStr(b)) {
		bad(op, "shapes %v and %v differ", shapeStr(a), shapeStr(b))
	}
}

// Add returns a + b (same shapes).
func (g *Graph) Add(a, b *Var) *Var {
	sameShape("Add", a, b)
	y := g.arena.Get(shapeStr(a)...)
	g.be.Add(y, a.Value, b.Value)
	return g.newVar(y, func(o *Var) {
		g.accum(b, func(d *tensor.Tensor) { g.be.Copy(d, o.Grad) })
		g.pass(a, o)
	}, a, b)
}

// Sub returns a − b (same shapes).
func (g *Graph) Sub(a, b *Var) *Var {
	sameShape("Sub", a, b)
	y := g.arena.Get(shapeStr(a)...)
	g.be.Copy(y, a.Value)
	g.be.Axpby(y, -1, b.Value, 1)
	return g.newVar(y, func(o *Var) {
		g.accum(a, func(d *tensor.Tensor) { g.be.Copy(d, o.Grad) })
		g.accum(b, func(d *tensor.Tensor) { g.be.Scale(d, o.Grad, -1) })
	}, a, b)
}

// Mul returns a ⊙ b (same shapes).
func (g *Graph) Mul(a, b *Var) *Var {
	sameShape("Mul", a, b)
	y := g.arena.Get(shapeStr(a)...)
	g.be.Mul(y, a.Value, b.Value)
	return g.newVar(y, func(o *Var) {
		g.accum(a, func(d *tensor.Tensor) { g.be.Mul(d, o.Grad, b.Value) })
		g.accum(b, func(d *tensor.Tensor) { g.be.Mul(d, o.Grad, a.Value) })
	}, a, b)
}

// Scale returns s·x.
func (g *Graph) Scale(x *Var, s float32) *Var {
	y := g.arena.Get(shapeStr(x)...)
	g.be.Scale(y, x.Value, s)
	return g.newVar(y, func(o *Var) {
		g.accum(x, func(d *tensor.Tensor) { g.be.Scale(d, o.Grad, s) })
	}, x)
}

// AddChannels broadcasts v over the trailing dims of x: x [N, C, ...] plus
// v [N, C] (per sample and channel, e.g. a time embedding) or v [C] (per
// channel, e.g. a bias).
func (g *Graph) AddChannels(x, v *Var) *Var {
	xs, vs := shapeStr(x), shapeStr(v)
	if len(xs) < 2 {
		bad("AddChannels", "input %v: want [N, C, ...]", xs)
	}
	n, c := xs[0], xs[1]
	inner := x.Value.Numel() / max(n*c, 1)
	vRows := 0
	switch {
	case len(vs) == 2 && vs[0] == n && vs[1] == c:
		vRows = n
	case len(vs) == 1 && vs[0] == c:
		vRows = 1
	default:
		bad("AddChannels", "vector %v fits neither [N, C] = [%d, %d] nor [C] for input %v", vs, n, c, xs)
	}
	y := g.arena.Get(xs...)
	g.be.AddRowVector(y, x.Value, v.Value, n, c, inner, vRows)
	return g.newVar(y, func(o *Var) {
		g.accum(v, func(d *tensor.Tensor) { g.be.SumRowVector(d, o.Grad, n, c, inner, vRows) })
		g.pass(x, o)
	}, x, v)
}

// Reshape returns a view of x with a new shape (one dim may be -1).
func (g *Graph) Reshape(x *Var, shape ...int) *Var {
	y := x.Value.Reshape(shape...)
	return g.newVar(y, func(o *Var) { g.pass(x, o) }, x)
}

// splitAt views shape as [outer, dim, inner] around axis.
func splitAt(shape []int, axis int) (outer, inner int) {
	outer, inner = 1, 1
	for i, d := range shape {
		if i < axis {
			outer *= d
		} else if i > axis {
			inner *= d
		}
	}
	return
}

// Concat joins xs along axis; all other dims must agree.
func (g *Graph) Concat(axis int, xs ...*Var) *Var {
	if len(xs) == 0 {
		bad("Concat", "no inputs")
	}
	s0 := shapeStr(xs[0])
	if axis < 0 {
		axis += len(s0)
	}
	if axis < 0 || axis >= len(s0) {
		bad("Concat", "axis %d out of range for shape %v", axis, s0)
	}
	total := 0
	for _, x := range xs {
		s := shapeStr(x)
		if len(s) != len(s0) {
			bad("Concat", "ranks differ: %v and %v", s0, s)
		}
		for i := range s {
			if i != axis && s[i] != s0[i] {
				bad("Concat", "shapes %v and %v differ outside axis %d", s0, s, axis)
			}
		}
		total += s[axis]
	}
	out := append([]int(nil), s0...)
	out[axis] = total
	outer, inner := splitAt(s0, axis)
	y := g.arena.Get(out...)
	off := 0
	for _, x := range xs {
		d := x.Value.Dim(axis)
		g.be.CopyStrided(y, off*inner, total*inner, x.Value, 0, d*inner, outer, d*inner)
		off += d
	}
	return g.newVar(y, func(o *Var) {
		off := 0
		for _, x := range xs {
			d := x.Value.Dim(axis)
			o0 := off
			g.accum(x, func(dx *tensor.Tensor) {
				g.be.CopyStrided(dx, 0, d*inner, o.Grad, o0*inner, total*inner, outer, d*inner)
			})
			off += d
		}
	}, xs...)
}

// Narrow returns the slice [start, start+length) of x along axis (a copy).
func (g *Graph) Narrow(x *Var, axis, start, length int) *Var {
	s := shapeStr(x)
	if axis < 0 {
		axis += len(s)
	}
	if axis < 0 || axis >= len(s) || start < 0 || length < 0 || start+length > s[axis] {
		bad("Narrow", "range [%d, %d) on axis %d does not fit shape %v", start, start+length, axis, s)
	}
	out := append([]int(nil), s...)
	out[axis] = length
	outer, inner := splitAt(s, axis)
	y := g.arena.Get(out...)
	g.be.CopyStrided(y, 0, length*inner, x.Value, start*inner, s[axis]*inner, outer, length*inner)
	return g.newVar(y, func(o *Var) {
		g.accum(x, func(dx *tensor.Tensor) {
			g.be.Fill(dx, 0)
			g.be.CopyStrided(dx, start*inner, s[axis]*inner, o.Grad, 0, length*inner, outer, length*inner)
		})
	}, x)
}

// Upsample repeats each pixel of x [N, C, H, W] f×f times (nearest).
func (g *Graph) Upsample(x *Var, f int) *Var {
	s := shapeStr(x)
	if len(s) != 4 || f < 1 {
		bad("Upsample", "input %v with factor %d: want [N, C, H, W] and f ≥ 1", s, f)
	}
	y := g.arena.Get(s[0], s[1], s[2]*f, s[3]*f)
	g.be.UpsampleNearest(y, x.Value, s[0]*s[1], s[2], s[3], f)
	return g.newVar(y, func(o *Var) {
		g.accum(x, func(dx *tensor.Tensor) { g.be.UpsampleNearestBackward(dx, o.Grad, s[0]*s[1], s[2], s[3], f) })
	}, x)
}

// MatMul multiplies the last two dims of a and b, batched over the leading
// dims (which must be equal): op(a) [..., m, k] × op(b) [..., k, n], scaled
// by alpha, where op transposes when transA / transB is set.
func (g *Graph) MatMul(a, b *Var, transA, transB bool, alpha float32) *Var {
	as, bs := shapeStr(a), shapeStr(b)
	if len(as) < 2 || len(as) != len(bs) {
		bad("MatMul", "shapes %v and %v: want equal ranks ≥ 2", as, bs)
	}
	r := len(as)
	batch := 1
	for i := 0; i < r-2; i++ {
		if as[i] != bs[i] {
			bad("MatMul", "batch dims of %v and %v differ", as, bs)
		}
		batch *= as[i]
	}
	m, k := as[r-2], as[r-1]
	if transA {
		m, k = k, m
	}
	k2, n := bs[r-2], bs[r-1]
	if transB {
		k2, n = n, k2
	}
	if k != k2 {
		bad("MatMul", "inner dims differ: %v×%v (transA %v, transB %v)", as, bs, transA, transB)
	}
	out := append(append([]int(nil), as[:r-2]...), m, n)
	y := g.arena.Get(out...)
	g.be.GemmBatched(batch, transA, transB, m, n, k, alpha, a.Value, b.Value, 0, y)
	return g.newVar(y, func(o *Var) {
		// C = α op(A) op(B): dop(A) = α dC op(B)ᵀ, dop(B) = α op(A)ᵀ dC.
		g.accum(a, func(da *tensor.Tensor) {
			if transA { // dA = α op(B) dCᵀ   [k, m]
				g.be.GemmBatched(batch, transB, true, k, m, n, alpha, b.Value, o.Grad, 0, da)
			} else { // dA = α dC op(B)ᵀ     [m, k]
				g.be.GemmBatched(batch, false, !transB, m, k, n, alpha, o.Grad, b.Value, 0, da)
			}
		})
		g.accum(b, func(db *tensor.Tensor) {
			if transB { // dB = α dCᵀ op(A)   [n, k]
				g.be.GemmBatched(batch, true, transA, n, k, m, alpha, o.Grad, a.Value, 0, db)
			} else { // dB = α op(A)ᵀ dC      [k, n]
				g.be.GemmBatched(batch, !transA, false, k, n, m, alpha, a.Value, o.Grad, 0, db)
			}
		})
	}, a, b)
}

// Softmax is a softmax over the last dim.
func (g *Graph) Softmax(x *Var) *Var {
	s := shapeStr(x)
	if len(s) < 1 {
		bad("Softmax", "scalar input")
	}
	cols := s[len(s)-1]
	rows := x.Value.Numel() / max(cols, 1)
	y := g.arena.Get(s...)
	g.be.SoftmaxForward(y, x.Value, rows, cols)
	return g.newVar(y, func(o *Var) {
		g.accum(x, func(dx *tensor.Tensor) { g.be.SoftmaxBackward(dx, o.Grad, y, rows, cols) })
	}, x)
}

// Sum returns the scalar sum of all elements.
func (g *Graph) Sum(x *Var) *Var { return g.sumScaled(x, 1) }

// Mean returns the scalar mean of all elements.
func (g *Graph) Mean(x *Var) *Var { return g.sumScaled(x, 1/float32(x.Value.Numel())) }

func (g *Graph) sumScaled(x *Var, s float32) *Var {
	y := g.arena.Get()
	v := g.be.Sum(x.Value) * float64(s)
	g.be.CopyFromHost(y, []float32{float32(v)})
	return g.newVar(y, func(o *Var) {
		gv := o.Grad.Item() * s
		g.accum(x, func(dx *tensor.Tensor) { g.be.Fill(dx, gv) })
	}, x)
}

// MSE returns mean((a − b)²) as a scalar.
func (g *Graph) MSE(a, b *Var) *Var {
	sameShape("MSE", a, b)
	d := g.arena.Get(shapeStr(a)...)
	g.be.Copy(d, a.Value)
	g.be.Axpby(d, -1, b.Value, 1)
	n := float64(d.Numel())
	y := g.arena.Get()
	g.be.CopyFromHost(y, []float32{float32(g.be.Dot(d, d) / n)})
	return g.newVar(y, func(o *Var) {
		s := 2 * o.Grad.Item() / float32(n)
		g.accum(a, func(da *tensor.Tensor) { g.be.Scale(da, d, s) })
		g.accum(b, func(db *tensor.Tensor) { g.be.Scale(db, d, -s) })
	}, a, b)
}

// Embedding gathers rows of table [V, D] for ids → [len(ids), D].
func (g *Graph) Embedding(table *Var, ids []int) *Var {
	s := shapeStr(table)
	if len(s) != 2 {
		bad("Embedding", "table %v: want [V, D]", s)
	}
	for _, id := range ids {
		if id < 0 || id >= s[0] {
			bad("Embedding", "id %d outside vocabulary of %d", id, s[0])
		}
	}
	d := s[1]
	y := g.arena.Get(len(ids), d)
	for i, id := range ids {
		g.be.CopyStrided(y, i*d, 0, table.Value, id*d, 0, 1, d)
	}
	return g.newVar(y, func(o *Var) {
		g.accum(table, func(dt *tensor.Tensor) {
			g.be.Fill(dt, 0)
			for i, id := range ids {
				g.be.AddStrided(dt, id*d, 0, o.Grad, i*d, 0, 1, d)
			}
		})
	}, table)
}

// Timestep returns the sinusoidal embedding [len(t), dim] of (possibly
// fractional) timesteps: half = dim/2, f_i = exp(−ln(10000)·i/half),
// emb = [sin(t·f_0..), cos(t·f_0..)] (the convention of UNet-S and DDPM).
// It is a constant: no gradient flows to t.
func (g *Graph) Timestep(t []float32, dim int) *Var {
	half := dim / 2
	host := make([]float32, len(t)*dim)
	for b, tv := range t {
		for i := 0; i < half; i++ {
			// float32 arithmetic in PyTorch's order, so embeddings match it.
			e := float32(-math.Log(10000)) * float32(i) / float32(half)
			f := float32(math.Exp(float64(e)))
			a := tv * f
			host[b*dim+i] = float32(math.Sin(float64(a)))
			host[b*dim+half+i] = float32(math.Cos(float64(a)))
		}
	}
	y := g.arena.Get(len(t), dim)
	g.be.CopyFromHost(y, host)
	return g.newVar(y, nil)
}

// WeightedMSE returns Σ_b w[b]·Σ_i (a[b,i] − c[b,i])² / numel: the mean
// squared error with one weight per sample along dim 0 (min-SNR-γ and other
// loss weightings). With all weights 1 it equals MSE.
func (g *Graph) WeightedMSE(a, c *Var, w []float32) *Var {
	sameShape("WeightedMSE", a, c)
	b := a.Value.Dim(0)
	if len(w) != b {
		bad("WeightedMSE", "%d weights for a batch of %d", len(w), b)
	}
	d := g.arena.Get(shapeStr(a)...)
	g.be.Copy(d, a.Value)
	g.be.Axpby(d, -1, c.Value, 1)
	n := float64(d.Numel())
	per := d.Numel() / b
	flat := d.Reshape(b, per)
	wt := g.arena.Get(b, per)
	host := make([]float32, b)
	copy(host, w)
	wv := g.arena.Get(b)
	g.be.CopyFromHost(wv, host)
	g.be.Fill(wt, 0)
	g.be.AddRowVector(wt.Reshape(b, 1, per), wt.Reshape(b, 1, per), wv, b, 1, per, b) // wt[b, i] = w[b]
	wd := g.arena.Get(b, per)
	g.be.Mul(wd, wt, flat) // w ⊙ d
	y := g.arena.Get()
	g.be.CopyFromHost(y, []float32{float32(g.be.Dot(wd, flat) / n)})
	return g.newVar(y, func(o *Var) {
		s := 2 * o.Grad.Item() / float32(n)
		g.accum(a, func(da *tensor.Tensor) { g.be.Scale(da.Reshape(b, per), wd, s) })
		g.accum(c, func(dc *tensor.Tensor) { g.be.Scale(dc.Reshape(b, per), wd, -s) })
	}, a, c)
}

// SpatialMean averages x [N, C, ...] over its trailing dims → [N, C]
// (global average pooling).
func (g *Graph) SpatialMean(x *Var) *Var {
	s := shapeStr(x)
	if len(s) < 2 {
		bad("SpatialMean", "input %v: want [N, C, ...]", s)
	}
	n, c := s[0], s[1]
	inner := x.Value.Numel() / max(n*c, 1)
	y := g.arena.Get(n, c)
	g.be.SumRowVector(y, x.Value, n, c, inner, n)
	g.be.Scale(y, y, 1/float32(inner))
	return g.newVar(y, func(o *Var) {
		g.accum(x, func(dx *tensor.Tensor) {
			g.be.Fill(dx, 0)
			g.be.AddRowVector(dx, dx, o.Grad, n, c, inner, n)
			g.be.Scale(dx, dx, 1/float32(inner))
		})
	}, x)
}

// CrossEntropy is the mean over the batch of −log softmax(logits)[label]:
// logits [B, K], labels len B with values in [0, K).
func (g *Graph) CrossEntropy(logits *Var, labels []int) *Var {
	s := shapeStr(logits)
	if len(s) != 2 || len(labels) != s[0] {
		bad("CrossEntropy", "logits %v with %d labels: want [B, K] and B labels", s, len(labels))
	}
	b, k := s[0], s[1]
	for _, l := range labels {
		if l < 0 || l >= k {
			bad("CrossEntropy", "label %d outside [0, %d)", l, k)
		}
	}
	p := g.arena.Get(b, k)
	g.be.SoftmaxForward(p, logits.Value, b, k)
	host := p.ToHost()
	var loss float64
	for i, l := range labels {
		loss -= math.Log(math.Max(float64(host[i*k+l]), 1e-30))
	}
	y := g.arena.Get()
	g.be.CopyFromHost(y, []float32{float32(loss / float64(b))})
	return g.newVar(y, func(o *Var) {
		s := o.Grad.Item() / float32(b)
		g.accum(logits, func(d *tensor.Tensor) {
			grad := p.ToHost()
			for i, l := range labels {
				grad[i*k+l] -= 1
			}
			for i := range grad {
				grad[i] *= s
			}
			g.be.CopyFromHost(d, grad)
		})
	}, logits)
}
