// Package scheduler holds diffusers-style discrete-time samplers: given a
// denoiser's output at timestep t for the sample x_t, a Scheduler computes
// x at the previous (less noisy) timestep. One scheduler per file, all with
// the Scheduler protocol, each with a Config that serializes to JSON with
// diffusers' field names (FromJSON and MarshalConfig read and write
// diffusers' scheduler_config.json files):
//
//	DDPM            DDPMScheduler                    ancestral sampling (Ho et al.)
//	DDIM            DDIMScheduler                    η-DDIM (Song et al.)
//	PNDM            PNDMScheduler                    PRK/PLMS (Liu et al.)
//	Euler           EulerDiscreteScheduler           Karras et al. Alg. 2, Karras σ
//	EulerAncestral  EulerAncestralDiscreteScheduler  k-diffusion's ancestral Euler
//	DPMSolver       DPMSolverMultistepScheduler      DPM-Solver(++) 1–3M, SDE variants
//	UniPC           UniPCMultistepScheduler          UniP/UniC predictor-corrector
//	LMS             LMSDiscreteScheduler             linear multistep in σ
//	Heun            HeunDiscreteScheduler            Karras et al. Alg. 1 (2 calls a step)
//
// A sampling loop:
//
//	s, _ := scheduler.NewDDIM(scheduler.DefaultDDIMConfig())
//	s.SetTimesteps(50)
//	x := noise(shape) // scaled by s.InitNoiseSigma()
//	for _, t := range s.Timesteps() {
//		out := model(s.ScaleModelInput(x, t), t)
//		x, err = s.Step(out, t, x, noise)
//	}
//
// Every entry of Timesteps() is one model call and one Step: Heun's list
// has its inner timesteps twice and PNDM's repeats one (PLMS) or several
// (PRK). The σ-space schedulers (Euler, Euler ancestral, LMS, Heun) have
// real timesteps such as 946.42; they implement RealTimesteps, whose
// TimestepValues() the model should be given (Timesteps() are these values
// rounded). Schedulers that keep state between steps (the multistep ones,
// Heun, and every σ-space one through diffusers' step index) find their
// place from t at the first Step after SetTimesteps, then expect the
// timesteps in order; a t after the last step starts again, so one
// scheduler can sample several batches.
//
// The schedulers reproduce diffusers (commit 58eb52c) step for step: the
// reference test replays diffusers' recorded trajectories. Coefficients and
// the per-element arithmetic are float64; samples are float32 tensors.
// DDPM and DDIM use float64 ᾱ tables (see package schedule); the others use
// diffusers' float32 ᾱ and σ tables, since their timesteps and σ schedules
// (interpolated, Karras) are computed from them.
package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// NoiseFunc returns a tensor of the given shape filled with independent
// N(0, 1) draws: a seeded random generator when sampling, or recorded noise
// when replaying a reference run.
type NoiseFunc func(shape []int) *tensor.Tensor

// Clipper is a scheduler that clamps or thresholds x̂0 before stepping
// (DDPM and DDIM, by their clip_sample and thresholding settings).
type Clipper interface {
	// Clips reports whether x̂0 is clamped or thresholded now.
	Clips() bool
	// SetClip(false) suspends the clamping and thresholding of x̂0;
	// SetClip(true) restores the configured behaviour.
	SetClip(on bool)
}

// Scheduler is the protocol shared by the samplers.
type Scheduler interface {
	// SetTimesteps chooses n inference timesteps (1 ≤ n ≤ num_train_timesteps).
	SetTimesteps(n int) error
	// Timesteps returns the inference timesteps in sampling order
	// (descending). The caller must not modify the slice.
	Timesteps() []int
	// InitNoiseSigma is the standard deviation of the initial noise x_T.
	InitNoiseSigma() float64
	// ScaleModelInput returns the denoiser's input for sample x at t
	// (x itself for DDPM and DDIM).
	ScaleModelInput(x *tensor.Tensor, t int) *tensor.Tensor
	// Step takes the model output at timestep t for sample x ([B, C, ...]) and
	// returns x at the previous timestep as a new tensor of x's shape. noise
	// supplies the Gaussian draw of stochastic steps: it is called at most once
	// per step, with x's shape, and may be nil for deterministic settings.
	Step(modelOut *tensor.Tensor, t int, x *tensor.Tensor, noise NoiseFunc) (*tensor.Tensor, error)
}

// RealTimesteps is implemented by the schedulers whose timesteps are real
// numbers: diffusers' σ-space schedulers (Euler, Euler ancestral, LMS,
// Heun) hand out t such as 946.42 (linspace spacing) or the t of a Karras
// σ. Their Timesteps() are these values rounded to the nearest integer,
// which ScaleModelInput and Step take to find their place; the denoiser
// should be evaluated at the real value TimestepValues()[i] of step i, as
// in diffusers (an integer t changes the model input slightly, not the
// scheduler's arithmetic).
type RealTimesteps interface {
	Scheduler
	// TimestepValues returns the real inference timesteps, in the order and
	// with the length of Timesteps(). The caller must not modify the slice.
	TimestepValues() []float64
}

// Timestep spacings (diffusers' timestep_spacing), see SpacedTimesteps.
const (
	Leading  = "leading"
	Trailing = "trailing"
	Linspace = "linspace"
)

// SpacedTimesteps returns n of the T training timesteps in sampling order,
// as diffusers' DDPM/DDIM set_timesteps choose them:
//
//	leading:  (n−1−i)·⌊T/n⌋ + offset                       (e.g. T=1000, n=10: 900 … 0)
//	trailing: round(T − i·T/n) − 1                          (999, 899, … 99)
//	linspace: round(linspace(0, T−1, n))[n−1−i]             (999, 888, … 0)
//
// Rounding is half to even (NumPy's). offset (steps_offset) applies to
// leading only, as in diffusers. For trailing, diffusers' np.arange(T, 0,
// −T/n) has n+1 elements for some n (61, 103, …) because of float rounding,
// giving a last timestep of −1; that spurious entry is dropped here.
func SpacedTimesteps(spacing string, T, n, offset int) ([]int, error) {
	if T < 1 {
		return nil, fmt.Errorf("scheduler: num_train_timesteps = %d, want ≥ 1", T)
	}
	if n < 1 || n > T {
		return nil, fmt.Errorf("scheduler: %d inference steps, want 1..num_train_timesteps (%d)", n, T)
	}
	ts := make([]int, 0, n)
	switch spacing {
	case Leading:
		ratio := T / n
		for i := n - 1; i >= 0; i-- {
			ts = append(ts, i*ratio+offset)
		}
	case Linspace:
		v := schedule.Linspace(0, float64(T-1), n)
		for i := n - 1; i >= 0; i-- {
			ts = append(ts, int(math.RoundToEven(v[i])))
		}
	case Trailing:
		// np.arange(T, 0, -T/n): length ceil((0−T)/step), element i = T + i·d
		// with d = (T + step) − T, as NumPy fills float ranges.
		step := -(float64(T) / float64(n))
		length := int(math.Ceil((0 - float64(T)) / step))
		start := float64(T)
		d := (start + step) - start
		for i := 0; i < length; i++ {
			v := start
			if i == 1 {
				v = start + step
			} else if i > 1 {
				v = start + float64(i)*d
			}
			if t := int(math.RoundToEven(v)) - 1; t >= 0 {
				ts = append(ts, t)
			}
		}
	default:
		return nil, fmt.Errorf("scheduler: unknown timestep_spacing %q (valid: %s, %s, %s)", spacing, Leading, Trailing, Linspace)
	}
	for _, t := range ts {
		if t < 0 || t >= T {
			return nil, fmt.Errorf("scheduler: %s spacing with steps_offset %d gives timestep %d outside [0, %d)", spacing, offset, t, T)
		}
	}
	return ts, nil
}

// betaSchedule builds the schedule of a scheduler config (trained betas win
// over the named schedule, as in diffusers).
func betaSchedule(kind string, T int, start, end float64, trained []float64, rescale bool) (*schedule.Schedule, error) {
	if len(trained) > 0 {
		if len(trained) != T {
			return nil, fmt.Errorf("scheduler: %d trained_betas for num_train_timesteps %d", len(trained), T)
		}
		betas := trained
		if rescale {
			betas = schedule.RescaleZeroTerminalSNR(trained)
		}
		return schedule.FromBetas(betas)
	}
	return schedule.New(kind, T, start, end, rescale)
}

// thresholdConfig is the x̂0 clipping shared by DDPM and DDIM.
type thresholdConfig struct {
	clip, threshold       bool
	clipRange, ratio, max float64
}

func (c thresholdConfig) validate() error {
	if c.clip && !(c.clipRange > 0) {
		return fmt.Errorf("scheduler: clip_sample_range = %g, want > 0", c.clipRange)
	}
	if c.threshold {
		if !(c.ratio > 0 && c.ratio <= 1) {
			return fmt.Errorf("scheduler: dynamic_thresholding_ratio = %g, want in (0, 1]", c.ratio)
		}
		if !(c.max >= 1) {
			return fmt.Errorf("scheduler: sample_max_value = %g, want ≥ 1", c.max)
		}
	}
	return nil
}

// apply clips or thresholds x0 (B samples of per elements) in place, as
// diffusers does: dynamic thresholding (Imagen, Saharia et al. 2022) when
// enabled, else clipping to ±clip_sample_range when enabled.
func (c thresholdConfig) apply(x0 []float64, B, per int) {
	switch {
	case c.threshold:
		abs := make([]float64, per)
		for b := 0; b < B; b++ {
			row := x0[b*per : (b+1)*per]
			for i, v := range row {
				abs[i] = math.Abs(v)
			}
			sort.Float64s(abs)
			s := min(max(quantile(abs, c.ratio), 1), c.max)
			for i, v := range row {
				row[i] = min(max(v, -s), s) / s
			}
		}
	case c.clip:
		for i, v := range x0 {
			x0[i] = min(max(v, -c.clipRange), c.clipRange)
		}
	}
}

// quantile is torch.quantile's linear interpolation on sorted values.
func quantile(sorted []float64, q float64) float64 {
	pos := q * float64(len(sorted)-1)
	lo := math.Floor(pos)
	hi := math.Ceil(pos)
	a, b := sorted[int(lo)], sorted[int(hi)]
	return a + (b-a)*(pos-lo)
}

// hostRead returns the host values of x (its own slice on the CPU, a copy
// for other backends).
func hostRead(x *tensor.Tensor) []float32 {
	if x.Storage().Host != nil || x.Numel() == 0 {
		return x.Data()
	}
	return x.ToHost()
}

// newLike returns a tensor of x's shape on x's backend holding vals.
func newLike(x *tensor.Tensor, vals []float32) *tensor.Tensor {
	if x.Backend() == tensor.CPU {
		return tensor.FromSlice(vals, x.Shape()...)
	}
	out := tensor.Empty(x.Backend(), x.Shape()...)
	x.Backend().CopyFromHost(out, vals)
	return out
}

// drawNoise calls noise for x's shape and checks what it returns.
func drawNoise(noise NoiseFunc, x *tensor.Tensor) ([]float32, error) {
	if noise == nil {
		return nil, errors.New("scheduler: this step is stochastic but the noise function is nil")
	}
	z := noise(slices.Clone(x.Shape()))
	if z == nil || z.Numel() != x.Numel() {
		return nil, fmt.Errorf("scheduler: noise function returned a tensor of the wrong size for shape %v", x.Shape())
	}
	return hostRead(z), nil
}

// batchDims returns B and the elements per sample of x ([B, ...]).
func batchDims(x *tensor.Tensor) (int, int, error) {
	if x.Rank() < 1 || x.Dim(0) == 0 {
		return 0, 0, fmt.Errorf("scheduler: sample of shape %v has no batch", x.Shape())
	}
	return x.Dim(0), x.Numel() / x.Dim(0), nil
}

// FromJSON builds a scheduler from a diffusers scheduler_config.json: its
// "_class_name" picks the scheduler (see schedulerClasses), keys it does not
// give keep diffusers' defaults. Keys starting with "_" are metadata and
// ignored; any other key the scheduler does not know is an error, so that
// no setting is silently dropped. Python's non-finite JSON numbers
// (-Infinity, Infinity, NaN, as diffusers writes lambda_min_clipped) are
// accepted.
func FromJSON(data []byte) (Scheduler, error) {
	data = quoteNonFinite(data)
	var head struct {
		Class string `json:"_class_name"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("scheduler: config: %w", err)
	}
	switch head.Class {
	case "DDPMScheduler":
		return decodeBuild(data, DefaultDDPMConfig(), NewDDPM)
	case "DDIMScheduler":
		return decodeBuild(data, DefaultDDIMConfig(), NewDDIM)
	case "PNDMScheduler":
		return decodeBuild(data, DefaultPNDMConfig(), NewPNDM)
	case "EulerDiscreteScheduler":
		return decodeBuild(data, DefaultEulerConfig(), NewEuler)
	case "EulerAncestralDiscreteScheduler":
		return decodeBuild(data, DefaultEulerAncestralConfig(), NewEulerAncestral)
	case "DPMSolverMultistepScheduler":
		return decodeBuild(data, DefaultDPMSolverConfig(), NewDPMSolver)
	case "UniPCMultistepScheduler":
		return decodeBuild(data, DefaultUniPCConfig(), NewUniPC)
	case "LMSDiscreteScheduler":
		return decodeBuild(data, DefaultLMSConfig(), NewLMS)
	case "HeunDiscreteScheduler":
		return decodeBuild(data, DefaultHeunConfig(), NewHeun)
	}
	return nil, fmt.Errorf("scheduler: config: unsupported _class_name %q (supported: %s)", head.Class, strings.Join(schedulerClasses, ", "))
}

// schedulerClasses are the diffusers classes FromJSON reads.
var schedulerClasses = []string{
	"DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "EulerDiscreteScheduler",
	"EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler",
	"LMSDiscreteScheduler", "HeunDiscreteScheduler",
}

// decodeBuild decodes data over the defaults c and builds the scheduler.
func decodeBuild[C any, S Scheduler](data []byte, c C, build func(C) (S, error)) (Scheduler, error) {
	if err := decodeStrict(data, &c); err != nil {
		return nil, err
	}
	s, err := build(c)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// quoteNonFinite turns the bare tokens NaN, Infinity and -Infinity that
// Python's json module writes (outside strings) into the strings "nan",
// "inf" and "-inf", which JSONFloat reads.
func quoteNonFinite(data []byte) []byte {
	var out []byte
	inStr, esc := false, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			out = append(out, c)
			continue
		}
		if c == '"' {
			inStr = true
			out = append(out, c)
			continue
		}
		replaced := false
		for _, tok := range []struct{ from, to string }{{"-Infinity", `"-inf"`}, {"Infinity", `"inf"`}, {"NaN", `"nan"`}} {
			if strings.HasPrefix(string(data[i:min(i+len(tok.from), len(data))]), tok.from) {
				out = append(out, tok.to...)
				i += len(tok.from) - 1
				replaced = true
				break
			}
		}
		if !replaced {
			out = append(out, c)
		}
	}
	return out
}

// JSONFloat is a float64 config value that may be non-finite (diffusers'
// lambda_min_clipped defaults to −∞). It reads JSON numbers and the
// strings "inf", "-inf", "nan" (also "Infinity", "-Infinity", "NaN"), and
// writes non-finite values as those strings.
type JSONFloat float64

// MarshalJSON writes f as a number, or "inf", "-inf", "nan".
func (f JSONFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsInf(v, 1):
		return []byte(`"inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-inf"`), nil
	case math.IsNaN(v):
		return []byte(`"nan"`), nil
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads a number or one of the non-finite strings.
func (f *JSONFloat) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		switch strings.ToLower(s) {
		case "inf", "+inf", "infinity":
			*f = JSONFloat(math.Inf(1))
		case "-inf", "-infinity":
			*f = JSONFloat(math.Inf(-1))
		case "nan":
			*f = JSONFloat(math.NaN())
		default:
			return fmt.Errorf("scheduler: config: %q is not a number", s)
		}
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = JSONFloat(v)
	return nil
}

// decodeStrict unmarshals data over dst (keeping dst's values for absent
// keys) and reports keys dst has no field for, ignoring "_" metadata keys.
func decodeStrict(data []byte, dst any) error {
	if err := json.Unmarshal(data, dst); err != nil {
		return fmt.Errorf("scheduler: config: %w", err)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return fmt.Errorf("scheduler: config: %w", err)
	}
	known := map[string]bool{}
	b, _ := json.Marshal(dst)
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(b, &fields)
	for k := range fields {
		known[k] = true
	}
	var unknown []string
	for k := range all {
		if !strings.HasPrefix(k, "_") && !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("scheduler: config: unsupported keys %s for %T", strings.Join(unknown, ", "), dst)
	}
	return nil
}

// MarshalConfig writes s's config as a diffusers scheduler_config.json
// (with "_class_name").
func MarshalConfig(s Scheduler) ([]byte, error) {
	var class string
	var cfg any
	switch s := s.(type) {
	case *DDPM:
		class, cfg = "DDPMScheduler", s.cfg
	case *DDIM:
		class, cfg = "DDIMScheduler", s.cfg
	case *PNDM:
		class, cfg = "PNDMScheduler", s.cfg
	case *Euler:
		class, cfg = "EulerDiscreteScheduler", s.cfg
	case *EulerAncestral:
		class, cfg = "EulerAncestralDiscreteScheduler", s.cfg
	case *DPMSolver:
		class, cfg = "DPMSolverMultistepScheduler", s.cfg
	case *UniPC:
		class, cfg = "UniPCMultistepScheduler", s.cfg
	case *LMS:
		class, cfg = "LMSDiscreteScheduler", s.cfg
	case *Heun:
		class, cfg = "HeunDiscreteScheduler", s.cfg
	default:
		return nil, fmt.Errorf("scheduler: MarshalConfig: unsupported scheduler %T", s)
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["_class_name"] = class
	return json.MarshalIndent(m, "", "  ")
}
