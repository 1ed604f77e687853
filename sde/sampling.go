package sde

import (
	"errors"
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/tensor"
)

// Predictor advances the batch x [B, ...] at times t (len B) by one step of
// the reverse-time SDE (or ODE) r, of length 1/N with N = r.SDE.Steps(). It
// returns the new sample and its mean (the sample before the step's noise
// is added, used for the final denoising). x is not modified. Noise draws
// come from noise (one draw of x's shape per step; none for the
// probability-flow ODE).
type Predictor func(r Reverse, x *tensor.Tensor, t []float64, noise Noise) (next, mean *tensor.Tensor, err error)

// Corrector runs MCMC steps at times t (len B) that leave p_t invariant,
// from x [B, ...]: it returns the new sample and the mean of its last step.
// x is not modified.
type Corrector func(s SDE, score ScoreFunc, x *tensor.Tensor, t []float64, noise Noise) (next, mean *tensor.Tensor, err error)

// EulerMaruyama is score_sde's EulerMaruyamaPredictor: with dt = −1/N,
//
//	x_mean = x + rev_drift(x, t)·dt,  x = x_mean + g̃(t)·√|dt|·z.
//
// As in score_sde, dt is 1/N even though the PC timesteps
// linspace(T, ε, N) are (T−ε)/(N−1) apart.
func EulerMaruyama(r Reverse, x *tensor.Tensor, t []float64, noise Noise) (*tensor.Tensor, *tensor.Tensor, error) {
	dt := -r.SDE.T() / float64(r.SDE.Steps())
	drift, err := r.Drift(x, t)
	if err != nil {
		return nil, nil, err
	}
	mean := tensor.New(x.Shape()...)
	md, xd, dd := mean.Data(), x.Data(), drift.Data()
	for i := range md {
		md[i] = float32(float64(xd[i]) + float64(dd[i])*dt)
	}
	if r.ProbabilityFlow {
		return mean, mean, nil
	}
	c := perTime(t, func(t float64) float64 { return r.Diffusion(t) * math.Sqrt(-dt) })
	return addNoise(mean, c, noise), mean, nil
}

// ReverseDiffusion is score_sde's ReverseDiffusionPredictor: with
// (rev_f, rev_G) = r.Discretize(x, t, 1/N),
//
//	x_mean = x − rev_f,  x = x_mean + rev_G·z.
//
// For the VP SDE this is x_mean = (2 − √(1−β_i))·x + β_i·score, for the VE
// SDE x_mean = x + (σ_i² − σ_{i−1}²)·score.
func ReverseDiffusion(r Reverse, x *tensor.Tensor, t []float64, noise Noise) (*tensor.Tensor, *tensor.Tensor, error) {
	f, G, err := r.Discretize(x, t, r.SDE.T()/float64(r.SDE.Steps()))
	if err != nil {
		return nil, nil, err
	}
	mean := tensor.New(x.Shape()...)
	md, xd, fd := mean.Data(), x.Data(), f.Data()
	for i := range md {
		md[i] = float32(float64(xd[i]) - float64(fd[i]))
	}
	if r.ProbabilityFlow {
		return mean, mean, nil
	}
	return addNoise(mean, G, noise), mean, nil
}

// addNoise returns mean + c[b]·z for a fresh noise draw z.
func addNoise(mean *tensor.Tensor, c []float64, noise Noise) *tensor.Tensor {
	z := noise(mean.Shape())
	if !tensor.SameShape(z.Shape(), mean.Shape()) {
		panic(&tensor.ShapeError{Op: "noise", Msg: fmt.Sprintf("noise shape %v, want %v", z.Shape(), mean.Shape())})
	}
	out := tensor.FromSlice(z.ToHost(), z.Shape()...)
	b := out.Dim(0)
	per := out.Numel() / b
	od, md := out.Data(), mean.Data()
	for i := 0; i < b; i++ {
		for j := i * per; j < (i+1)*per; j++ {
			od[j] = float32(float64(md[j]) + c[i]*float64(od[j]))
		}
	}
	return out
}

// batchMeanNorm is the mean over samples of the per-sample L2 norm.
func batchMeanNorm(x *tensor.Tensor) float64 {
	b := x.Dim(0)
	per := x.Numel() / b
	d := x.Data()
	var s float64
	for i := 0; i < b; i++ {
		var ss float64
		for _, v := range d[i*per : (i+1)*per] {
			ss += float64(v) * float64(v)
		}
		s += math.Sqrt(ss)
	}
	return s / float64(b)
}

// Langevin returns score_sde's LangevinCorrector with signal-to-noise ratio
// snr (score_sde's configs: 0.16 for VE, 0.01–0.27 elsewhere) and steps
// Langevin steps per call (M). Each step draws z ~ N(0, I), computes
//
//	ε = 2·α·(snr·‖z‖/‖∇‖)²,  x_mean = x + ε·∇,  x = x_mean + √(2ε)·z,
//
// where ∇ = score(x, t), ‖·‖ is the per-sample L2 norm averaged over the
// batch (one step size for the batch, as in score_sde) and α = Alpha(t)
// for SDEs implementing DiscreteAlpha (VP, SubVP), else 1.
func Langevin(snr float64, steps int) Corrector {
	return func(s SDE, score ScoreFunc, x *tensor.Tensor, t []float64, noise Noise) (*tensor.Tensor, *tensor.Tensor, error) {
		alpha := perTime(t, func(t float64) float64 {
			if da, ok := s.(DiscreteAlpha); ok {
				return da.Alpha(t)
			}
			return 1
		})
		mean := x
		for k := 0; k < steps; k++ {
			grad, err := callScore(score, x, t)
			if err != nil {
				return nil, nil, err
			}
			z := noise(x.Shape())
			if !tensor.SameShape(z.Shape(), x.Shape()) {
				return nil, nil, fmt.Errorf("sde: Langevin: noise shape %v, want %v", z.Shape(), x.Shape())
			}
			gn, zn := batchMeanNorm(grad), batchMeanNorm(z)
			r := snr * zn / gn
			mean = tensor.New(x.Shape()...)
			next := tensor.New(x.Shape()...)
			b := x.Dim(0)
			per := x.Numel() / b
			xd, gd, zd, md, nd := x.Data(), grad.Data(), z.Data(), mean.Data(), next.Data()
			for i := 0; i < b; i++ {
				eps := 2 * alpha[i] * r * r
				if gn == 0 {
					eps = 0
				}
				sq := math.Sqrt(2 * eps)
				for j := i * per; j < (i+1)*per; j++ {
					m := float64(xd[j]) + eps*float64(gd[j])
					md[j] = float32(m)
					nd[j] = float32(m + sq*float64(zd[j]))
				}
			}
			x = next
		}
		return x, mean, nil
	}
}

// PCOptions configure SamplePC. DefaultPCOptions gives score_sde's usual
// setting.
type PCOptions struct {
	// Predictor is the predictor (nil: none, a corrector-only sampler).
	Predictor Predictor
	// Corrector is the corrector (nil: none, a predictor-only sampler).
	Corrector Corrector
	// ProbabilityFlow makes the predictor follow the probability-flow ODE.
	ProbabilityFlow bool
	// Denoise returns the last predictor step's mean (no final noise)
	// instead of its sample (score_sde's noise_removal).
	Denoise bool
	// Eps is the last time ε of the grid linspace(T, ε, N) (0: 1e-3).
	Eps float64
	// Noise is the source of every noise draw (prior, predictor,
	// corrector); nil means SeededNoise(0).
	Noise Noise
	// XT, when non-nil, is the starting sample [B, ...] at time T instead
	// of a prior draw (not modified).
	XT *tensor.Tensor
}

// DefaultPCOptions returns the reverse-diffusion predictor with one
// Langevin corrector step at snr 0.16, final denoising and ε = 1e-3
// (score_sde's PC sampler for VE models, "PC1000" with N = 1000).
func DefaultPCOptions() PCOptions {
	return PCOptions{Predictor: ReverseDiffusion, Corrector: Langevin(0.16, 1), Denoise: true, Eps: 1e-3}
}

// countScore wraps score to count its calls.
func countScore(score ScoreFunc, n *int) ScoreFunc {
	return func(x *tensor.Tensor, t []float64) (*tensor.Tensor, error) {
		*n++
		return score(x, t)
	}
}

func fillT(b int, t float64) []float64 {
	v := make([]float64, b)
	for i := range v {
		v[i] = t
	}
	return v
}

// SamplePC runs score_sde's predictor–corrector sampler (get_pc_sampler):
// from x_T ~ p_T of the given shape [B, ...] (or o.XT) it visits the N =
// s.Steps() times t_i = linspace(T, ε, N)_i and at each runs the corrector
// then the predictor. It returns the sample (the last predictor mean when
// o.Denoise) as a new float32 tensor and the number of score evaluations
// (N·(M+1) for a predictor and an M-step corrector).
func SamplePC(s SDE, score ScoreFunc, shape []int, o PCOptions) (*tensor.Tensor, int, error) {
	if o.Predictor == nil && o.Corrector == nil {
		return nil, 0, errors.New("sde: SamplePC: neither predictor nor corrector")
	}
	if o.Eps <= 0 {
		o.Eps = 1e-3
	}
	if o.Noise == nil {
		o.Noise = SeededNoise(0)
	}
	x, err := startX(s, shape, o.XT, o.Noise)
	if err != nil {
		return nil, 0, err
	}
	nfe := 0
	score = countScore(score, &nfe)
	r := Reverse{SDE: s, Score: score, ProbabilityFlow: o.ProbabilityFlow}
	n := s.Steps()
	T := s.T()
	mean := x
	err = catchErr(func() error {
		for i := 0; i < n; i++ {
			ti := T
			if n > 1 {
				ti = T + float64(i)*(o.Eps-T)/float64(n-1)
			}
			if i == n-1 {
				ti = o.Eps
			}
			t := fillT(x.Dim(0), ti)
			var err error
			if o.Corrector != nil {
				if x, mean, err = o.Corrector(s, score, x, t, o.Noise); err != nil {
					return err
				}
			}
			if o.Predictor != nil {
				if x, mean, err = o.Predictor(r, x, t, o.Noise); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nfe, err
	}
	if o.Denoise {
		return mean, nfe, nil
	}
	return x, nfe, nil
}

// catchErr runs fn, turning a *tensor.ShapeError panic into an error.
func catchErr(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if se, ok := r.(*tensor.ShapeError); ok {
				err = se
				return
			}
			panic(r)
		}
	}()
	return fn()
}

// startX returns a copy of xT, or a prior draw of the given shape.
func startX(s SDE, shape []int, xT *tensor.Tensor, noise Noise) (*tensor.Tensor, error) {
	if xT != nil {
		if xT.Rank() < 1 || xT.Dim(0) < 1 {
			return nil, fmt.Errorf("sde: x_T of shape %v is not a batch [B, ...]", xT.Shape())
		}
		return tensor.FromSlice(xT.ToHost(), xT.Shape()...), nil
	}
	if len(shape) < 1 || shape[0] < 1 {
		return nil, fmt.Errorf("sde: shape %v is not a batch [B, ...] with B ≥ 1", shape)
	}
	if err := tensor.CheckShape(shape); err != nil {
		return nil, err
	}
	x := s.PriorSample(shape, noise)
	if !tensor.SameShape(x.Shape(), shape) {
		return nil, fmt.Errorf("sde: prior sample has shape %v, want %v", x.Shape(), shape)
	}
	return x, nil
}

// ODEOptions configure SampleODE.
type ODEOptions struct {
	// RTol and ATol are the RK45 tolerances (0: 1e-5, score_sde's).
	RTol, ATol float64
	// Eps is the final time ε (0: 1e-3).
	Eps float64
	// Denoise applies one noise-free reverse-diffusion step at ε to the
	// ODE solution (score_sde's denoise_update_fn).
	Denoise bool
	// Noise draws the prior sample; nil means SeededNoise(0).
	Noise Noise
	// XT, when non-nil, is the latent [B, ...] at time T to decode instead
	// of a prior draw (not modified).
	XT *tensor.Tensor
	// MaxNFE bounds the solver's evaluations (0: 100000).
	MaxNFE int
}

// SampleODE samples by solving the probability-flow ODE
// dx/dt = f(x, t) − ½g(t)²·score(x, t) from x_T ~ p_T (shape [B, ...], or
// o.XT) at t = T back to ε with SolveRK45 (score_sde's get_ode_sampler,
// whose scipy solve_ivp RK45 this mirrors; the whole batch is one ODE
// state). It returns the sample as a new float32 tensor and the number of
// score evaluations (the solver's NFE, plus one when denoising).
func SampleODE(s SDE, score ScoreFunc, shape []int, o ODEOptions) (*tensor.Tensor, int, error) {
	if o.Eps <= 0 {
		o.Eps = 1e-3
	}
	if o.Noise == nil {
		o.Noise = SeededNoise(0)
	}
	x, err := startX(s, shape, o.XT, o.Noise)
	if err != nil {
		return nil, 0, err
	}
	r := Reverse{SDE: s, Score: score, ProbabilityFlow: true}
	res, err := solveFlow(r, x, s.T(), o.Eps, RK45Options{RTol: o.RTol, ATol: o.ATol, MaxNFE: o.MaxNFE})
	if err != nil {
		return nil, 0, err
	}
	nfe := res.NFE
	out := tensor.New(x.Shape()...)
	od := out.Data()
	for i, v := range res.Y {
		od[i] = float32(v)
	}
	if o.Denoise {
		rd := Reverse{SDE: s, Score: score}
		var mean *tensor.Tensor
		err := catchErr(func() (err error) {
			f, _, err := rd.Discretize(out, fillT(out.Dim(0), o.Eps), s.T()/float64(s.Steps()))
			if err != nil {
				return err
			}
			mean = tensor.New(out.Shape()...)
			md, xd, fd := mean.Data(), out.Data(), f.Data()
			for i := range md {
				md[i] = float32(float64(xd[i]) - float64(fd[i]))
			}
			return nil
		})
		nfe++
		if err != nil {
			return nil, nfe, err
		}
		out = mean
	}
	return out, nfe, nil
}

// solveFlow integrates the probability-flow ODE r (ProbabilityFlow set)
// from x at t0 to t1 (the batch is one float64 state).
func solveFlow(r Reverse, x *tensor.Tensor, t0, t1 float64, o RK45Options) (*RK45Result, error) {
	shape := x.Shape()
	xd := x.Data()
	y0 := make([]float64, len(xd))
	for i, v := range xd {
		y0[i] = float64(v)
	}
	buf := tensor.New(shape...)
	bd := buf.Data()
	f := func(t float64, y, dy []float64) error {
		for i, v := range y {
			bd[i] = float32(v)
		}
		return catchErr(func() error {
			d, err := r.Drift(buf, fillT(shape[0], t))
			if err != nil {
				return err
			}
			for i, v := range d.Data() {
				dy[i] = float64(v)
			}
			return nil
		})
	}
	return SolveRK45(f, t0, t1, y0, o)
}
