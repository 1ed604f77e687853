package guidance

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/denoiser"
	"github.com/diffuse-go/diffuse/model/classifier"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

func randTensor(rng *rand.Rand, shape ...int) *tensor.Tensor {
	x := tensor.New(shape...)
	for i := range x.Data() {
		x.Data()[i] = float32(rng.NormFloat64())
	}
	return x
}

// tinyClassifier is a randomly initialized 3-class NoisyNet for 1×8×8
// images, with its head scaled up so log p is far from uniform.
func tinyClassifier(t *testing.T, seed uint64) *classifier.NoisyNet {
	t.Helper()
	cls, err := classifier.NewNoisy(rand.New(rand.NewPCG(seed, 1)), 1, [4]int{8, 8, 16, 16}, 3)
	if err != nil {
		t.Fatal(err)
	}
	tensor.CPU.Scale(cls.Head.W.Value, cls.Head.W.Value, 4)
	return cls
}

// convNet is a toy denoiser: a 3×3 convolution of x_t, ignoring t.
type convNet struct{ c *nn.Conv2d }

func (n *convNet) Visit(prefix string, fn func(string, *autograd.Var)) { n.c.Visit(prefix, fn) }
func (n *convNet) Forward(g *autograd.Graph, x *autograd.Var, t []float32) *autograd.Var {
	return n.c.Forward(g, x)
}

func linearSchedule(t *testing.T) *schedule.Schedule {
	t.Helper()
	s, err := schedule.New(schedule.Linear, 1000, 1e-4, 0.02, false)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// logProbs evaluates log p_τ(labels | x, t) without gradients.
func logProbs(t *testing.T, cls *classifier.NoisyNet, x *tensor.Tensor, ts []float32, labels []int, tau float64) []float64 {
	t.Helper()
	_, lp, err := LogProbGrad(cls, x, ts, labels, tau)
	if err != nil {
		t.Fatal(err)
	}
	return lp
}

// The input gradient matches central differences of log p, at integer and
// fractional timesteps and two temperatures; log p is a log-probability.
func TestLogProbGradFiniteDifferences(t *testing.T) {
	cls := tinyClassifier(t, 3)
	rng := rand.New(rand.NewPCG(7, 7))
	x := randTensor(rng, 3, 1, 8, 8)
	ts := []float32{0, 123.5, 999}
	labels := []int{1, 0, 2}
	for _, tau := range []float64{1, 0.5} {
		grad, lp, err := LogProbGrad(cls, x, ts, labels, tau)
		if err != nil {
			t.Fatal(err)
		}
		// Σ_y p(y) = 1.
		for i := range labels {
			var z float64
			for y := 0; y < 3; y++ {
				row := []int{0, 0, 0}
				row[i] = y
				z += math.Exp(logProbs(t, cls, x, ts, row, tau)[i])
			}
			if math.Abs(z-1) > 1e-5 || lp[i] > 0 {
				t.Fatalf("τ=%g image %d: Σ_y p = %v, log p = %v", tau, i, z, lp[i])
			}
		}
		// Directional derivatives along random directions, per image.
		const h = 1e-2
		for k := 0; k < 3; k++ {
			v := randTensor(rng, 3, 1, 8, 8)
			plus, minus := tensor.New(3, 1, 8, 8), tensor.New(3, 1, 8, 8)
			for j := range v.Data() {
				plus.Data()[j] = x.Data()[j] + h*v.Data()[j]
				minus.Data()[j] = x.Data()[j] - h*v.Data()[j]
			}
			lpP, lpM := logProbs(t, cls, plus, ts, labels, tau), logProbs(t, cls, minus, ts, labels, tau)
			for i := 0; i < 3; i++ {
				fd := (lpP[i] - lpM[i]) / (2 * h)
				var an float64
				for j := i * 64; j < (i+1)*64; j++ {
					an += float64(grad.Data()[j]) * float64(v.Data()[j])
				}
				if math.Abs(fd-an) > 2e-3+2e-2*math.Abs(an) {
					t.Errorf("τ=%g image %d direction %d: analytic %.6f, finite differences %.6f", tau, i, k, an, fd)
				}
			}
		}
		// A few single coordinates.
		for _, j := range []int{5, 70, 150} {
			p, m := tensor.New(3, 1, 8, 8), tensor.New(3, 1, 8, 8)
			copy(p.Data(), x.Data())
			copy(m.Data(), x.Data())
			p.Data()[j] += h
			m.Data()[j] -= h
			i := j / 64
			fd := (logProbs(t, cls, p, ts, labels, tau)[i] - logProbs(t, cls, m, ts, labels, tau)[i]) / (2 * h)
			if an := float64(grad.Data()[j]); math.Abs(fd-an) > 2e-3+2e-2*math.Abs(an) {
				t.Errorf("τ=%g ∂log p/∂x[%d]: analytic %.6f, finite differences %.6f", tau, j, an, fd)
			}
		}
	}
	// The frozen view leaves the classifier's own gradients alone.
	for _, p := range nn.Parameters(cls) {
		if p.Var.HasGrad() {
			t.Fatalf("parameter %s got a gradient from LogProbGrad", p.Name)
		}
	}
	if _, _, err := LogProbGrad(cls, x, ts, labels[:2], 1); err == nil {
		t.Error("2 labels for 3 images: want an error")
	}
	if _, _, err := LogProbGrad(cls, x, ts, labels, 0); err == nil {
		t.Error("temperature 0: want an error")
	}
}

// With s = 0 the wrapper returns the base network's output itself.
func TestScaleZeroIsBase(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	net := &convNet{nn.NewConv2d(rng, 1, 1, 3, 1, 1)}
	cg, err := NewClassifierGuided(net, tinyClassifier(t, 1), linearSchedule(t), schedule.Epsilon, ClassifierOptions{Scale: 0, Labels: []int{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	x := randTensor(rng, 2, 1, 8, 8)
	g := autograd.NoGrad(tensor.CPU)
	want := net.Forward(g, autograd.Const(x), []float32{10, 500}).Value.ToHost()
	got := cg.Forward(g, autograd.Const(x), []float32{10, 500}).Value.ToHost()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("element %d: guided %v, base %v", i, got[i], want[i])
		}
	}
	if len(nn.Parameters(cg)) != 2 {
		t.Errorf("the wrapper should expose the base network's 2 parameters, has %d", len(nn.Parameters(cg)))
	}
}

// For every prediction type the guided output implies
// ε̂ = ε − s·√(1−ᾱ_t)·∇ log p (schedule.Split reads ε̂ off the output).
func TestGuidanceShiftPerPredictionType(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	sched := linearSchedule(t)
	cls := tinyClassifier(t, 5)
	net := &convNet{nn.NewConv2d(rng, 1, 1, 3, 1, 1)}
	x := randTensor(rng, 2, 1, 8, 8)
	ts := []int{100, 700}
	tf := []float32{100, 700}
	labels := []int{2, 0}
	const s, tau = 3.0, 0.7
	grad, _, err := LogProbGrad(cls, x, tf, labels, tau)
	if err != nil {
		t.Fatal(err)
	}
	g := autograd.NoGrad(tensor.CPU)
	for _, pred := range []schedule.PredictionType{schedule.Epsilon, schedule.Sample, schedule.VPrediction} {
		cg, err := NewClassifierGuided(net, cls, sched, pred, ClassifierOptions{Scale: s, Temperature: tau, Labels: labels})
		if err != nil {
			t.Fatal(err)
		}
		base := net.Forward(g, autograd.Const(x), tf).Value
		guided := cg.Forward(g, autograd.Const(x), tf).Value
		eBase, eGuided := tensor.New(2, 1, 8, 8), tensor.New(2, 1, 8, 8)
		if err := sched.Split(pred, base, x, ts, nil, eBase); err != nil {
			t.Fatal(err)
		}
		if err := sched.Split(pred, guided, x, ts, nil, eGuided); err != nil {
			t.Fatal(err)
		}
		for j := range eBase.Data() {
			i := j / 64
			want := float64(eBase.Data()[j]) - s*math.Sqrt(1-sched.AlphasCumprod[ts[i]])*float64(grad.Data()[j])
			if d := math.Abs(float64(eGuided.Data()[j]) - want); d > 1e-4*(1+math.Abs(want)) {
				t.Fatalf("%s element %d: ε̂ %v, want %v", pred, j, eGuided.Data()[j], want)
			}
		}
		g.Reset()
	}
}

// Guidance moves x̂0 = (x_t − √(1−ᾱ) ε̂)/√ᾱ towards higher log p of the
// target class: a small step of x_t along the guided change of x̂0 raises
// log p(y | x_t, t) for every image, and the change grows with s.
func TestGuidedX0RaisesLogP(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	sched := linearSchedule(t)
	cls := tinyClassifier(t, 11)
	net := &convNet{nn.NewConv2d(rng, 1, 1, 3, 1, 1)}
	x := randTensor(rng, 4, 1, 8, 8)
	ts := []int{50, 300, 600, 900}
	tf := []float32{50, 300, 600, 900}
	labels := []int{0, 1, 2, 1}
	g := autograd.NoGrad(tensor.CPU)
	x0 := func(s float64) *tensor.Tensor {
		cg, err := NewClassifierGuided(net, cls, sched, schedule.Epsilon, ClassifierOptions{Scale: s, Labels: labels})
		if err != nil {
			t.Fatal(err)
		}
		out := cg.Forward(g, autograd.Const(x), tf).Value
		res := tensor.New(4, 1, 8, 8)
		if err := sched.Split(schedule.Epsilon, out, x, ts, res, nil); err != nil {
			t.Fatal(err)
		}
		return res
	}
	base, guided, guided2 := x0(0), x0(1), x0(2)
	before := logProbs(t, cls, x, tf, labels, 1)
	step := tensor.New(4, 1, 8, 8)
	for i := 0; i < 4; i++ {
		var n1, n2 float64
		for j := i * 64; j < (i+1)*64; j++ {
			d1 := float64(guided.Data()[j] - base.Data()[j])
			d2 := float64(guided2.Data()[j] - base.Data()[j])
			n1 += d1 * d1
			n2 += d2 * d2
		}
		if !(n1 > 0) || math.Abs(math.Sqrt(n2)/math.Sqrt(n1)-2) > 1e-3 {
			t.Fatalf("image %d: |Δx̂0| at s=1 %g, at s=2 %g: want a nonzero change linear in s", i, math.Sqrt(n1), math.Sqrt(n2))
		}
		for j := i * 64; j < (i+1)*64; j++ {
			step.Data()[j] = x.Data()[j] + float32(1e-2/math.Sqrt(n1))*(guided.Data()[j]-base.Data()[j])
		}
	}
	after := logProbs(t, cls, step, tf, labels, 1)
	for i := range before {
		if !(after[i] > before[i]) {
			t.Errorf("image %d (t=%d, label %d): log p %.6f → %.6f, want an increase", i, ts[i], labels[i], before[i], after[i])
		}
	}
}

// SetBatch picks the batch's labels out of the run's; too few labels is an
// error, not a crash.
func TestSetBatchLabels(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 3))
	sched := linearSchedule(t)
	cls := tinyClassifier(t, 2)
	net := &convNet{nn.NewConv2d(rng, 1, 1, 3, 1, 1)}
	run, err := NewClassifierGuided(net, cls, sched, schedule.Epsilon, ClassifierOptions{Scale: 2, Labels: []int{0, 1, 2, 0}})
	if err != nil {
		t.Fatal(err)
	}
	alone, err := NewClassifierGuided(net, cls, sched, schedule.Epsilon, ClassifierOptions{Scale: 2, Labels: []int{2, 0}})
	if err != nil {
		t.Fatal(err)
	}
	x := randTensor(rng, 2, 1, 8, 8)
	tf := []float32{400, 400}
	g := autograd.NoGrad(tensor.CPU)
	run.SetBatch(2, 2)
	got := run.Forward(g, autograd.Const(x), tf).Value.ToHost()
	want := alone.Forward(g, autograd.Const(x), tf).Value.ToHost()
	run.SetBatch(0, 2)
	other := run.Forward(g, autograd.Const(x), tf).Value.ToHost()
	same := true
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("element %d: batch [2,4) of the run %v, same labels alone %v", i, got[i], want[i])
		}
		same = same && other[i] == want[i]
	}
	if same {
		t.Error("labels [0,1] gave the same output as labels [2,0]")
	}
	run.SetBatch(3, 2)
	if err := autograd.Catch(func() { run.Forward(g, autograd.Const(x), tf) }); err == nil {
		t.Error("images [3,5) with 4 labels: want an error")
	}
	for _, o := range []ClassifierOptions{{Scale: -1, Labels: []int{0}}, {Scale: 1}, {Scale: 1, Labels: []int{3}}, {Scale: 1, Temperature: -1, Labels: []int{0}}} {
		if _, err := NewClassifierGuided(net, cls, sched, schedule.Epsilon, o); err == nil {
			t.Errorf("options %+v: want an error", o)
		}
	}
}

// ᾱ at fractional t is the ᾱ of the σ that denoiser.Discrete maps to t.
func TestAlphaBarMatchesDiscrete(t *testing.T) {
	sched := linearSchedule(t)
	net := &convNet{nn.NewConv2d(rand.New(rand.NewPCG(0, 0)), 1, 1, 3, 1, 1)}
	cg, err := NewClassifierGuided(net, tinyClassifier(t, 0), sched, schedule.Epsilon, ClassifierOptions{Scale: 1, Labels: []int{0}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := denoiser.NewDiscrete(net, sched, schedule.Epsilon)
	if err != nil {
		t.Fatal(err)
	}
	for _, tv := range []float64{0, 1, 37.25, 500, 812.9, 999} {
		ab := cg.AlphaBar(tv)
		if tv == math.Floor(tv) && ab != sched.AlphasCumprod[int(tv)] {
			t.Errorf("t=%g: ᾱ %v, schedule %v", tv, ab, sched.AlphasCumprod[int(tv)])
		}
		if back := d.SigmaToT(math.Sqrt((1 - ab) / ab)); math.Abs(back-tv) > 1e-6 {
			t.Errorf("t=%g: ᾱ %v maps back to t=%v", tv, ab, back)
		}
	}
	if cg.AlphaBar(-3) != sched.AlphasCumprod[0] || cg.AlphaBar(5000) != sched.AlphasCumprod[999] {
		t.Error("t outside [0, T−1] should clamp")
	}
}

// With ClipDenoised the implied x̂0 is the clamped base x̂0 plus the
// guidance shift s·(1−ᾱ)/√ᾱ·∇ log p, left unclamped.
func TestClipDenoised(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	sched := linearSchedule(t)
	cls := tinyClassifier(t, 8)
	net := &convNet{nn.NewConv2d(rng, 1, 1, 3, 1, 1)}
	x := randTensor(rng, 2, 1, 8, 8)
	tensor.CPU.Scale(x, x, 2)
	ts, tf, labels := []int{100, 600}, []float32{100, 600}, []int{1, 2}
	const s = 4.0
	grad, _, err := LogProbGrad(cls, x, tf, labels, 1)
	if err != nil {
		t.Fatal(err)
	}
	g := autograd.NoGrad(tensor.CPU)
	for _, pred := range []schedule.PredictionType{schedule.Epsilon, schedule.VPrediction} {
		cg, err := NewClassifierGuided(net, cls, sched, pred, ClassifierOptions{Scale: s, Labels: labels, ClipDenoised: 1})
		if err != nil {
			t.Fatal(err)
		}
		base, guided := net.Forward(g, autograd.Const(x), tf).Value, cg.Forward(g, autograd.Const(x), tf).Value
		x0b, x0g := tensor.New(2, 1, 8, 8), tensor.New(2, 1, 8, 8)
		if err := sched.Split(pred, base, x, ts, x0b, nil); err != nil {
			t.Fatal(err)
		}
		if err := sched.Split(pred, guided, x, ts, x0g, nil); err != nil {
			t.Fatal(err)
		}
		clipped := 0
		for j, v := range x0b.Data() {
			ab := sched.AlphasCumprod[ts[j/64]]
			c := math.Max(-1, math.Min(1, float64(v)))
			if c != float64(v) {
				clipped++
			}
			want := c + s*(1-ab)/math.Sqrt(ab)*float64(grad.Data()[j])
			if d := math.Abs(float64(x0g.Data()[j]) - want); d > 1e-4*(1+math.Abs(want)) {
				t.Fatalf("%s element %d: guided x̂0 %v, want %v", pred, j, x0g.Data()[j], want)
			}
		}
		if clipped == 0 {
			t.Fatal("no base x̂0 outside [-1, 1]: the test checks nothing")
		}
		g.Reset()
	}
}
