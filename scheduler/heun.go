package scheduler

import (
	"fmt"

	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// HeunConfig is HeunDiscreteScheduler's configuration, with diffusers' JSON
// names and defaults (DefaultHeunConfig). The σ fields mean what they do in
// EulerConfig.
type HeunConfig struct {
	NumTrainTimesteps    int                     `json:"num_train_timesteps"`
	BetaStart            float64                 `json:"beta_start"`
	BetaEnd              float64                 `json:"beta_end"`
	BetaSchedule         string                  `json:"beta_schedule"`
	TrainedBetas         []float64               `json:"trained_betas"`
	PredictionType       schedule.PredictionType `json:"prediction_type"`
	UseKarrasSigmas      bool                    `json:"use_karras_sigmas"`
	UseExponentialSigmas bool                    `json:"use_exponential_sigmas"`
	UseBetaSigmas        bool                    `json:"use_beta_sigmas"`
	// ClipSample clamps x̂0 to ±ClipSampleRange.
	ClipSample      bool    `json:"clip_sample"`
	ClipSampleRange float64 `json:"clip_sample_range"`
	TimestepSpacing string  `json:"timestep_spacing"`
	StepsOffset     int     `json:"steps_offset"`
}

// DefaultHeunConfig returns diffusers' HeunDiscreteScheduler defaults.
func DefaultHeunConfig() HeunConfig {
	return HeunConfig{
		NumTrainTimesteps: 1000, BetaStart: 0.00085, BetaEnd: 0.012, BetaSchedule: schedule.Linear,
		PredictionType: schedule.Epsilon, ClipSampleRange: 1, TimestepSpacing: Linspace,
	}
}

// Heun is diffusers' HeunDiscreteScheduler (Karras et al. 2022, Algorithm
// 1 with γ = 0; k-diffusion's sample_heun). Each of the n steps from σ_i to
// σ_{i+1} takes two model calls, so Timesteps() has 2n−1 entries:
// t_0, t_1, t_1, t_2, t_2, …, t_{n−1}, t_{n−1}, each one model call and one
// Step (the protocol needs no change: the scheduler alternates between its
// two states). With the model fed x/√(σ²+1) for the σ of the call:
//
//	first call (at σ_i):       d = (x_i − x̂0)/σ_i,  x' = x_i + (σ_{i+1} − σ_i) d
//	second call (at σ_{i+1}):  d' = (x' − x̂0')/σ_{i+1}
//	                           x_{i+1} = x_i + (σ_{i+1} − σ_i)(d + d')/2
//
// Step returns x' after a first call and x_{i+1} after a second. The last
// step, to σ_n = 0, is a single Euler call (it ends in the second state, as
// in diffusers). σ_i and the real timesteps are Euler's.
type Heun struct {
	cfg    HeunConfig
	tb     sigmaTables
	sc     sigmaConfig
	tv     []float64 // doubled real timesteps
	sigmas []float64 // doubled σ
	cur    cursor
	pred   *tensor.Tensor

	second    bool      // the next call is the second of a step
	prevDeriv []float64 // d of the first call
	dt        float64
	sample    []float64 // x_i of the first call
}

// NewHeun validates c and returns its scheduler, with all T training
// timesteps and their σ set.
func NewHeun(c HeunConfig) (*Heun, error) {
	if err := c.PredictionType.Validate(); err != nil {
		return nil, err
	}
	sc := sigmaConfig{karras: c.UseKarrasSigmas, exponential: c.UseExponentialSigmas, beta: c.UseBetaSigmas}
	if err := sc.validate(); err != nil {
		return nil, err
	}
	if c.ClipSample && !(c.ClipSampleRange > 0) {
		return nil, fmt.Errorf("scheduler: clip_sample_range = %g, want > 0", c.ClipSampleRange)
	}
	if _, err := SpacedTimesteps(c.TimestepSpacing, max(c.NumTrainTimesteps, 1), 1, 0); err != nil {
		return nil, err
	}
	tb, err := newSigmaTables(c.BetaSchedule, c.NumTrainTimesteps, c.BetaStart, c.BetaEnd, c.TrainedBetas, false)
	if err != nil {
		return nil, err
	}
	h := &Heun{cfg: c, tb: tb, sc: sc}
	h.install(tb.fullSchedule())
	return h, nil
}

// Config returns the scheduler's configuration.
func (h *Heun) Config() HeunConfig { return h.cfg }

// Schedule returns the noise schedule (shared; do not modify).
func (h *Heun) Schedule() *schedule.Schedule { return h.tb.sched }

// SetTimesteps chooses n inference steps (2n−1 model calls), and resets the
// state and the step index.
func (h *Heun) SetTimesteps(n int) error {
	tv, sig, err := h.tb.realSchedule(h.sc, h.cfg.TimestepSpacing, n, h.cfg.StepsOffset, 0)
	if err != nil {
		return err
	}
	h.install(tv, sig)
	return nil
}

// install doubles the inner timesteps and σ of a schedule (n timesteps,
// n+1 σ) and resets the state and the step index.
func (h *Heun) install(tv, sig []float64) {
	h.tv = []float64{tv[0]}
	for _, t := range tv[1:] {
		h.tv = append(h.tv, t, t)
	}
	h.sigmas = []float64{sig[0]}
	for _, s := range sig[1 : len(sig)-1] {
		h.sigmas = append(h.sigmas, s, s)
	}
	h.sigmas = append(h.sigmas, sig[len(sig)-1])
	h.cur.reset(roundTimesteps(h.tv))
	h.clear()
}

func (h *Heun) clear() {
	h.second, h.prevDeriv, h.dt, h.sample = false, nil, 0, nil
}

// Timesteps returns the model calls' timesteps rounded to integers (2n−1,
// the inner ones twice).
func (h *Heun) Timesteps() []int { return h.cur.ts }

// TimestepValues returns the model calls' real timesteps (float32 values).
func (h *Heun) TimestepValues() []float64 { return h.tv }

// Sigmas returns σ per model call followed by the final 0 (the inner σ
// twice, as diffusers keeps them).
func (h *Heun) Sigmas() []float64 { return h.sigmas }

// InitNoiseSigma is the largest σ (√(σ²+1) of it for leading spacing).
func (h *Heun) InitNoiseSigma() float64 { return initSigma(h.sigmas, h.cfg.TimestepSpacing) }

// StateInFirstOrder reports whether the next Step is the first call of a
// step (diffusers' state_in_first_order).
func (h *Heun) StateInFirstOrder() bool { return !h.second }

// PredOriginalSample returns the x̂0 of the last Step, or nil before the
// first.
func (h *Heun) PredOriginalSample() *tensor.Tensor { return h.pred }

// ScaleModelInput returns x/√(σ²+1) for the σ of the call (Euler's).
func (h *Heun) ScaleModelInput(x *tensor.Tensor, t int) *tensor.Tensor {
	i, fresh, err := h.cur.locate("Heun", t)
	if err != nil {
		return x
	}
	if fresh {
		h.clear()
	}
	return scaleBySigma(x, h.sigmas[i])
}

// Step takes the model output of one call (see Heun). The step index works
// as Euler's. It is deterministic.
func (h *Heun) Step(modelOut *tensor.Tensor, t int, x *tensor.Tensor, noise NoiseFunc) (*tensor.Tensor, error) {
	if !tensor.SameShape(modelOut.Shape(), x.Shape()) {
		return nil, fmt.Errorf("scheduler: Heun: model output %v and sample %v differ in shape", modelOut.Shape(), x.Shape())
	}
	if _, _, err := batchDims(x); err != nil {
		return nil, err
	}
	i, fresh, err := h.cur.locate("Heun", t)
	if err != nil {
		return nil, err
	}
	if fresh {
		h.clear()
	}
	if h.second && len(h.sample) != x.Numel() {
		return nil, fmt.Errorf("scheduler: Heun: sample %v differs in size from the first call's", x.Shape())
	}
	var sigma, next float64
	if !h.second {
		sigma, next = h.sigmas[i], h.sigmas[i+1]
	} else {
		sigma, next = h.sigmas[i-1], h.sigmas[i]
	}
	in := sigma // the σ of the model's input
	if h.second {
		in = next
	}
	xs, outs := hostRead(x), hostRead(modelOut)
	res := make([]float32, len(xs))
	pred := make([]float32, len(xs))
	d := make([]float64, len(xs))
	for k, v := range xs {
		x0 := sigmaX0(h.cfg.PredictionType, float64(outs[k]), float64(v), in, in)
		if h.cfg.ClipSample {
			x0 = min(max(x0, -h.cfg.ClipSampleRange), h.cfg.ClipSampleRange)
		}
		pred[k] = float32(x0)
		d[k] = (float64(v) - x0) / in
	}
	if !h.second {
		dt := next - sigma
		for k, v := range xs {
			res[k] = float32(float64(v) + d[k]*dt)
		}
		h.prevDeriv, h.dt, h.sample, h.second = d, dt, to64s(xs), true
	} else {
		for k := range xs {
			res[k] = float32(h.sample[k] + (h.prevDeriv[k]+d[k])/2*h.dt)
		}
		h.clear()
	}
	h.cur.idx++
	h.pred = newLike(x, pred)
	return newLike(x, res), nil
}
