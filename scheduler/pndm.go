package scheduler

import (
	"fmt"
	"math"
	"slices"

	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// PNDMConfig is PNDMScheduler's configuration, with diffusers' JSON names
// and defaults (DefaultPNDMConfig).
type PNDMConfig struct {
	// NumTrainTimesteps is the number T of training timesteps.
	NumTrainTimesteps int `json:"num_train_timesteps"`
	// BetaStart and BetaEnd bound the betas of the named schedule.
	BetaStart float64 `json:"beta_start"`
	BetaEnd   float64 `json:"beta_end"`
	// BetaSchedule is linear, scaled_linear or squaredcos_cap_v2.
	BetaSchedule string `json:"beta_schedule"`
	// TrainedBetas, when set, replaces the named schedule (length T).
	TrainedBetas []float64 `json:"trained_betas"`
	// SkipPRKSteps starts with PLMS's own warm-up (Stable Diffusion's
	// setting) instead of 3 Runge–Kutta (PRK) steps of 4 model calls.
	SkipPRKSteps bool `json:"skip_prk_steps"`
	// SetAlphaToOne makes ᾱ after the last step 1 (else ᾱ_0).
	SetAlphaToOne bool `json:"set_alpha_to_one"`
	// PredictionType is epsilon or v_prediction.
	PredictionType schedule.PredictionType `json:"prediction_type"`
	// TimestepSpacing is leading, trailing or linspace (see SpacedTimesteps).
	TimestepSpacing string `json:"timestep_spacing"`
	// StepsOffset is added to leading timesteps.
	StepsOffset int `json:"steps_offset"`
}

// DefaultPNDMConfig returns diffusers' PNDMScheduler defaults.
func DefaultPNDMConfig() PNDMConfig {
	return PNDMConfig{
		NumTrainTimesteps: 1000, BetaStart: 0.0001, BetaEnd: 0.02, BetaSchedule: schedule.Linear,
		PredictionType: schedule.Epsilon, TimestepSpacing: Leading,
	}
}

// PNDM is diffusers' PNDMScheduler (pseudo numerical methods, Liu et al.
// 2022). Every model call is one Step. With δ = ⌊T/n⌋, the transfer from t
// to p (eq. 9 of the paper; ᾱ_p for p < 0 is 1 or ᾱ_0 by SetAlphaToOne) is
//
//	x_p = √(ᾱ_p/ᾱ_t)·x_t − (ᾱ_p − ᾱ_t)·e / (ᾱ_t√(1−ᾱ_p) + √(ᾱ_t(1−ᾱ_t)ᾱ_p))
//
// with e a combination of the model outputs ε_k (v-prediction is turned
// into ε first). PLMS uses the linear multistep (Adams–Bashforth) weights
// e = ε, (3ε_0−ε_1)/2, (23ε_0−16ε_1+5ε_2)/12, (55ε_0−59ε_1+37ε_2−9ε_3)/24.
// With SkipPRKSteps the timesteps are t_0, t_1, t_1, t_2, … (n+1 model
// calls): the first step goes from t_0 to t_1 with ε(t_0), the second
// recomputes it from t_0 with the mean of ε(t_0) and ε(t_1) (a Heun step),
// and the rest are PLMS steps. Without it, the first three steps are
// 4-call Runge–Kutta steps (12 calls at t, t−δ/2, t−δ/2, t−δ) that fill
// the history. The scheduler counts its calls: Step must be called with
// the timesteps in order (a t after the last step starts again).
type PNDM struct {
	cfg        PNDMConfig
	sched      *schedule.Schedule
	ac         []float64
	finalAlpha float64
	n          int
	prk, ts    []int

	counter   int
	ets       [][]float64 // model outputs (ε), oldest first
	curOut    []float64   // PRK: the running weighted sum of ε
	curSample []float32
}

// NewPNDM validates c and returns its scheduler. SetTimesteps must be
// called before Step.
func NewPNDM(c PNDMConfig) (*PNDM, error) {
	if err := c.PredictionType.Validate(); err != nil {
		return nil, err
	}
	if c.PredictionType == schedule.Sample {
		return nil, fmt.Errorf("scheduler: PNDM: prediction_type %s is not supported (epsilon or v_prediction)", c.PredictionType)
	}
	if _, err := SpacedTimesteps(c.TimestepSpacing, max(c.NumTrainTimesteps, 1), 1, 0); err != nil {
		return nil, err
	}
	tb, err := newSigmaTables(c.BetaSchedule, c.NumTrainTimesteps, c.BetaStart, c.BetaEnd, c.TrainedBetas, false)
	if err != nil {
		return nil, err
	}
	p := &PNDM{cfg: c, sched: tb.sched, ac: tb.ac, finalAlpha: 1}
	if !c.SetAlphaToOne {
		p.finalAlpha = tb.ac[0]
	}
	return p, nil
}

// Config returns the scheduler's configuration.
func (p *PNDM) Config() PNDMConfig { return p.cfg }

// Schedule returns the noise schedule (shared; do not modify).
func (p *PNDM) Schedule() *schedule.Schedule { return p.sched }

// SetTimesteps chooses n inference steps: the PRK timesteps (unless
// skipped, which needs n ≥ 4), then the PLMS ones, and resets the state.
func (p *PNDM) SetTimesteps(n int) error {
	desc, err := SpacedTimesteps(p.cfg.TimestepSpacing, p.cfg.NumTrainTimesteps, n, p.cfg.StepsOffset)
	if err != nil {
		return err
	}
	base := slices.Clone(desc) // ascending, as diffusers' _timesteps
	slices.Reverse(base)
	L := len(base)
	var prk, plms []int
	if p.cfg.SkipPRKSteps {
		// _timesteps[:-1], _timesteps[-2:-1], _timesteps[-1:], reversed.
		plms = append(plms, base[:L-1]...)
		if L >= 2 {
			plms = append(plms, base[L-2])
		}
		plms = append(plms, base[L-1])
		slices.Reverse(plms)
	} else {
		if L < 4 {
			return fmt.Errorf("scheduler: PNDM with PRK steps needs at least 4 inference steps, got %d (set skip_prk_steps)", n)
		}
		half := p.cfg.NumTrainTimesteps / n / 2
		var r []int // the last 4 timesteps, each at t and t + δ/2
		for _, t := range base[L-4:] {
			r = append(r, t, t+half)
		}
		var rr []int // r[:-1] repeated twice, without its ends
		for _, t := range r[:len(r)-1] {
			rr = append(rr, t, t)
		}
		prk = slices.Clone(rr[1 : len(rr)-1])
		slices.Reverse(prk)
		plms = slices.Clone(base[:L-3])
		slices.Reverse(plms)
	}
	for _, t := range prk {
		if t >= p.cfg.NumTrainTimesteps {
			return fmt.Errorf("scheduler: PNDM: PRK timestep %d outside [0, %d)", t, p.cfg.NumTrainTimesteps)
		}
	}
	p.n, p.prk = n, prk
	p.ts = append(slices.Clone(prk), plms...)
	p.reset()
	return nil
}

func (p *PNDM) reset() {
	p.counter, p.ets, p.curOut, p.curSample = 0, nil, nil, nil
}

// Timesteps returns the model calls' timesteps (with repeats).
func (p *PNDM) Timesteps() []int { return p.ts }

// InitNoiseSigma is 1: x_T ~ N(0, I).
func (p *PNDM) InitNoiseSigma() float64 { return 1 }

// ScaleModelInput returns x unchanged.
func (p *PNDM) ScaleModelInput(x *tensor.Tensor, t int) *tensor.Tensor { return x }

// Step takes the model output at Timesteps()[k] for the k-th call and
// returns the next sample (see PNDM). It is deterministic.
func (p *PNDM) Step(modelOut *tensor.Tensor, t int, x *tensor.Tensor, noise NoiseFunc) (*tensor.Tensor, error) {
	if p.ts == nil {
		return nil, fmt.Errorf("scheduler: PNDM: call SetTimesteps before Step")
	}
	if !tensor.SameShape(modelOut.Shape(), x.Shape()) {
		return nil, fmt.Errorf("scheduler: PNDM: model output %v and sample %v differ in shape", modelOut.Shape(), x.Shape())
	}
	if _, _, err := batchDims(x); err != nil {
		return nil, err
	}
	if p.counter >= len(p.ts) {
		p.reset()
	}
	if p.ts[p.counter] != t {
		return nil, fmt.Errorf("scheduler: PNDM: timestep %d, but call %d of %d is at timestep %d (call SetTimesteps to start again)", t, p.counter, len(p.ts), p.ts[p.counter])
	}
	if len(p.ets) > 0 && len(p.ets[0]) != x.Numel() {
		return nil, fmt.Errorf("scheduler: PNDM: sample %v differs in size from the previous steps'", x.Shape())
	}
	outs := hostRead(modelOut)
	eps := make([]float64, len(outs))
	for k, v := range outs {
		eps[k] = float64(v)
	}
	xs := hostRead(x)
	var res []float32
	var err error
	if p.counter < len(p.prk) && !p.cfg.SkipPRKSteps {
		res, err = p.stepPRK(eps, t, xs)
	} else {
		res, err = p.stepPLMS(eps, t, xs)
	}
	if err != nil {
		return nil, err
	}
	p.counter++
	return newLike(x, res), nil
}

// stepPRK is one of the 4 calls of a Runge–Kutta step (diffusers' step_prk).
func (p *PNDM) stepPRK(eps []float64, t int, xs []float32) ([]float32, error) {
	diff := 0
	if p.counter%2 == 0 {
		diff = p.cfg.NumTrainTimesteps / p.n / 2
	}
	prev := t - diff
	t = p.prk[p.counter/4*4]
	if p.curOut == nil {
		p.curOut = make([]float64, len(eps))
	}
	switch p.counter % 4 {
	case 0:
		for k, v := range eps {
			p.curOut[k] += v / 6
		}
		p.ets = append(p.ets, eps)
		p.curSample = xs
	case 1, 2:
		for k, v := range eps {
			p.curOut[k] += v / 3
		}
	case 3:
		e := make([]float64, len(eps))
		for k, v := range eps {
			e[k] = p.curOut[k] + v/6
		}
		eps = e
		p.curOut = nil
	}
	cur := xs
	if p.curSample != nil {
		cur = p.curSample
	}
	return p.prevSample(cur, t, prev, eps)
}

// stepPLMS is a linear multistep step (diffusers' step_plms).
func (p *PNDM) stepPLMS(eps []float64, t int, xs []float32) ([]float32, error) {
	if !p.cfg.SkipPRKSteps && len(p.ets) < 3 {
		return nil, fmt.Errorf("scheduler: PNDM: PLMS steps need the 3 PRK steps first")
	}
	delta := p.cfg.NumTrainTimesteps / p.n
	prev := t - delta
	if p.counter != 1 {
		if len(p.ets) > 3 {
			p.ets = p.ets[len(p.ets)-3:]
		}
		p.ets = append(p.ets, eps)
	} else {
		prev = t
		t += delta
	}
	L := len(p.ets)
	e := make([]float64, len(eps))
	et := func(i int) []float64 { return p.ets[L-i] }
	switch {
	case L == 1 && p.counter == 0:
		copy(e, eps)
		p.curSample = xs
	case L == 1 && p.counter == 1:
		for k := range e {
			e[k] = (eps[k] + et(1)[k]) / 2
		}
		xs = p.curSample
		p.curSample = nil
	case L == 2:
		for k := range e {
			e[k] = (3*et(1)[k] - et(2)[k]) / 2
		}
	case L == 3:
		for k := range e {
			e[k] = (23*et(1)[k] - 16*et(2)[k] + 5*et(3)[k]) / 12
		}
	default:
		for k := range e {
			e[k] = (55*et(1)[k] - 59*et(2)[k] + 37*et(3)[k] - 9*et(4)[k]) / 24
		}
	}
	return p.prevSample(xs, t, prev, e)
}

// prevSample is formula (9) of the PNDM paper (diffusers' _get_prev_sample).
func (p *PNDM) prevSample(xs []float32, t, prev int, e []float64) ([]float32, error) {
	if t < 0 || t >= len(p.ac) {
		return nil, fmt.Errorf("scheduler: PNDM: timestep %d outside [0, %d)", t, len(p.ac))
	}
	aT := p.ac[t]
	aP := p.finalAlpha
	if prev >= 0 {
		aP = p.ac[prev]
	}
	bT, bP := 1-aT, 1-aP
	sampleCoef := math.Sqrt(aP / aT)
	denom := aT*math.Sqrt(bP) + math.Sqrt(aT*bT*aP)
	sa, sb := math.Sqrt(aT), math.Sqrt(bT)
	res := make([]float32, len(xs))
	for k, v := range xs {
		o := e[k]
		if p.cfg.PredictionType == schedule.VPrediction {
			o = sa*o + sb*float64(v)
		}
		res[k] = float32(sampleCoef*float64(v) - (aP-aT)*o/denom)
	}
	return res, nil
}
