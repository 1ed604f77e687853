package scheduler

import (
	"fmt"
	"math"
	"slices"

	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// DPM-Solver algorithm types (diffusers' algorithm_type).
const (
	// DPMSolverPP is DPM-Solver++ (Lu et al. 2022b): the ODE in the data
	// prediction x̂0.
	DPMSolverPP = "dpmsolver++"
	// DPMSolverPlain is the original DPM-Solver (Lu et al. 2022a) in ε.
	DPMSolverPlain = "dpmsolver"
	// SDEDPMSolverPP is the stochastic (SDE) variant of DPM-Solver++.
	SDEDPMSolverPP = "sde-dpmsolver++"
	// SDEDPMSolver is the stochastic variant of DPM-Solver (orders 1 and 2).
	SDEDPMSolver = "sde-dpmsolver"
)

// DPMSolverConfig is DPMSolverMultistepScheduler's configuration, with
// diffusers' JSON names and defaults (DefaultDPMSolverConfig).
type DPMSolverConfig struct {
	// NumTrainTimesteps is the number T of training timesteps.
	NumTrainTimesteps int `json:"num_train_timesteps"`
	// BetaStart and BetaEnd bound the betas of the named schedule.
	BetaStart float64 `json:"beta_start"`
	BetaEnd   float64 `json:"beta_end"`
	// BetaSchedule is linear, scaled_linear or squaredcos_cap_v2.
	BetaSchedule string `json:"beta_schedule"`
	// TrainedBetas, when set, replaces the named schedule (length T).
	TrainedBetas []float64 `json:"trained_betas"`
	// SolverOrder is the multistep order, 1 to 3 (2 for guided sampling).
	SolverOrder int `json:"solver_order"`
	// PredictionType is what the model outputs: epsilon, sample or v_prediction.
	PredictionType schedule.PredictionType `json:"prediction_type"`
	// Thresholding, DynamicThresholdingRatio and SampleMaxValue threshold x̂0
	// as in DDPMConfig (DPM-Solver++ only in effect).
	Thresholding             bool    `json:"thresholding"`
	DynamicThresholdingRatio float64 `json:"dynamic_thresholding_ratio"`
	SampleMaxValue           float64 `json:"sample_max_value"`
	// AlgorithmType is dpmsolver++, dpmsolver, sde-dpmsolver++ or
	// sde-dpmsolver (deis is read as dpmsolver++, as diffusers does).
	AlgorithmType string `json:"algorithm_type"`
	// SolverType is the second-order formula: midpoint or heun (bh1, bh2
	// and logrho are read as midpoint, as diffusers does).
	SolverType string `json:"solver_type"`
	// LowerOrderFinal uses lower orders for the last steps when there are
	// fewer than 15 steps.
	LowerOrderFinal bool `json:"lower_order_final"`
	// EulerAtFinal makes the last step first order.
	EulerAtFinal bool `json:"euler_at_final"`
	// UseKarrasSigmas and UseExponentialSigmas choose the σ schedule (see
	// EulerConfig); UseBetaSigmas, UseLuLambdas and UseFlowSigmas are not
	// supported.
	UseKarrasSigmas      bool `json:"use_karras_sigmas"`
	UseExponentialSigmas bool `json:"use_exponential_sigmas"`
	UseBetaSigmas        bool `json:"use_beta_sigmas"`
	UseLuLambdas         bool `json:"use_lu_lambdas"`
	UseFlowSigmas        bool `json:"use_flow_sigmas"`
	// FlowShift only applies to flow σ (unsupported) and is kept as read.
	FlowShift float64 `json:"flow_shift"`
	// FinalSigmasType is zero (needs a ++ algorithm) or sigma_min.
	FinalSigmasType string `json:"final_sigmas_type"`
	// LambdaMinClipped drops the timesteps whose λ = log(α/σ) is below it
	// (−∞: none; for the cosine schedule).
	LambdaMinClipped JSONFloat `json:"lambda_min_clipped"`
	// VarianceType is null, or learned / learned_range for a model whose
	// output has twice the sample's channels (the first half is used).
	VarianceType *string `json:"variance_type"`
	// TimestepSpacing is linspace, leading or trailing (n+1 points with the
	// last dropped, so that 0 is not a timestep; see DPMSolver).
	TimestepSpacing string `json:"timestep_spacing"`
	// StepsOffset is added to leading timesteps.
	StepsOffset int `json:"steps_offset"`
	// RescaleBetasZeroSNR rescales the betas to zero terminal SNR (last ᾱ
	// 2⁻²⁴).
	RescaleBetasZeroSNR bool `json:"rescale_betas_zero_snr"`
	// UseDynamicShifting is not supported; TimeShiftType (which only applies
	// with it) is kept as read.
	UseDynamicShifting bool   `json:"use_dynamic_shifting"`
	TimeShiftType      string `json:"time_shift_type"`
}

// DefaultDPMSolverConfig returns diffusers' DPMSolverMultistepScheduler
// defaults (DPM-Solver++ 2M).
func DefaultDPMSolverConfig() DPMSolverConfig {
	return DPMSolverConfig{
		NumTrainTimesteps: 1000, BetaStart: 0.0001, BetaEnd: 0.02, BetaSchedule: schedule.Linear,
		SolverOrder: 2, PredictionType: schedule.Epsilon, DynamicThresholdingRatio: 0.995, SampleMaxValue: 1,
		AlgorithmType: DPMSolverPP, SolverType: "midpoint", LowerOrderFinal: true, FlowShift: 1,
		FinalSigmasType: FinalSigmaZero, LambdaMinClipped: JSONFloat(math.Inf(-1)),
		TimestepSpacing: Linspace, TimeShiftType: "exponential",
	}
}

// vpSigma returns (α, σ_t) of the VP process with noise level σ:
// α = 1/√(σ²+1), σ_t = σ·α; and λ = log α − log σ_t.
func vpSigma(sigma float64) (alpha, sigmaT, lambda float64) {
	alpha = 1 / math.Sqrt(sigma*sigma+1)
	sigmaT = sigma * alpha
	return alpha, sigmaT, math.Log(alpha) - math.Log(sigmaT)
}

// multistepSchedule returns the integer timesteps and σ (with the final σ,
// float32-rounded) of DPM-Solver and UniPC: n of n+1 spaced timesteps up
// to last (the first, 0, dropped) with their σ, or a Karras/exponential σ
// schedule between the training σ's ends with rounded timesteps from σ.
func (tb sigmaTables) multistepSchedule(sc sigmaConfig, spacing string, n, offset, last int, finalType string) ([]int, []float64, error) {
	T := len(tb.trainSig)
	if n < 1 || n > T {
		return nil, nil, fmt.Errorf("scheduler: %d inference steps, want 1..num_train_timesteps (%d)", n, T)
	}
	var ts []int
	switch spacing {
	case Linspace:
		v := schedule.Linspace(0, float64(last-1), n+1)
		for i := n; i >= 1; i-- {
			ts = append(ts, int(math.RoundToEven(v[i])))
		}
	case Leading:
		ratio := last / (n + 1)
		for i := n; i >= 1; i-- {
			ts = append(ts, i*ratio+offset)
		}
	case Trailing:
		// np.arange(last, 0, −T/n).round() − 1 (a spurious −1 dropped, as in
		// SpacedTimesteps).
		step := -(float64(T) / float64(n))
		start := float64(last)
		length := int(math.Ceil((0 - start) / step))
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
		return nil, nil, fmt.Errorf("scheduler: unknown timestep_spacing %q (valid: %s, %s, %s)", spacing, Leading, Trailing, Linspace)
	}
	var sig []float64
	final := 0.0
	desc := slices.Clone(tb.trainSig)
	slices.Reverse(desc)
	if conv, ok := sc.convert(desc, n); ok {
		sig = conv
		ts = ts[:0]
		for _, s := range sig {
			ts = append(ts, int(math.RoundToEven(sigmaToT(s, tb.logSig))))
		}
		if finalType == FinalSigmaMin {
			final = sig[len(sig)-1]
		}
	} else {
		for _, t := range ts {
			if t < 0 || t >= T {
				return nil, nil, fmt.Errorf("scheduler: %s spacing with steps_offset %d gives timestep %d outside [0, %d)", spacing, offset, t, T)
			}
			sig = append(sig, tb.trainSig[t])
		}
		if finalType == FinalSigmaMin {
			final = tb.trainSig[0]
		}
	}
	if len(ts) == 0 {
		return nil, nil, fmt.Errorf("scheduler: no timesteps for %d steps", n)
	}
	sigmas := make([]float64, 0, len(sig)+1)
	for _, s := range append(sig, final) {
		sigmas = append(sigmas, round32(s))
	}
	return ts, sigmas, nil
}

// meanOutput returns the model output's values for the sample: all of
// them, or the first half of the channels with a learned variance
// (modelOut [B, 2C, ...] for x [B, C, ...]).
func meanOutput(name string, modelOut, x *tensor.Tensor, learned bool) ([]float64, error) {
	outs := hostRead(modelOut)
	if !learned {
		if !tensor.SameShape(modelOut.Shape(), x.Shape()) {
			return nil, fmt.Errorf("scheduler: %s: model output %v and sample %v differ in shape", name, modelOut.Shape(), x.Shape())
		}
		return to64s(outs), nil
	}
	ok := modelOut.Rank() == x.Rank() && x.Rank() >= 2 && modelOut.Dim(0) == x.Dim(0) && modelOut.Dim(1) == 2*x.Dim(1)
	for i := 2; ok && i < x.Rank(); i++ {
		ok = modelOut.Dim(i) == x.Dim(i)
	}
	if !ok {
		return nil, fmt.Errorf("scheduler: %s: with a learned variance the model output %v must have twice the channels of the sample %v", name, modelOut.Shape(), x.Shape())
	}
	B, per := x.Dim(0), x.Numel()/x.Dim(0)
	out := make([]float64, 0, x.Numel())
	for b := 0; b < B; b++ {
		for _, v := range outs[b*2*per : b*2*per+per] {
			out = append(out, float64(v))
		}
	}
	return out, nil
}

func to64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// DPMSolver is diffusers' DPMSolverMultistepScheduler (Lu et al. 2022).
// Timesteps t_i are integers: with linspace spacing, round(linspace(0,
// T−1, n+1)) without 0, descending (999, 949, …, 50 for n = 20); σ_i is
// σ_{t_i} (or the Karras/exponential schedule, with t_i = round(t(σ_i))),
// and σ_n = 0. The model sees x itself (VP, InitNoiseSigma 1). With
// α = 1/√(σ²+1), σ_t = σα, λ = log(α/σ_t), h = λ_{i+1} − λ_i and x̂0_i the
// data prediction of step i, DPM-Solver++ steps (2M, midpoint) are
//
//	order 1:  x_{i+1} = (σ_{t,i+1}/σ_{t,i}) x_i − α_{i+1}(e^{−h} − 1) x̂0_i
//	order 2:  D0 = x̂0_i, D1 = (x̂0_i − x̂0_{i−1})·h/h_{i−1}
//	          x_{i+1} = (σ_{t,i+1}/σ_{t,i}) x_i − α_{i+1}(e^{−h} − 1)(D0 + D1/2)
//
// with diffusers' heun, third-order, DPM-Solver (ε) and SDE variants (the
// SDE ones draw noise once per step). A step of length 0 (h = 0: a Karras
// schedule ending at σ_min with final_sigmas_type sigma_min) keeps x, where
// diffusers' higher-order formulas give 0/0. The first step is first order, as is
// the last with final σ 0 (and the last two with fewer than 15 steps and
// LowerOrderFinal). The scheduler keeps the last model outputs and a step
// index (see Step).
type DPMSolver struct {
	cfg     DPMSolverConfig
	tb      sigmaTables
	sc      sigmaConfig
	thr     thresholdConfig
	learned bool
	sigmas  []float64
	cur     cursor

	outs     [][]float64 // converted model outputs, oldest first (len SolverOrder)
	lowerNum int         // diffusers' lower_order_nums
}

// NewDPMSolver validates c and returns its scheduler. SetTimesteps must be
// called before Step.
func NewDPMSolver(c DPMSolverConfig) (*DPMSolver, error) {
	if err := c.PredictionType.Validate(); err != nil {
		return nil, err
	}
	if c.AlgorithmType == "deis" {
		c.AlgorithmType = DPMSolverPP
	}
	switch c.AlgorithmType {
	case DPMSolverPP, DPMSolverPlain, SDEDPMSolverPP, SDEDPMSolver:
	default:
		return nil, fmt.Errorf("scheduler: unknown DPM-Solver algorithm_type %q (valid: %s, %s, %s, %s)", c.AlgorithmType, DPMSolverPP, DPMSolverPlain, SDEDPMSolverPP, SDEDPMSolver)
	}
	switch c.SolverType {
	case "midpoint", "heun":
	case "logrho", "bh1", "bh2":
		c.SolverType = "midpoint"
	default:
		return nil, fmt.Errorf("scheduler: unknown DPM-Solver solver_type %q (valid: midpoint, heun)", c.SolverType)
	}
	if c.SolverOrder < 1 || c.SolverOrder > 3 {
		return nil, fmt.Errorf("scheduler: DPM-Solver solver_order = %d, want 1, 2 or 3", c.SolverOrder)
	}
	if c.SolverOrder == 3 && c.AlgorithmType == SDEDPMSolver {
		return nil, fmt.Errorf("scheduler: DPM-Solver %s has no third-order update", SDEDPMSolver)
	}
	switch c.FinalSigmasType {
	case FinalSigmaZero:
		if c.AlgorithmType != DPMSolverPP && c.AlgorithmType != SDEDPMSolverPP {
			return nil, fmt.Errorf("scheduler: final_sigmas_type %s is not supported for algorithm_type %s; use %s", FinalSigmaZero, c.AlgorithmType, FinalSigmaMin)
		}
	case FinalSigmaMin:
	default:
		return nil, fmt.Errorf("scheduler: unknown final_sigmas_type %q (valid: %s, %s)", c.FinalSigmasType, FinalSigmaZero, FinalSigmaMin)
	}
	learned := false
	if c.VarianceType != nil {
		switch *c.VarianceType {
		case Learned, LearnedRange:
			learned = true
		default:
			return nil, fmt.Errorf("scheduler: DPM-Solver variance_type %q, want null, %s or %s", *c.VarianceType, Learned, LearnedRange)
		}
	}
	for _, u := range []struct {
		on   bool
		name string
	}{{c.UseLuLambdas, "use_lu_lambdas"}, {c.UseFlowSigmas, "use_flow_sigmas"}, {c.UseDynamicShifting, "use_dynamic_shifting"}} {
		if u.on {
			return nil, fmt.Errorf("scheduler: DPM-Solver %s is not supported", u.name)
		}
	}
	sc := sigmaConfig{karras: c.UseKarrasSigmas, exponential: c.UseExponentialSigmas, beta: c.UseBetaSigmas}
	if err := sc.validate(); err != nil {
		return nil, err
	}
	thr := thresholdConfig{threshold: c.Thresholding, ratio: c.DynamicThresholdingRatio, max: c.SampleMaxValue}
	if err := thr.validate(); err != nil {
		return nil, err
	}
	if _, err := SpacedTimesteps(c.TimestepSpacing, max(c.NumTrainTimesteps, 1), 1, 0); err != nil {
		return nil, err
	}
	tb, err := newSigmaTables(c.BetaSchedule, c.NumTrainTimesteps, c.BetaStart, c.BetaEnd, c.TrainedBetas, c.RescaleBetasZeroSNR)
	if err != nil {
		return nil, err
	}
	return &DPMSolver{cfg: c, tb: tb, sc: sc, thr: thr, learned: learned, cur: cursor{lastOnMissing: true}}, nil
}

// Config returns the scheduler's configuration (deis and the bh/logrho
// solver types read as diffusers registers them).
func (d *DPMSolver) Config() DPMSolverConfig { return d.cfg }

// Schedule returns the noise schedule (shared; do not modify).
func (d *DPMSolver) Schedule() *schedule.Schedule { return d.tb.sched }

// SetTimesteps chooses n inference timesteps and their σ and clears the
// solver's history.
func (d *DPMSolver) SetTimesteps(n int) error {
	// The last timestep whose λ is not below lambda_min_clipped.
	T := d.cfg.NumTrainTimesteps
	clipped := 0
	for _, a := range d.tb.ac {
		if lambda := 0.5*math.Log(a) - 0.5*math.Log(1-a); lambda < float64(d.cfg.LambdaMinClipped) {
			clipped++
		}
	}
	ts, sig, err := d.tb.multistepSchedule(d.sc, d.cfg.TimestepSpacing, n, d.cfg.StepsOffset, T-clipped, d.cfg.FinalSigmasType)
	if err != nil {
		return err
	}
	d.sigmas = sig
	d.cur.reset(ts)
	d.clear()
	return nil
}

func (d *DPMSolver) clear() {
	d.outs = make([][]float64, d.cfg.SolverOrder)
	d.lowerNum = 0
}

// Timesteps returns the inference timesteps, descending.
func (d *DPMSolver) Timesteps() []int { return d.cur.ts }

// Sigmas returns the inference σ followed by the final σ.
func (d *DPMSolver) Sigmas() []float64 { return d.sigmas }

// InitNoiseSigma is 1: x_T ~ N(0, I).
func (d *DPMSolver) InitNoiseSigma() float64 { return 1 }

// ScaleModelInput returns x unchanged.
func (d *DPMSolver) ScaleModelInput(x *tensor.Tensor, t int) *tensor.Tensor { return x }

// convert is diffusers' convert_model_output: x̂0 for the ++ algorithms
// (thresholded if configured), ε for the others.
func (d *DPMSolver) convert(o []float64, xs []float32, sigma float64, B int) []float64 {
	alpha, sigmaT, _ := vpSigma(sigma)
	out := make([]float64, len(o))
	pp := d.cfg.AlgorithmType == DPMSolverPP || d.cfg.AlgorithmType == SDEDPMSolverPP
	for k, v := range o {
		xv := float64(xs[k])
		var x0, eps float64
		switch d.cfg.PredictionType {
		case schedule.Epsilon:
			x0, eps = (xv-sigmaT*v)/alpha, v
		case schedule.Sample:
			x0, eps = v, (xv-alpha*v)/sigmaT
		case schedule.VPrediction:
			x0, eps = alpha*xv-sigmaT*v, alpha*v+sigmaT*xv
		}
		if pp {
			out[k] = x0
		} else {
			out[k] = eps
		}
	}
	if d.cfg.Thresholding {
		if pp {
			d.thr.apply(out, B, len(out)/B)
		} else {
			x0 := make([]float64, len(out))
			for k, e := range out {
				x0[k] = (float64(xs[k]) - sigmaT*e) / alpha
			}
			d.thr.apply(x0, B, len(x0)/B)
			for k := range out {
				out[k] = (float64(xs[k]) - alpha*x0[k]) / sigmaT
			}
		}
	}
	return out
}

// Step computes x at the next timestep (see DPMSolver). The step index
// works as Euler's, except that a t that is not a timestep starts at the
// last step (as diffusers' index_for_timestep). noise is called once per
// step by the SDE algorithms.
func (d *DPMSolver) Step(modelOut *tensor.Tensor, t int, x *tensor.Tensor, noise NoiseFunc) (*tensor.Tensor, error) {
	B, _, err := batchDims(x)
	if err != nil {
		return nil, err
	}
	o, err := meanOutput("DPMSolver", modelOut, x, d.learned)
	if err != nil {
		return nil, err
	}
	i, fresh, err := d.cur.locate("DPMSolver", t)
	if err != nil {
		return nil, err
	}
	if fresh {
		d.clear()
	}
	if prev := d.outs[len(d.outs)-1]; prev != nil && len(prev) != len(o) {
		return nil, fmt.Errorf("scheduler: DPMSolver: sample %v differs in size from the previous steps'", x.Shape())
	}
	sde := d.cfg.AlgorithmType == SDEDPMSolverPP || d.cfg.AlgorithmType == SDEDPMSolver
	var z []float32
	if sde {
		if z, err = drawNoise(noise, x); err != nil {
			return nil, err
		}
	}
	n := len(d.cur.ts)
	lowerFinal := i == n-1 && (d.cfg.EulerAtFinal || (d.cfg.LowerOrderFinal && n < 15) || d.cfg.FinalSigmasType == FinalSigmaZero)
	lowerSecond := i == n-2 && d.cfg.LowerOrderFinal && n < 15

	xs := hostRead(x)
	m := d.convert(o, xs, d.sigmas[i], B)
	copy(d.outs, d.outs[1:])
	d.outs[len(d.outs)-1] = m

	order := 3
	switch {
	case d.cfg.SolverOrder == 1 || d.lowerNum < 1 || lowerFinal:
		order = 1
	case d.cfg.SolverOrder == 2 || d.lowerNum < 2 || lowerSecond:
		order = 2
	}
	res := d.update(order, i, xs, z)
	if d.lowerNum < d.cfg.SolverOrder {
		d.lowerNum++
	}
	d.cur.idx++
	return newLike(x, res), nil
}

// update is diffusers' first/second/third-order multistep update from step
// i to i+1 on the stored outputs (m0 the newest).
func (d *DPMSolver) update(order, i int, xs []float32, z []float32) []float32 {
	alphaT, sigmaT, lambdaT := vpSigma(d.sigmas[i+1])
	alphaS0, sigmaS0, lambdaS0 := vpSigma(d.sigmas[i])
	h := lambdaT - lambdaS0
	if h == 0 {
		// A step of length 0 (a Karras/exponential schedule ending at
		// σ_min with final_sigmas_type sigma_min): x stays, which is what
		// diffusers gets where it does not divide 0 by 0.
		return slices.Clone(xs)
	}
	L := len(d.outs)
	m0 := d.outs[L-1]
	// Coefficients of x, D0, D1, D2 and z.
	var cx, c0, c1, c2, cz float64
	em, ep := math.Exp(-h), math.Exp(h)
	switch d.cfg.AlgorithmType {
	case DPMSolverPP:
		cx, c0 = sigmaT/sigmaS0, -alphaT*(em-1)
	case DPMSolverPlain:
		cx, c0 = alphaT/alphaS0, -sigmaT*(ep-1)
	case SDEDPMSolverPP:
		cx, c0, cz = sigmaT/sigmaS0*em, alphaT*(1-math.Exp(-2*h)), sigmaT*math.Sqrt(1-math.Exp(-2*h))
	case SDEDPMSolver:
		cx, c0, cz = alphaT/alphaS0, -2*sigmaT*(ep-1), sigmaT*math.Sqrt(math.Exp(2*h)-1)
	}
	var r0, r1 float64
	var m1, m2 []float64
	if order >= 2 {
		_, _, lambdaS1 := vpSigma(d.sigmas[i-1])
		r0 = (lambdaS0 - lambdaS1) / h
		m1 = d.outs[L-2]
		mid := d.cfg.SolverType == "midpoint"
		switch d.cfg.AlgorithmType {
		case DPMSolverPP:
			if mid {
				c1 = -0.5 * alphaT * (em - 1)
			} else {
				c1 = alphaT * ((em-1)/h + 1)
			}
		case DPMSolverPlain:
			if mid {
				c1 = -0.5 * sigmaT * (ep - 1)
			} else {
				c1 = -sigmaT * ((ep-1)/h - 1)
			}
		case SDEDPMSolverPP:
			if mid {
				c1 = 0.5 * alphaT * (1 - math.Exp(-2*h))
			} else {
				c1 = alphaT * ((1-math.Exp(-2*h))/(-2*h) + 1)
			}
		case SDEDPMSolver:
			if mid {
				c1 = -sigmaT * (ep - 1)
			} else {
				c1 = -2 * sigmaT * ((ep-1)/h - 1)
			}
		}
	}
	if order == 3 {
		_, _, lambdaS2 := vpSigma(d.sigmas[i-2])
		r1 = (d.lambdaAt(i-1) - lambdaS2) / h
		m2 = d.outs[L-3]
		switch d.cfg.AlgorithmType {
		case DPMSolverPP:
			c1 = alphaT * ((em-1)/h + 1)
			c2 = -alphaT * ((em-1+h)/(h*h) - 0.5)
		case DPMSolverPlain:
			c1 = -sigmaT * ((ep-1)/h - 1)
			c2 = -sigmaT * ((ep-1-h)/(h*h) - 0.5)
		case SDEDPMSolverPP:
			e2 := math.Exp(-2 * h)
			c1 = alphaT * ((1-e2)/(-2*h) + 1)
			c2 = alphaT * ((1-e2-2*h)/((2*h)*(2*h)) - 0.5)
		}
	}
	res := make([]float32, len(xs))
	for k, v := range xs {
		y := cx*float64(v) + c0*m0[k]
		switch order {
		case 2:
			y += c1 * (m0[k] - m1[k]) / r0
		case 3:
			d10 := (m0[k] - m1[k]) / r0
			d11 := (m1[k] - m2[k]) / r1
			y += c1*(d10+r0/(r0+r1)*(d10-d11)) + c2*(d10-d11)/(r0+r1)
		}
		if z != nil {
			y += cz * float64(z[k])
		}
		res[k] = float32(y)
	}
	return res
}

// lambdaAt is λ at step j's σ.
func (d *DPMSolver) lambdaAt(j int) float64 {
	_, _, l := vpSigma(d.sigmas[j])
	return l
}
