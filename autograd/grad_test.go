package autograd

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

func randT(rng *rand.Rand, scale float64, shape ...int) *tensor.Tensor {
	t := tensor.New(shape...)
	for i := range t.Data() {
		t.Data()[i] = float32(rng.NormFloat64() * scale)
	}
	return t
}

// gradCheck compares the gradients Backward computes for L = Σ f(inputs)⊙R
// (R a fixed random tensor) with central finite differences of L, for up to
// 24 elements of every input.
func gradCheck(t *testing.T, f func(g *Graph, in []*Var) *Var, inputs ...*tensor.Tensor) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	g := New(tensor.CPU)
	vars := make([]*Var, len(inputs))
	for i, x := range inputs {
		vars[i] = Input(x)
	}
	out := f(g, vars)
	r := randT(rng, 1, out.Shape()...)
	loss := g.Sum(g.Mul(out, Const(r)))
	if err := g.Backward(loss); err != nil {
		t.Fatal(err)
	}
	lossAt := func() float64 {
		ng := NoGrad(tensor.CPU)
		in := make([]*Var, len(inputs))
		for i, x := range inputs {
			in[i] = Const(x)
		}
		o := f(ng, in)
		return tensor.CPU.Dot(o.Value, r)
	}
	for i, x := range inputs {
		if !vars[i].HasGrad() {
			t.Fatalf("input %d received no gradient", i)
		}
		d := x.Data()
		grad := vars[i].Grad.Data()
		idx := rng.Perm(len(d))
		if len(idx) > 24 {
			idx = idx[:24]
		}
		for _, j := range idx {
			const h = 1e-2
			old := d[j]
			d[j] = old + h
			lp := lossAt()
			d[j] = old - h
			lm := lossAt()
			d[j] = old
			num := (lp - lm) / (2 * h)
			ana := float64(grad[j])
			if math.Abs(num-ana) > 2e-2*math.Max(1, math.Abs(num)) {
				t.Errorf("input %d element %d: backward %.6g, finite difference %.6g", i, j, ana, num)
			}
		}
	}
}

func TestGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	r := func(shape ...int) *tensor.Tensor { return randT(rng, 1, shape...) }
	cases := []struct {
		name string
		f    func(g *Graph, in []*Var) *Var
		in   []*tensor.Tensor
	}{
		{"Linear", func(g *Graph, v []*Var) *Var { return g.Linear(v[0], v[1], v[2]) }, []*tensor.Tensor{r(3, 5), r(4, 5), r(4)}},
		{"Conv2d3x3", func(g *Graph, v []*Var) *Var { return g.Conv2d(v[0], v[1], v[2], 1, 1) }, []*tensor.Tensor{r(2, 3, 5, 6), r(4, 3, 3, 3), r(4)}},
		{"Conv2dStride2", func(g *Graph, v []*Var) *Var { return g.Conv2d(v[0], v[1], v[2], 2, 1) }, []*tensor.Tensor{r(2, 3, 7, 6), r(2, 3, 3, 3), r(2)}},
		{"Conv2d1x1", func(g *Graph, v []*Var) *Var { return g.Conv2d(v[0], v[1], v[2], 1, 0) }, []*tensor.Tensor{r(3, 4, 3, 3), r(5, 4, 1, 1), r(5)}},
		{"Conv2dNoBias", func(g *Graph, v []*Var) *Var { return g.Conv2d(v[0], v[1], nil, 1, 2) }, []*tensor.Tensor{r(1, 2, 4, 4), r(3, 2, 3, 3)}},
		{"GroupNorm", func(g *Graph, v []*Var) *Var { return g.GroupNorm(v[0], v[1], v[2], 2, 1e-5, false) }, []*tensor.Tensor{r(2, 4, 3, 3), r(4), r(4)}},
		{"GroupNormSiLU", func(g *Graph, v []*Var) *Var { return g.GroupNorm(v[0], v[1], v[2], 4, 1e-5, true) }, []*tensor.Tensor{r(2, 8, 2, 3), r(8), r(8)}},
		{"LayerNorm", func(g *Graph, v []*Var) *Var { return g.LayerNorm(v[0], v[1], v[2], 1e-5) }, []*tensor.Tensor{r(3, 2, 7), r(7), r(7)}},
		{"SiLU", func(g *Graph, v []*Var) *Var { return g.SiLU(v[0]) }, []*tensor.Tensor{r(4, 9)}},
		{"GELU", func(g *Graph, v []*Var) *Var { return g.GELU(v[0]) }, []*tensor.Tensor{r(4, 9)}},
		{"GELUTanh", func(g *Graph, v []*Var) *Var { return g.Act(tensor.GELUTanh, v[0]) }, []*tensor.Tensor{r(4, 9)}},
		{"Add", func(g *Graph, v []*Var) *Var { return g.Add(v[0], v[1]) }, []*tensor.Tensor{r(3, 4), r(3, 4)}},
		{"Sub", func(g *Graph, v []*Var) *Var { return g.Sub(v[0], v[1]) }, []*tensor.Tensor{r(3, 4), r(3, 4)}},
		{"Mul", func(g *Graph, v []*Var) *Var { return g.Mul(v[0], v[1]) }, []*tensor.Tensor{r(3, 4), r(3, 4)}},
		{"Scale", func(g *Graph, v []*Var) *Var { return g.Scale(v[0], -1.5) }, []*tensor.Tensor{r(3, 4)}},
		{"AddChannelsPerSample", func(g *Graph, v []*Var) *Var { return g.AddChannels(v[0], v[1]) }, []*tensor.Tensor{r(2, 3, 2, 2), r(2, 3)}},
		{"AddChannelsBias", func(g *Graph, v []*Var) *Var { return g.AddChannels(v[0], v[1]) }, []*tensor.Tensor{r(2, 3, 5), r(3)}},
		{"Reshape", func(g *Graph, v []*Var) *Var { return g.Mul(g.Reshape(v[0], 6, 2), g.Reshape(v[1], -1, 2)) }, []*tensor.Tensor{r(3, 4), r(2, 6)}},
		{"ConcatAxis1", func(g *Graph, v []*Var) *Var { return g.Concat(1, v[0], v[1]) }, []*tensor.Tensor{r(2, 3, 4), r(2, 1, 4)}},
		{"ConcatAxis2", func(g *Graph, v []*Var) *Var { return g.Concat(-1, v[0], v[1], v[0]) }, []*tensor.Tensor{r(2, 3, 2), r(2, 3, 5)}},
		{"Narrow", func(g *Graph, v []*Var) *Var { return g.Narrow(v[0], 1, 1, 2) }, []*tensor.Tensor{r(2, 4, 3)}},
		{"Upsample", func(g *Graph, v []*Var) *Var { return g.Upsample(v[0], 2) }, []*tensor.Tensor{r(2, 3, 3, 2)}},
		{"MatMulNN", func(g *Graph, v []*Var) *Var { return g.MatMul(v[0], v[1], false, false, 0.5) }, []*tensor.Tensor{r(2, 3, 4), r(2, 4, 5)}},
		{"MatMulTN", func(g *Graph, v []*Var) *Var { return g.MatMul(v[0], v[1], true, false, 1) }, []*tensor.Tensor{r(2, 4, 3), r(2, 4, 5)}},
		{"MatMulNT", func(g *Graph, v []*Var) *Var { return g.MatMul(v[0], v[1], false, true, 1) }, []*tensor.Tensor{r(3, 4), r(5, 4)}},
		{"MatMulTT", func(g *Graph, v []*Var) *Var { return g.MatMul(v[0], v[1], true, true, 2) }, []*tensor.Tensor{r(3, 4, 3), r(3, 5, 4)}},
		{"Softmax", func(g *Graph, v []*Var) *Var { return g.Softmax(v[0]) }, []*tensor.Tensor{r(3, 7)}},
		{"Sum", func(g *Graph, v []*Var) *Var { return g.Sum(v[0]) }, []*tensor.Tensor{r(3, 7)}},
		{"Mean", func(g *Graph, v []*Var) *Var { return g.Mean(v[0]) }, []*tensor.Tensor{r(3, 7)}},
		{"MSE", func(g *Graph, v []*Var) *Var { return g.MSE(v[0], v[1]) }, []*tensor.Tensor{r(3, 7), r(3, 7)}},
		{"WeightedMSE", func(g *Graph, v []*Var) *Var { return g.WeightedMSE(v[0], v[1], []float32{0.5, 2, 1}) }, []*tensor.Tensor{r(3, 2, 2), r(3, 2, 2)}},
		{"SpatialMean", func(g *Graph, v []*Var) *Var { return g.SpatialMean(v[0]) }, []*tensor.Tensor{r(2, 3, 2, 3)}},
		{"CrossEntropy", func(g *Graph, v []*Var) *Var { return g.CrossEntropy(v[0], []int{1, 0, 4}) }, []*tensor.Tensor{r(3, 5)}},
		{"Embedding", func(g *Graph, v []*Var) *Var { return g.Embedding(v[0], []int{2, 0, 2, 3}) }, []*tensor.Tensor{r(5, 3)}},
		{"UsedTwice", func(g *Graph, v []*Var) *Var { return g.Add(g.Mul(v[0], v[0]), g.SiLU(v[0])) }, []*tensor.Tensor{r(4, 3)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { gradCheck(t, c.f, c.in...) })
	}
}

// A tensor used twice gets the sum of both gradient contributions: for
// y = Σ (x⊙x + 3x), dy/dx = 2x + 3 exactly.
func TestGradientAccumulates(t *testing.T) {
	x := tensor.FromSlice([]float32{1, -2, 0.5}, 3)
	g := New(tensor.CPU)
	v := Input(x)
	y := g.Sum(g.Add(g.Mul(v, v), g.Scale(v, 3)))
	if err := g.Backward(y); err != nil {
		t.Fatal(err)
	}
	for i, want := range []float32{5, -1, 4} {
		if got := v.Grad.Data()[i]; got != want {
			t.Errorf("grad[%d] = %v, want %v", i, got, want)
		}
	}
	// A second backward without ZeroGrad accumulates; after ZeroGrad it overwrites.
	g.Reset()
	y = g.Sum(g.Scale(v, 2))
	if err := g.Backward(y); err != nil {
		t.Fatal(err)
	}
	if got := v.Grad.Data()[0]; got != 7 {
		t.Errorf("accumulated grad = %v, want 7", got)
	}
	v.ZeroGrad()
	g.Reset()
	y = g.Sum(g.Scale(v, 2))
	if err := g.Backward(y); err != nil {
		t.Fatal(err)
	}
	if got := v.Grad.Data()[0]; got != 2 {
		t.Errorf("grad after ZeroGrad = %v, want 2", got)
	}
}

func TestNoGradRecordsNothing(t *testing.T) {
	g := NoGrad(tensor.CPU)
	p := Param(tensor.FromSlice([]float32{1, 2}, 2))
	y := g.Sum(g.Mul(p, p))
	if len(g.nodes) != 0 || y.RequiresGrad() {
		t.Fatalf("no-grad graph recorded %d nodes", len(g.nodes))
	}
	if err := g.Backward(y); err == nil {
		t.Fatal("Backward on a no-grad graph should fail")
	}
}

func TestShapeErrorsAreCaught(t *testing.T) {
	g := New(tensor.CPU)
	err := Catch(func() { g.Add(Const(tensor.New(2, 3)), Const(tensor.New(3, 2))) })
	if err == nil {
		t.Fatal("want a shape error")
	}
	if _, ok := err.(*tensor.ShapeError); !ok {
		t.Fatalf("got %T, want *tensor.ShapeError", err)
	}
	err = Catch(func() { g.Conv2d(Const(tensor.New(1, 2, 4, 4)), Const(tensor.New(3, 5, 3, 3)), nil, 1, 1) })
	if err == nil {
		t.Fatal("conv with mismatched channels: want an error")
	}
}

// Steady-state training steps reuse the arena: after the first step, a
// second identical step allocates no new tensor storage.
func TestArenaReuse(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	x := randT(rng, 1, 4, 3, 8, 8)
	w := Param(randT(rng, 0.1, 5, 3, 3, 3))
	b := Param(randT(rng, 0.1, 5))
	g := New(tensor.CPU)
	step := func() {
		w.ZeroGrad()
		b.ZeroGrad()
		y := g.Mean(g.SiLU(g.Conv2d(Const(x), w, b, 1, 1)))
		if err := g.Backward(y); err != nil {
			t.Fatal(err)
		}
		g.Reset()
	}
	step()
	before := g.Bytes()
	step()
	step()
	if after := g.Bytes(); after != before {
		t.Errorf("arena grew from %d to %d bytes on identical steps", before, after)
	}
}
