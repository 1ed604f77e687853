package sde

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/denoiser"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// ScoreFunc is the score contract: for a batch x [B, ...] and times t (one
// per sample, len B) it returns ∇x log p_t(x), a tensor of x's shape in the
// units of 1/x. It must not modify x and must not keep it after returning
// (samplers reuse their buffers); the returned tensor belongs to the caller.
// Errors (e.g. shape mismatches) are returned, not panicked.
type ScoreFunc func(x *tensor.Tensor, t []float64) (*tensor.Tensor, error)

// DiffScore is a differentiable score: given x [B, ...] as a Var of graph g
// and times t (len B) it returns ∇x log p_t(x) with x's shape, built from
// autograd ops on g so that vector–Jacobian products through it reach x
// (needed by the likelihood's divergence). It may panic with a
// *tensor.ShapeError on operands that do not fit; callers of this package
// catch it.
type DiffScore func(g *autograd.Graph, x *autograd.Var, t []float64) *autograd.Var

// ScoreFromDiff evaluates a DiffScore on a no-grad graph, as a ScoreFunc.
// The returned function holds one graph and is not safe for concurrent use.
func ScoreFromDiff(ds DiffScore) ScoreFunc {
	g := autograd.NoGrad(tensor.CPU)
	return func(x *tensor.Tensor, t []float64) (*tensor.Tensor, error) {
		defer g.Reset()
		var out *tensor.Tensor
		err := autograd.Catch(func() {
			checkBatch("score", x, t)
			v := ds(g, autograd.Const(x), t)
			if !tensor.SameShape(v.Shape(), x.Shape()) {
				panic(&tensor.ShapeError{Op: "score", Msg: fmt.Sprintf("score shape %v differs from x %v", v.Shape(), x.Shape())})
			}
			out = tensor.FromSlice(v.Value.ToHost(), x.Shape()...)
		})
		if err != nil {
			return nil, err
		}
		return out, nil
	}
}

// callScore calls score and checks that the result has x's shape, returning
// it as a CPU tensor.
func callScore(score ScoreFunc, x *tensor.Tensor, t []float64) (*tensor.Tensor, error) {
	if score == nil {
		return nil, fmt.Errorf("sde: nil score function")
	}
	s, err := score(x, t)
	if err != nil {
		return nil, err
	}
	if s == nil || !tensor.SameShape(s.Shape(), x.Shape()) {
		var sh []int
		if s != nil {
			sh = s.Shape()
		}
		return nil, fmt.Errorf("sde: score returned shape %v for x %v", sh, x.Shape())
	}
	if s.Backend() != tensor.CPU {
		s = tensor.FromSlice(s.ToHost(), s.Shape()...)
	}
	return s, nil
}

// Labels maps a continuous time t ∈ [0, T] to the time input ("label") of a
// network's Forward.
type Labels func(t float64) float32

// ContinuousLabels returns score_sde's time labels for continuously trained
// networks (models/utils.py, get_score_fn with continuous=True): 999·t for
// the VP and sub-VP SDEs (the time embedding of a network trained on 1000
// DDPM steps), σ(t) for the VE SDE, and 999·t/T for any other SDE.
func ContinuousLabels(s SDE) Labels {
	if ve, ok := s.(*VE); ok {
		return func(t float64) float32 { return float32(ve.Sigma(t)) }
	}
	T := s.T()
	return func(t float64) float32 { return float32(999 * t / T) }
}

// linearOut returns the score A[b]·x[b] + Bc[b]·out[b] per sample as
// autograd ops (A may be nil for 0).
func linearOut(g *autograd.Graph, x, out *autograd.Var, A, Bc []float64) *autograd.Var {
	if !tensor.SameShape(out.Shape(), x.Shape()) {
		panic(&tensor.ShapeError{Op: "score", Msg: fmt.Sprintf("network output %v differs from input %v", out.Shape(), x.Shape())})
	}
	s := scaleRowsVar(g, out, Bc)
	if A != nil {
		s = g.Add(s, scaleRowsVar(g, x, A))
	}
	return s
}

// EpsNetworkDiff adapts a continuous-time ε-prediction network to a
// DiffScore for SDE s: the network sees x unchanged at labels(t) (nil
// means ContinuousLabels(s)) and the score is −ε̂/std(t), std from
// s.Marginal (score_sde's get_score_fn, continuous=True). For LogLikelihood
// the network's Forward must build its output from ops on g (as the
// model.Network implementations do), so that gradients reach x.
func EpsNetworkDiff(net model.Network, s SDE, labels Labels) DiffScore {
	if labels == nil {
		labels = ContinuousLabels(s)
	}
	return func(g *autograd.Graph, x *autograd.Var, t []float64) *autograd.Var {
		b, _ := checkBatch("EpsNetworkDiff", x.Value, t)
		lab := make([]float32, b)
		for i := range lab {
			lab[i] = labels(t[i])
		}
		Bc := perTime(t, func(t float64) float64 {
			_, std := s.Marginal(t)
			return -1 / std
		})
		return linearOut(g, x, net.Forward(g, x, lab), nil, Bc)
	}
}

// EpsNetworkScore is EpsNetworkDiff evaluated without gradients.
func EpsNetworkScore(net model.Network, s SDE, labels Labels) ScoreFunc {
	return ScoreFromDiff(EpsNetworkDiff(net, s, labels))
}

// DiscreteDiff adapts a network trained on the N discrete timesteps of a
// DDPM schedule (d, from denoiser.NewDiscrete) to a DiffScore for the VP
// SDE vp, exactly as score_sde's get_score_fn does for DDPM-trained VP
// models (continuous=False):
//
//	label = t·(N−1)            (fractional; the network sees x unchanged)
//	i     = ⌊label⌋            (labels.long())
//	std   = √(1 − ᾱ_i)         (sde.sqrt_1m_alphas_cumprod[i])
//	score = −ε̂/std
//
// where ᾱ is the VP SDE's N-step table (β_i = linspace(β_min/N, β_max/N, N)).
// The network's own schedule must be that table: it must have N = vp.N
// timesteps and σ_i = √((1−ᾱ_i)/ᾱ_i) within 0.1% of the SDE's (the linear
// schedule linspace(1e-4, 0.02, 1000) for the default VP SDE), or
// DiscreteDiff returns an error. x0- and v-prediction networks are
// converted to ε̂ with the same ᾱ_i: ε̂ = (x − √ᾱ_i·x̂0)/√(1−ᾱ_i) and
// ε̂ = √ᾱ_i·v̂ + √(1−ᾱ_i)·x. The result is differentiable in x when the
// network's Forward records its ops on g (see EpsNetworkDiff).
func DiscreteDiff(d *denoiser.Discrete, vp *VP) (DiffScore, error) {
	if d == nil || vp == nil {
		return nil, fmt.Errorf("sde: DiscreteDiff: nil denoiser or SDE")
	}
	if err := d.Pred.Validate(); err != nil {
		return nil, err
	}
	n := vp.N
	if len(d.LogSigmas) != n {
		return nil, fmt.Errorf("sde: DiscreteDiff: network trained on %d timesteps, VP SDE has N = %d", len(d.LogSigmas), n)
	}
	ab := vp.AlphasCumprod()
	for i, a := range ab {
		want := 0.5 * math.Log((1-a)/a)
		if math.Abs(d.LogSigmas[i]-want) > 1e-3 {
			return nil, fmt.Errorf("sde: DiscreteDiff: the network's σ_%d = %g differs from the VP SDE's %g (β_min=%g, β_max=%g, N=%d): schedules do not match",
				i, math.Exp(d.LogSigmas[i]), math.Exp(want), vp.BetaMin, vp.BetaMax, n)
		}
	}
	net, pred := d.Net, d.Pred
	return func(g *autograd.Graph, x *autograd.Var, t []float64) *autograd.Var {
		b, _ := checkBatch("DiscreteDiff", x.Value, t)
		lab := make([]float32, b)
		A := make([]float64, b)
		Bc := make([]float64, b)
		for k := range lab {
			l := t[k] * float64(n-1)
			lab[k] = float32(l)
			i := min(max(int(math.Floor(l)), 0), n-1)
			a := ab[i]
			std := math.Sqrt(1 - a)
			switch pred {
			case schedule.Epsilon:
				Bc[k] = -1 / std
			case schedule.Sample:
				A[k] = -1 / (std * std)
				Bc[k] = math.Sqrt(a) / (std * std)
			case schedule.VPrediction:
				A[k] = -1
				Bc[k] = -math.Sqrt(a) / std
			}
		}
		if pred == schedule.Epsilon {
			A = nil
		}
		return linearOut(g, x, net.Forward(g, x, lab), A, Bc)
	}, nil
}

// DiscreteScore is DiscreteDiff evaluated without gradients.
func DiscreteScore(d *denoiser.Discrete, vp *VP) (ScoreFunc, error) {
	ds, err := DiscreteDiff(d, vp)
	if err != nil {
		return nil, err
	}
	return ScoreFromDiff(ds), nil
}
