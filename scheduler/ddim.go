package scheduler

import (
	"errors"
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// DDIMConfig is DDIMScheduler's configuration, with diffusers' JSON names
// and defaults (DefaultDDIMConfig). η and use_clipped_model_output, which
// diffusers passes to step(), are fields of DDIM instead.
type DDIMConfig struct {
	// NumTrainTimesteps is the number T of training timesteps.
	NumTrainTimesteps int `json:"num_train_timesteps"`
	// BetaStart and BetaEnd bound the betas of the named schedule.
	BetaStart float64 `json:"beta_start"`
	BetaEnd   float64 `json:"beta_end"`
	// BetaSchedule is linear, scaled_linear, squaredcos_cap_v2 or sigmoid.
	BetaSchedule string `json:"beta_schedule"`
	// TrainedBetas, when set, replaces the named schedule (length T).
	TrainedBetas []float64 `json:"trained_betas"`
	// ClipSample clamps x̂0 to ±ClipSampleRange.
	ClipSample bool `json:"clip_sample"`
	// SetAlphaToOne makes ᾱ after the last step 1 (else ᾱ_0, as Stable
	// Diffusion's config has it).
	SetAlphaToOne bool `json:"set_alpha_to_one"`
	// StepsOffset is added to leading timesteps (Stable Diffusion uses 1).
	StepsOffset int `json:"steps_offset"`
	// PredictionType is what the model outputs: epsilon, sample or v_prediction.
	PredictionType schedule.PredictionType `json:"prediction_type"`
	// Thresholding, DynamicThresholdingRatio, ClipSampleRange and
	// SampleMaxValue are as in DDPMConfig.
	Thresholding             bool    `json:"thresholding"`
	DynamicThresholdingRatio float64 `json:"dynamic_thresholding_ratio"`
	ClipSampleRange          float64 `json:"clip_sample_range"`
	SampleMaxValue           float64 `json:"sample_max_value"`
	// TimestepSpacing is leading, trailing or linspace (see SpacedTimesteps).
	TimestepSpacing string `json:"timestep_spacing"`
	// RescaleBetasZeroSNR rescales the betas to zero terminal SNR (use it with
	// v-prediction and trailing spacing).
	RescaleBetasZeroSNR bool `json:"rescale_betas_zero_snr"`
}

// DefaultDDIMConfig returns diffusers' DDIMScheduler defaults (note
// clip_sample is true there).
func DefaultDDIMConfig() DDIMConfig {
	return DDIMConfig{
		NumTrainTimesteps: 1000, BetaStart: 0.0001, BetaEnd: 0.02, BetaSchedule: schedule.Linear,
		ClipSample: true, SetAlphaToOne: true, PredictionType: schedule.Epsilon,
		DynamicThresholdingRatio: 0.995, ClipSampleRange: 1, SampleMaxValue: 1,
		TimestepSpacing: Leading,
	}
}

// DDIM is diffusers' DDIMScheduler (Song et al. 2021). For the step from t
// to p = t − ⌊T/n⌋ (diffusers computes p this way whatever the spacing;
// ᾱ_p for p < 0 is 1 or ᾱ_0 by SetAlphaToOne):
//
//	x̂0, ε̂ from the model output (x̂0 then clipped or thresholded)
//	σ_t = η √((1−ᾱ_p)/(1−ᾱ_t) · (1 − ᾱ_t/ᾱ_p))
//	x_p = √ᾱ_p x̂0 + √(1−ᾱ_p−σ_t²) ε̂ + σ_t z
//
// η = 0 is deterministic DDIM; η = 1 has DDPM's posterior variance. With
// η > 0 every step draws noise once (also the last one, where σ is 0).
type DDIM struct {
	// Eta is η ∈ [0, 1] (diffusers' step(eta=...)), default 0.
	Eta float64
	// UseClippedModelOutput recomputes ε̂ from the clipped x̂0 (diffusers'
	// use_clipped_model_output).
	UseClippedModelOutput bool

	cfg        DDIMConfig
	sched      *schedule.Schedule
	finalAlpha float64
	ts         []int
	n          int
	thr        thresholdConfig
	unclamped  bool // SetClip(false)
	x0         []float64
	pred       *tensor.Tensor
}

// NewDDIM validates c and returns its scheduler (η = 0). SetTimesteps must
// be called before Step.
func NewDDIM(c DDIMConfig) (*DDIM, error) {
	if err := c.PredictionType.Validate(); err != nil {
		return nil, err
	}
	if _, err := SpacedTimesteps(c.TimestepSpacing, max(c.NumTrainTimesteps, 1), 1, 0); err != nil {
		return nil, err
	}
	thr := thresholdConfig{c.ClipSample, c.Thresholding, c.ClipSampleRange, c.DynamicThresholdingRatio, c.SampleMaxValue}
	if err := thr.validate(); err != nil {
		return nil, err
	}
	s, err := betaSchedule(c.BetaSchedule, c.NumTrainTimesteps, c.BetaStart, c.BetaEnd, c.TrainedBetas, c.RescaleBetasZeroSNR)
	if err != nil {
		return nil, err
	}
	d := &DDIM{cfg: c, sched: s, thr: thr, finalAlpha: 1}
	if !c.SetAlphaToOne {
		d.finalAlpha = s.AlphasCumprod[0]
	}
	d.ts = make([]int, c.NumTrainTimesteps)
	for i := range d.ts {
		d.ts[i] = c.NumTrainTimesteps - 1 - i
	}
	return d, nil
}

// Config returns the scheduler's configuration.
func (d *DDIM) Config() DDIMConfig { return d.cfg }

// Schedule returns the noise schedule (shared; do not modify).
func (d *DDIM) Schedule() *schedule.Schedule { return d.sched }

// SetTimesteps chooses n inference timesteps with the configured spacing.
func (d *DDIM) SetTimesteps(n int) error {
	ts, err := SpacedTimesteps(d.cfg.TimestepSpacing, d.cfg.NumTrainTimesteps, n, d.cfg.StepsOffset)
	if err != nil {
		return err
	}
	d.ts, d.n = ts, n
	return nil
}

// Timesteps returns the inference timesteps, descending.
func (d *DDIM) Timesteps() []int { return d.ts }

// InitNoiseSigma is 1: x_T ~ N(0, I).
func (d *DDIM) InitNoiseSigma() float64 { return 1 }

// ScaleModelInput returns x unchanged.
func (d *DDIM) ScaleModelInput(x *tensor.Tensor, t int) *tensor.Tensor { return x }

// PredOriginalSample returns the x̂0 (after clipping) of the last Step, or
// nil before the first.
func (d *DDIM) PredOriginalSample() *tensor.Tensor { return d.pred }

// Step computes x at the previous timestep (see DDIM). modelOut has x's
// shape. noise is called once when Eta > 0.
func (d *DDIM) Step(modelOut *tensor.Tensor, t int, x *tensor.Tensor, noise NoiseFunc) (*tensor.Tensor, error) {
	if d.n == 0 {
		return nil, errors.New("scheduler: DDIM: call SetTimesteps before Step")
	}
	T := d.cfg.NumTrainTimesteps
	if t < 0 || t >= T {
		return nil, fmt.Errorf("scheduler: DDIM: timestep %d outside [0, %d)", t, T)
	}
	if !(d.Eta >= 0) {
		return nil, fmt.Errorf("scheduler: DDIM: eta = %g, want ≥ 0", d.Eta)
	}
	if !tensor.SameShape(modelOut.Shape(), x.Shape()) {
		return nil, fmt.Errorf("scheduler: DDIM: model output %v and sample %v differ in shape", modelOut.Shape(), x.Shape())
	}
	B, per, err := batchDims(x)
	if err != nil {
		return nil, err
	}
	prev := t - T/d.n

	ac := d.sched.AlphasCumprod
	aT := ac[t]
	aP := d.finalAlpha
	if prev >= 0 {
		aP = ac[prev]
	}
	bT, bP := 1-aT, 1-aP
	sa, sb := math.Sqrt(aT), math.Sqrt(bT)

	xs, outs := hostRead(x), hostRead(modelOut)
	n := B * per
	if cap(d.x0) < 2*n {
		d.x0 = make([]float64, 2*n)
	}
	x0, eps := d.x0[:n], d.x0[n:2*n]
	for k := 0; k < n; k++ {
		o, xv := float64(outs[k]), float64(xs[k])
		switch d.cfg.PredictionType {
		case schedule.Epsilon:
			x0[k] = (xv - sb*o) / sa
			eps[k] = o
		case schedule.Sample:
			x0[k] = o
			eps[k] = (xv - sa*o) / sb
		case schedule.VPrediction:
			x0[k] = sa*xv - sb*o
			eps[k] = sa*o + sb*xv
		}
	}
	if !d.unclamped {
		d.thr.apply(x0, B, per)
	}
	if d.UseClippedModelOutput {
		for k := 0; k < n; k++ {
			eps[k] = (float64(xs[k]) - sa*x0[k]) / sb
		}
	}

	variance := (bP / bT) * (1 - aT/aP)
	std := d.Eta * math.Sqrt(variance)
	dirCoef := math.Sqrt(1 - aP - std*std)
	sqP := math.Sqrt(aP)
	var z []float32
	if d.Eta > 0 {
		if z, err = drawNoise(noise, x); err != nil {
			return nil, err
		}
	}
	res := make([]float32, n)
	pred := make([]float32, n)
	for k := 0; k < n; k++ {
		v := sqP*x0[k] + dirCoef*eps[k]
		if z != nil {
			v += std * float64(z[k])
		}
		res[k] = float32(v)
		pred[k] = float32(x0[k])
	}
	d.pred = newLike(x, pred)
	return newLike(x, res), nil
}

// Clips reports whether Step clamps or thresholds x̂0 (Clipper).
func (d *DDIM) Clips() bool { return (d.thr.clip || d.thr.threshold) && !d.unclamped }

// SetClip suspends (false) or restores (true) the configured clamping or
// thresholding of x̂0 (Clipper).
func (d *DDIM) SetClip(on bool) { d.unclamped = !on }
