// Package schedule holds the discrete noise schedules of DDPM-style diffusion
// models (β_t, α_t = 1−β_t, ᾱ_t = Π_{s≤t} α_s for t = 0..T−1) and the
// closed-form quantities built on them: the forward process q(x_t | x_0), the
// SNR, the training targets of ε-, x0- and v-prediction, the conversion of a
// model output back to (x̂0, ε̂), and Min-SNR-γ loss weights.
//
// All schedule math is float64. Timesteps are integer indices 0..T−1 into
// the tables, as in diffusers (t = 0 is the least noisy step).
//
// The beta schedules follow diffusers' names and formulas:
//
//	linear             β_i = linspace(β_start, β_end, T)_i
//	scaled_linear      β_i = linspace(√β_start, √β_end, T)_i²   (Stable Diffusion)
//	squaredcos_cap_v2  β_i = min(1 − f((i+1)/T)/f(i/T), 0.999),
//	                   f(u) = cos²((u+0.008)/1.008 · π/2)      (Nichol & Dhariwal 2021;
//	                   alias "cosine"; β_start and β_end are ignored)
//	sigmoid            β_i = sigmoid(linspace(−6, 6, T)_i)·(β_end − β_start) + β_start
//	                   (GeoDiff, Xu et al. 2022; diffusers' DDPMScheduler "sigmoid")
//
// linspace is NumPy's: start + i·(stop−start)/(T−1), with the last value set to
// stop exactly. diffusers builds the same tables in float32; ours are float64,
// so they agree with diffusers' to float32 rounding (≈1e-7 relative).
//
// With rescaleZeroSNR the betas are then rescaled as in Lin et al. 2023
// ("Common Diffusion Noise Schedules and Sample Steps are Flawed", diffusers'
// rescale_zero_terminal_snr): √ᾱ is shifted and scaled so that √ᾱ_0 is kept
// and √ᾱ_{T−1} = 0, which makes ᾱ_{T−1} exactly 0 (zero terminal SNR).
package schedule

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Beta schedule kinds accepted by New (diffusers' beta_schedule values).
const (
	Linear       = "linear"
	ScaledLinear = "scaled_linear"
	Cosine       = "squaredcos_cap_v2"
	Sigmoid      = "sigmoid"
)

// CosineAlias is accepted by New as another name of Cosine.
const CosineAlias = "cosine"

// Kinds lists the beta schedule kinds New accepts, in documentation order.
var Kinds = []string{Linear, ScaledLinear, Cosine, Sigmoid}

// CosineMaxBeta caps the betas of the cosine schedule (diffusers' max_beta).
const CosineMaxBeta = 0.999

// Schedule is a discrete noise schedule over T training timesteps. The three
// tables have length T and are indexed by the timestep t ∈ [0, T).
type Schedule struct {
	// Betas are the per-step noise variances β_t.
	Betas []float64
	// Alphas are α_t = 1 − β_t.
	Alphas []float64
	// AlphasCumprod are ᾱ_t = Π_{s≤t} α_s: the signal variance kept at step t.
	AlphasCumprod []float64
	// Kind is the beta schedule it was built from ("trained" for FromBetas).
	Kind string
	// RescaledZeroSNR reports whether the zero-terminal-SNR rescale was applied.
	RescaledZeroSNR bool
}

// New builds the beta schedule kind (one of Kinds, or "cosine") over T
// training timesteps, optionally rescaled to zero terminal SNR.
//
// betaStart and betaEnd must satisfy 0 < betaStart ≤ betaEnd < 1 for every
// kind but the cosine one, which ignores them. T must be ≥ 1.
func New(kind string, T int, betaStart, betaEnd float64, rescaleZeroSNR bool) (*Schedule, error) {
	if T < 1 {
		return nil, fmt.Errorf("schedule: number of training timesteps T = %d, want ≥ 1", T)
	}
	if kind == CosineAlias {
		kind = Cosine
	}
	switch kind {
	case Linear, ScaledLinear, Sigmoid:
		if !(betaStart > 0 && betaStart <= betaEnd && betaEnd < 1) {
			return nil, fmt.Errorf("schedule: %s betas need 0 < beta_start ≤ beta_end < 1, got beta_start=%g beta_end=%g", kind, betaStart, betaEnd)
		}
	case Cosine:
	default:
		return nil, fmt.Errorf("schedule: unknown beta schedule %q (valid: %s, or %q for %s)", kind, strings.Join(Kinds, ", "), CosineAlias, Cosine)
	}
	betas := make([]float64, T)
	switch kind {
	case Linear:
		copy(betas, Linspace(betaStart, betaEnd, T))
	case ScaledLinear:
		for i, v := range Linspace(math.Sqrt(betaStart), math.Sqrt(betaEnd), T) {
			betas[i] = v * v
		}
	case Cosine:
		f := func(u float64) float64 {
			c := math.Cos((u + 0.008) / 1.008 * math.Pi / 2)
			return c * c
		}
		for i := range betas {
			t1 := float64(i) / float64(T)
			t2 := float64(i+1) / float64(T)
			betas[i] = math.Min(1-f(t2)/f(t1), CosineMaxBeta)
		}
	case Sigmoid:
		for i, v := range Linspace(-6, 6, T) {
			betas[i] = 1/(1+math.Exp(-v))*(betaEnd-betaStart) + betaStart
		}
	}
	if rescaleZeroSNR {
		if T < 2 {
			return nil, errors.New("schedule: zero-terminal-SNR rescaling needs T ≥ 2")
		}
		betas = RescaleZeroTerminalSNR(betas)
	}
	s := fromBetas(betas)
	s.Kind = kind
	s.RescaledZeroSNR = rescaleZeroSNR
	return s, nil
}

// FromBetas builds a schedule from explicit betas (diffusers' trained_betas),
// each in (0, 1]. The slice is copied.
func FromBetas(betas []float64) (*Schedule, error) {
	if len(betas) == 0 {
		return nil, errors.New("schedule: FromBetas: no betas")
	}
	for i, b := range betas {
		if !(b > 0 && b <= 1) {
			return nil, fmt.Errorf("schedule: FromBetas: beta[%d] = %g is outside (0, 1]", i, b)
		}
	}
	s := fromBetas(append([]float64(nil), betas...))
	s.Kind = "trained"
	return s, nil
}

func fromBetas(betas []float64) *Schedule {
	T := len(betas)
	s := &Schedule{Betas: betas, Alphas: make([]float64, T), AlphasCumprod: make([]float64, T)}
	p := 1.0
	for i, b := range betas {
		s.Alphas[i] = 1 - b
		p *= s.Alphas[i]
		s.AlphasCumprod[i] = p
	}
	return s
}

// Linspace returns n evenly spaced values from start to stop inclusive,
// computed as NumPy's linspace does (start + i·step, last value = stop; a
// single value is start).
func Linspace(start, stop float64, n int) []float64 {
	out := make([]float64, n)
	if n == 1 {
		out[0] = start
		return out
	}
	step := (stop - start) / float64(n-1)
	for i := range out {
		out[i] = float64(i)*step + start
	}
	if n > 1 {
		out[n-1] = stop
	}
	return out
}

// RescaleZeroTerminalSNR returns betas rescaled to zero terminal SNR (Lin et
// al. 2023, Algorithm 1; diffusers' rescale_zero_terminal_snr): with
// s_t = √ᾱ_t, s'_t = (s_t − s_{T−1})·s_0/(s_0 − s_{T−1}), and the betas
// recovered from ᾱ'_t = s'_t². The last beta becomes 1. len(betas) ≥ 2.
func RescaleZeroTerminalSNR(betas []float64) []float64 {
	T := len(betas)
	sq := make([]float64, T)
	p := 1.0
	for i, b := range betas {
		p *= 1 - b
		sq[i] = math.Sqrt(p)
	}
	s0, sT := sq[0], sq[T-1]
	for i := range sq {
		sq[i] -= sT
		sq[i] *= s0 / (s0 - sT)
	}
	out := make([]float64, T)
	prev := 0.0
	for i, v := range sq {
		ab := v * v
		if i == 0 {
			out[i] = 1 - ab
		} else {
			out[i] = 1 - ab/prev
		}
		prev = ab
	}
	return out
}

// T is the number of training timesteps.
func (s *Schedule) T() int { return len(s.Betas) }

// SNR returns the signal-to-noise ratio ᾱ_t/(1−ᾱ_t) at timestep t
// (0 at a zero-terminal-SNR last step).
func (s *Schedule) SNR(t int) float64 {
	a := s.AlphasCumprod[t]
	return a / (1 - a)
}

// Sigma returns the noise level σ_t = √((1−ᾱ_t)/ᾱ_t) of the equivalent
// variance-exploding process x_t/√ᾱ_t = x_0 + σ_t ε (+Inf where ᾱ_t = 0).
func (s *Schedule) Sigma(t int) float64 {
	a := s.AlphasCumprod[t]
	return math.Sqrt((1 - a) / a)
}

// Sigmas returns σ_t for every t (see Sigma).
func (s *Schedule) Sigmas() []float64 {
	out := make([]float64, s.T())
	for t := range out {
		out[t] = s.Sigma(t)
	}
	return out
}

// Config is the serializable description of a schedule and the model's
// prediction type, with diffusers' field names. Build turns it into a
// Schedule.
type Config struct {
	// NumTrainTimesteps is T.
	NumTrainTimesteps int `json:"num_train_timesteps"`
	// BetaStart and BetaEnd bound the betas (ignored by the cosine schedule).
	BetaStart float64 `json:"beta_start"`
	BetaEnd   float64 `json:"beta_end"`
	// BetaSchedule is one of Kinds (or "cosine").
	BetaSchedule string `json:"beta_schedule"`
	// RescaleBetasZeroSNR applies RescaleZeroTerminalSNR.
	RescaleBetasZeroSNR bool `json:"rescale_betas_zero_snr"`
	// PredictionType is what the model predicts: epsilon, sample or v_prediction.
	PredictionType PredictionType `json:"prediction_type"`
}

// DefaultConfig returns diffusers' defaults: T = 1000, linear betas
// 1e-4..0.02, no rescaling, ε-prediction (the DDPM paper's setting).
func DefaultConfig() Config {
	return Config{NumTrainTimesteps: 1000, BetaStart: 0.0001, BetaEnd: 0.02, BetaSchedule: Linear, PredictionType: Epsilon}
}

// Validate checks the prediction type (the schedule fields are checked by Build).
func (c Config) Validate() error {
	return c.PredictionType.Validate()
}

// Build validates c and returns its schedule.
func (c Config) Build() (*Schedule, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return New(c.BetaSchedule, c.NumTrainTimesteps, c.BetaStart, c.BetaEnd, c.RescaleBetasZeroSNR)
}
