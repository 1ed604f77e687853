// Package sde holds the score-based SDEs of Song et al. 2021 ("Score-Based
// Generative Modeling through Stochastic Differential Equations"): the VP,
// sub-VP and VE SDEs, their reverse-time SDE and probability-flow ODE given a
// score function, predictor–corrector (PC) sampling, probability-flow ODE
// sampling with an adaptive Dormand–Prince RK45 solver, and exact
// log-likelihoods (in nats and bits/dim) through the probability-flow ODE
// with the Hutchinson trace estimator.
//
// Conventions follow yang-song/score_sde_pytorch (sde_lib.py, sampling.py,
// likelihood.py, models/utils.py):
//
//   - Time is continuous, t ∈ [ε, T] with T = 1; t = 0 is the data end.
//     The forward SDE is dx = f(x, t) dt + g(t) dw.
//   - A batch x has shape [B, ...] (B ≥ 1, any trailing dims, e.g. NCHW
//     images or [B, D] vectors); every time argument is one t per sample
//     (len B), as score_sde's vec_t.
//   - The perturbation kernel is p_0t(x_t | x_0) = N(m(t)·x_0, std(t)²·I);
//     Marginal returns (m(t), std(t)).
//   - N (SDE.Steps) is the number of discretization steps: the PC sampler
//     runs N steps at t_i = linspace(T, ε, N)_i, and the VP and VE SDEs
//     discretize with their N-step DDPM / SMLD tables.
//   - Scores are ∇x log p_t(x), in units of 1/x (ScoreFunc); for exact
//     likelihoods they must be differentiable (DiffScore).
//
// Arithmetic is float64 per element; tensors are float32 at the boundaries
// (the score function's inputs and outputs, sampler results). The ODE
// solvers keep their state in float64.
package sde

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/tensor"
)

// Noise is a source of standard normal noise: each call returns a fresh
// float32 CPU tensor of the given shape with i.i.d. N(0, 1) entries.
type Noise func(shape []int) *tensor.Tensor

// SeededNoise returns a reproducible Noise: standard normal values from a
// math/rand/v2 PCG generator seeded with seed, drawn in row-major order. Two
// sources with the same seed return the same sequence of tensors. A source
// is stateful and must not be shared by concurrent callers.
func SeededNoise(seed uint64) Noise {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	return func(shape []int) *tensor.Tensor {
		t := tensor.New(shape...)
		d := t.Data()
		for i := range d {
			d[i] = float32(rng.NormFloat64())
		}
		return t
	}
}

// SDE is a forward diffusion dx = f(x, t) dt + g(t) dw on t ∈ [0, T] with a
// Gaussian perturbation kernel and a tractable prior p_T.
type SDE interface {
	// T is the end time of the SDE (1 for VP, SubVP and VE).
	T() float64
	// Steps is N, the number of discretization steps of Discretize and of
	// the PC sampler.
	Steps() int
	// Drift returns f(x, t) for x [B, ...] and t (len B) as a new tensor
	// of x's shape.
	Drift(x *tensor.Tensor, t []float64) *tensor.Tensor
	// DriftVar is Drift built from autograd ops on graph g, so that
	// divergences of the probability-flow drift can be taken by
	// back-propagation (x [B, ...], t len B; result has x's shape).
	DriftVar(g *autograd.Graph, x *autograd.Var, t []float64) *autograd.Var
	// Diffusion returns g(t), the (scalar) diffusion coefficient.
	Diffusion(t float64) float64
	// Marginal returns the mean coefficient m(t) and the standard
	// deviation std(t) of the perturbation kernel
	// p_0t(x_t | x_0) = N(m(t)·x_0, std(t)²·I) (score_sde's marginal_prob).
	Marginal(t float64) (mean, std float64)
	// PriorSample draws x_T ~ p_T with the given shape [B, ...], using
	// noise for its standard normal draws.
	PriorSample(shape []int, noise Noise) *tensor.Tensor
	// PriorLogP returns log p_T(z) in nats for each sample of z [B, ...]
	// (len B; the density of the whole sample, summed over its dims).
	PriorLogP(z *tensor.Tensor) []float64
	// Discretize returns the forward update x_{i+1} = x_i + f_i + G_i·z_i
	// of the time step at t (one per sample) of length dt: f [B, ...] and
	// G (len B). The VP and VE SDEs use their own N-step DDPM and SMLD
	// discretizations at step index ⌊t·(N−1)/T⌋ and ignore dt; the others
	// use Euler–Maruyama, f = f(x, t)·dt, G = g(t)·√dt.
	Discretize(x *tensor.Tensor, t []float64, dt float64) (f *tensor.Tensor, G []float64)
}

// DiscreteAlpha is implemented by SDEs with a DDPM-style table α_i = 1 − β_i:
// the Langevin corrector scales its step by Alpha(t) (score_sde's
// LangevinCorrector; 1 for SDEs that do not implement it, like VE).
type DiscreteAlpha interface {
	// Alpha returns α_i = 1 − β_i at the step index i = ⌊t·(N−1)/T⌋.
	Alpha(t float64) float64
}

// checkBatch panics with a ShapeError if t does not have one entry per
// sample of x, and returns B and the number of elements per sample.
func checkBatch(op string, x *tensor.Tensor, t []float64) (b, per int) {
	if x == nil || x.Rank() < 1 || x.Dim(0) < 1 {
		panic(&tensor.ShapeError{Op: op, Msg: "x must be a batch [B, ...] with B ≥ 1"})
	}
	b = x.Dim(0)
	if len(t) != b {
		panic(&tensor.ShapeError{Op: op, Msg: fmt.Sprintf("%d times for a batch of %d", len(t), b)})
	}
	return b, x.Numel() / b
}

// scaleRows returns c[b]·x[b] for every sample b as a new tensor.
func scaleRows(x *tensor.Tensor, c []float64) *tensor.Tensor {
	b := x.Dim(0)
	per := x.Numel() / b
	out := tensor.New(x.Shape()...)
	xd, od := x.Data(), out.Data()
	for i := 0; i < b; i++ {
		ci := c[i]
		for j := i * per; j < (i+1)*per; j++ {
			od[j] = float32(ci * float64(xd[j]))
		}
	}
	return out
}

// rowConst returns a constant [B, ...] tensor from g's arena holding c[b] in
// every element of sample b (valid until g.Reset).
func rowConst(g *autograd.Graph, shape []int, c []float64) *autograd.Var {
	t := g.Arena().Get(shape...)
	d := t.Data()
	per := len(d) / shape[0]
	for i := 0; i < shape[0]; i++ {
		v := float32(c[i])
		for j := i * per; j < (i+1)*per; j++ {
			d[j] = v
		}
	}
	return autograd.Const(t)
}

// scaleRowsVar is c[b]·x[b] per sample as an autograd op.
func scaleRowsVar(g *autograd.Graph, x *autograd.Var, c []float64) *autograd.Var {
	return g.Mul(x, rowConst(g, x.Shape(), c))
}

// gaussianLogP is log N(z; 0, s²I) per sample of z [B, ...], in nats.
func gaussianLogP(z *tensor.Tensor, s float64) []float64 {
	b := z.Dim(0)
	per := z.Numel() / b
	zd := z.Data()
	out := make([]float64, b)
	c := -float64(per) / 2 * math.Log(2*math.Pi*s*s)
	for i := range out {
		var ss float64
		for _, v := range zd[i*per : (i+1)*per] {
			ss += float64(v) * float64(v)
		}
		out[i] = c - ss/(2*s*s)
	}
	return out
}

// perTime returns f(t[i]) for every i, evaluating f once per run of equal
// times (samplers pass B equal times).
func perTime(t []float64, f func(float64) float64) []float64 {
	out := make([]float64, len(t))
	for i, v := range t {
		if i > 0 && v == t[i-1] {
			out[i] = out[i-1]
			continue
		}
		out[i] = f(v)
	}
	return out
}

// stepIndex is score_sde's timestep = (t·(N−1)/T).long(), clamped to [0, N).
func stepIndex(t, T float64, n int) int {
	i := int(math.Floor(t * float64(n-1) / T))
	return min(max(i, 0), n-1)
}

// linearDrift is the drift f(x, t) = a(t)·x shared by the VP, sub-VP and VE
// SDEs (a = −β(t)/2, or 0 for VE).
type linearDrift func(t float64) float64

func (a linearDrift) drift(x *tensor.Tensor, t []float64) *tensor.Tensor {
	checkBatch("Drift", x, t)
	return scaleRows(x, perTime(t, a))
}

func (a linearDrift) driftVar(g *autograd.Graph, x *autograd.Var, t []float64) *autograd.Var {
	checkBatch("DriftVar", x.Value, t)
	return scaleRowsVar(g, x, perTime(t, a))
}

// VP is the variance-preserving SDE, the continuous limit of DDPM:
//
//	dx = −½β(t)·x dt + √β(t) dw,  β(t) = β_min + t·(β_max − β_min),
//
// with m(t) = exp(−¼t²(β_max−β_min) − ½tβ_min), std(t) = √(1 − m(t)²) and
// prior N(0, I). Its N-step discretization is DDPM's with
// β_i = linspace(β_min/N, β_max/N, N)_i: the defaults β_min = 0.1,
// β_max = 20, N = 1000 give DDPM's linear schedule linspace(1e-4, 0.02, 1000).
type VP struct {
	// BetaMin and BetaMax are β(0) and β(1) (per unit time).
	BetaMin, BetaMax float64
	// N is the number of discretization steps.
	N int
}

// NewVP returns the VP SDE with β(0) = betaMin, β(1) = betaMax and n
// discretization steps (score_sde's defaults: 0.1, 20, 1000).
func NewVP(betaMin, betaMax float64, n int) *VP {
	if n < 1 {
		panic(fmt.Sprintf("sde: NewVP: N = %d, want ≥ 1", n))
	}
	return &VP{BetaMin: betaMin, BetaMax: betaMax, N: n}
}

// DefaultVP is NewVP(0.1, 20, 1000).
func DefaultVP() *VP { return NewVP(0.1, 20, 1000) }

// T is 1.
func (s *VP) T() float64 { return 1 }

// Steps is N.
func (s *VP) Steps() int { return s.N }

// Beta returns β(t) = β_min + t·(β_max − β_min).
func (s *VP) Beta(t float64) float64 { return s.BetaMin + t*(s.BetaMax-s.BetaMin) }

// logMean is log m(t) = −¼t²(β_max−β_min) − ½tβ_min.
func (s *VP) logMean(t float64) float64 {
	return -0.25*t*t*(s.BetaMax-s.BetaMin) - 0.5*t*s.BetaMin
}

// Drift returns −½β(t)·x.
func (s *VP) Drift(x *tensor.Tensor, t []float64) *tensor.Tensor {
	return linearDrift(func(t float64) float64 { return -0.5 * s.Beta(t) }).drift(x, t)
}

// DriftVar is Drift as an autograd op.
func (s *VP) DriftVar(g *autograd.Graph, x *autograd.Var, t []float64) *autograd.Var {
	return linearDrift(func(t float64) float64 { return -0.5 * s.Beta(t) }).driftVar(g, x, t)
}

// Diffusion returns √β(t).
func (s *VP) Diffusion(t float64) float64 { return math.Sqrt(s.Beta(t)) }

// Marginal returns m(t) and std(t) = √(1 − m(t)²).
func (s *VP) Marginal(t float64) (mean, std float64) {
	lm := s.logMean(t)
	return math.Exp(lm), math.Sqrt(-math.Expm1(2 * lm))
}

// PriorSample draws N(0, I) of the given shape.
func (s *VP) PriorSample(shape []int, noise Noise) *tensor.Tensor { return noise(shape) }

// PriorLogP is log N(z; 0, I) per sample, in nats.
func (s *VP) PriorLogP(z *tensor.Tensor) []float64 { return gaussianLogP(z, 1) }

// DiscreteBeta returns β_i at the step index i = ⌊t·(N−1)⌋ of the N-step
// table linspace(β_min/N, β_max/N, N).
func (s *VP) DiscreteBeta(t float64) float64 {
	return s.discreteBeta(stepIndex(t, s.T(), s.N))
}

// discreteBeta is linspace(β_min/N, β_max/N, N)_i (NumPy's linspace: the
// last entry is β_max/N exactly).
func (s *VP) discreteBeta(i int) float64 {
	n := float64(s.N)
	if s.N == 1 {
		return s.BetaMin / n
	}
	if i == s.N-1 {
		return s.BetaMax / n
	}
	return s.BetaMin/n + float64(i)*(s.BetaMax-s.BetaMin)/n/float64(s.N-1)
}

// AlphasCumprod returns the N-step table ᾱ_i = Π_{k≤i} (1 − β_k) of the
// DDPM discretization (a new slice of length N).
func (s *VP) AlphasCumprod() []float64 {
	out := make([]float64, s.N)
	p := 1.0
	for i := range out {
		p *= 1 - s.discreteBeta(i)
		out[i] = p
	}
	return out
}

// Alpha returns α_i = 1 − β_i at i = ⌊t·(N−1)⌋.
func (s *VP) Alpha(t float64) float64 { return 1 - s.DiscreteBeta(t) }

// Discretize is the DDPM discretization: f = (√(1−β_i) − 1)·x, G = √β_i at
// i = ⌊t·(N−1)⌋; dt is ignored (the table fixes the step to 1/N).
func (s *VP) Discretize(x *tensor.Tensor, t []float64, dt float64) (*tensor.Tensor, []float64) {
	checkBatch("Discretize", x, t)
	c := perTime(t, func(t float64) float64 { return math.Sqrt(1-s.DiscreteBeta(t)) - 1 })
	G := perTime(t, func(t float64) float64 { return math.Sqrt(s.DiscreteBeta(t)) })
	return scaleRows(x, c), G
}

// SubVP is the sub-VP SDE (Song et al. 2021, eq. 29):
//
//	dx = −½β(t)·x dt + √(β(t)·(1 − exp(−2β_min·t − (β_max−β_min)·t²))) dw,
//
// with the VP's m(t), std(t) = 1 − m(t)² (always below the VP's √(1−m²))
// and prior N(0, I). It discretizes with Euler–Maruyama. Its Alpha, used
// only by the Langevin corrector, is the VP's 1 − β_i (score_sde's
// subVPSDE has no table, so its LangevinCorrector fails there).
type SubVP struct {
	// BetaMin and BetaMax are β(0) and β(1).
	BetaMin, BetaMax float64
	// N is the number of discretization steps.
	N int
}

// NewSubVP returns the sub-VP SDE (score_sde's defaults: 0.1, 20, 1000).
func NewSubVP(betaMin, betaMax float64, n int) *SubVP {
	if n < 1 {
		panic(fmt.Sprintf("sde: NewSubVP: N = %d, want ≥ 1", n))
	}
	return &SubVP{BetaMin: betaMin, BetaMax: betaMax, N: n}
}

// T is 1.
func (s *SubVP) T() float64 { return 1 }

// Steps is N.
func (s *SubVP) Steps() int { return s.N }

func (s *SubVP) vp() *VP { return &VP{BetaMin: s.BetaMin, BetaMax: s.BetaMax, N: s.N} }

// Drift returns −½β(t)·x.
func (s *SubVP) Drift(x *tensor.Tensor, t []float64) *tensor.Tensor { return s.vp().Drift(x, t) }

// DriftVar is Drift as an autograd op.
func (s *SubVP) DriftVar(g *autograd.Graph, x *autograd.Var, t []float64) *autograd.Var {
	return s.vp().DriftVar(g, x, t)
}

// Diffusion returns √(β(t)·(1 − m(t)⁴)).
func (s *SubVP) Diffusion(t float64) float64 {
	v := s.vp()
	return math.Sqrt(v.Beta(t) * -math.Expm1(4*v.logMean(t)))
}

// Marginal returns m(t) and std(t) = 1 − m(t)².
func (s *SubVP) Marginal(t float64) (mean, std float64) {
	lm := s.vp().logMean(t)
	return math.Exp(lm), -math.Expm1(2 * lm)
}

// PriorSample draws N(0, I) of the given shape.
func (s *SubVP) PriorSample(shape []int, noise Noise) *tensor.Tensor { return noise(shape) }

// PriorLogP is log N(z; 0, I) per sample, in nats.
func (s *SubVP) PriorLogP(z *tensor.Tensor) []float64 { return gaussianLogP(z, 1) }

// Alpha returns the VP's α_i = 1 − β_i at i = ⌊t·(N−1)⌋.
func (s *SubVP) Alpha(t float64) float64 { return NewVP(s.BetaMin, s.BetaMax, s.N).Alpha(t) }

// Discretize is Euler–Maruyama: f = f(x, t)·dt, G = g(t)·√dt.
func (s *SubVP) Discretize(x *tensor.Tensor, t []float64, dt float64) (*tensor.Tensor, []float64) {
	return eulerMaruyamaDiscretize(s, x, t, dt)
}

func eulerMaruyamaDiscretize(s SDE, x *tensor.Tensor, t []float64, dt float64) (*tensor.Tensor, []float64) {
	f := s.Drift(x, t)
	fd := f.Data()
	for i := range fd {
		fd[i] = float32(float64(fd[i]) * dt)
	}
	return f, perTime(t, func(t float64) float64 { return s.Diffusion(t) * math.Sqrt(dt) })
}

// VE is the variance-exploding SDE, the continuous limit of SMLD / NCSN:
//
//	dx = σ(t)·√(2·log(σ_max/σ_min)) dw,  σ(t) = σ_min·(σ_max/σ_min)^t,
//
// with m(t) = 1, std(t) = σ(t) and prior N(0, σ_max²·I). As in score_sde,
// std(t) is σ(t), not the exact √(σ(t)² − σ_min²) of the SDE started at
// t = 0: x_0 is taken to carry σ_min noise already. Its N-step
// discretization is SMLD's with σ_i = exp(linspace(log σ_min, log σ_max, N)_i).
type VE struct {
	// SigmaMin and SigmaMax are σ(0) and σ(1), in the units of x.
	SigmaMin, SigmaMax float64
	// N is the number of discretization steps.
	N int
}

// NewVE returns the VE SDE (score_sde's defaults: 0.01, 50, 1000).
func NewVE(sigmaMin, sigmaMax float64, n int) *VE {
	if n < 1 || !(sigmaMin > 0 && sigmaMax > sigmaMin) {
		panic(fmt.Sprintf("sde: NewVE(%g, %g, %d): want 0 < σ_min < σ_max and N ≥ 1", sigmaMin, sigmaMax, n))
	}
	return &VE{SigmaMin: sigmaMin, SigmaMax: sigmaMax, N: n}
}

// T is 1.
func (s *VE) T() float64 { return 1 }

// Steps is N.
func (s *VE) Steps() int { return s.N }

// Sigma returns σ(t) = σ_min·(σ_max/σ_min)^t.
func (s *VE) Sigma(t float64) float64 { return s.SigmaMin * math.Pow(s.SigmaMax/s.SigmaMin, t) }

// Drift returns 0 (a new zero tensor of x's shape).
func (s *VE) Drift(x *tensor.Tensor, t []float64) *tensor.Tensor {
	return linearDrift(func(float64) float64 { return 0 }).drift(x, t)
}

// DriftVar returns 0·x as an autograd op.
func (s *VE) DriftVar(g *autograd.Graph, x *autograd.Var, t []float64) *autograd.Var {
	checkBatch("DriftVar", x.Value, t)
	return g.Scale(x, 0)
}

// Diffusion returns σ(t)·√(2·log(σ_max/σ_min)).
func (s *VE) Diffusion(t float64) float64 {
	return s.Sigma(t) * math.Sqrt(2*math.Log(s.SigmaMax/s.SigmaMin))
}

// Marginal returns m = 1 and std = σ(t).
func (s *VE) Marginal(t float64) (mean, std float64) { return 1, s.Sigma(t) }

// PriorSample draws σ_max·N(0, I).
func (s *VE) PriorSample(shape []int, noise Noise) *tensor.Tensor {
	z := noise(shape)
	d := z.Data()
	for i := range d {
		d[i] = float32(float64(d[i]) * s.SigmaMax)
	}
	return z
}

// PriorLogP is log N(z; 0, σ_max²·I) per sample, in nats.
func (s *VE) PriorLogP(z *tensor.Tensor) []float64 { return gaussianLogP(z, s.SigmaMax) }

// DiscreteSigma returns σ_i = exp(linspace(log σ_min, log σ_max, N)_i) at
// step index i (0 ≤ i < N).
func (s *VE) DiscreteSigma(i int) float64 {
	if s.N == 1 {
		return s.SigmaMin
	}
	if i == s.N-1 {
		return s.SigmaMax
	}
	lo, hi := math.Log(s.SigmaMin), math.Log(s.SigmaMax)
	return math.Exp(lo + float64(i)*(hi-lo)/float64(s.N-1))
}

// Discretize is the SMLD discretization: f = 0, G = √(σ_i² − σ_{i−1}²) at
// i = ⌊t·(N−1)⌋ (σ_{−1} = 0); dt is ignored.
func (s *VE) Discretize(x *tensor.Tensor, t []float64, dt float64) (*tensor.Tensor, []float64) {
	checkBatch("Discretize", x, t)
	G := perTime(t, func(t float64) float64 {
		i := stepIndex(t, s.T(), s.N)
		sig := s.DiscreteSigma(i)
		adj := 0.0
		if i > 0 {
			adj = s.DiscreteSigma(i - 1)
		}
		return math.Sqrt(sig*sig - adj*adj)
	})
	return tensor.New(x.Shape()...), G
}

// Reverse is the reverse-time SDE of a forward SDE given its score
// (Anderson 1982; score_sde's SDE.reverse):
//
//	dx = [f(x, t) − c·g(t)²·∇x log p_t(x)] dt + g̃(t) dw̄,
//
// with c = 1 and g̃ = g for the reverse SDE, and c = ½ and g̃ = 0 for the
// probability-flow ODE (ProbabilityFlow), whose trajectories share the
// SDE's marginals p_t.
type Reverse struct {
	// SDE is the forward SDE.
	SDE SDE
	// Score is ∇x log p_t.
	Score ScoreFunc
	// ProbabilityFlow selects the probability-flow ODE.
	ProbabilityFlow bool
}

func (r Reverse) c() float64 {
	if r.ProbabilityFlow {
		return 0.5
	}
	return 1
}

// Drift returns f(x, t) − c·g(t)²·score(x, t) for x [B, ...], t (len B).
func (r Reverse) Drift(x *tensor.Tensor, t []float64) (*tensor.Tensor, error) {
	if err := autograd.Catch(func() { checkBatch("Reverse.Drift", x, t) }); err != nil {
		return nil, err
	}
	score, err := callScore(r.Score, x, t)
	if err != nil {
		return nil, err
	}
	f := r.SDE.Drift(x, t)
	c := perTime(t, func(t float64) float64 {
		g := r.SDE.Diffusion(t)
		return -r.c() * g * g
	})
	axpyRows(f, c, score)
	return f, nil
}

// Diffusion returns g(t) for the reverse SDE and 0 for the ODE.
func (r Reverse) Diffusion(t float64) float64 {
	if r.ProbabilityFlow {
		return 0
	}
	return r.SDE.Diffusion(t)
}

// Discretize returns the reverse update x_{i−1} = x_i − rev_f + rev_G·z of
// the reverse-diffusion predictor: with (f, G) = SDE.Discretize(x, t, dt),
// rev_f = f − c·G²·score(x, t) and rev_G = G (0 for the ODE).
func (r Reverse) Discretize(x *tensor.Tensor, t []float64, dt float64) (*tensor.Tensor, []float64, error) {
	if err := autograd.Catch(func() { checkBatch("Reverse.Discretize", x, t) }); err != nil {
		return nil, nil, err
	}
	score, err := callScore(r.Score, x, t)
	if err != nil {
		return nil, nil, err
	}
	f, G := r.SDE.Discretize(x, t, dt)
	c := make([]float64, len(t))
	for i := range c {
		c[i] = -r.c() * G[i] * G[i]
	}
	axpyRows(f, c, score)
	if r.ProbabilityFlow {
		G = make([]float64, len(G))
	}
	return f, G, nil
}

// axpyRows sets y[b] += c[b]·x[b] for every sample b.
func axpyRows(y *tensor.Tensor, c []float64, x *tensor.Tensor) {
	b := y.Dim(0)
	per := y.Numel() / b
	yd, xd := y.Data(), x.Data()
	for i := 0; i < b; i++ {
		ci := c[i]
		for j := i * per; j < (i+1)*per; j++ {
			yd[j] = float32(float64(yd[j]) + ci*float64(xd[j]))
		}
	}
}

// ProbabilityFlowVar is the probability-flow ODE drift
// f(x, t) − ½g(t)²·score(x, t) built from autograd ops on g (x [B, ...],
// t len B), for divergences by back-propagation.
func ProbabilityFlowVar(s SDE, score DiffScore, g *autograd.Graph, x *autograd.Var, t []float64) *autograd.Var {
	sc := score(g, x, t)
	if !tensor.SameShape(sc.Shape(), x.Shape()) {
		panic(&tensor.ShapeError{Op: "ProbabilityFlowVar", Msg: fmt.Sprintf("score shape %v differs from x %v", sc.Shape(), x.Shape())})
	}
	c := perTime(t, func(t float64) float64 {
		gi := s.Diffusion(t)
		return -0.5 * gi * gi
	})
	return g.Add(s.DriftVar(g, x, t), scaleRowsVar(g, sc, c))
}
