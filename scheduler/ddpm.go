package scheduler

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// DDPM variance types (diffusers' variance_type).
const (
	// FixedSmall is the posterior variance β̃_t = (1−ᾱ_prev)/(1−ᾱ_t)·β'_t,
	// clamped to ≥ 1e-20.
	FixedSmall = "fixed_small"
	// FixedSmallLog is FixedSmall with the standard deviation computed as
	// exp(½ log β̃_t) (numerically the same).
	FixedSmallLog = "fixed_small_log"
	// FixedLarge is β'_t itself (the DDPM paper's σ² = β upper bound).
	FixedLarge = "fixed_large"
	// Learned takes the variance from the second half of the model output's
	// channels ([B, 2C, ...]); the standard deviation is its square root.
	Learned = "learned"
	// LearnedRange interpolates log-variances (Nichol & Dhariwal 2021): with v
	// the second half of the output's channels, frac = (v+1)/2,
	// log σ² = frac·log β'_t + (1−frac)·log β̃_t.
	LearnedRange = "learned_range"
)

// DDPMConfig is DDPMScheduler's configuration, with diffusers' JSON names
// and defaults (DefaultDDPMConfig).
type DDPMConfig struct {
	// NumTrainTimesteps is the number T of training timesteps.
	NumTrainTimesteps int `json:"num_train_timesteps"`
	// BetaStart and BetaEnd bound the betas of the named schedule.
	BetaStart float64 `json:"beta_start"`
	BetaEnd   float64 `json:"beta_end"`
	// BetaSchedule is linear, scaled_linear, squaredcos_cap_v2 or sigmoid.
	BetaSchedule string `json:"beta_schedule"`
	// TrainedBetas, when set, replaces the named schedule (length T).
	TrainedBetas []float64 `json:"trained_betas"`
	// VarianceType is fixed_small, fixed_small_log, fixed_large, learned or
	// learned_range. (diffusers' fixed_large_log is not supported: diffusers
	// takes the square root of log β there, which is NaN.)
	VarianceType string `json:"variance_type"`
	// ClipSample clamps x̂0 to ±ClipSampleRange.
	ClipSample bool `json:"clip_sample"`
	// PredictionType is what the model outputs: epsilon, sample or v_prediction.
	PredictionType schedule.PredictionType `json:"prediction_type"`
	// Thresholding enables dynamic thresholding of x̂0 (Imagen): per sample,
	// s = clamp(quantile(|x̂0|, DynamicThresholdingRatio), 1, SampleMaxValue),
	// x̂0 = clamp(x̂0, −s, s)/s. It takes precedence over ClipSample.
	Thresholding             bool    `json:"thresholding"`
	DynamicThresholdingRatio float64 `json:"dynamic_thresholding_ratio"`
	// ClipSampleRange is the clamp bound of ClipSample.
	ClipSampleRange float64 `json:"clip_sample_range"`
	// SampleMaxValue caps the dynamic threshold s.
	SampleMaxValue float64 `json:"sample_max_value"`
	// TimestepSpacing is leading, trailing or linspace (see SpacedTimesteps).
	TimestepSpacing string `json:"timestep_spacing"`
	// StepsOffset is added to leading timesteps (Stable Diffusion uses 1).
	StepsOffset int `json:"steps_offset"`
	// RescaleBetasZeroSNR rescales the betas to zero terminal SNR.
	RescaleBetasZeroSNR bool `json:"rescale_betas_zero_snr"`
}

// DefaultDDPMConfig returns diffusers' DDPMScheduler defaults (note
// clip_sample is true there).
func DefaultDDPMConfig() DDPMConfig {
	return DDPMConfig{
		NumTrainTimesteps: 1000, BetaStart: 0.0001, BetaEnd: 0.02, BetaSchedule: schedule.Linear,
		VarianceType: FixedSmall, ClipSample: true, PredictionType: schedule.Epsilon,
		DynamicThresholdingRatio: 0.995, ClipSampleRange: 1, SampleMaxValue: 1,
		TimestepSpacing: Leading,
	}
}

// DDPM is diffusers' DDPMScheduler: ancestral sampling of Ho et al. 2020 on
// any subsequence of the training timesteps. For the step from t to the
// previous inference timestep p (−1 after the last one, with ᾱ_{−1} = 1):
//
//	α'_t = ᾱ_t/ᾱ_p, β'_t = 1 − α'_t
//	x̂0 from the model output (then clipped or thresholded)
//	μ = √ᾱ_p β'_t/(1−ᾱ_t) · x̂0 + √α'_t (1−ᾱ_p)/(1−ᾱ_t) · x_t
//	x_p = μ + σ_t z   for t > 0 (one noise draw per step), x_p = μ at t = 0
//
// with σ_t² given by the variance type. Note that like diffusers the noise
// is also added (with σ ≈ 1e-10 for fixed_small) on a last step whose t is
// positive, as with steps_offset 1.
type DDPM struct {
	cfg       DDPMConfig
	sched     *schedule.Schedule
	ts        []int
	set       bool // SetTimesteps was called
	thr       thresholdConfig
	unclamped bool // SetClip(false)
	x0        []float64
	pred      *tensor.Tensor
}

// NewDDPM validates c and returns its scheduler, with the T training
// timesteps as the initial inference timesteps.
func NewDDPM(c DDPMConfig) (*DDPM, error) {
	if err := c.PredictionType.Validate(); err != nil {
		return nil, err
	}
	switch c.VarianceType {
	case FixedSmall, FixedSmallLog, FixedLarge, Learned, LearnedRange:
	case "fixed_large_log":
		return nil, fmt.Errorf("scheduler: DDPM variance_type fixed_large_log is not supported (diffusers samples with sqrt(log β), which is NaN)")
	default:
		return nil, fmt.Errorf("scheduler: unknown DDPM variance_type %q (valid: %s, %s, %s, %s, %s)", c.VarianceType, FixedSmall, FixedSmallLog, FixedLarge, Learned, LearnedRange)
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
	d := &DDPM{cfg: c, sched: s, thr: thr}
	d.ts = make([]int, c.NumTrainTimesteps)
	for i := range d.ts {
		d.ts[i] = c.NumTrainTimesteps - 1 - i
	}
	return d, nil
}

// Config returns the scheduler's configuration.
func (d *DDPM) Config() DDPMConfig { return d.cfg }

// Schedule returns the noise schedule (shared; do not modify).
func (d *DDPM) Schedule() *schedule.Schedule { return d.sched }

// SetTimesteps chooses n inference timesteps with the configured spacing.
func (d *DDPM) SetTimesteps(n int) error {
	ts, err := SpacedTimesteps(d.cfg.TimestepSpacing, d.cfg.NumTrainTimesteps, n, d.cfg.StepsOffset)
	if err != nil {
		return err
	}
	d.ts, d.set = ts, true
	return nil
}

// Timesteps returns the inference timesteps, descending.
func (d *DDPM) Timesteps() []int { return d.ts }

// InitNoiseSigma is 1: x_T ~ N(0, I).
func (d *DDPM) InitNoiseSigma() float64 { return 1 }

// ScaleModelInput returns x unchanged.
func (d *DDPM) ScaleModelInput(x *tensor.Tensor, t int) *tensor.Tensor { return x }

// PredOriginalSample returns the x̂0 (after clipping) of the last Step, or
// nil before the first.
func (d *DDPM) PredOriginalSample() *tensor.Tensor { return d.pred }

// prevTimestep is diffusers' previous_timestep: the next inference timestep
// after t (−1 after the last), or t−1 before SetTimesteps.
func (d *DDPM) prevTimestep(t int) (int, error) {
	if !d.set {
		return t - 1, nil
	}
	for i, v := range d.ts {
		if v == t {
			if i == len(d.ts)-1 {
				return -1, nil
			}
			return d.ts[i+1], nil
		}
	}
	return 0, fmt.Errorf("scheduler: DDPM: timestep %d is not one of the inference timesteps", t)
}

// Step computes x at the previous inference timestep (see DDPM). modelOut
// has x's shape, or [B, 2C, ...] for x of [B, C, ...] with the learned
// variance types. noise is called once when t > 0.
func (d *DDPM) Step(modelOut *tensor.Tensor, t int, x *tensor.Tensor, noise NoiseFunc) (*tensor.Tensor, error) {
	T := d.cfg.NumTrainTimesteps
	if t < 0 || t >= T {
		return nil, fmt.Errorf("scheduler: DDPM: timestep %d outside [0, %d)", t, T)
	}
	B, per, err := batchDims(x)
	if err != nil {
		return nil, err
	}
	learned := d.cfg.VarianceType == Learned || d.cfg.VarianceType == LearnedRange
	// outStride: elements per sample of modelOut; the model's prediction is
	// the first per of them, the learned variance values the next per.
	outStride := per
	if learned {
		ok := modelOut.Rank() == x.Rank() && x.Rank() >= 2 && modelOut.Dim(0) == B && modelOut.Dim(1) == 2*x.Dim(1)
		for i := 2; ok && i < x.Rank(); i++ {
			ok = modelOut.Dim(i) == x.Dim(i)
		}
		if !ok {
			return nil, fmt.Errorf("scheduler: DDPM %s: model output %v must have twice the channels of the sample %v", d.cfg.VarianceType, modelOut.Shape(), x.Shape())
		}
		outStride = 2 * per
	} else if !tensor.SameShape(modelOut.Shape(), x.Shape()) {
		return nil, fmt.Errorf("scheduler: DDPM: model output %v and sample %v differ in shape", modelOut.Shape(), x.Shape())
	}
	prev, err := d.prevTimestep(t)
	if err != nil {
		return nil, err
	}

	ac := d.sched.AlphasCumprod
	aT := ac[t]
	aP := 1.0
	if prev >= 0 {
		aP = ac[prev]
	}
	bT, bP := 1-aT, 1-aP
	curAlpha := aT / aP
	curBeta := 1 - curAlpha
	sa, sb := math.Sqrt(aT), math.Sqrt(bT)

	xs, outs := hostRead(x), hostRead(modelOut)
	if cap(d.x0) < B*per {
		d.x0 = make([]float64, B*per)
	}
	x0 := d.x0[:B*per]
	for b := 0; b < B; b++ {
		for i := 0; i < per; i++ {
			o, xv := float64(outs[b*outStride+i]), float64(xs[b*per+i])
			switch d.cfg.PredictionType {
			case schedule.Epsilon:
				x0[b*per+i] = (xv - sb*o) / sa
			case schedule.Sample:
				x0[b*per+i] = o
			case schedule.VPrediction:
				x0[b*per+i] = sa*xv - sb*o
			}
		}
	}
	if !d.unclamped {
		d.thr.apply(x0, B, per)
	}

	c0 := math.Sqrt(aP) * curBeta / bT
	ct := math.Sqrt(curAlpha) * bP / bT
	res := make([]float32, B*per)
	pred := make([]float32, B*per)
	var z []float32
	if t > 0 {
		if z, err = drawNoise(noise, x); err != nil {
			return nil, err
		}
	}
	// Posterior variance, clamped as diffusers' _get_variance does.
	small := max(bP/bT*curBeta, 1e-20)
	for b := 0; b < B; b++ {
		for i := 0; i < per; i++ {
			k := b*per + i
			v := c0*x0[k] + ct*float64(xs[k])
			if z != nil {
				var std float64
				switch d.cfg.VarianceType {
				case FixedSmall:
					std = math.Sqrt(small)
				case FixedSmallLog:
					std = math.Exp(0.5 * math.Log(small))
				case FixedLarge:
					std = math.Sqrt(curBeta)
				case Learned:
					std = math.Sqrt(float64(outs[b*outStride+per+i]))
				case LearnedRange:
					frac := (float64(outs[b*outStride+per+i]) + 1) / 2
					logVar := frac*math.Log(curBeta) + (1-frac)*math.Log(small)
					std = math.Exp(0.5 * logVar)
				}
				v += std * float64(z[k])
			}
			res[k] = float32(v)
			pred[k] = float32(x0[k])
		}
	}
	d.pred = newLike(x, pred)
	return newLike(x, res), nil
}

// Clips reports whether Step clamps or thresholds x̂0 (Clipper).
func (d *DDPM) Clips() bool { return (d.thr.clip || d.thr.threshold) && !d.unclamped }

// SetClip suspends (false) or restores (true) the configured clamping or
// thresholding of x̂0 (Clipper).
func (d *DDPM) SetClip(on bool) { d.unclamped = !on }
