// Package sampler holds k-diffusion's samplers (Karras et al. 2022 and
// DPM-Solver/DPM-Solver++ by Lu et al.) over one denoiser contract, and the σ
// schedules they run on.
//
// Conventions, as in k-diffusion (crowsonkb/k-diffusion,
// k_diffusion/sampling.py):
//
//   - The model is a Denoiser: given x = x0 + σ·ε it returns the estimate
//     x̂0 of the clean sample (the "denoised" tensor). σ is the noise
//     standard deviation in the units of x (variance-exploding
//     parameterization); wrappers for ε- or v-prediction networks convert
//     to this form outside this package.
//   - A schedule is a decreasing slice of n+1 σ values that ends in 0; a
//     sampler takes n steps, from sigmas[0] to the final 0.
//   - The starting point is x_T already scaled to the first noise level,
//     i.e. x = σ_max·z with z ~ N(0, I) (k-diffusion's x * sigmas[0]).
//   - Stochastic samplers draw their noise through a Noise source called once
//     per draw with the (σ, σ_next) of that draw, in exactly the places where
//     k-diffusion calls its noise_sampler, so k-diffusion's noise can be
//     replayed draw for draw.
//
// Samplers do their arithmetic per element in float64: the state (x, past
// derivatives and denoised estimates) lives in float64 buffers and is
// rounded to a float32 tensor only at the denoiser boundary (and for
// callbacks and the result). Against k-diffusion's float64 outputs
// (reference_test.go) the largest error is 1.1e-6 with a tolerance of
// ~6e-4; rounding the state to float32 at every denoiser call measured the
// same 1.1e-6, so the float32 denoiser boundary dominates and float32 state
// would pass too. float64 state is kept because it costs nothing next to a
// network evaluation and keeps rounding from accumulating over long
// schedules.
//
// Every sampler is a free function of type Func; ByName looks them up by
// their k-diffusion names.
package sampler

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/diffuse-go/diffuse/tensor"
)

// Denoiser is the model contract: for a batch x of shape [B, ...] (B ≥ 1,
// any trailing dims) at noise levels sigma it returns x̂0, the denoised
// estimate, with the shape of x.
//
// sigma always has length B, one noise standard deviation per sample (in the
// units of x); the samplers of this package pass B equal values, as
// k-diffusion does with sigma * s_in. The denoiser must not modify x; x is
// a fresh float32 CPU tensor per call, so the denoiser may keep it. Samplers
// copy the returned tensor out with ToHost at once, so it may live on any
// backend and be reused by the denoiser on its next call.
type Denoiser func(x *tensor.Tensor, sigma []float64) (*tensor.Tensor, error)

// Noise is a source of standard normal noise N(0, I): each call returns a
// fresh tensor of the given shape (the shape of x, [B, ...]). Samplers call
// it once per draw, with the noise levels (σ, σ_next) the draw moves between
// (in the units of x), in the order k-diffusion calls its noise_sampler, so
// a recorded sequence of draws can be replayed exactly. Brownian-tree noise
// (k-diffusion's default for the SDE samplers) fits this contract: it may
// use σ and σ_next to return the normalized increment W(σ_next)−W(σ) over
// √|σ_next−σ|.
type Noise func(sigma, sigmaNext float64, shape []int) *tensor.Tensor

// Step is what a Callback sees once per sampler step, before the step's
// update (k-diffusion's callback dict).
type Step struct {
	// I is the step index, 0 ≤ I < len(sigmas)-1.
	I int
	// Sigma is sigmas[I]; SigmaHat is the noise level the denoiser was
	// called at (larger than Sigma only with churn, see Options.SChurn).
	Sigma, SigmaHat float64
	// X is the current sample [B, ...] at SigmaHat and Denoised the
	// denoiser's output for it; both are float32 copies the callback may
	// keep.
	X, Denoised *tensor.Tensor
}

// Callback reports progress: it is called once per step with the step's
// state. A non-nil error stops the sampler, which returns it wrapped.
type Callback func(s Step) error

// Options are the knobs of all samplers; each sampler reads the ones it
// documents and ignores the rest. DefaultOptions returns k-diffusion's
// defaults. The zero Options is the deterministic variant of every sampler
// (η = 0, s_noise = 0, no churn), with Order, R and SolverType at their
// defaults.
type Options struct {
	// Eta (η ≥ 0) scales the noise of the ancestral and SDE samplers
	// (euler_ancestral, dpm_2_ancestral, dpmpp_2s_ancestral, dpmpp_sde,
	// dpmpp_2m_sde, dpmpp_3m_sde): 1 is the full ancestral / SDE step,
	// 0 an ODE step. k-diffusion's default: 1.
	Eta float64
	// SNoise (≥ 0) multiplies every noise draw added to x (s_noise).
	// k-diffusion's default: 1.
	SNoise float64
	// SChurn, STMin and STMax are the churn of Karras et al.'s Algorithm 2
	// for euler, heun and dpm_2: at steps with STMin ≤ σ_i ≤ STMax the
	// level is raised to σ̂ = σ_i·(1+γ), γ = min(SChurn/n, √2−1) for n
	// steps, by adding noise of standard deviation SNoise·√(σ̂²−σ_i²) (one
	// draw (σ_i, σ̂) per such step; k-diffusion draws torch.randn at every
	// step even when γ = 0, this package only the draws it uses).
	// k-diffusion's defaults: 0, 0, +Inf.
	SChurn, STMin, STMax float64
	// Order is lms's order (number of past derivatives); 0 means 4.
	Order int
	// R is dpmpp_sde's intermediate point, as a fraction of the step in
	// log σ, 0 < R ≤ 1; 0 means 1/2.
	R float64
	// SolverType is dpmpp_2m_sde's second-order correction: "midpoint"
	// (the default, also for "") or "heun".
	SolverType string
	// Noise is the noise source of the stochastic samplers; nil means
	// SeededNoise(0), a fresh one per sampler call.
	Noise Noise
	// Callback, when non-nil, is called once per step.
	Callback Callback
}

// DefaultOptions returns k-diffusion's default options: η = 1, s_noise = 1,
// no churn (s_churn = 0, s_tmin = 0, s_tmax = +Inf), lms order 4,
// dpmpp_sde r = 1/2, dpmpp_2m_sde solver "midpoint", Noise nil (seed 0).
func DefaultOptions() Options {
	return Options{Eta: 1, SNoise: 1, STMax: math.Inf(1), Order: 4, R: 0.5, SolverType: "midpoint"}
}

// Func is the signature of every sampler: it runs the steps of sigmas (n+1
// noise levels, in the units of x, usually decreasing to a final 0) from x,
// the batch [B, ...] at noise level sigmas[0], and returns the sample at
// sigmas[n] as a new float32 CPU tensor of x's shape. x is not modified. With
// fewer than two sigmas it returns a copy of x.
type Func func(d Denoiser, x *tensor.Tensor, sigmas []float64, o Options) (*tensor.Tensor, error)

var registry = map[string]Func{
	"euler":              Euler,
	"euler_ancestral":    EulerAncestral,
	"heun":               Heun,
	"dpm_2":              DPM2,
	"dpm_2_ancestral":    DPM2Ancestral,
	"lms":                LMS,
	"dpmpp_2s_ancestral": DPMPP2SAncestral,
	"dpmpp_sde":          DPMPPSDE,
	"dpmpp_2m":           DPMPP2M,
	"dpmpp_2m_sde":       DPMPP2MSDE,
	"dpmpp_2m_sde_heun":  dpmpp2MSDEHeun,
	"dpmpp_3m_sde":       DPMPP3MSDE,
}

// dpmpp2MSDEHeun is dpmpp_2m_sde with SolverType "heun" (ComfyUI's name).
func dpmpp2MSDEHeun(d Denoiser, x *tensor.Tensor, sigmas []float64, o Options) (*tensor.Tensor, error) {
	o.SolverType = "heun"
	return DPMPP2MSDE(d, x, sigmas, o)
}

// Names lists the names ByName accepts, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ByName returns the sampler of a k-diffusion name (sample_<name> in
// k_diffusion/sampling.py): euler, euler_ancestral, heun, dpm_2,
// dpm_2_ancestral, lms, dpmpp_2s_ancestral, dpmpp_sde, dpmpp_2m,
// dpmpp_2m_sde, dpmpp_3m_sde, plus dpmpp_2m_sde_heun (dpmpp_2m_sde with
// SolverType "heun"). An unknown name is an error listing the valid ones.
func ByName(name string) (Func, error) {
	if f, ok := registry[name]; ok {
		return f, nil
	}
	return nil, fmt.Errorf("sampler: unknown sampler %q (valid: %s)", name, strings.Join(Names(), ", "))
}

// run is one sampler call: the validated inputs and the float64 <-> float32
// conversions at the denoiser and noise boundaries.
type run struct {
	name  string
	d     Denoiser
	shape []int
	batch int
	o     Options
	noise Noise
	sig   []float64
}

// begin validates the arguments and returns the run and x as float64.
func begin(name string, d Denoiser, x *tensor.Tensor, sigmas []float64, o Options) (*run, []float64, error) {
	if d == nil {
		return nil, nil, fmt.Errorf("sampler: %s: nil denoiser", name)
	}
	if x == nil || x.Rank() < 1 || x.Dim(0) < 1 {
		return nil, nil, fmt.Errorf("sampler: %s: x must be a batch [B, ...] with B ≥ 1", name)
	}
	for i, s := range sigmas {
		if math.IsNaN(s) || math.IsInf(s, 0) || s < 0 {
			return nil, nil, fmt.Errorf("sampler: %s: sigmas[%d] = %g: noise levels must be finite and ≥ 0", name, i, s)
		}
		if s == 0 && i < len(sigmas)-1 {
			return nil, nil, fmt.Errorf("sampler: %s: sigmas[%d] = 0 before the last level", name, i)
		}
	}
	if !(o.Eta >= 0) || !(o.SNoise >= 0) || !(o.SChurn >= 0) {
		return nil, nil, fmt.Errorf("sampler: %s: Eta, SNoise and SChurn must be ≥ 0 (got %g, %g, %g)", name, o.Eta, o.SNoise, o.SChurn)
	}
	if o.Order < 0 {
		return nil, nil, fmt.Errorf("sampler: %s: Order %d < 0", name, o.Order)
	}
	if o.Order == 0 {
		o.Order = 4
	}
	if !(o.R >= 0 && o.R <= 1) {
		return nil, nil, fmt.Errorf("sampler: %s: R = %g not in (0, 1]", name, o.R)
	}
	if o.R == 0 {
		o.R = 0.5
	}
	switch o.SolverType {
	case "":
		o.SolverType = "midpoint"
	case "midpoint", "heun":
	default:
		return nil, nil, fmt.Errorf("sampler: %s: SolverType %q (valid: midpoint, heun)", name, o.SolverType)
	}
	r := &run{name: name, d: d, shape: append([]int(nil), x.Shape()...), batch: x.Dim(0), o: o, noise: o.Noise}
	if r.noise == nil {
		r.noise = SeededNoise(0)
	}
	r.sig = make([]float64, r.batch)
	host := x.ToHost()
	xs := make([]float64, len(host))
	for i, v := range host {
		xs[i] = float64(v)
	}
	return r, xs, nil
}

// toTensor rounds v to a float32 tensor of the run's shape.
func (r *run) toTensor(v []float64) *tensor.Tensor {
	buf := make([]float32, len(v))
	for i, f := range v {
		buf[i] = float32(f)
	}
	return tensor.FromSlice(buf, r.shape...)
}

// fromTensor checks t's shape and returns its values as float64.
func (r *run) fromTensor(t *tensor.Tensor, what string) ([]float64, error) {
	if t == nil {
		return nil, fmt.Errorf("sampler: %s: %s returned nil", r.name, what)
	}
	if !slices.Equal(t.Shape(), r.shape) {
		return nil, fmt.Errorf("sampler: %s: %s returned shape %v, want %v", r.name, what, t.Shape(), r.shape)
	}
	host := t.ToHost()
	out := make([]float64, len(host))
	for i, v := range host {
		out[i] = float64(v)
	}
	return out, nil
}

// denoise calls the denoiser on x at noise level sigma (shared by the batch).
func (r *run) denoise(x []float64, sigma float64) ([]float64, error) {
	for i := range r.sig {
		r.sig[i] = sigma
	}
	out, err := r.d(r.toTensor(x), append([]float64(nil), r.sig...))
	if err != nil {
		return nil, fmt.Errorf("sampler: %s: denoiser at σ = %g: %w", r.name, sigma, err)
	}
	return r.fromTensor(out, "denoiser")
}

// draw returns one noise draw for the move from sigma to sigmaNext.
func (r *run) draw(sigma, sigmaNext float64) ([]float64, error) {
	return r.fromTensor(r.noise(sigma, sigmaNext, append([]int(nil), r.shape...)), "noise source")
}

// report calls the callback, if any, for step i.
func (r *run) report(i int, sigma, sigmaHat float64, x, denoised []float64) error {
	if r.o.Callback == nil {
		return nil
	}
	if err := r.o.Callback(Step{I: i, Sigma: sigma, SigmaHat: sigmaHat, X: r.toTensor(x), Denoised: r.toTensor(denoised)}); err != nil {
		return fmt.Errorf("sampler: %s: callback at step %d: %w", r.name, i, err)
	}
	return nil
}

// addNoise draws noise for (sigma, sigmaNext) and adds scale times it to x.
func (r *run) addNoise(x []float64, sigma, sigmaNext, scale float64) error {
	z, err := r.draw(sigma, sigmaNext)
	if err != nil {
		return err
	}
	for j := range x {
		x[j] += z[j] * scale
	}
	return nil
}

// ancestralStep is k-diffusion's get_ancestral_step: the level σ_down to
// step down to deterministically and the standard deviation σ_up of the
// noise to add so that the result is at level σ_to.
func ancestralStep(sigmaFrom, sigmaTo, eta float64) (down, up float64) {
	if eta == 0 {
		return sigmaTo, 0
	}
	up = math.Min(sigmaTo, eta*math.Sqrt(sigmaTo*sigmaTo*(sigmaFrom*sigmaFrom-sigmaTo*sigmaTo)/(sigmaFrom*sigmaFrom)))
	down = math.Sqrt(sigmaTo*sigmaTo - up*up)
	return down, up
}
