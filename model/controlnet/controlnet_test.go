package controlnet_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/model/cond"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/train"
)

func randn(r *rand.Rand, scale float64, shape ...int) *tensor.Tensor {
	t := tensor.New(shape...)
	for i := range t.Data() {
		t.Data()[i] = float32(scale * r.NormFloat64())
	}
	return t
}

func setup(t *testing.T) (*unet.UNetS, *controlnet.ControlNet) {
	t.Helper()
	base := unet.NewUNetS(rand.New(rand.NewPCG(1, 2)))
	cn, err := controlnet.New(base, rand.New(rand.NewPCG(3, 4)))
	if err != nil {
		t.Fatal(err)
	}
	return base, cn
}

// perturbZero gives the zero convolutions small random weights (a
// ControlNet after some training).
func perturbZero(cn *controlnet.ControlNet, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 9))
	for _, c := range []*nn.Conv2d{cn.HintOut, cn.ZeroS1, cn.ZeroS2, cn.ZeroMid} {
		for _, v := range []*autograd.Var{c.W, c.B} {
			for i := range v.Value.Data() {
				v.Value.Data()[i] = float32(0.05 * r.NormFloat64())
			}
		}
	}
}

func maxDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}

// The copy holds the base's encoder weights (values, not shared storage);
// a fresh ControlNet leaves the base's output bit for bit unchanged.
func TestZeroInitIsExactlyTheBase(t *testing.T) {
	base, cn := setup(t)
	bp := map[string]*autograd.Var{}
	for _, p := range nn.Parameters(base) {
		bp[p.Name] = p.Var
	}
	copied := 0
	for _, p := range nn.Parameters(cn) {
		name, ok := strings.CutPrefix(p.Name, "copy.")
		if !ok {
			continue
		}
		b := bp[name]
		if b == nil || maxDiff(b.Value.Data(), p.Var.Value.Data()) != 0 || &b.Value.Data()[0] == &p.Var.Value.Data()[0] {
			t.Fatalf("copy parameter %s is not an independent copy of the base's", p.Name)
		}
		copied++
	}
	if copied < 40 {
		t.Fatalf("only %d copied parameters", copied)
	}
	r := rand.New(rand.NewPCG(5, 5))
	x, ctrl := randn(r, 1, 3, 1, 28, 28), randn(r, 1, 3, 1, 28, 28)
	ts := []float32{10, 500, 999}
	g := autograd.NoGrad(tensor.CPU)
	want := base.Forward(g, autograd.Const(x), ts).Value.ToHost()
	w, err := controlnet.NewControlled(base, cn, ctrl, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	w.SetBatch(0, 3)
	got := w.Forward(g, autograd.Const(x), ts).Value.ToHost()
	if d := maxDiff(want, got); d != 0 {
		t.Fatalf("fresh ControlNet changed the base's output by %g; zero convolutions must make it a no-op", d)
	}
	// Trained (non-zero) convolutions change it; scale 0 switches them off.
	perturbZero(cn, 1)
	if d := maxDiff(want, w.Forward(g, autograd.Const(x), ts).Value.ToHost()); d < 1e-3 {
		t.Fatalf("non-zero ControlNet changed the output by only %g", d)
	}
	w.Scale = 0
	if d := maxDiff(want, w.Forward(g, autograd.Const(x), ts).Value.ToHost()); d != 0 {
		t.Fatalf("scale 0 changed the base's output by %g", d)
	}
}

// Training gradients reach every ControlNet parameter and none of the
// frozen base's; at initialization only the zero convolutions get one (the
// paper's property: the first step moves only them); the gradient
// matches finite differences of the loss.
func TestGradientsReachOnlyTheControlNet(t *testing.T) {
	base, cn := setup(t)
	controlnet.Freeze(base)
	r := rand.New(rand.NewPCG(6, 6))
	x, ctrl, target := randn(r, 1, 2, 1, 28, 28), randn(r, 1, 2, 1, 28, 28), randn(r, 1, 2, 1, 28, 28)
	ts := []float32{100, 700}
	g := autograd.New(tensor.CPU)
	loss := func() *autograd.Var {
		res := cn.Forward(g, autograd.Const(x), ts, autograd.Const(ctrl))
		return g.MSE(base.ForwardCond(g, autograd.Const(x), ts, &cond.Cond{Residuals: res}), autograd.Const(target))
	}
	params := nn.Parameters(cn)
	grads := func() map[string]float64 {
		for _, p := range params {
			p.Var.ZeroGrad()
		}
		if err := g.Backward(loss()); err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, p := range params {
			if !p.Var.HasGrad() {
				continue
			}
			s := 0.0
			for _, v := range p.Var.Grad.Data() {
				s += float64(v) * float64(v)
			}
			out[p.Name] = math.Sqrt(s)
		}
		g.Reset()
		for _, p := range nn.Parameters(base) {
			if p.Var.RequiresGrad() || p.Var.HasGrad() {
				t.Fatalf("frozen base parameter %s takes a gradient", p.Name)
			}
		}
		return out
	}
	g0 := grads()
	for _, p := range params {
		zero := strings.HasPrefix(p.Name, "zero.") && strings.HasSuffix(p.Name, "weight") || p.Name == "zero.s1.bias" || p.Name == "zero.s2.bias" || p.Name == "zero.mid.bias"
		if zero && !(g0[p.Name] > 0) {
			t.Errorf("at init, zero convolution %s has no gradient", p.Name)
		}
		if !zero && g0[p.Name] != 0 {
			t.Errorf("at init, %s has gradient norm %g; only the output zero convolutions should", p.Name, g0[p.Name])
		}
	}
	perturbZero(cn, 2)
	g1 := grads()
	for _, p := range params {
		if !(g1[p.Name] > 0) {
			t.Errorf("trained ControlNet: parameter %s gets no gradient", p.Name)
		}
	}
	// Directional derivative along the normalized gradient plus a random
	// component (so every parameter moves), against central differences.
	for _, p := range params {
		p.Var.ZeroGrad()
	}
	if err := g.Backward(loss()); err != nil {
		t.Fatal(err)
	}
	g.Reset()
	dir := make([][]float32, len(params))
	norm := 0.0
	for i, p := range params {
		dir[i] = randn(r, 1e-3, p.Var.Value.Shape()...).Data()
		for j, v := range p.Var.Grad.Data() {
			dir[i][j] += v
		}
		for _, v := range dir[i] {
			norm += float64(v) * float64(v)
		}
	}
	analytic := 0.0
	for i, p := range params {
		for j, v := range p.Var.Grad.Data() {
			dir[i][j] /= float32(math.Sqrt(norm))
			analytic += float64(v) * float64(dir[i][j])
		}
	}
	eval := func(h float32) float64 {
		for i, p := range params {
			for j := range dir[i] {
				p.Var.Value.Data()[j] += h * dir[i][j]
			}
		}
		gg := autograd.NoGrad(tensor.CPU)
		res := cn.Forward(gg, autograd.Const(x), ts, autograd.Const(ctrl))
		l := float64(gg.MSE(base.ForwardCond(gg, autograd.Const(x), ts, &cond.Cond{Residuals: res}), autograd.Const(target)).Value.Item())
		for i, p := range params {
			for j := range dir[i] {
				p.Var.Value.Data()[j] -= h * dir[i][j]
			}
		}
		return l
	}
	const h = 1e-2
	numeric := (eval(h) - eval(-h)) / (2 * h)
	t.Logf("directional derivative: backward %g, finite differences %g", analytic, numeric)
	if math.Abs(numeric-analytic) > 0.01*math.Abs(analytic) {
		t.Fatalf("directional derivative: backward %g, finite differences %g", analytic, numeric)
	}
}

// Image i of a run gets control i whatever the batching: the pipeline's
// SetBatch selects the controls; a single control serves every image.
func TestControlledBatching(t *testing.T) {
	base, cn := setup(t)
	perturbZero(cn, 3)
	r := rand.New(rand.NewPCG(7, 7))
	const n = 5
	ctrl := randn(r, 1, n, 1, 28, 28)
	x := randn(r, 1, 3, 1, 28, 28)
	ts := []float32{50, 50, 50}
	g := autograd.NoGrad(tensor.CPU)
	w, err := controlnet.NewControlled(base, cn, ctrl, n, 1)
	if err != nil {
		t.Fatal(err)
	}
	var _ model.Network = w
	var _ model.Batched = w
	w.SetBatch(2, 3)
	got := w.Forward(g, autograd.Const(x), ts).Value.ToHost()
	sub := tensor.FromSlice(append([]float32(nil), ctrl.Data()[2*784:5*784]...), 3, 1, 28, 28)
	res := cn.Forward(g, autograd.Const(x), ts, autograd.Const(sub))
	want := base.ForwardCond(g, autograd.Const(x), ts, &cond.Cond{Residuals: res}).Value.ToHost()
	if d := maxDiff(want, got); d != 0 {
		t.Fatalf("SetBatch(2, 3) did not pick controls 2..4 (difference %g)", d)
	}
	w.SetBatch(3, 3)
	if err := autograd.Catch(func() { w.Forward(g, autograd.Const(x), ts) }); err == nil || !strings.Contains(err.Error(), "SetBatch") {
		t.Fatalf("images [3, 6) of a run of 5: error %v, want one naming SetBatch", err)
	}

	// Through the pipeline: batches of 2 and of 5 give the same images,
	// and one control for all equals that control repeated.
	cfg := train.DefaultConfig()
	gen := func(w *controlnet.Controlled, batch int) []float32 {
		s, err := pipeline.NewScheduler(cfg, pipeline.Sampler{Name: "ddim", Steps: 2})
		if err != nil {
			t.Fatal(err)
		}
		out, err := pipeline.Generate(w, cfg.Model, s, pipeline.Options{N: n, Batch: batch, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		return out.Data()
	}
	if d := maxDiff(gen(w, 2), gen(w, 5)); d > 1e-5 {
		t.Fatalf("batch 2 and batch 5 differ by %g", d)
	}
	one := tensor.FromSlice(append([]float32(nil), ctrl.Data()[:784]...), 1, 1, 28, 28)
	rep := tensor.New(n, 1, 28, 28)
	for i := 0; i < n; i++ {
		copy(rep.Data()[i*784:], one.Data())
	}
	w1, _ := controlnet.NewControlled(base, cn, one, n, 1)
	wr, _ := controlnet.NewControlled(base, cn, rep, n, 1)
	a, b := gen(w1, 2), gen(wr, 2)
	if d := maxDiff(a, b); d != 0 {
		t.Fatalf("one control for all differs from it repeated by %g", d)
	}
	if d := maxDiff(a, gen(w, 2)); d < 1e-4 {
		t.Fatalf("different controls gave the same images (difference %g)", d)
	}
}

func TestErrors(t *testing.T) {
	base, cn := setup(t)
	if _, err := controlnet.New(unet.NewClassUNetS(rand.New(rand.NewPCG(1, 1)), 10), rand.New(rand.NewPCG(1, 1))); err == nil || !strings.Contains(err.Error(), "class-conditional") {
		t.Fatalf("class-conditional base: error %v", err)
	}
	if _, err := controlnet.NewControlled(base, cn, tensor.New(3, 1, 28, 28), 4, 1); err == nil || !strings.Contains(err.Error(), "3 control images for 4") {
		t.Fatalf("3 controls for 4 samples: error %v", err)
	}
	if _, err := controlnet.NewControlled(base, cn, tensor.New(1, 1, 32, 32), 4, 1); err == nil || !strings.Contains(err.Error(), "[N, 1, 28, 28]") {
		t.Fatalf("32×32 control: error %v", err)
	}
	g := autograd.NoGrad(tensor.CPU)
	err := autograd.Catch(func() {
		cn.Forward(g, autograd.Const(tensor.New(2, 1, 28, 28)), []float32{1, 2}, autograd.Const(tensor.New(3, 1, 28, 28)))
	})
	if err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Fatalf("2 images with 3 controls: error %v", err)
	}
}
