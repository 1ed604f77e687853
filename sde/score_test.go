package sde

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/denoiser"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// discreteOracle is a DDPM network for data x0 ≡ c: at label l it returns
// the exact ε, x0 or v of x at step ⌊l⌋ of schedule s, and records labels.
type discreteOracle struct {
	c      float64
	pred   schedule.PredictionType
	s      *schedule.Schedule
	labels *[]float32
}

func (o discreteOracle) Visit(string, func(string, *autograd.Var)) {}
func (o discreteOracle) Forward(g *autograd.Graph, x *autograd.Var, t []float32) *autograd.Var {
	*o.labels = append((*o.labels)[:0], t...)
	out := tensor.New(x.Shape()...)
	per := x.Value.Numel() / len(t)
	for i, l := range t {
		a := o.s.AlphasCumprod[int(math.Floor(float64(l)))]
		for j := i * per; j < (i+1)*per; j++ {
			xv := float64(x.Value.Data()[j])
			eps := (xv - math.Sqrt(a)*o.c) / math.Sqrt(1-a)
			switch o.pred {
			case schedule.Epsilon:
				out.Data()[j] = float32(eps)
			case schedule.Sample:
				out.Data()[j] = float32(o.c)
			case schedule.VPrediction:
				out.Data()[j] = float32(math.Sqrt(a)*eps - math.Sqrt(1-a)*o.c)
			}
		}
	}
	return autograd.Const(out)
}

// DiscreteScore follows score_sde's get_score_fn for DDPM-trained VP models:
// the network sees x at the fractional label t·999 and the score is
// −ε̂/√(1−ᾱ_⌊t·999⌋); for the oracle this is the exact conditional score
// −(x − √ᾱ_i·c)/(1 − ᾱ_i), whatever the parameterization.
func TestDiscreteScore(t *testing.T) {
	sch, err := schedule.New("linear", 1000, 1e-4, 0.02, false)
	if err != nil {
		t.Fatal(err)
	}
	vp := DefaultVP()
	ab := vp.AlphasCumprod()
	for i := range ab {
		if math.Abs(ab[i]-sch.AlphasCumprod[i]) > 1e-12 {
			t.Fatalf("ᾱ_%d: SDE %g, linear schedule %g", i, ab[i], sch.AlphasCumprod[i])
		}
	}
	const c = 0.6
	ts := []float64{1e-3, 0.25 / 999, 0.3, 500.5 / 999, 0.999, 1}
	rng := rand.New(rand.NewPCG(1, 1))
	x := tensor.New(len(ts), 1, 2, 2)
	for i := range x.Data() {
		x.Data()[i] = float32(rng.NormFloat64())
	}
	for _, pred := range []schedule.PredictionType{schedule.Epsilon, schedule.Sample, schedule.VPrediction} {
		var labels []float32
		d, err := denoiser.NewDiscrete(discreteOracle{c, pred, sch, &labels}, sch, pred)
		if err != nil {
			t.Fatal(err)
		}
		score, err := DiscreteScore(d, vp)
		if err != nil {
			t.Fatal(err)
		}
		out, err := score(x, ts)
		if err != nil {
			t.Fatal(err)
		}
		var worst float64
		for b, tt := range ts {
			if want := float32(tt * 999); labels[b] != want {
				t.Errorf("%s: label %g for t=%g, want %g", pred, labels[b], tt, want)
			}
			a := ab[int(math.Floor(tt*999))]
			for j := b * 4; j < (b+1)*4; j++ {
				want := -(float64(x.Data()[j]) - math.Sqrt(a)*c) / (1 - a)
				worst = math.Max(worst, math.Abs(float64(out.Data()[j])-want)/math.Max(1, math.Abs(want)))
			}
		}
		t.Logf("%s: worst relative score error %.2e", pred, worst)
		if worst > 2e-4 {
			t.Errorf("%s: score off by %g", pred, worst)
		}
	}
	// Mismatched schedules and step counts are refused.
	cos, _ := schedule.New("cosine", 1000, 0, 0, false)
	var labels []float32
	d, _ := denoiser.NewDiscrete(discreteOracle{c, schedule.Epsilon, cos, &labels}, cos, schedule.Epsilon)
	if _, err := DiscreteScore(d, vp); err == nil || !strings.Contains(err.Error(), "schedules do not match") {
		t.Errorf("cosine network on the linear VP SDE: err = %v", err)
	}
	d, _ = denoiser.NewDiscrete(discreteOracle{c, schedule.Epsilon, sch, &labels}, sch, schedule.Epsilon)
	if _, err := DiscreteScore(d, NewVP(0.1, 20, 500)); err == nil {
		t.Error("N = 500 SDE for a 1000-step network: want an error")
	}
	// A shape error inside the network comes back as an error.
	score, _ := DiscreteScore(d, vp)
	if _, err := score(x, ts[:2]); err == nil {
		t.Error("2 times for a batch of 6: want an error")
	}
}

// gaussEpsNet is a continuous-time ε-network for the Gaussian data g,
// built from autograd ops: at label l it recovers t (inverting the
// SDE's ContinuousLabels) and returns ε̂ = −std(t)·score(x, t).
type gaussEpsNet struct {
	g gauss
	s SDE
}

func (n gaussEpsNet) Visit(string, func(string, *autograd.Var)) {}
func (n gaussEpsNet) Forward(g *autograd.Graph, x *autograd.Var, t []float32) *autograd.Var {
	ts := make([]float64, len(t))
	for i, l := range t {
		if ve, ok := n.s.(*VE); ok {
			ts[i] = math.Log(float64(l)/ve.SigmaMin) / math.Log(ve.SigmaMax/ve.SigmaMin)
		} else {
			ts[i] = float64(l) / 999
		}
	}
	score := n.g.diff(n.s)(g, x, ts)
	std := make([]float64, len(ts))
	for i, tt := range ts {
		_, sd := n.s.Marginal(tt)
		std[i] = -sd
	}
	return scaleRowsVar(g, score, std)
}

// EpsNetworkDiff is score = −ε̂/std(t) at score_sde's continuous labels: for
// the Gaussian ε-network it reproduces the exact score, and the likelihood
// through it (VJPs through Network.Forward) matches the direct DiffScore's.
func TestEpsNetwork(t *testing.T) {
	data := isoGauss([]float64{0.5, -0.3, 0.2, 1}, 0.7)
	for name, s := range testSDEs() {
		net := gaussEpsNet{data, s}
		x := data.sample(6, 9)
		ts := []float64{1e-3, 0.1, 0.3, 0.5, 0.8, 1}
		got, err := EpsNetworkScore(net, s, nil)(x, ts)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := data.score(s)(x, ts)
		var worst float64
		for i := range got.Data() {
			w := float64(want.Data()[i])
			worst = math.Max(worst, math.Abs(float64(got.Data()[i])-w)/math.Max(1, math.Abs(w)))
		}
		if worst > 1e-4 {
			t.Errorf("%s: score off by %g", name, worst)
		}
		a, err := LogLikelihood(s, EpsNetworkDiff(net, s, nil), x, LikelihoodOptions{Trace: ExactTrace})
		if err != nil {
			t.Fatal(err)
		}
		b, err := LogLikelihood(s, data.diff(s), x, LikelihoodOptions{Trace: ExactTrace})
		if err != nil {
			t.Fatal(err)
		}
		for i := range a.LogP {
			if math.Abs(a.LogP[i]-b.LogP[i]) > 1e-3*math.Abs(b.LogP[i]) {
				t.Errorf("%s: log p through the ε-network %g, direct %g", name, a.LogP[i], b.LogP[i])
			}
		}
		t.Logf("%s: ε-network score error %.2e, log p %.5f vs %.5f", name, worst, a.LogP[0], b.LogP[0])
	}
}

// Dequantize maps 8-bit values into [−1, 1) bins of width 2/256.
func TestDequantize(t *testing.T) {
	px := []uint8{0, 1, 127, 128, 255, 255}
	x, err := Dequantize(px, []int{2, 3}, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range px {
		lo := 2*float64(p)/256 - 1
		if v := float64(x.Data()[i]); v < lo-1e-7 || v > lo+2.0/256+1e-7 {
			t.Errorf("value %d → %g, want in [%g, %g)", p, v, lo, lo+2.0/256)
		}
	}
	if _, err := Dequantize(px, []int{4}, rand.New(rand.NewPCG(1, 2))); err == nil {
		t.Error("6 values for shape [4]: want an error")
	}
	if Centered.Offset() != 7 || UnitInterval.Offset() != 8 || Continuous.Offset() != 0 {
		t.Error("bits/dim offsets")
	}
}
