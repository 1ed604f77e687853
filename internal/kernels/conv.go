package kernels

import (
	"github.com/diffuse-go/diffuse/internal/parallel"
)

// ConvParams describes a 2-D convolution (cross-correlation, as PyTorch's
// conv2d) with dilation 1 and groups 1: input [N, C, H, W], filter
// [CO, C, KH, KW], output [N, CO, OH, OW], the same Stride and Pad on both
// spatial axes.
type ConvParams struct {
	N, C, H, W, CO, KH, KW, Stride, Pad int
}

// OH returns the output height, (H + 2*Pad - KH)/Stride + 1.
func (p ConvParams) OH() int { return (p.H+2*p.Pad-p.KH)/p.Stride + 1 }

// OW returns the output width, (W + 2*Pad - KW)/Stride + 1.
func (p ConvParams) OW() int { return (p.W+2*p.Pad-p.KW)/p.Stride + 1 }

// pointwise reports whether the convolution is a 1x1, stride-1, pad-0 one,
// for which an image [C, H*W] already is the im2col matrix.
func (p ConvParams) pointwise() bool {
	return p.KH == 1 && p.KW == 1 && p.Stride == 1 && p.Pad == 0
}

func (p ConvParams) check(name string, x, y, w []float32) {
	if p.N < 0 || p.C <= 0 || p.CO <= 0 || p.KH <= 0 || p.KW <= 0 || p.Stride <= 0 || p.Pad < 0 {
		panic("kernels: " + name + ": bad ConvParams")
	}
	if p.OH() <= 0 || p.OW() <= 0 {
		panic("kernels: " + name + ": empty output")
	}
	if len(x) < p.N*p.C*p.H*p.W || len(y) < p.N*p.CO*p.OH()*p.OW() || len(w) < p.CO*p.C*p.KH*p.KW {
		panic("kernels: " + name + ": slice too short")
	}
}

// validRange returns the range [lo, hi) of output columns ow for which the
// input column ow*s - pad + k lies in [0, w), clipped to [0, ow).
func validRange(k, s, pad, w, ow int) (lo, hi int) {
	off := pad - k // iw = o*s - off
	if off > 0 {
		lo = (off + s - 1) / s
	}
	if t := w - 1 + off; t >= 0 {
		hi = t/s + 1
	}
	if hi > ow {
		hi = ow
	}
	if lo > hi {
		lo = hi
	}
	return lo, hi
}

// im2col fills rows [c0*KH*KW, c1*KH*KW) of col ([C*KH*KW, OH*OW]) from the
// single image x ([C, H, W]). Row (c*KH+kh)*KW+kw holds, for every output
// position, the input pixel that the filter tap (kh, kw) of channel c sees
// (0 in the padding). Bounds are resolved once per row segment.
func im2col(col, x []float32, p *ConvParams, c0, c1 int) {
	H, W, KH, KW, S, P := p.H, p.W, p.KH, p.KW, p.Stride, p.Pad
	OH, OW := p.OH(), p.OW()
	ohw := OH * OW
	if S == 1 && OW == W {
		for c := c0; c < c1; c++ {
			xc := x[c*H*W : (c+1)*H*W]
			for kh := 0; kh < KH; kh++ {
				for kw := 0; kw < KW; kw++ {
					r := (c*KH+kh)*KW + kw
					im2colFlat(col[r*ohw:(r+1)*ohw], xc, p, kh, kw)
				}
			}
		}
		return
	}
	for c := c0; c < c1; c++ {
		xc := x[c*H*W : (c+1)*H*W]
		for kh := 0; kh < KH; kh++ {
			for kw := 0; kw < KW; kw++ {
				row := col[((c*KH+kh)*KW+kw)*ohw : ((c*KH+kh)*KW+kw+1)*ohw]
				lo, hi := validRange(kw, S, P, W, OW)
				for oh := 0; oh < OH; oh++ {
					dst := row[oh*OW : (oh+1)*OW]
					ih := oh*S - P + kh
					if ih < 0 || ih >= H || lo == hi {
						clear(dst)
						continue
					}
					for j := 0; j < lo; j++ {
						dst[j] = 0
					}
					for j := hi; j < len(dst); j++ {
						dst[j] = 0
					}
					src := xc[ih*W : (ih+1)*W]
					iw := lo*S - P + kw
					switch S {
					case 1:
						copy(dst[lo:hi], src[iw:iw+hi-lo])
					case 2:
						d := dst[lo:hi]
						s := src[iw : iw+2*(hi-lo)-1]
						for j := range d {
							d[j] = s[2*j]
						}
					default:
						for o := lo; o < hi; o++ {
							dst[o] = src[iw]
							iw += S
						}
					}
				}
			}
		}
	}
}

// col2im accumulates rows [c0*KH*KW, c1*KH*KW) of col ([C*KH*KW, OH*OW])
// into channels [c0, c1) of the single image dx ([C, H, W]), which it
// zeroes first: the adjoint of im2col.
func col2im(dx, col []float32, p *ConvParams, c0, c1 int) {
	H, W, KH, KW, S, P := p.H, p.W, p.KH, p.KW, p.Stride, p.Pad
	OH, OW := p.OH(), p.OW()
	ohw := OH * OW
	if S == 1 && OW == W {
		// The centre tap (kh, kw) = (P, P), when it exists and the output
		// is as tall as the input, covers every pixel: copy it instead of
		// clearing and adding.
		center := P < KH && P < KW && OH == H
		for c := c0; c < c1; c++ {
			xc := dx[c*H*W : (c+1)*H*W]
			if center {
				r := (c*KH+P)*KW + P
				copy(xc, col[r*ohw:(r+1)*ohw])
			} else {
				clear(xc)
			}
			for kh := 0; kh < KH; kh++ {
				for kw := 0; kw < KW; kw++ {
					if center && kh == P && kw == P {
						continue
					}
					r := (c*KH+kh)*KW + kw
					col2imFlat(xc, col[r*ohw:(r+1)*ohw], p, kh, kw)
				}
			}
		}
		return
	}
	clear(dx[c0*H*W : c1*H*W])
	for c := c0; c < c1; c++ {
		xc := dx[c*H*W : (c+1)*H*W]
		for kh := 0; kh < KH; kh++ {
			for kw := 0; kw < KW; kw++ {
				row := col[((c*KH+kh)*KW+kw)*ohw : ((c*KH+kh)*KW+kw+1)*ohw]
				lo, hi := validRange(kw, S, P, W, OW)
				if lo == hi {
					continue
				}
				for oh := 0; oh < OH; oh++ {
					ih := oh*S - P + kh
					if ih < 0 || ih >= H {
						continue
					}
					src := row[oh*OW+lo : oh*OW+hi]
					dst := xc[ih*W : (ih+1)*W]
					iw := lo*S - P + kw
					switch S {
					case 1:
						d := dst[iw : iw+len(src)]
						for j, v := range src {
							d[j] += v
						}
					case 2:
						d := dst[iw : iw+2*len(src)-1]
						for j, v := range src {
							d[2*j] += v
						}
					default:
						for _, v := range src {
							dst[iw] += v
							iw += S
						}
					}
				}
			}
		}
	}
}

// flatSpan returns, for the stride-1 convolution with OW == W and filter tap
// (kh, kw), the rows [o0, o1) of the output whose input row is inside the
// image, and the matching flat spans: output elements [ds, ds+n) of the
// [OH*W] tap row correspond to input elements [ss, ss+n) of the [H*W]
// channel plane, i.e. element j of the output plane reads input element
// j + (kh-Pad)*W + (kw-Pad). Elements of the span whose column wraps around
// to the neighbouring row must be masked by the caller (columns outside
// validRange).
func flatSpan(p *ConvParams, kh, kw int) (o0, o1, ds, ss, n int) {
	H, W, P, OH := p.H, p.W, p.Pad, p.OH()
	dv, du := kh-P, kw-P
	o0, o1 = max(0, -dv), min(OH, H-dv)
	if o1 <= o0 {
		return o0, o0, 0, 0, 0
	}
	ds, n = o0*W, (o1-o0)*W
	ss = (o0+dv)*W + du
	if ss < 0 {
		ds -= ss
		n += ss
		ss = 0
	}
	if ss+n > H*W {
		n = H*W - ss
	}
	return o0, o1, ds, ss, max(n, 0)
}

// im2colFlat fills the [OH*W] row of tap (kh, kw) from the channel plane xc
// ([H*W]) of a stride-1 convolution with OW == W: one contiguous copy, then
// the padding rows and wrapped columns are zeroed.
func im2colFlat(row, xc []float32, p *ConvParams, kh, kw int) {
	W := p.W
	o0, o1, ds, ss, n := flatSpan(p, kh, kw)
	clear(row[:o0*W])
	clear(row[o1*W:])
	copy(row[ds:ds+n], xc[ss:ss+n])
	lo, hi := validRange(kw, 1, p.Pad, W, W)
	if lo == 0 && hi == W {
		return
	}
	zeroCols(row, o0, o1, W, lo, hi)
}

// zeroCols zeroes columns [0, lo) and [hi, W) of rows [o0, o1) of the
// row-major matrix m with W columns. The spans are a few elements (the
// padding), so plain loops beat calls to memclr.
func zeroCols(m []float32, o0, o1, W, lo, hi int) {
	for oh := o0; oh < o1; oh++ {
		r := m[oh*W : (oh+1)*W]
		for j := 0; j < lo; j++ {
			r[j] = 0
		}
		for j := hi; j < len(r); j++ {
			r[j] = 0
		}
	}
}

// col2imFlat adds the [OH*W] row of tap (kh, kw) into the channel plane xc
// ([H*W]) of a stride-1 convolution with OW == W. It zeroes the wrapped
// columns of row (which is scratch) so that one contiguous add suffices.
func col2imFlat(xc, row []float32, p *ConvParams, kh, kw int) {
	W := p.W
	o0, o1, ds, ss, n := flatSpan(p, kh, kw)
	if n == 0 {
		return
	}
	if lo, hi := validRange(kw, 1, p.Pad, W, W); lo != 0 || hi != W {
		zeroCols(row, o0, o1, W, lo, hi)
	}
	addTo(xc[ss:ss+n], row[ds:ds+n])
}

// addTo sets d[i] += s[i] for i < len(d).
func addTo(d, s []float32) {
	s = s[:len(d)]
	i := 0
	for ; i+4 <= len(d); i += 4 {
		d4 := d[i : i+4 : i+4]
		s4 := s[i : i+4 : i+4]
		d4[0] += s4[0]
		d4[1] += s4[1]
		d4[2] += s4[2]
		d4[3] += s4[3]
	}
	for ; i < len(d); i++ {
		d[i] += s[i]
	}
}

// convArgs carries the operands of one convolution call to its loop bodies.
type convArgs struct {
	y, x, w, b []float32 // forward: y, x, w, b; backward-data: dx=x, dy=y
	dw, db     []float32 // backward-filter outputs
	part       []float32 // backward-filter partials, one per chunk
	col        []float32 // single-image path: shared col buffer
	p          ConvParams
	n          int // current image (single-image path)
	nch        int // number of reduction chunks (backward-filter)
}

var (
	convFwdLoop  = parLoop[convArgs]{body: convFwdBody}
	convBwdDLoop = parLoop[convArgs]{body: convBwdDataBody}
	convBwdFLoop = parLoop[convArgs]{body: convBwdFilterBody}
	im2colLoop   = parLoop[convArgs]{body: im2colBody}
	col2imLoop   = parLoop[convArgs]{body: col2imBody}
)

// batchParallel reports whether a convolution over n images should be
// parallel over images (each image then runs a serial GEMM) rather than
// image by image with a parallel GEMM.
func batchParallel(n int) bool {
	w := parallel.Workers()
	return w > 1 && n >= w && !parallel.Nested()
}

// Conv2dForward computes the convolution y = conv2d(x, w) + b: x is
// [N, C, H, W], w is [CO, C, KH, KW], b is [CO] or nil, and y
// ([N, CO, OH, OW]) is overwritten and must not overlap x. Each image is
// lowered with im2col to a
// [C*KH*KW, OH*OW] matrix and multiplied by w with Sgemm (1x1 stride-1
// pad-0 convolutions use the image directly).
func Conv2dForward(y, x, w, b []float32, p ConvParams) {
	p.check("Conv2dForward", x, y, w)
	if b != nil && len(b) < p.CO {
		panic("kernels: Conv2dForward: bias too short")
	}
	a := convArgs{y: y, x: x, w: w, b: b, p: p}
	if batchParallel(p.N) {
		convFwdLoop.For(a, p.N, 1)
		return
	}
	var cb *[]float32
	if !p.pointwise() {
		cb = colScratch.get(p.C * p.KH * p.KW * p.OH() * p.OW())
		a.col = *cb
	}
	for n := 0; n < p.N; n++ {
		if cb != nil {
			a.n = n
			im2colLoop.For(a, p.C, grainFor(1<<14, p.KH*p.KW*p.OH()*p.OW()))
		}
		convFwdImage(&a, n, a.col)
	}
	if cb != nil {
		colScratch.put(cb)
	}
}

func im2colBody(a *convArgs, _, lo, hi int) {
	chw := a.p.C * a.p.H * a.p.W
	im2col(a.col, a.x[a.n*chw:(a.n+1)*chw], &a.p, lo, hi)
}

func col2imBody(a *convArgs, _, lo, hi int) {
	chw := a.p.C * a.p.H * a.p.W
	col2im(a.x[a.n*chw:(a.n+1)*chw], a.col, &a.p, lo, hi)
}

// convFwdImage computes image n of the output; col holds its im2col matrix
// (unused for pointwise convolutions).
func convFwdImage(a *convArgs, n int, col []float32) {
	p := &a.p
	ohw := p.OH() * p.OW()
	ckk := p.C * p.KH * p.KW
	yn := a.y[n*p.CO*ohw : (n+1)*p.CO*ohw]
	if p.pointwise() {
		col = a.x[n*p.C*ohw : (n+1)*p.C*ohw]
	}
	beta := float32(0)
	if a.b != nil {
		for co := 0; co < p.CO; co++ {
			r := yn[co*ohw : (co+1)*ohw]
			v := a.b[co]
			for j := range r {
				r[j] = v
			}
		}
		beta = 1
	}
	Sgemm(false, false, p.CO, ohw, ckk, 1, a.w, ckk, col, ohw, beta, yn, ohw)
}

func convFwdBody(a *convArgs, _, lo, hi int) {
	p := &a.p
	var cb *[]float32
	var col []float32
	if !p.pointwise() {
		cb = colScratch.get(p.C * p.KH * p.KW * p.OH() * p.OW())
		col = *cb
	}
	chw := p.C * p.H * p.W
	for n := lo; n < hi; n++ {
		if cb != nil {
			im2col(col, a.x[n*chw:(n+1)*chw], p, 0, p.C)
		}
		convFwdImage(a, n, col)
	}
	if cb != nil {
		colScratch.put(cb)
	}
}

// Conv2dBackwardData computes the gradient of Conv2dForward with respect to
// its input: dy is [N, CO, OH, OW], w is [CO, C, KH, KW], and dx
// ([N, C, H, W]) is overwritten and must not overlap dy. Stride-1 square-filter convolutions run as
// the forward convolution of dy with the flipped, channel-transposed filter;
// otherwise, per image, dcol = w^T × dy_n (Sgemm) followed by col2im.
func Conv2dBackwardData(dx, dy, w []float32, p ConvParams) {
	p.check("Conv2dBackwardData", dx, dy, w)
	if p.Stride == 1 && p.KH == p.KW && p.Pad <= p.KH-1 && !p.pointwise() {
		// A stride-1 convolution's input gradient is itself a convolution:
		// of dy, padded by K-1-Pad, with the filter flipped spatially and
		// its channel axes swapped. Running it as a forward convolution
		// replaces col2im (a scattered accumulation) by im2col (copies).
		q := ConvParams{N: p.N, C: p.CO, H: p.OH(), W: p.OW(), CO: p.C,
			KH: p.KH, KW: p.KW, Stride: 1, Pad: p.KH - 1 - p.Pad}
		kk := p.KH * p.KW
		wb := smallScratch.get(p.CO * p.C * kk)
		wt := *wb
		for co := 0; co < p.CO; co++ {
			for c := 0; c < p.C; c++ {
				src := w[(co*p.C+c)*kk : (co*p.C+c+1)*kk]
				dst := wt[(c*p.CO+co)*kk : (c*p.CO+co+1)*kk]
				for i := range dst {
					dst[i] = src[kk-1-i]
				}
			}
		}
		Conv2dForward(dx, dy, wt, nil, q)
		smallScratch.put(wb)
		return
	}
	a := convArgs{y: dy, x: dx, w: w, p: p}
	if batchParallel(p.N) {
		convBwdDLoop.For(a, p.N, 1)
		return
	}
	var cb *[]float32
	if !p.pointwise() {
		cb = colScratch.get(p.C * p.KH * p.KW * p.OH() * p.OW())
		a.col = *cb
	}
	for n := 0; n < p.N; n++ {
		convBwdDataGemm(&a, n, a.col)
		if cb != nil {
			a.n = n
			col2imLoop.For(a, p.C, grainFor(1<<14, p.KH*p.KW*p.OH()*p.OW()))
		}
	}
	if cb != nil {
		colScratch.put(cb)
	}
}

// convBwdDataGemm computes dcol = w^T × dy_n into col, or directly into
// dx_n for pointwise convolutions.
func convBwdDataGemm(a *convArgs, n int, col []float32) {
	p := &a.p
	ohw := p.OH() * p.OW()
	ckk := p.C * p.KH * p.KW
	dyn := a.y[n*p.CO*ohw : (n+1)*p.CO*ohw]
	if p.pointwise() {
		col = a.x[n*p.C*ohw : (n+1)*p.C*ohw]
	}
	Sgemm(true, false, ckk, ohw, p.CO, 1, a.w, ckk, dyn, ohw, 0, col, ohw)
}

func convBwdDataBody(a *convArgs, _, lo, hi int) {
	p := &a.p
	var cb *[]float32
	var col []float32
	if !p.pointwise() {
		cb = colScratch.get(p.C * p.KH * p.KW * p.OH() * p.OW())
		col = *cb
	}
	chw := p.C * p.H * p.W
	for n := lo; n < hi; n++ {
		convBwdDataGemm(a, n, col)
		if cb != nil {
			col2im(a.x[n*chw:(n+1)*chw], col, p, 0, p.C)
		}
	}
	if cb != nil {
		colScratch.put(cb)
	}
}

// Conv2dBackwardFilter computes the gradients of Conv2dForward with respect
// to its filter and bias: dy is [N, CO, OH, OW], x is [N, C, H, W], dw
// ([CO, C, KH, KW]) is overwritten, and db ([CO]) is overwritten unless nil.
// Per image, dw^T += col_n × dy_n^T (Sgemm with M = C*KH*KW, N = CO, which
// reads col in place rather than packing it). When the batch has at least
// parallel.Workers() images, each of a fixed number of chunks of images
// accumulates a private partial, and the partials are summed in chunk order,
// so results are reproducible for a given worker count.
func Conv2dBackwardFilter(dw, db, dy, x []float32, p ConvParams) {
	p.check("Conv2dBackwardFilter", x, dy, dw)
	if db != nil && len(db) < p.CO {
		panic("kernels: Conv2dBackwardFilter: db too short")
	}
	ckk := p.C * p.KH * p.KW
	a := convArgs{y: dy, x: x, dw: dw[:p.CO*ckk], p: p}
	if db != nil {
		a.db = db[:p.CO]
	}
	if p.N == 0 {
		clear(a.dw)
		clear(a.db)
		return
	}
	// Partial k is [ckk*CO] (dw transposed) followed by [CO] (db).
	plen := ckk*p.CO + p.CO
	// The chunked path is taken whenever the batch is large enough, even
	// when nested (it then runs serially), so the summation order depends
	// only on N and the worker count.
	nch := 1
	if w := parallel.Workers(); w > 1 && p.N >= w {
		nch = numChunks(p.N, 1)
	}
	a.nch = nch
	pb := smallScratch.get(nch * plen)
	a.part = *pb
	if nch > 1 {
		convBwdFLoop.For(a, nch, 1)
	} else {
		// Image by image; im2col and the GEMM parallelise internally.
		var cb *[]float32
		if !p.pointwise() {
			cb = colScratch.get(ckk * p.OH() * p.OW())
			a.col = *cb
		}
		for n := 0; n < p.N; n++ {
			if cb != nil {
				a.n = n
				im2colLoop.For(a, p.C, grainFor(1<<14, p.KH*p.KW*p.OH()*p.OW()))
			}
			convBwdFilterImage(&a, n, a.col, a.part[:plen], n > 0)
		}
		if cb != nil {
			colScratch.put(cb)
		}
	}
	// dw[co, k] = sum over chunks of part[k, co], in chunk order.
	co := p.CO
	for k := 0; k < ckk; k++ {
		for o := 0; o < co; o++ {
			s := a.part[k*co+o]
			for ch := 1; ch < nch; ch++ {
				s += a.part[ch*plen+k*co+o]
			}
			a.dw[o*ckk+k] = s
		}
	}
	if a.db != nil {
		for o := 0; o < co; o++ {
			s := a.part[ckk*co+o]
			for ch := 1; ch < nch; ch++ {
				s += a.part[ch*plen+ckk*co+o]
			}
			a.db[o] = s
		}
	}
	smallScratch.put(pb)
}

// convBwdFilterImage adds (or, when !acc, writes) image n's contribution to
// the partial part: [C*KH*KW, CO] (dw transposed) then [CO] (db). col is the
// image's im2col matrix, already filled (unused for pointwise convolutions).
func convBwdFilterImage(a *convArgs, n int, col, part []float32, acc bool) {
	p := &a.p
	ohw := p.OH() * p.OW()
	ckk := p.C * p.KH * p.KW
	dyn := a.y[n*p.CO*ohw : (n+1)*p.CO*ohw]
	if p.pointwise() {
		col = a.x[n*p.C*ohw : (n+1)*p.C*ohw]
	}
	beta := float32(0)
	if acc {
		beta = 1
	}
	Sgemm(false, true, ckk, p.CO, ohw, 1, col, ohw, dyn, ohw, beta, part[:ckk*p.CO], p.CO)
	if a.db == nil {
		return
	}
	db := part[ckk*p.CO : ckk*p.CO+p.CO]
	for co := range db {
		r := dyn[co*ohw : (co+1)*ohw]
		var s0, s1, s2, s3 float32
		j := 0
		for ; j+4 <= len(r); j += 4 {
			s0 += r[j]
			s1 += r[j+1]
			s2 += r[j+2]
			s3 += r[j+3]
		}
		for ; j < len(r); j++ {
			s0 += r[j]
		}
		s := (s0 + s1) + (s2 + s3)
		if acc {
			db[co] += s
		} else {
			db[co] = s
		}
	}
}

func convBwdFilterBody(a *convArgs, _, klo, khi int) {
	p := &a.p
	ckk := p.C * p.KH * p.KW
	plen := ckk*p.CO + p.CO
	var cb *[]float32
	var col []float32
	if !p.pointwise() {
		cb = colScratch.get(ckk * p.OH() * p.OW())
		col = *cb
	}
	chw := p.C * p.H * p.W
	for k := klo; k < khi; k++ {
		part := a.part[k*plen : (k+1)*plen]
		lo, hi := chunkRange(p.N, a.nch, k)
		for n := lo; n < hi; n++ {
			if cb != nil {
				im2col(col, a.x[n*chw:(n+1)*chw], p, 0, p.C)
			}
			convBwdFilterImage(a, n, col, part, n > lo)
		}
	}
	if cb != nil {
		colScratch.put(cb)
	}
}
