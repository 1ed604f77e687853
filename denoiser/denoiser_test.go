package denoiser

import (
	"math"
	"testing"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// oracle predicts, for data x0 ≡ c (a constant image), the exact ε, x0 or v
// of the variance-preserving input x_t at timestep t.
type oracle struct {
	c    float32
	pred schedule.PredictionType
	s    *schedule.Schedule
}

func (o oracle) Visit(string, func(string, *autograd.Var)) {}
func (o oracle) Forward(g *autograd.Graph, x *autograd.Var, t []float32) *autograd.Var {
	out := tensor.New(x.Shape()...)
	per := x.Value.Numel() / len(t)
	for i, tv := range t {
		// ᾱ at a fractional t, interpolated in log σ like the adapter.
		lo := int(math.Floor(float64(tv)))
		hi := min(lo+1, o.s.T()-1)
		w := float64(tv) - float64(lo)
		ls := (1-w)*math.Log(o.s.Sigma(lo)) + w*math.Log(o.s.Sigma(hi))
		sig := math.Exp(ls)
		a := 1 / (1 + sig*sig)
		for j := i * per; j < (i+1)*per; j++ {
			xt := float64(x.Value.Data()[j])
			eps := (xt - math.Sqrt(a)*float64(o.c)) / math.Sqrt(1-a)
			switch o.pred {
			case schedule.Epsilon:
				out.Data()[j] = float32(eps)
			case schedule.Sample:
				out.Data()[j] = o.c
			case schedule.VPrediction:
				out.Data()[j] = float32(math.Sqrt(a)*eps - math.Sqrt(1-a)*float64(o.c))
			}
		}
	}
	return autograd.Const(out)
}

// Every parameterization, through the adapter, recovers x0 exactly for an
// oracle network, at integer and fractional timesteps.
func TestDiscreteRecoversX0(t *testing.T) {
	s, err := schedule.New("linear", 1000, 1e-4, 0.02, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, pred := range []schedule.PredictionType{schedule.Epsilon, schedule.Sample, schedule.VPrediction} {
		d, err := NewDiscrete(oracle{0.7, pred, s}, s, pred)
		if err != nil {
			t.Fatal(err)
		}
		for _, sigma := range []float64{d.SigmaMin(), 0.5, s.Sigma(500), 3.3, d.SigmaMax()} {
			x := tensor.FromSlice([]float32{0.7 + float32(sigma)*0.3, 0.7 - float32(sigma)*1.1}, 1, 2)
			x0, err := d.Denoise(x, []float64{sigma})
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range x0.Data() {
				if math.Abs(float64(v)-0.7) > 1e-4*(1+sigma) {
					t.Errorf("%s σ=%.3g: x̂0 = %v, want 0.7", pred, sigma, v)
				}
			}
			sc, _ := d.Score(x, []float64{sigma})
			if want := -0.3 / sigma; math.Abs(float64(sc.Data()[0])-want) > 1e-3*math.Abs(want)+1e-4 {
				t.Errorf("%s σ=%.3g: score %v, want −ε/σ = %v", pred, sigma, sc.Data()[0], want)
			}
		}
	}
}

func TestSigmaToT(t *testing.T) {
	s, _ := schedule.New("linear", 1000, 1e-4, 0.02, false)
	d, _ := NewDiscrete(oracle{}, s, schedule.Epsilon)
	for _, k := range []int{0, 1, 17, 500, 999} {
		if got := d.SigmaToT(s.Sigma(k)); math.Abs(got-float64(k)) > 1e-9 {
			t.Errorf("t(σ_%d) = %v", k, got)
		}
	}
	if d.SigmaToT(1e-9) != 0 || d.SigmaToT(1e9) != 999 {
		t.Error("out-of-range σ not clamped")
	}
	z, _ := schedule.New("linear", 1000, 1e-4, 0.02, true)
	if _, err := NewDiscrete(oracle{}, z, schedule.Epsilon); err == nil {
		t.Error("zero-terminal-SNR schedule: want an error")
	}
}
