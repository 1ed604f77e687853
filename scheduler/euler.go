package scheduler

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// Final σ types (diffusers' final_sigmas_type): the σ after the last step.
const (
	// FinalSigmaZero ends sampling at σ = 0 (x̂0 itself).
	FinalSigmaZero = "zero"
	// FinalSigmaMin ends at σ_0 of the training schedule.
	FinalSigmaMin = "sigma_min"
)

// EulerConfig is EulerDiscreteScheduler's configuration, with diffusers'
// JSON names and defaults (DefaultEulerConfig). s_churn, s_tmin, s_tmax and
// s_noise, which diffusers passes to step(), are fields of Euler instead.
type EulerConfig struct {
	// NumTrainTimesteps is the number T of training timesteps.
	NumTrainTimesteps int `json:"num_train_timesteps"`
	// BetaStart and BetaEnd bound the betas of the named schedule.
	BetaStart float64 `json:"beta_start"`
	BetaEnd   float64 `json:"beta_end"`
	// BetaSchedule is linear, scaled_linear or squaredcos_cap_v2.
	BetaSchedule string `json:"beta_schedule"`
	// TrainedBetas, when set, replaces the named schedule (length T).
	TrainedBetas []float64 `json:"trained_betas"`
	// PredictionType is what the model outputs: epsilon, sample or v_prediction.
	PredictionType schedule.PredictionType `json:"prediction_type"`
	// InterpolationType is how σ is read at a real timestep: only linear
	// (in σ, numpy.interp) is supported.
	InterpolationType string `json:"interpolation_type"`
	// UseKarrasSigmas replaces the interpolated σ by Karras et al.'s ρ = 7
	// schedule between σ_min and σ_max (the timesteps then follow σ).
	UseKarrasSigmas bool `json:"use_karras_sigmas"`
	// UseExponentialSigmas spaces σ evenly in log σ instead.
	UseExponentialSigmas bool `json:"use_exponential_sigmas"`
	// UseBetaSigmas (diffusers' β-distribution schedule) is not supported.
	UseBetaSigmas bool `json:"use_beta_sigmas"`
	// SigmaMin and SigmaMax bound the Karras/exponential schedules (null:
	// the ends of the interpolated σ).
	SigmaMin *float64 `json:"sigma_min"`
	SigmaMax *float64 `json:"sigma_max"`
	// TimestepSpacing is linspace (real timesteps), leading or trailing.
	TimestepSpacing string `json:"timestep_spacing"`
	// TimestepType is discrete (continuous, with v-prediction EDM-style
	// timesteps 0.25·log σ, is not supported).
	TimestepType string `json:"timestep_type"`
	// StepsOffset is added to leading timesteps.
	StepsOffset int `json:"steps_offset"`
	// RescaleBetasZeroSNR rescales the betas to zero terminal SNR (the last ᾱ
	// is then 2⁻²⁴, as in diffusers, so that σ stays finite).
	RescaleBetasZeroSNR bool `json:"rescale_betas_zero_snr"`
	// FinalSigmasType is zero or sigma_min.
	FinalSigmasType string `json:"final_sigmas_type"`
}

// DefaultEulerConfig returns diffusers' EulerDiscreteScheduler defaults.
func DefaultEulerConfig() EulerConfig {
	return EulerConfig{
		NumTrainTimesteps: 1000, BetaStart: 0.0001, BetaEnd: 0.02, BetaSchedule: schedule.Linear,
		PredictionType: schedule.Epsilon, InterpolationType: "linear", TimestepSpacing: Linspace,
		TimestepType: "discrete", FinalSigmasType: FinalSigmaZero,
	}
}

// sigmaTables holds a σ-space scheduler's training tables: the schedule,
// diffusers' float32 ᾱ, σ (ascending in t) and log σ.
type sigmaTables struct {
	sched                *schedule.Schedule
	ac, trainSig, logSig []float64
}

// newSigmaTables builds the tables of a σ-space scheduler (these support
// the linear, scaled_linear and squaredcos_cap_v2 beta schedules).
func newSigmaTables(kind string, T int, start, end float64, trained []float64, zeroSNR bool) (sigmaTables, error) {
	if len(trained) == 0 && kind == schedule.Sigmoid {
		return sigmaTables{}, fmt.Errorf("scheduler: beta_schedule %s is not implemented for this scheduler (as in diffusers)", kind)
	}
	s, err := betaSchedule(kind, T, start, end, trained, zeroSNR)
	if err != nil {
		return sigmaTables{}, err
	}
	ac := alphasCumprod32(s, zeroSNR)
	sig := sigmas32(ac)
	return sigmaTables{sched: s, ac: ac, trainSig: sig, logSig: logSigmas32(sig)}, nil
}

// realSchedule returns the Euler family's inference timesteps and σ (with
// the final σ appended, float32-rounded): σ interpolated at the spaced
// timesteps, or the Karras/exponential schedule with timesteps from σ.
func (tb sigmaTables) realSchedule(sc sigmaConfig, spacing string, n, offset int, final float64) (ts, sigmas []float64, err error) {
	ts, err = sigmaTimesteps(spacing, len(tb.trainSig), n, offset)
	if err != nil {
		return nil, nil, err
	}
	sig := make([]float64, len(ts))
	for i, t := range ts {
		sig[i] = interpIndex(t, tb.trainSig)
	}
	if conv, ok := sc.convert(sig, len(ts)); ok {
		sig = conv
		for i, s := range sig {
			ts[i] = round32(sigmaToT(s, tb.logSig))
		}
	}
	sigmas = make([]float64, 0, len(sig)+1)
	for _, s := range append(sig, final) {
		sigmas = append(sigmas, round32(s))
	}
	return ts, sigmas, nil
}

// fullSchedule is the σ-space constructors' initial schedule (diffusers'
// __init__): all T timesteps T−1, …, 0 with the training σ and a final 0.
func (tb sigmaTables) fullSchedule() (ts, sigmas []float64) {
	for t := len(tb.trainSig) - 1; t >= 0; t-- {
		ts = append(ts, float64(t))
		sigmas = append(sigmas, tb.trainSig[t])
	}
	return ts, append(sigmas, 0)
}

// initSigma is the σ-space init_noise_sigma: max σ for linspace and
// trailing spacing, √(max σ² + 1) otherwise (float32).
func initSigma(sigmas []float64, spacing string) float64 {
	m := 0.0
	for _, s := range sigmas {
		m = max(m, s)
	}
	if spacing == Linspace || spacing == Trailing {
		return m
	}
	return round32(math.Sqrt(round32(m*m + 1)))
}

// scaleBySigma returns x/√(σ²+1), the σ-space scale_model_input.
func scaleBySigma(x *tensor.Tensor, sigma float64) *tensor.Tensor {
	f := 1 / math.Sqrt(sigma*sigma+1)
	xs := hostRead(x)
	out := make([]float32, len(xs))
	for i, v := range xs {
		out[i] = float32(float64(v) * f)
	}
	return newLike(x, out)
}

// sigmaX0 is x̂0 of a σ-space scheduler for sample x, model output o and
// σ (σ̂ for ε: x − σ̂·o; v: o·(−σ/√(σ²+1)) + x/(σ²+1); sample: o).
func sigmaX0(p schedule.PredictionType, o, x, sigma, sigmaHat float64) float64 {
	switch p {
	case schedule.Epsilon:
		return x - sigmaHat*o
	case schedule.VPrediction:
		return o*(-sigma/math.Sqrt(sigma*sigma+1)) + x/(sigma*sigma+1)
	}
	return o
}

// Euler is diffusers' EulerDiscreteScheduler (Karras et al. 2022,
// Algorithm 2; k-diffusion's sample_euler). With σ_i the inference σ
// (σ_n = 0) and the model fed x/√(σ_i²+1) (ScaleModelInput):
//
//	γ = min(s_churn/n, √2−1) if s_tmin ≤ σ_i ≤ s_tmax, else 0;  σ̂ = σ_i(1+γ)
//	x̂ = x + √(σ̂²−σ_i²)·s_noise·z        (only when γ > 0: one noise draw)
//	x̂0 = x̂ − σ̂ ε̂,  d = (x̂ − x̂0)/σ̂
//	x_{i+1} = x̂ + (σ_{i+1} − σ̂)·d
//
// σ_i is σ_t interpolated linearly at the real timestep t_i
// (linspace(0, T−1, n), e.g. 946.42), or the Karras/exponential schedule.
// x_T has standard deviation InitNoiseSigma (σ_0, ≈157 for SD's
// defaults). Timesteps() are the t_i rounded; TimestepValues() the real
// ones, which the denoiser should get. The scheduler keeps a step index
// (see Step).
type Euler struct {
	// SChurn, STmin, STmax and SNoise are step()'s s_churn (default 0: no
	// noise), s_tmin, s_tmax (+Inf) and s_noise (1).
	SChurn, STmin, STmax, SNoise float64

	cfg    EulerConfig
	tb     sigmaTables
	sc     sigmaConfig
	tv     []float64
	sigmas []float64
	cur    cursor
	pred   *tensor.Tensor
}

// NewEuler validates c and returns its scheduler, with all T training
// timesteps T−1, …, 0 and their σ set (as diffusers' constructor does).
func NewEuler(c EulerConfig) (*Euler, error) {
	if err := c.PredictionType.Validate(); err != nil {
		return nil, err
	}
	if c.InterpolationType != "linear" {
		return nil, fmt.Errorf("scheduler: Euler interpolation_type %q is not supported (valid: linear)", c.InterpolationType)
	}
	switch c.TimestepType {
	case "discrete":
	case "continuous":
		if c.PredictionType == schedule.VPrediction {
			return nil, fmt.Errorf("scheduler: Euler timestep_type continuous with v_prediction is not supported")
		}
	default:
		return nil, fmt.Errorf("scheduler: unknown Euler timestep_type %q (valid: discrete, continuous)", c.TimestepType)
	}
	if c.FinalSigmasType != FinalSigmaZero && c.FinalSigmasType != FinalSigmaMin {
		return nil, fmt.Errorf("scheduler: unknown final_sigmas_type %q (valid: %s, %s)", c.FinalSigmasType, FinalSigmaZero, FinalSigmaMin)
	}
	sc := sigmaConfig{karras: c.UseKarrasSigmas, exponential: c.UseExponentialSigmas, beta: c.UseBetaSigmas, sigmaMin: c.SigmaMin, sigmaMax: c.SigmaMax}
	if err := sc.validate(); err != nil {
		return nil, err
	}
	if _, err := SpacedTimesteps(c.TimestepSpacing, max(c.NumTrainTimesteps, 1), 1, 0); err != nil {
		return nil, err
	}
	tb, err := newSigmaTables(c.BetaSchedule, c.NumTrainTimesteps, c.BetaStart, c.BetaEnd, c.TrainedBetas, c.RescaleBetasZeroSNR)
	if err != nil {
		return nil, err
	}
	e := &Euler{STmax: math.Inf(1), SNoise: 1, cfg: c, tb: tb, sc: sc}
	e.tv, e.sigmas = tb.fullSchedule()
	e.cur.reset(roundTimesteps(e.tv))
	return e, nil
}

// Config returns the scheduler's configuration.
func (e *Euler) Config() EulerConfig { return e.cfg }

// Schedule returns the noise schedule (shared; do not modify).
func (e *Euler) Schedule() *schedule.Schedule { return e.tb.sched }

// SetTimesteps chooses n inference timesteps and their σ, and resets the
// step index.
func (e *Euler) SetTimesteps(n int) error {
	final := 0.0
	if e.cfg.FinalSigmasType == FinalSigmaMin {
		final = e.tb.trainSig[0]
	}
	tv, sig, err := e.tb.realSchedule(e.sc, e.cfg.TimestepSpacing, n, e.cfg.StepsOffset, final)
	if err != nil {
		return err
	}
	e.tv, e.sigmas = tv, sig
	e.cur.reset(roundTimesteps(tv))
	return nil
}

// Timesteps returns the inference timesteps rounded to integers.
func (e *Euler) Timesteps() []int { return e.cur.ts }

// TimestepValues returns the real inference timesteps (float32 values).
func (e *Euler) TimestepValues() []float64 { return e.tv }

// Sigmas returns the inference σ followed by the final σ.
func (e *Euler) Sigmas() []float64 { return e.sigmas }

// InitNoiseSigma is the largest σ (√(σ²+1) of it for leading spacing).
func (e *Euler) InitNoiseSigma() float64 { return initSigma(e.sigmas, e.cfg.TimestepSpacing) }

// PredOriginalSample returns the x̂0 of the last Step, or nil before the
// first.
func (e *Euler) PredOriginalSample() *tensor.Tensor { return e.pred }

// ScaleModelInput returns x/√(σ²+1) for the σ of t's step (it locates the
// step index, as Step does). For a t that is not the scheduler's next
// timestep it returns x unchanged, and Step then reports the error.
func (e *Euler) ScaleModelInput(x *tensor.Tensor, t int) *tensor.Tensor {
	i, _, err := e.cur.locate("Euler", t)
	if err != nil {
		return x
	}
	return scaleBySigma(x, e.sigmas[i])
}

// Step computes x at the next σ (see Euler). The first Step (or
// ScaleModelInput) after SetTimesteps finds t in Timesteps(); each Step
// then moves to the next index. noise is called once when s_churn makes
// γ > 0.
func (e *Euler) Step(modelOut *tensor.Tensor, t int, x *tensor.Tensor, noise NoiseFunc) (*tensor.Tensor, error) {
	if !tensor.SameShape(modelOut.Shape(), x.Shape()) {
		return nil, fmt.Errorf("scheduler: Euler: model output %v and sample %v differ in shape", modelOut.Shape(), x.Shape())
	}
	if _, _, err := batchDims(x); err != nil {
		return nil, err
	}
	i, _, err := e.cur.locate("Euler", t)
	if err != nil {
		return nil, err
	}
	sigma := e.sigmas[i]
	gamma := 0.0
	if e.STmin <= sigma && sigma <= e.STmax {
		gamma = min(e.SChurn/float64(len(e.sigmas)-1), math.Sqrt2-1)
	}
	sigmaHat := round32(sigma * (gamma + 1))
	xs, outs := hostRead(x), hostRead(modelOut)
	var z []float32
	var churn float64
	if gamma > 0 {
		if z, err = drawNoise(noise, x); err != nil {
			return nil, err
		}
		churn = math.Sqrt(sigmaHat*sigmaHat-sigma*sigma) * e.SNoise
	}
	dt := e.sigmas[i+1] - sigmaHat
	res := make([]float32, len(xs))
	pred := make([]float32, len(xs))
	for k, v := range xs {
		xv := float64(v)
		if z != nil {
			xv += float64(z[k]) * churn
		}
		x0 := sigmaX0(e.cfg.PredictionType, float64(outs[k]), xv, sigma, sigmaHat)
		d := (xv - x0) / sigmaHat
		res[k] = float32(xv + d*dt)
		pred[k] = float32(x0)
	}
	e.cur.idx++
	e.pred = newLike(x, pred)
	return newLike(x, res), nil
}
