package scheduler

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// EulerAncestralConfig is EulerAncestralDiscreteScheduler's configuration,
// with diffusers' JSON names and defaults (DefaultEulerAncestralConfig).
// The fields mean what they do in EulerConfig.
type EulerAncestralConfig struct {
	NumTrainTimesteps   int                     `json:"num_train_timesteps"`
	BetaStart           float64                 `json:"beta_start"`
	BetaEnd             float64                 `json:"beta_end"`
	BetaSchedule        string                  `json:"beta_schedule"`
	TrainedBetas        []float64               `json:"trained_betas"`
	PredictionType      schedule.PredictionType `json:"prediction_type"`
	TimestepSpacing     string                  `json:"timestep_spacing"`
	StepsOffset         int                     `json:"steps_offset"`
	RescaleBetasZeroSNR bool                    `json:"rescale_betas_zero_snr"`
}

// DefaultEulerAncestralConfig returns diffusers'
// EulerAncestralDiscreteScheduler defaults.
func DefaultEulerAncestralConfig() EulerAncestralConfig {
	return EulerAncestralConfig{
		NumTrainTimesteps: 1000, BetaStart: 0.0001, BetaEnd: 0.02, BetaSchedule: schedule.Linear,
		PredictionType: schedule.Epsilon, TimestepSpacing: Linspace,
	}
}

// EulerAncestral is diffusers' EulerAncestralDiscreteScheduler
// (k-diffusion's sample_euler_ancestral with η = 1). From σ = σ_i to
// σ' = σ_{i+1} (σ_n = 0), with the model fed x/√(σ²+1):
//
//	σ_up = √(σ'²(σ²−σ'²)/σ²),  σ_down = √(σ'² − σ_up²)
//	x̂0 = x − σ ε̂,  d = (x − x̂0)/σ
//	x' = x + (σ_down − σ)·d + σ_up·z
//
// Every step draws noise once (also the last, where σ_up = 0). σ_i and the
// real timesteps are as in Euler without Karras σ.
type EulerAncestral struct {
	cfg    EulerAncestralConfig
	tb     sigmaTables
	tv     []float64
	sigmas []float64
	cur    cursor
	pred   *tensor.Tensor
}

// NewEulerAncestral validates c and returns its scheduler, with all T
// training timesteps and their σ set.
func NewEulerAncestral(c EulerAncestralConfig) (*EulerAncestral, error) {
	if err := c.PredictionType.Validate(); err != nil {
		return nil, err
	}
	if c.PredictionType == schedule.Sample {
		return nil, fmt.Errorf("scheduler: EulerAncestral: prediction_type sample is not implemented (as in diffusers)")
	}
	if _, err := SpacedTimesteps(c.TimestepSpacing, max(c.NumTrainTimesteps, 1), 1, 0); err != nil {
		return nil, err
	}
	tb, err := newSigmaTables(c.BetaSchedule, c.NumTrainTimesteps, c.BetaStart, c.BetaEnd, c.TrainedBetas, c.RescaleBetasZeroSNR)
	if err != nil {
		return nil, err
	}
	e := &EulerAncestral{cfg: c, tb: tb}
	e.tv, e.sigmas = tb.fullSchedule()
	e.cur.reset(roundTimesteps(e.tv))
	return e, nil
}

// Config returns the scheduler's configuration.
func (e *EulerAncestral) Config() EulerAncestralConfig { return e.cfg }

// Schedule returns the noise schedule (shared; do not modify).
func (e *EulerAncestral) Schedule() *schedule.Schedule { return e.tb.sched }

// SetTimesteps chooses n inference timesteps and their σ, and resets the
// step index.
func (e *EulerAncestral) SetTimesteps(n int) error {
	tv, sig, err := e.tb.realSchedule(sigmaConfig{}, e.cfg.TimestepSpacing, n, e.cfg.StepsOffset, 0)
	if err != nil {
		return err
	}
	e.tv, e.sigmas = tv, sig
	e.cur.reset(roundTimesteps(tv))
	return nil
}

// Timesteps returns the inference timesteps rounded to integers.
func (e *EulerAncestral) Timesteps() []int { return e.cur.ts }

// TimestepValues returns the real inference timesteps (float32 values).
func (e *EulerAncestral) TimestepValues() []float64 { return e.tv }

// Sigmas returns the inference σ followed by the final 0.
func (e *EulerAncestral) Sigmas() []float64 { return e.sigmas }

// InitNoiseSigma is the largest σ (√(σ²+1) of it for leading spacing).
func (e *EulerAncestral) InitNoiseSigma() float64 {
	return initSigma(e.sigmas, e.cfg.TimestepSpacing)
}

// PredOriginalSample returns the x̂0 of the last Step, or nil before the
// first.
func (e *EulerAncestral) PredOriginalSample() *tensor.Tensor { return e.pred }

// ScaleModelInput returns x/√(σ²+1), as Euler's.
func (e *EulerAncestral) ScaleModelInput(x *tensor.Tensor, t int) *tensor.Tensor {
	i, _, err := e.cur.locate("EulerAncestral", t)
	if err != nil {
		return x
	}
	return scaleBySigma(x, e.sigmas[i])
}

// Step computes x at the next σ (see EulerAncestral), drawing noise once.
// The step index works as Euler's.
func (e *EulerAncestral) Step(modelOut *tensor.Tensor, t int, x *tensor.Tensor, noise NoiseFunc) (*tensor.Tensor, error) {
	if !tensor.SameShape(modelOut.Shape(), x.Shape()) {
		return nil, fmt.Errorf("scheduler: EulerAncestral: model output %v and sample %v differ in shape", modelOut.Shape(), x.Shape())
	}
	if _, _, err := batchDims(x); err != nil {
		return nil, err
	}
	i, _, err := e.cur.locate("EulerAncestral", t)
	if err != nil {
		return nil, err
	}
	from, to := e.sigmas[i], e.sigmas[i+1]
	up := math.Sqrt(to * to * (from*from - to*to) / (from * from))
	down := math.Sqrt(max(to*to-up*up, 0))
	dt := down - from
	z, err := drawNoise(noise, x)
	if err != nil {
		return nil, err
	}
	xs, outs := hostRead(x), hostRead(modelOut)
	res := make([]float32, len(xs))
	pred := make([]float32, len(xs))
	for k, v := range xs {
		xv := float64(v)
		x0 := sigmaX0(e.cfg.PredictionType, float64(outs[k]), xv, from, from)
		d := (xv - x0) / from
		res[k] = float32(xv + d*dt + float64(z[k])*up)
		pred[k] = float32(x0)
	}
	e.cur.idx++
	e.pred = newLike(x, pred)
	return newLike(x, res), nil
}
