package sde

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/tensor"
)

// TraceEstimator selects how LogLikelihood computes the divergence ∇·f̃ of
// the probability-flow drift f̃.
type TraceEstimator int

const (
	// Rademacher is the Hutchinson–Skilling estimator εᵀ(∂f̃/∂x)ε with
	// ε_i = ±1 (score_sde's default): unbiased, and exact when the
	// Jacobian is diagonal.
	Rademacher TraceEstimator = iota
	// Gaussian is the Hutchinson–Skilling estimator with ε ~ N(0, I).
	Gaussian
	// ExactTrace computes tr(∂f̃/∂x) with D vector–Jacobian products (D =
	// elements per sample), each with a one-hot vector applied to every
	// sample at once: exact for networks that treat samples independently
	// (no batch statistics), and D times the cost — for small D and checks.
	ExactTrace
)

// DataScale is how the data fed to LogLikelihood relates to 8-bit values,
// which fixes the bits/dim offset (score_sde's offset = 7 − inverse_scaler(−1)).
type DataScale int

const (
	// Centered data, x = 2·(k+u)/256 − 1 ∈ [−1, 1) for 8-bit values k
	// (score_sde's data.centered = True, inverse_scaler(x) = (x+1)/2):
	// each of the 256 bins has width 2/256 = 2⁻⁷, offset 7.
	Centered DataScale = iota
	// UnitInterval data, x = (k+u)/256 ∈ [0, 1) (inverse_scaler = identity):
	// bins of width 2⁻⁸, offset 8.
	UnitInterval
	// Continuous data: bits/dim of the density itself, offset 0.
	Continuous
)

// Offset returns the bits/dim offset of the scale: 7, 8 or 0.
func (d DataScale) Offset() float64 {
	switch d {
	case Centered:
		return 7
	case UnitInterval:
		return 8
	}
	return 0
}

// LikelihoodOptions configure LogLikelihood. The zero value is score_sde's
// get_likelihood_fn: Rademacher noise, rtol = atol = 1e-5, ε = 1e-5,
// centered data.
type LikelihoodOptions struct {
	// Eps is the start time ε of the integration (0: 1e-5).
	Eps float64
	// RTol and ATol are the RK45 tolerances (0: 1e-5).
	RTol, ATol float64
	// Trace selects the divergence estimator.
	Trace TraceEstimator
	// Draws is the number of independent Hutchinson vectors per sample
	// (0: 1). The batch is replicated Draws times and solved as one ODE;
	// LogP is the mean of the per-draw estimates (each one unbiased). It
	// is ignored by ExactTrace.
	Draws int
	// Noise draws the Hutchinson vectors (Rademacher: the signs of its
	// normal draws); nil means SeededNoise(0).
	Noise Noise
	// Data fixes the bits/dim offset.
	Data DataScale
	// MaxNFE bounds the solver's evaluations (0: 100000).
	MaxNFE int
}

// Likelihood is the result of LogLikelihood for a batch of B samples.
type Likelihood struct {
	// LogP is log p_ε(x) per sample, in nats (the density of the whole
	// sample): PriorLogP + DeltaLogP, averaged over the draws.
	LogP []float64
	// BPD is bits/dim per sample: −LogP/(D·ln 2) + Data.Offset(), D the
	// number of elements per sample.
	BPD []float64
	// PriorLogP is log p_T(z) and DeltaLogP = ∫_ε^T ∇·f̃(x(t), t) dt per
	// sample (means over the draws).
	PriorLogP, DeltaLogP []float64
	// LogPDraws[b][k] is draw k's estimate of log p_ε(x_b).
	LogPDraws [][]float64
	// Z is the latent code x(T) [B, ...] (independent of the draws).
	Z *tensor.Tensor
	// NFE is the number of ODE right-hand-side evaluations, each one
	// forward and one backward pass through the score (D of each for
	// ExactTrace).
	NFE int
}

// LogLikelihood computes log p_ε(x) for the batch x [B, ...] through the
// probability-flow ODE dx/dt = f̃(x, t) = f(x, t) − ½g(t)²·score(x, t)
// (score_sde's likelihood.py): it integrates the state [x, Δlogp] from
// t = ε to T with SolveRK45,
//
//	dx/dt = f̃(x, t),  dΔlogp/dt = ∇·f̃(x, t),
//
// and returns log p_ε(x) = log p_T(x(T)) + Δlogp(T) (the instantaneous
// change of variables of continuous normalizing flows). The divergence is
// the Hutchinson–Skilling estimate εᵀ∇x(f̃·ε): a vector–Jacobian product
// through score (an autograd.Input for x, Σ f̃⊙ε, Backward, then x.Grad·ε),
// with one ε per sample and draw kept fixed over the solve, as score_sde
// does; or the exact trace (o.Trace).
//
// Bits/dim follow score_sde: bpd = −log p_ε(x)/(D·ln 2) + offset, with
// offset = 7 − inverse_scaler(−1), i.e. 7 for data centered to [−1, 1)
// and 8 for data in [0, 1) (o.Data). For 8-bit data uniformly dequantized
// (Dequantize) each value's bin has volume 2⁻⁷ (centered), so by Jensen
// −log₂ P(k)/D ≤ E_u[bpd]: the reported bits/dim bound the discrete
// model's from above.
func LogLikelihood(s SDE, score DiffScore, x *tensor.Tensor, o LikelihoodOptions) (*Likelihood, error) {
	if s == nil || score == nil {
		return nil, errors.New("sde: LogLikelihood: nil SDE or score")
	}
	if x == nil || x.Rank() < 1 || x.Dim(0) < 1 {
		return nil, errors.New("sde: LogLikelihood: x must be a batch [B, ...] with B ≥ 1")
	}
	if o.Eps <= 0 {
		o.Eps = 1e-5
	}
	if o.Noise == nil {
		o.Noise = SeededNoise(0)
	}
	k := max(o.Draws, 1)
	if o.Trace == ExactTrace {
		k = 1
	}
	b := x.Dim(0)
	per := x.Numel() / b
	rows := b * k
	shape := append([]int{rows}, x.Shape()[1:]...)

	xd := x.ToHost()
	y0 := make([]float64, rows*per+rows)
	for r := 0; r < rows; r++ {
		src := xd[(r/k)*per : (r/k+1)*per]
		for j, v := range src {
			y0[r*per+j] = float64(v)
		}
	}
	var eps *tensor.Tensor
	switch o.Trace {
	case Rademacher, Gaussian:
		eps = o.Noise(shape)
		if !tensor.SameShape(eps.Shape(), shape) {
			return nil, fmt.Errorf("sde: LogLikelihood: noise shape %v, want %v", eps.Shape(), shape)
		}
		eps = tensor.FromSlice(eps.ToHost(), shape...)
		if o.Trace == Rademacher {
			ed := eps.Data()
			for i, v := range ed {
				if v < 0 {
					ed[i] = -1
				} else {
					ed[i] = 1
				}
			}
		}
	case ExactTrace:
	default:
		return nil, fmt.Errorf("sde: LogLikelihood: unknown trace estimator %d", o.Trace)
	}

	g := autograd.New(tensor.CPU)
	xt := tensor.New(shape...)
	xtd := xt.Data()
	probe := tensor.New(shape...)
	pd := probe.Data()
	// vjp runs one forward pass at (x(t), t) and back-propagates Σ f̃⊙v; it
	// writes the drift into drift (if non-nil) and returns ∇x(f̃·v).
	vjp := func(t []float64, v *tensor.Tensor, drift []float64) ([]float32, error) {
		defer g.Reset()
		var grad []float32
		err := catchErr(func() error {
			xv := autograd.Input(xt)
			d := ProbabilityFlowVar(s, score, g, xv, t)
			if drift != nil {
				for i, f := range d.Value.ToHost() {
					drift[i] = float64(f)
				}
			}
			loss := g.Sum(g.Mul(d, autograd.Const(v)))
			if !loss.RequiresGrad() {
				grad = make([]float32, len(xtd)) // f̃ does not depend on x
				return nil
			}
			if err := g.Backward(loss); err != nil {
				return err
			}
			grad = xv.Grad.ToHost()
			return nil
		})
		return grad, err
	}
	f := func(t float64, y, dy []float64) error {
		for i := range xtd {
			xtd[i] = float32(y[i])
		}
		tv := fillT(rows, t)
		div := dy[rows*per:]
		if o.Trace != ExactTrace {
			grad, err := vjp(tv, eps, dy[:rows*per])
			if err != nil {
				return err
			}
			ed := eps.Data()
			for r := 0; r < rows; r++ {
				var acc float64
				for j := r * per; j < (r+1)*per; j++ {
					acc += float64(grad[j]) * float64(ed[j])
				}
				div[r] = acc
			}
			return nil
		}
		clear(div)
		for j := 0; j < per; j++ {
			clear(pd)
			for r := 0; r < rows; r++ {
				pd[r*per+j] = 1
			}
			var drift []float64
			if j == 0 {
				drift = dy[:rows*per]
			}
			grad, err := vjp(tv, probe, drift)
			if err != nil {
				return err
			}
			for r := 0; r < rows; r++ {
				div[r] += float64(grad[r*per+j])
			}
		}
		return nil
	}
	res, err := SolveRK45(f, o.Eps, s.T(), y0, RK45Options{RTol: o.RTol, ATol: o.ATol, MaxNFE: o.MaxNFE})
	if err != nil {
		return nil, err
	}
	z := tensor.New(shape...)
	zd := z.Data()
	for i := range zd {
		zd[i] = float32(res.Y[i])
	}
	prior := s.PriorLogP(z)
	out := &Likelihood{
		LogP:      make([]float64, b),
		BPD:       make([]float64, b),
		PriorLogP: make([]float64, b),
		DeltaLogP: make([]float64, b),
		LogPDraws: make([][]float64, b),
		NFE:       res.NFE,
	}
	zb := tensor.New(x.Shape()...)
	zbd := zb.Data()
	for i := 0; i < b; i++ {
		out.LogPDraws[i] = make([]float64, k)
		copy(zbd[i*per:(i+1)*per], zd[i*k*per:(i*k+1)*per])
		for q := 0; q < k; q++ {
			r := i*k + q
			delta := res.Y[rows*per+r]
			out.LogPDraws[i][q] = prior[r] + delta
			out.PriorLogP[i] += prior[r] / float64(k)
			out.DeltaLogP[i] += delta / float64(k)
		}
		out.LogP[i] = out.PriorLogP[i] + out.DeltaLogP[i]
		out.BPD[i] = -out.LogP[i]/(float64(per)*math.Ln2) + o.Data.Offset()
	}
	out.Z = zb
	return out, nil
}

// Dequantize turns 8-bit values into centered continuous data for
// LogLikelihood with Centered: x = 2·(k + u)/256 − 1 ∈ [−1, 1) with
// u ~ U[0, 1) i.i.d. from rng (uniform dequantization, score_sde's
// (k + u)/256 followed by its centering scaler 2x − 1). pixels holds
// Numel(shape) values in row-major order.
func Dequantize(pixels []uint8, shape []int, rng *rand.Rand) (*tensor.Tensor, error) {
	if err := tensor.CheckShape(shape); err != nil {
		return nil, err
	}
	if tensor.Numel(shape) != len(pixels) {
		return nil, fmt.Errorf("sde: Dequantize: %d values for shape %v", len(pixels), shape)
	}
	t := tensor.New(shape...)
	d := t.Data()
	for i, p := range pixels {
		d[i] = float32(2*(float64(p)+rng.Float64())/256 - 1)
	}
	return t, nil
}
