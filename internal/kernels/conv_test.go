package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/diffuse-go/diffuse/internal/parallel"
)

// refConv is the naive direct convolution in float64 (7 nested loops).
func refConv(x, w, b []float64, p ConvParams) []float64 {
	OH, OW := p.OH(), p.OW()
	y := make([]float64, p.N*p.CO*OH*OW)
	for n := 0; n < p.N; n++ {
		for co := 0; co < p.CO; co++ {
			for oh := 0; oh < OH; oh++ {
				for ow := 0; ow < OW; ow++ {
					var s float64
					if b != nil {
						s = b[co]
					}
					for c := 0; c < p.C; c++ {
						for kh := 0; kh < p.KH; kh++ {
							for kw := 0; kw < p.KW; kw++ {
								ih := oh*p.Stride - p.Pad + kh
								iw := ow*p.Stride - p.Pad + kw
								if ih < 0 || ih >= p.H || iw < 0 || iw >= p.W {
									continue
								}
								s += x[((n*p.C+c)*p.H+ih)*p.W+iw] * w[((co*p.C+c)*p.KH+kh)*p.KW+kw]
							}
						}
					}
					y[((n*p.CO+co)*OH+oh)*OW+ow] = s
				}
			}
		}
	}
	return y
}

// refConvGrads scatters each output gradient back along the same index map
// as refConv: dx[x index] += dy*w, dw[w index] += dy*x, db[co] += dy.
func refConvGrads(dy, x, w []float64, p ConvParams) (dx, dw, db []float64) {
	OH, OW := p.OH(), p.OW()
	dx = make([]float64, len(x))
	dw = make([]float64, len(w))
	db = make([]float64, p.CO)
	for n := 0; n < p.N; n++ {
		for co := 0; co < p.CO; co++ {
			for oh := 0; oh < OH; oh++ {
				for ow := 0; ow < OW; ow++ {
					g := dy[((n*p.CO+co)*OH+oh)*OW+ow]
					db[co] += g
					for c := 0; c < p.C; c++ {
						for kh := 0; kh < p.KH; kh++ {
							for kw := 0; kw < p.KW; kw++ {
								ih := oh*p.Stride - p.Pad + kh
								iw := ow*p.Stride - p.Pad + kw
								if ih < 0 || ih >= p.H || iw < 0 || iw >= p.W {
									continue
								}
								xi := ((n*p.C+c)*p.H+ih)*p.W + iw
								wi := ((co*p.C+c)*p.KH+kh)*p.KW + kw
								dx[xi] += g * w[wi]
								dw[wi] += g * x[xi]
							}
						}
					}
				}
			}
		}
	}
	return dx, dw, db
}

func convCases() []ConvParams {
	cs := []ConvParams{
		{N: 1, C: 1, H: 5, W: 5, CO: 1, KH: 3, KW: 3, Stride: 1, Pad: 1},
		{N: 1, C: 3, H: 7, W: 6, CO: 4, KH: 3, KW: 3, Stride: 2, Pad: 1},
		{N: 2, C: 2, H: 6, W: 7, CO: 3, KH: 5, KW: 5, Stride: 1, Pad: 2},
		{N: 3, C: 4, H: 5, W: 5, CO: 2, KH: 1, KW: 1, Stride: 1, Pad: 0},
		{N: 5, C: 3, H: 8, W: 9, CO: 5, KH: 3, KW: 3, Stride: 2, Pad: 0},
		{N: 2, C: 3, H: 5, W: 5, CO: 2, KH: 1, KW: 1, Stride: 2, Pad: 0},
		{N: 3, C: 2, H: 4, W: 3, CO: 3, KH: 1, KW: 1, Stride: 1, Pad: 1},
		{N: 3, C: 2, H: 6, W: 6, CO: 3, KH: 2, KW: 2, Stride: 2, Pad: 0},
		{N: 4, C: 2, H: 7, W: 5, CO: 3, KH: 3, KW: 1, Stride: 3, Pad: 1},
		{N: 1, C: 2, H: 3, W: 3, CO: 2, KH: 5, KW: 5, Stride: 1, Pad: 2},
		{N: 3, C: 2, H: 2, W: 2, CO: 2, KH: 3, KW: 3, Stride: 1, Pad: 2},
		{N: 5, C: 6, H: 9, W: 9, CO: 4, KH: 3, KW: 3, Stride: 1, Pad: 1},
		{N: 1, C: 8, H: 14, W: 14, CO: 6, KH: 3, KW: 3, Stride: 2, Pad: 1},
		{N: 7, C: 5, H: 7, W: 7, CO: 9, KH: 1, KW: 1, Stride: 1, Pad: 0},
		{N: 1, C: 5, H: 7, W: 7, CO: 9, KH: 1, KW: 1, Stride: 1, Pad: 0},
		// Stride 1 with OW == W but OH != H (flat im2col path, no full
		// centre tap).
		{N: 2, C: 2, H: 4, W: 5, CO: 2, KH: 1, KW: 3, Stride: 1, Pad: 1},
		{N: 3, C: 2, H: 6, W: 4, CO: 3, KH: 5, KW: 3, Stride: 1, Pad: 1},
		{N: 2, C: 3, H: 1, W: 1, CO: 2, KH: 3, KW: 3, Stride: 1, Pad: 1},
	}
	if !testing.Short() {
		cs = append(cs,
			ConvParams{N: 4, C: 16, H: 14, W: 14, CO: 8, KH: 3, KW: 3, Stride: 1, Pad: 1},
			ConvParams{N: 1, C: 16, H: 14, W: 14, CO: 8, KH: 3, KW: 3, Stride: 1, Pad: 1},
		)
	}
	return cs
}

func TestConv2d(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, p := range convCases() {
		name := fmt.Sprintf("%+v", p)
		x := randF32(r, p.N*p.C*p.H*p.W, 1)
		w := randF32(r, p.CO*p.C*p.KH*p.KW, 1)
		b := randF32(r, p.CO, 1)
		ylen := p.N * p.CO * p.OH() * p.OW()
		x64, w64, b64 := to64(x), to64(w), to64(b)

		y := randF32(r, ylen, 100) // garbage: must be overwritten
		Conv2dForward(y, x, w, b, p)
		assertClose(t, name+" fwd", y, refConv(x64, w64, b64, p), 1e-5)
		Conv2dForward(y, x, w, nil, p)
		assertClose(t, name+" fwd nobias", y, refConv(x64, w64, nil, p), 1e-5)

		dy := randF32(r, ylen, 1)
		dy64 := to64(dy)
		rdx, rdw, rdb := refConvGrads(dy64, x64, w64, p)

		dx := randF32(r, len(x), 100)
		Conv2dBackwardData(dx, dy, w, p)
		assertClose(t, name+" dx", dx, rdx, 1e-5)

		dw := randF32(r, len(w), 100)
		db := randF32(r, p.CO, 100)
		Conv2dBackwardFilter(dw, db, dy, x, p)
		assertClose(t, name+" dw", dw, rdw, 1e-5)
		assertClose(t, name+" db", db, rdb, 1e-5)
		Conv2dBackwardFilter(dw, nil, dy, x, p)
		assertClose(t, name+" dw nodb", dw, rdw, 1e-5)

		// Finite differences of the float64 forward (which is linear, so
		// central differences are exact up to rounding): tolerance 1e-5.
		if len(x) <= 600 {
			fdx := fdGrad(x64, dy64, 0.5, func(v []float64) []float64 { return refConv(v, w64, b64, p) })
			assertClose(t, name+" dx vs FD", dx, fdx, 1e-5)
			fdw := fdGrad(w64, dy64, 0.5, func(v []float64) []float64 { return refConv(x64, v, b64, p) })
			assertClose(t, name+" dw vs FD", dw, fdw, 1e-5)
			fdb := fdGrad(b64, dy64, 0.5, func(v []float64) []float64 { return refConv(x64, w64, v, p) })
			assertClose(t, name+" db vs FD", db, fdb, 1e-5)
		}
	}
}

// TestConv2dBackwardFilterDeterministic checks that the filter gradient is
// bitwise reproducible across calls (the partial sums are reduced in a fixed
// order).
func TestConv2dBackwardFilterDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	p := ConvParams{N: 2*parallel.Workers() + 1, C: 4, H: 8, W: 8, CO: 4, KH: 3, KW: 3, Stride: 1, Pad: 1}
	x := randF32(r, p.N*p.C*p.H*p.W, 1)
	dy := randF32(r, p.N*p.CO*p.OH()*p.OW(), 1)
	dw0 := make([]float32, p.CO*p.C*9)
	db0 := make([]float32, p.CO)
	Conv2dBackwardFilter(dw0, db0, dy, x, p)
	for it := 0; it < 5; it++ {
		dw := make([]float32, len(dw0))
		db := make([]float32, len(db0))
		Conv2dBackwardFilter(dw, db, dy, x, p)
		for i := range dw {
			if dw[i] != dw0[i] {
				t.Fatalf("dw[%d] differs between runs: %v vs %v", i, dw[i], dw0[i])
			}
		}
		for i := range db {
			if db[i] != db0[i] {
				t.Fatalf("db[%d] differs between runs", i)
			}
		}
	}
	// Nested in a parallel loop, the same chunking is used.
	dw := make([]float32, len(dw0))
	db := make([]float32, len(db0))
	parallel.For(2, 1, func(_, lo, _ int) {
		if lo == 0 {
			Conv2dBackwardFilter(dw, db, dy, x, p)
		}
	})
	for i := range dw {
		if dw[i] != dw0[i] {
			t.Fatalf("nested: dw[%d] differs: %v vs %v", i, dw[i], dw0[i])
		}
	}
}

func TestValidRange(t *testing.T) {
	for s := 1; s <= 3; s++ {
		for pad := 0; pad <= 3; pad++ {
			for k := 0; k < 6; k++ {
				for w := 1; w < 8; w++ {
					for ow := 1; ow < 8; ow++ {
						lo, hi := validRange(k, s, pad, w, ow)
						for o := 0; o < ow; o++ {
							iw := o*s - pad + k
							in := iw >= 0 && iw < w
							if in != (o >= lo && o < hi) {
								t.Fatalf("validRange(k=%d,s=%d,pad=%d,w=%d,ow=%d) = [%d,%d), wrong at o=%d", k, s, pad, w, ow, lo, hi, o)
							}
						}
					}
				}
			}
		}
	}
}

// UNet-S shapes (batch 64).
var convBenchShapes = []struct {
	name string
	p    ConvParams
}{
	{"C32-32_28x28_3x3", ConvParams{N: 64, C: 32, H: 28, W: 28, CO: 32, KH: 3, KW: 3, Stride: 1, Pad: 1}},
	{"C96-32_28x28_3x3", ConvParams{N: 64, C: 96, H: 28, W: 28, CO: 32, KH: 3, KW: 3, Stride: 1, Pad: 1}},
	{"C64-64_14x14_3x3", ConvParams{N: 64, C: 64, H: 14, W: 14, CO: 64, KH: 3, KW: 3, Stride: 1, Pad: 1}},
	{"C32-32_28x28_3x3_s2", ConvParams{N: 64, C: 32, H: 28, W: 28, CO: 32, KH: 3, KW: 3, Stride: 2, Pad: 1}},
	{"C96-32_28x28_1x1", ConvParams{N: 64, C: 96, H: 28, W: 28, CO: 32, KH: 1, KW: 1, Stride: 1, Pad: 0}},
}

func BenchmarkConv2d(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, s := range convBenchShapes {
		p := s.p
		x := randF32(r, p.N*p.C*p.H*p.W, 1)
		w := randF32(r, p.CO*p.C*p.KH*p.KW, 1)
		bias := randF32(r, p.CO, 1)
		y := make([]float32, p.N*p.CO*p.OH()*p.OW())
		dx := make([]float32, len(x))
		dw := make([]float32, len(w))
		db := make([]float32, p.CO)
		flops := 2 * float64(p.N*p.CO*p.OH()*p.OW()*p.C*p.KH*p.KW)
		report := func(b *testing.B) {
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		}
		b.Run(s.name+"/fwd", func(b *testing.B) {
			for b.Loop() {
				Conv2dForward(y, x, w, bias, p)
			}
			report(b)
		})
		b.Run(s.name+"/fwd_nobias", func(b *testing.B) {
			for b.Loop() {
				Conv2dForward(y, x, w, nil, p)
			}
			report(b)
		})
		b.Run(s.name+"/bwd_data", func(b *testing.B) {
			for b.Loop() {
				Conv2dBackwardData(dx, y, w, p)
			}
			report(b)
		})
		b.Run(s.name+"/bwd_filter", func(b *testing.B) {
			for b.Loop() {
				Conv2dBackwardFilter(dw, db, y, x, p)
			}
			report(b)
		})
	}
}

// BenchmarkIm2col measures the lowering alone for the UNet-S shapes (one
// image, serial), to compare with the GEMM time.
func BenchmarkIm2col(b *testing.B) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, s := range convBenchShapes[:4] {
		p := s.p
		x := randF32(r, p.C*p.H*p.W, 1)
		col := make([]float32, p.C*p.KH*p.KW*p.OH()*p.OW())
		b.Run(s.name+"/im2col", func(b *testing.B) {
			b.SetBytes(int64(4 * len(col)))
			for b.Loop() {
				im2col(col, x, &p, 0, p.C)
			}
		})
		b.Run(s.name+"/col2im", func(b *testing.B) {
			b.SetBytes(int64(4 * len(col)))
			for b.Loop() {
				col2im(x, col, &p, 0, p.C)
			}
		})
	}
}
