package kernels

import (
	"math"
	"os"
)

// vecAsm selects the assembly row kernels of GroupNorm and SiLU (AVX2+FMA
// on amd64; see norm_amd64.s). Like the GEMM kernels, they are turned off
// by the build tag noasm or DIFFUSE_NOASM=1. Tests flip it to compare the
// two paths.
var vecAsm = vecArch() && os.Getenv("DIFFUSE_NOASM") != "1"

// ---------------------------------------------------------------------------
// GroupNorm (with optional fused SiLU).

type gnArgs struct {
	y, mean, rstd, x, gamma, beta, dy []float32
	part                              []float64 // [n*c*2] per-(image, channel) dgamma, dbeta
	c, hw, groups                     int
	eps                               float32
	silu                              bool
}

var (
	gnFwdLoop = parLoop[gnArgs]{body: gnForwardBody}
	gnBwdLoop = parLoop[gnArgs]{body: gnBackwardBody}
)

func checkGN(name string, n, c, hw, groups int, x, y, gamma, beta []float32) {
	if groups <= 0 || c%groups != 0 {
		panic("kernels: " + name + ": channels not divisible by groups")
	}
	if len(x) < n*c*hw || len(y) < n*c*hw {
		panic("kernels: " + name + ": slice too short")
	}
	if (gamma != nil && len(gamma) < c) || (beta != nil && len(beta) < c) {
		panic("kernels: " + name + ": per-channel slice too short")
	}
}

// GroupNormForward normalises x over groups of c/groups channels, as
// torch.nn.GroupNorm (biased variance, eps inside the square root), then
// applies the per-channel affine transform, and, when silu is set, SiLU:
//
//	y = act((x - mean[i,g]) * rstd[i,g] * gamma[ch] + beta[ch])
//
// x and y are [n, c, hw] (y may alias x); gamma and beta are [c] or nil (no
// affine: gamma 1, beta 0); mean and rstd are [n*groups] and receive the
// group statistics (rstd = 1/sqrt(var+eps)) for GroupNormBackward.
// Statistics are accumulated in float64 (sum and sum of squares).
func GroupNormForward(y, mean, rstd, x, gamma, beta []float32, n, c, hw, groups int, eps float32, silu bool) {
	checkGN("GroupNormForward", n, c, hw, groups, x, y, gamma, beta)
	if len(mean) < n*groups || len(rstd) < n*groups {
		panic("kernels: GroupNormForward: mean/rstd too short")
	}
	per := c / groups * hw
	gnFwdLoop.For(gnArgs{y: y, mean: mean, rstd: rstd, x: x, gamma: gamma, beta: beta,
		c: c, hw: hw, groups: groups, eps: eps, silu: silu}, n*groups, grainFor(1<<14, per))
}

func gnForwardBody(a *gnArgs, _, lo, hi int) {
	c, hw, groups := a.c, a.hw, a.groups
	cpg := c / groups
	per := cpg * hw
	for t := lo; t < hi; t++ {
		i, g := t/groups, t%groups
		base := (i*c + g*cpg) * hw
		x := a.x[base : base+per]
		sum, sq := gnStats(x)
		m := sum / float64(per)
		v := max(sq/float64(per)-m*m, 0)
		r := 1 / math.Sqrt(v+float64(a.eps))
		a.mean[t] = float32(m)
		a.rstd[t] = float32(r)
		for cc := 0; cc < cpg; cc++ {
			ch := g*cpg + cc
			gm, bt := 1.0, 0.0
			if a.gamma != nil {
				gm = float64(a.gamma[ch])
			}
			if a.beta != nil {
				bt = float64(a.beta[ch])
			}
			// (x - mean)*scale + beta rather than x*scale + shift: the
			// subtraction is exact for x near the mean, which keeps
			// accuracy when |mean| >> std.
			mf := float32(m)
			scale := float32(r * gm)
			shift := float32(bt)
			xs := x[cc*hw : (cc+1)*hw]
			ys := a.y[base+cc*hw : base+(cc+1)*hw]
			gnRowForward(ys[:len(xs)], xs, mf, scale, shift, a.silu)
		}
	}
}

// gnStats returns the float64 sum and sum of squares of x. float64 keeps
// ~9 significant digits of the variance even when |mean|/std ~ 1e4, more
// than float32 data carry.
func gnStats(x []float32) (sum, sq float64) {
	if vecAsm && len(x) > 0 {
		return gnStatsAVX2(&x[0], len(x))
	}
	var s0, s1, q0, q1 float64
	k := 0
	for ; k+2 <= len(x); k += 2 {
		v0, v1 := float64(x[k]), float64(x[k+1])
		s0 += v0
		s1 += v1
		q0 += v0 * v0
		q1 += v1 * v1
	}
	for ; k < len(x); k++ {
		v0 := float64(x[k])
		s0 += v0
		q0 += v0 * v0
	}
	return s0 + s1, q0 + q1
}

// gnRowForward sets ys[j] = act((xs[j]-mf)*scale + shift); len(ys) ==
// len(xs).
func gnRowForward(ys, xs []float32, mf, scale, shift float32, silu bool) {
	if vecAsm && len(xs) > 0 {
		if silu {
			gnAffineSiLUAVX2(&ys[0], &xs[0], len(xs), mf, scale, shift)
		} else {
			gnAffineAVX2(&ys[0], &xs[0], len(xs), mf, scale, shift)
		}
		return
	}
	ys = ys[:len(xs)]
	if silu {
		for j, xv := range xs {
			u := (xv-mf)*scale + shift
			ys[j] = u / (1 + expFast(clampExp(-u)))
		}
	} else {
		for j, xv := range xs {
			ys[j] = (xv-mf)*scale + shift
		}
	}
}

// GroupNormBackward computes the gradients of GroupNormForward. dy, x and dx
// are [n, c, hw] (dx is overwritten; it may alias dy but not x); mean and rstd are the
// [n*groups] statistics saved by the forward pass; gamma and beta are [c]
// or nil (beta is needed only when silu is set: the pre-activation is
// recomputed from x, mean, rstd, gamma and beta to apply silu'). dgamma and
// dbeta are [c] and overwritten (either may be nil to skip it). The
// reduction over the batch is done in a fixed order, so results do not
// depend on scheduling.
func GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta []float32, n, c, hw, groups int, silu bool) {
	checkGN("GroupNormBackward", n, c, hw, groups, x, dy, gamma, beta)
	checkGN("GroupNormBackward", n, c, hw, groups, dx, dx, dgamma, dbeta)
	if len(mean) < n*groups || len(rstd) < n*groups {
		panic("kernels: GroupNormBackward: mean/rstd too short")
	}
	per := c / groups * hw
	pb := f64Partials.get(2 * n * c)
	gnBwdLoop.For(gnArgs{y: dx, mean: mean, rstd: rstd, x: x, gamma: gamma, beta: beta, dy: dy,
		part: *pb, c: c, hw: hw, groups: groups, silu: silu}, n*groups, grainFor(1<<14, per))
	part := *pb
	for ch := 0; ch < c; ch++ {
		var sg, sb float64
		for i := 0; i < n; i++ {
			sg += part[2*(i*c+ch)]
			sb += part[2*(i*c+ch)+1]
		}
		if dgamma != nil {
			dgamma[ch] = float32(sg)
		}
		if dbeta != nil {
			dbeta[ch] = float32(sb)
		}
	}
	f64Partials.put(pb)
}

func gnBackwardBody(a *gnArgs, _, lo, hi int) {
	c, hw, groups := a.c, a.hw, a.groups
	cpg := c / groups
	per := cpg * hw
	for t := lo; t < hi; t++ {
		i, g := t/groups, t%groups
		base := (i*c + g*cpg) * hw
		m := a.mean[t]
		r := a.rstd[t]
		// Pass 1: g = dy (times silu' of the pre-activation), stored in dx;
		// per-channel sums of g and g*xhat.
		var sdx, sdxx float64 // sums of dxhat and dxhat*xhat over the group
		for cc := 0; cc < cpg; cc++ {
			ch := g*cpg + cc
			gm := float32(1)
			if a.gamma != nil {
				gm = a.gamma[ch]
			}
			xs := a.x[base+cc*hw : base+(cc+1)*hw]
			dys := a.dy[base+cc*hw : base+(cc+1)*hw]
			dxs := a.y[base+cc*hw : base+(cc+1)*hw]
			var scale, bt float32
			if a.silu {
				if a.beta != nil {
					bt = a.beta[ch]
				}
				scale = r * gm
			}
			sg, sgx := gnRowBackward1(dxs[:len(xs)], dys[:len(xs)], xs, m, r, scale, bt, a.silu)
			a.part[2*(i*c+ch)] = sgx
			a.part[2*(i*c+ch)+1] = sg
			sdx += float64(gm) * sg
			sdxx += float64(gm) * sgx
		}
		// Pass 2: dx = rstd * (g*gamma - mean(dxhat) - xhat*mean(dxhat*xhat)).
		inv := 1 / float64(per)
		c1 := float32(sdx * inv)
		c2 := float32(sdxx * inv)
		for cc := 0; cc < cpg; cc++ {
			ch := g*cpg + cc
			gm := float32(1)
			if a.gamma != nil {
				gm = a.gamma[ch]
			}
			xs := a.x[base+cc*hw : base+(cc+1)*hw]
			dxs := a.y[base+cc*hw : base+(cc+1)*hw]
			// dx = r*gm*g - r*c1 - r*c2*r*(x-m) = A*g + B*(x-m) + C
			gnRowBackward2(dxs[:len(xs)], xs, m, r*gm, -r*r*c2, -r*c1)
		}
	}
}

// gnRowBackward1 sets dxs[j] = g = dys[j] (times silu'((xs[j]-m)*scale + bt)
// when silu is set) and returns the float64 sums of g and g*(xs[j]-m)*r.
// len(dxs) == len(dys) == len(xs).
func gnRowBackward1(dxs, dys, xs []float32, m, r, scale, bt float32, silu bool) (sg, sgx float64) {
	if vecAsm && len(xs) > 0 {
		if silu {
			return gnBwdSiLURowAVX2(&dxs[0], &dys[0], &xs[0], len(xs), m, r, scale, bt)
		}
		return gnBwdRowAVX2(&dxs[0], &dys[0], &xs[0], len(xs), m, r)
	}
	dys = dys[:len(xs)]
	dxs = dxs[:len(xs)]
	if silu {
		for j, xv := range xs {
			u := (xv-m)*scale + bt
			s := 1 / (1 + expFast(clampExp(-u)))
			gv := dys[j] * (s * (1 + u*(1-s)))
			dxs[j] = gv
			sg += float64(gv)
			sgx += float64(gv * ((xv - m) * r))
		}
	} else {
		for j, xv := range xs {
			gv := dys[j]
			dxs[j] = gv
			sg += float64(gv)
			sgx += float64(gv * ((xv - m) * r))
		}
	}
	return sg, sgx
}

// gnRowBackward2 sets dxs[j] = ca*dxs[j] + cb*(xs[j]-m) + cc; len(dxs) ==
// len(xs).
func gnRowBackward2(dxs, xs []float32, m, ca, cb, cc float32) {
	if vecAsm && len(xs) > 0 {
		gnBwdApplyAVX2(&dxs[0], &xs[0], len(xs), m, ca, cb, cc)
		return
	}
	dxs = dxs[:len(xs)]
	for j, xv := range xs {
		dxs[j] = ca*dxs[j] + cb*(xv-m) + cc
	}
}

// ---------------------------------------------------------------------------
// LayerNorm over the last dimension.

type lnArgs struct {
	y, mean, rstd, x, gamma, beta, dy []float32
	part                              []float64 // [nchunks*2*cols] dgamma, dbeta partials
	rows, cols, nchunks               int
	eps                               float32
}

var (
	lnFwdLoop = parLoop[lnArgs]{body: lnForwardBody}
	lnBwdLoop = parLoop[lnArgs]{body: lnBackwardBody}
)

// LayerNormForward normalises each row of the [rows, cols] matrix x over its
// cols entries (biased variance, eps inside the square root) and applies
// y = xhat*gamma + beta. gamma and beta are [cols] or nil (no affine); y is
// [rows, cols] and may alias x; mean and rstd are [rows] and receive the row
// statistics for LayerNormBackward.
func LayerNormForward(y, mean, rstd, x, gamma, beta []float32, rows, cols int, eps float32) {
	checkAct("LayerNormForward", rows*cols, x, y)
	checkAct("LayerNormForward", rows, mean, rstd)
	if gamma != nil {
		checkAct("LayerNormForward", cols, gamma)
	}
	if beta != nil {
		checkAct("LayerNormForward", cols, beta)
	}
	lnFwdLoop.For(lnArgs{y: y, mean: mean, rstd: rstd, x: x, gamma: gamma, beta: beta,
		rows: rows, cols: cols, eps: eps}, rows, grainFor(1<<13, cols))
}

func lnForwardBody(a *lnArgs, _, lo, hi int) {
	cols := a.cols
	for rr := lo; rr < hi; rr++ {
		x := a.x[rr*cols : (rr+1)*cols]
		y := a.y[rr*cols : (rr+1)*cols]
		y = y[:len(x)]
		var s float64
		for _, v := range x {
			s += float64(v)
		}
		m := s / float64(cols)
		s = 0
		for _, v := range x {
			d := float64(v) - m
			s += d * d
		}
		r := 1 / math.Sqrt(s/float64(cols)+float64(a.eps))
		a.mean[rr] = float32(m)
		a.rstd[rr] = float32(r)
		mf, rf := float32(m), float32(r)
		switch {
		case a.gamma != nil && a.beta != nil:
			gm, bt := a.gamma[:len(x)], a.beta[:len(x)]
			for i, v := range x {
				y[i] = (v-mf)*rf*gm[i] + bt[i]
			}
		case a.gamma != nil:
			gm := a.gamma[:len(x)]
			for i, v := range x {
				y[i] = (v - mf) * rf * gm[i]
			}
		case a.beta != nil:
			bt := a.beta[:len(x)]
			for i, v := range x {
				y[i] = (v-mf)*rf + bt[i]
			}
		default:
			for i, v := range x {
				y[i] = (v - mf) * rf
			}
		}
	}
}

// LayerNormBackward computes the gradients of LayerNormForward. dy, x and dx
// are [rows, cols] (dx is overwritten and may alias dy); mean and rstd are
// the [rows] statistics from the forward pass; gamma is [cols] or nil;
// dgamma and dbeta are [cols] and overwritten (nil to skip). The reduction
// over rows uses a fixed chunking, so results are reproducible for a given
// worker count.
func LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma []float32, rows, cols int) {
	checkAct("LayerNormBackward", rows*cols, dx, dy, x)
	checkAct("LayerNormBackward", rows, mean, rstd)
	for _, v := range [][]float32{gamma, dgamma, dbeta} {
		if v != nil {
			checkAct("LayerNormBackward", cols, v)
		}
	}
	nch := numChunks(rows, grainFor(1<<14, cols))
	pb := f64Partials.get(nch * 2 * cols)
	part := *pb
	clear(part)
	lnBwdLoop.For(lnArgs{y: dx, mean: mean, rstd: rstd, x: x, gamma: gamma, dy: dy,
		part: part, rows: rows, cols: cols, nchunks: nch}, nch, 1)
	for j := 0; j < cols; j++ {
		var sg, sb float64
		for k := 0; k < nch; k++ {
			sg += part[k*2*cols+j]
			sb += part[k*2*cols+cols+j]
		}
		if dgamma != nil {
			dgamma[j] = float32(sg)
		}
		if dbeta != nil {
			dbeta[j] = float32(sb)
		}
	}
	f64Partials.put(pb)
}

func lnBackwardBody(a *lnArgs, _, klo, khi int) {
	cols := a.cols
	for k := klo; k < khi; k++ {
		pg := a.part[k*2*cols : k*2*cols+cols]
		pbt := a.part[k*2*cols+cols : (k+1)*2*cols]
		lo, hi := chunkRange(a.rows, a.nchunks, k)
		for rr := lo; rr < hi; rr++ {
			x := a.x[rr*cols : (rr+1)*cols]
			dy := a.dy[rr*cols : (rr+1)*cols]
			dx := a.y[rr*cols : (rr+1)*cols]
			dy = dy[:len(x)]
			dx = dx[:len(x)]
			m, r := a.mean[rr], a.rstd[rr]
			var s1, s2 float64 // sums of dxhat and dxhat*xhat
			if a.gamma != nil {
				gm := a.gamma[:len(x)]
				for i, v := range x {
					xh := (v - m) * r
					g := dy[i]
					pg[i] += float64(g * xh)
					pbt[i] += float64(g)
					d := g * gm[i]
					s1 += float64(d)
					s2 += float64(d * xh)
				}
			} else {
				for i, v := range x {
					xh := (v - m) * r
					g := dy[i]
					pg[i] += float64(g * xh)
					pbt[i] += float64(g)
					s1 += float64(g)
					s2 += float64(g * xh)
				}
			}
			inv := 1 / float64(cols)
			c1 := float32(s1 * inv)
			c2 := float32(s2 * inv)
			if a.gamma != nil {
				gm := a.gamma[:len(x)]
				for i, v := range x {
					xh := (v - m) * r
					dx[i] = r * (dy[i]*gm[i] - c1 - xh*c2)
				}
			} else {
				for i, v := range x {
					xh := (v - m) * r
					dx[i] = r * (dy[i] - c1 - xh*c2)
				}
			}
		}
	}
}
