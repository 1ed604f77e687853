package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// refGroupNorm is the float64 GroupNorm(+SiLU) forward; gamma/beta nil means
// 1/0. It also returns the group means and 1/sqrt(var+eps).
func refGroupNorm(x, gamma, beta []float64, n, c, hw, groups int, eps float64, silu bool) (y, mean, rstd []float64) {
	cpg := c / groups
	per := cpg * hw
	y = make([]float64, len(x))
	mean = make([]float64, n*groups)
	rstd = make([]float64, n*groups)
	for i := 0; i < n; i++ {
		for g := 0; g < groups; g++ {
			base := (i*c + g*cpg) * hw
			var s float64
			for k := 0; k < per; k++ {
				s += x[base+k]
			}
			m := s / float64(per)
			var v float64
			for k := 0; k < per; k++ {
				v += (x[base+k] - m) * (x[base+k] - m)
			}
			v /= float64(per)
			r := 1 / math.Sqrt(v+eps)
			mean[i*groups+g], rstd[i*groups+g] = m, r
			for k := 0; k < per; k++ {
				ch := g*cpg + k/hw
				gm, bt := 1.0, 0.0
				if gamma != nil {
					gm = gamma[ch]
				}
				if beta != nil {
					bt = beta[ch]
				}
				u := (x[base+k]-m)*r*gm + bt
				if silu {
					u = refSiLU(u)
				}
				y[base+k] = u
			}
		}
	}
	return y, mean, rstd
}

// refGroupNormGrad is the textbook GroupNorm backward in float64:
// dxhat = g*gamma; dx = rstd*(dxhat - mean(dxhat) - xhat*mean(dxhat*xhat)).
func refGroupNormGrad(dy, x, gamma, beta []float64, n, c, hw, groups int, eps float64, silu bool) (dx, dgamma, dbeta []float64) {
	_, mean, rstd := refGroupNorm(x, gamma, beta, n, c, hw, groups, eps, silu)
	cpg := c / groups
	per := cpg * hw
	dx = make([]float64, len(x))
	dgamma = make([]float64, c)
	dbeta = make([]float64, c)
	for i := 0; i < n; i++ {
		for g := 0; g < groups; g++ {
			base := (i*c + g*cpg) * hw
			m, r := mean[i*groups+g], rstd[i*groups+g]
			xh := make([]float64, per)
			dxh := make([]float64, per)
			var s1, s2 float64
			for k := 0; k < per; k++ {
				ch := g*cpg + k/hw
				gm, bt := 1.0, 0.0
				if gamma != nil {
					gm = gamma[ch]
				}
				if beta != nil {
					bt = beta[ch]
				}
				xh[k] = (x[base+k] - m) * r
				gr := dy[base+k]
				if silu {
					gr *= refSiLUGrad(xh[k]*gm + bt)
				}
				dgamma[ch] += gr * xh[k]
				dbeta[ch] += gr
				dxh[k] = gr * gm
				s1 += dxh[k]
				s2 += dxh[k] * xh[k]
			}
			for k := 0; k < per; k++ {
				dx[base+k] = r * (dxh[k] - s1/float64(per) - xh[k]*s2/float64(per))
			}
		}
	}
	return dx, dgamma, dbeta
}

func TestGroupNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	type tc struct {
		n, c, hw, groups int
		affine, silu     bool
		offset           float32
	}
	cases := []tc{
		{1, 1, 1, 1, true, false, 0},
		{2, 4, 5, 2, true, false, 0},
		{2, 4, 5, 2, true, true, 0},
		{3, 6, 7, 3, false, true, 0},
		{3, 6, 7, 3, false, false, 0},
		{1, 8, 9, 8, true, true, 0},
		{5, 8, 3, 1, true, true, 0},
		{2, 4, 6, 2, true, false, 1000}, // |mean| >> std: two-pass statistics
		{4, 16, 49, 8, true, true, 0},
	}
	if !testing.Short() {
		cases = append(cases, tc{9, 32, 196, 8, true, true, 0.5})
	}
	const eps = 1e-5
	for _, c := range cases {
		name := fmt.Sprintf("%+v", c)
		size := c.n * c.c * c.hw
		x := randF32(r, size, 2)
		for i := range x {
			x[i] += c.offset
		}
		var gamma, beta []float32
		if c.affine {
			gamma = randF32(r, c.c, 1.5)
			beta = randF32(r, c.c, 1)
		}
		x64, g64, b64 := to64(x), to64(gamma), to64(beta)
		if !c.affine {
			g64, b64 = nil, nil
		}
		y := randF32(r, size, 100)
		mean := make([]float32, c.n*c.groups)
		rstd := make([]float32, c.n*c.groups)
		GroupNormForward(y, mean, rstd, x, gamma, beta, c.n, c.c, c.hw, c.groups, eps, c.silu)
		ry, rm, rr := refGroupNorm(x64, g64, b64, c.n, c.c, c.hw, c.groups, eps, c.silu)
		tol := 2e-6
		if c.offset > 100 {
			tol = 1e-4 // float32 rounding of x itself near 1000
		}
		assertClose(t, name+" y", y, ry, tol)
		for i := range rm {
			if math.Abs(float64(mean[i])-rm[i]) > 1e-6*(1+math.Abs(rm[i])) || math.Abs(float64(rstd[i])-rr[i]) > 1e-6*rr[i] {
				t.Errorf("%s: stats[%d] = %v,%v want %v,%v", name, i, mean[i], rstd[i], rm[i], rr[i])
			}
		}
		// In place.
		yy := append([]float32(nil), x...)
		GroupNormForward(yy, mean, rstd, yy, gamma, beta, c.n, c.c, c.hw, c.groups, eps, c.silu)
		for i := range yy {
			if yy[i] != y[i] {
				t.Fatalf("%s: in-place forward differs at %d", name, i)
			}
		}

		dy := randF32(r, size, 1)
		dy64 := to64(dy)
		dx := randF32(r, size, 100)
		dgamma := randF32(r, c.c, 100)
		dbeta := randF32(r, c.c, 100)
		GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta, c.n, c.c, c.hw, c.groups, c.silu)
		rdx, rdg, rdb := refGroupNormGrad(dy64, x64, g64, b64, c.n, c.c, c.hw, c.groups, eps, c.silu)
		btol := 1e-5
		if c.offset > 100 {
			btol = 1e-3
		}
		assertClose(t, name+" dx", dx, rdx, btol)
		assertClose(t, name+" dgamma", dgamma, rdg, btol)
		assertClose(t, name+" dbeta", dbeta, rdb, btol)

		// Central differences of the float64 forward, h = 1e-4 (relative
		// truncation error ~1e-8): tolerance 1e-5 (1e-3 with the offset).
		if size <= 400 {
			fwd := func(xv, gv, bv []float64) []float64 {
				yv, _, _ := refGroupNorm(xv, gv, bv, c.n, c.c, c.hw, c.groups, eps, c.silu)
				return yv
			}
			h := 1e-4 * (1 + float64(c.offset))
			fdx := fdGrad(x64, dy64, h, func(v []float64) []float64 { return fwd(v, g64, b64) })
			assertClose(t, name+" dx vs FD", dx, fdx, btol)
			if c.affine {
				fdg := fdGrad(g64, dy64, 1e-4, func(v []float64) []float64 { return fwd(x64, v, b64) })
				assertClose(t, name+" dgamma vs FD", dgamma, fdg, btol)
				fdb := fdGrad(b64, dy64, 1e-4, func(v []float64) []float64 { return fwd(x64, g64, v) })
				assertClose(t, name+" dbeta vs FD", dbeta, fdb, btol)
			}
		}

		// dx may alias dy; nil dgamma/dbeta are skipped.
		g := append([]float32(nil), dy...)
		GroupNormBackward(g, nil, nil, g, x, mean, rstd, gamma, beta, c.n, c.c, c.hw, c.groups, c.silu)
		for i := range g {
			if g[i] != dx[i] {
				t.Fatalf("%s: in-place backward differs at %d", name, i)
			}
		}
	}
}

func refLayerNorm(x, gamma, beta []float64, rows, cols int, eps float64) []float64 {
	y := make([]float64, len(x))
	for r := 0; r < rows; r++ {
		row := x[r*cols : (r+1)*cols]
		var m, v float64
		for _, e := range row {
			m += e
		}
		m /= float64(cols)
		for _, e := range row {
			v += (e - m) * (e - m)
		}
		v /= float64(cols)
		for j, e := range row {
			u := (e - m) / math.Sqrt(v+eps)
			if gamma != nil {
				u *= gamma[j]
			}
			if beta != nil {
				u += beta[j]
			}
			y[r*cols+j] = u
		}
	}
	return y
}

func TestLayerNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	const eps = 1e-5
	for _, c := range []struct {
		rows, cols  int
		gamma, beta bool
	}{{1, 1, true, true}, {3, 7, true, true}, {5, 16, false, false}, {4, 9, true, false}, {6, 5, false, true}, {301, 64, true, true}} {
		name := fmt.Sprintf("%+v", c)
		n := c.rows * c.cols
		x := randF32(r, n, 2)
		var gamma, beta []float32
		var g64, b64 []float64
		if c.gamma {
			gamma = randF32(r, c.cols, 1.5)
			g64 = to64(gamma)
		}
		if c.beta {
			beta = randF32(r, c.cols, 1)
			b64 = to64(beta)
		}
		x64 := to64(x)
		y := make([]float32, n)
		mean := make([]float32, c.rows)
		rstd := make([]float32, c.rows)
		LayerNormForward(y, mean, rstd, x, gamma, beta, c.rows, c.cols, eps)
		assertClose(t, name+" y", y, refLayerNorm(x64, g64, b64, c.rows, c.cols, eps), 2e-6)

		dy := randF32(r, n, 1)
		dy64 := to64(dy)
		dx := randF32(r, n, 100)
		dgamma := randF32(r, c.cols, 100)
		dbeta := randF32(r, c.cols, 100)
		LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, c.rows, c.cols)

		// Naive reference of the gradient formula (GroupNorm with one group
		// per row, hw = cols, no per-channel affine), then the affine terms.
		rdx := make([]float64, n)
		rdg := make([]float64, c.cols)
		rdb := make([]float64, c.cols)
		for row := 0; row < c.rows; row++ {
			g := make([]float64, c.cols)
			xr := x64[row*c.cols : (row+1)*c.cols]
			xh := refLayerNorm(xr, nil, nil, 1, c.cols, eps)
			for j := range g {
				g[j] = dy64[row*c.cols+j]
				rdg[j] += g[j] * xh[j]
				rdb[j] += g[j]
				if g64 != nil {
					g[j] *= g64[j]
				}
			}
			d, _, _ := refGroupNormGrad(g, xr, nil, nil, 1, 1, c.cols, 1, eps, false)
			copy(rdx[row*c.cols:], d)
		}
		assertClose(t, name+" dx", dx, rdx, 1e-5)
		assertClose(t, name+" dgamma", dgamma, rdg, 1e-5)
		assertClose(t, name+" dbeta", dbeta, rdb, 1e-5)
		if n <= 400 {
			fdx := fdGrad(x64, dy64, 1e-4, func(v []float64) []float64 { return refLayerNorm(v, g64, b64, c.rows, c.cols, eps) })
			assertClose(t, name+" dx vs FD", dx, fdx, 1e-5)
		}
	}
}

func BenchmarkGroupNorm(b *testing.B) {
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
	for _, silu := range []bool{false, true} {
		suffix := ""
		if silu {
			suffix = "_silu"
		}
		b.Run("N64_C32_HW784/fwd"+suffix, func(b *testing.B) {
			b.SetBytes(int64(8 * len(x)))
			for b.Loop() {
				GroupNormForward(y, mean, rstd, x, gamma, beta, n, c, hw, groups, 1e-5, silu)
			}
		})
		b.Run("N64_C32_HW784/bwd"+suffix, func(b *testing.B) {
			b.SetBytes(int64(12 * len(x)))
			for b.Loop() {
				GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta, n, c, hw, groups, silu)
			}
		})
	}
}
