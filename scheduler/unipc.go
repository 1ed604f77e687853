package scheduler

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// UniPCConfig is UniPCMultistepScheduler's configuration, with diffusers'
// JSON names and defaults (DefaultUniPCConfig).
type UniPCConfig struct {
	// NumTrainTimesteps is the number T of training timesteps.
	NumTrainTimesteps int `json:"num_train_timesteps"`
	// BetaStart and BetaEnd bound the betas of the named schedule.
	BetaStart float64 `json:"beta_start"`
	BetaEnd   float64 `json:"beta_end"`
	// BetaSchedule is linear, scaled_linear or squaredcos_cap_v2.
	BetaSchedule string `json:"beta_schedule"`
	// TrainedBetas, when set, replaces the named schedule (length T).
	TrainedBetas []float64 `json:"trained_betas"`
	// SolverOrder is the order p ≥ 1 of the predictor (the corrector has
	// order p+1); 2 for guided sampling, 3 otherwise.
	SolverOrder int `json:"solver_order"`
	// PredictionType is what the model outputs: epsilon, sample or v_prediction.
	PredictionType schedule.PredictionType `json:"prediction_type"`
	// Thresholding, DynamicThresholdingRatio and SampleMaxValue threshold x̂0
	// (with PredictX0) as in DDPMConfig.
	Thresholding             bool    `json:"thresholding"`
	DynamicThresholdingRatio float64 `json:"dynamic_thresholding_ratio"`
	SampleMaxValue           float64 `json:"sample_max_value"`
	// PredictX0 solves in the data prediction x̂0 (UniPC's default), else in ε.
	PredictX0 bool `json:"predict_x0"`
	// SolverType is bh1 (B(h) = h) or bh2 (B(h) = e^h − 1); midpoint, heun
	// and logrho are read as bh2, as diffusers does.
	SolverType string `json:"solver_type"`
	// LowerOrderFinal lowers the order of the last steps (order ≤ steps left).
	LowerOrderFinal bool `json:"lower_order_final"`
	// DisableCorrector lists the step indices after which UniC is skipped.
	DisableCorrector []int `json:"disable_corrector"`
	// SolverP (another scheduler as predictor) must be null.
	SolverP json.RawMessage `json:"solver_p"`
	// UseKarrasSigmas, UseExponentialSigmas, SigmaMin and SigmaMax choose the
	// σ schedule (see EulerConfig); UseBetaSigmas and UseFlowSigmas are not
	// supported.
	UseKarrasSigmas      bool `json:"use_karras_sigmas"`
	UseExponentialSigmas bool `json:"use_exponential_sigmas"`
	UseBetaSigmas        bool `json:"use_beta_sigmas"`
	UseFlowSigmas        bool `json:"use_flow_sigmas"`
	// FlowShift only applies to flow σ (unsupported) and is kept as read.
	FlowShift float64 `json:"flow_shift"`
	// TimestepSpacing is linspace, leading or trailing (as DPM-Solver's).
	TimestepSpacing string `json:"timestep_spacing"`
	// StepsOffset is added to leading timesteps.
	StepsOffset int `json:"steps_offset"`
	// FinalSigmasType is zero or sigma_min.
	FinalSigmasType string `json:"final_sigmas_type"`
	// RescaleBetasZeroSNR rescales the betas to zero terminal SNR (last ᾱ
	// 2⁻²⁴).
	RescaleBetasZeroSNR bool `json:"rescale_betas_zero_snr"`
	// UseDynamicShifting is not supported; TimeShiftType is kept as read.
	UseDynamicShifting bool     `json:"use_dynamic_shifting"`
	TimeShiftType      string   `json:"time_shift_type"`
	SigmaMin           *float64 `json:"sigma_min"`
	SigmaMax           *float64 `json:"sigma_max"`
	// ShiftTerminal (flow σ) must be null.
	ShiftTerminal *float64 `json:"shift_terminal"`
}

// DefaultUniPCConfig returns diffusers' UniPCMultistepScheduler defaults.
func DefaultUniPCConfig() UniPCConfig {
	return UniPCConfig{
		NumTrainTimesteps: 1000, BetaStart: 0.0001, BetaEnd: 0.02, BetaSchedule: schedule.Linear,
		SolverOrder: 2, PredictionType: schedule.Epsilon, DynamicThresholdingRatio: 0.995, SampleMaxValue: 1,
		PredictX0: true, SolverType: "bh2", LowerOrderFinal: true, DisableCorrector: []int{}, FlowShift: 1,
		TimestepSpacing: Linspace, FinalSigmasType: FinalSigmaZero, TimeShiftType: "exponential",
	}
}

// UniPC is diffusers' UniPCMultistepScheduler (Zhao et al. 2023): a
// multistep predictor (UniP) and a corrector (UniC) that reuses the model
// call of the next step, so it costs one model call per step. Timesteps and
// σ are DPM-Solver's. With x̂0 prediction (PredictX0), α, σ_t, λ as in
// DPMSolver, h = λ_{i+1} − λ_i, hh = −h, r_k = (λ_{i−k} − λ_i)/h,
// D_k = (m_{i−k} − m_i)/r_k:
//
//	φ₁ = e^{hh} − 1,  B(h) = hh (bh1) or e^{hh} − 1 (bh2)
//	b_j = j!·φ_{j+1}(hh)/B(h)  with φ_{k+1} = φ_k/hh − 1/k!
//	UniP: x_{i+1} = (σ_{t,i+1}/σ_{t,i}) x_i − α_{i+1} φ₁ m_i − α_{i+1} B(h) Σ_k ρ_k D_k
//
// where ρ solves R ρ = b (R_jk = r_k^j) on the first p−1 rows, ρ = ½ for
// p = 2. UniC, once the model output m_{i+1} is known, redoes the step with
// the extra difference m_{i+1} − m_i (ρ from the full system, ½ for order
// 1). The last step's order is lowered with LowerOrderFinal; the first
// steps warm up from order 1. The scheduler keeps the last outputs, the
// last sample and a step index (see Step).
type UniPC struct {
	cfg    UniPCConfig
	tb     sigmaTables
	sc     sigmaConfig
	thr    thresholdConfig
	sigmas []float64
	cur    cursor

	outs       [][]float64 // converted model outputs, oldest first (len SolverOrder)
	lowerNum   int
	thisOrder  int
	lastSample []float64
}

// NewUniPC validates c and returns its scheduler. SetTimesteps must be
// called before Step.
func NewUniPC(c UniPCConfig) (*UniPC, error) {
	if err := c.PredictionType.Validate(); err != nil {
		return nil, err
	}
	switch c.SolverType {
	case "bh1", "bh2":
	case "midpoint", "heun", "logrho":
		c.SolverType = "bh2"
	default:
		return nil, fmt.Errorf("scheduler: unknown UniPC solver_type %q (valid: bh1, bh2)", c.SolverType)
	}
	if c.SolverOrder < 1 {
		return nil, fmt.Errorf("scheduler: UniPC solver_order = %d, want ≥ 1", c.SolverOrder)
	}
	if c.FinalSigmasType != FinalSigmaZero && c.FinalSigmasType != FinalSigmaMin {
		return nil, fmt.Errorf("scheduler: unknown final_sigmas_type %q (valid: %s, %s)", c.FinalSigmasType, FinalSigmaZero, FinalSigmaMin)
	}
	if len(c.SolverP) > 0 && string(c.SolverP) != "null" {
		return nil, fmt.Errorf("scheduler: UniPC solver_p is not supported")
	}
	if c.ShiftTerminal != nil {
		return nil, fmt.Errorf("scheduler: UniPC shift_terminal is not supported")
	}
	for _, u := range []struct {
		on   bool
		name string
	}{{c.UseFlowSigmas, "use_flow_sigmas"}, {c.UseDynamicShifting, "use_dynamic_shifting"}} {
		if u.on {
			return nil, fmt.Errorf("scheduler: UniPC %s is not supported", u.name)
		}
	}
	sc := sigmaConfig{karras: c.UseKarrasSigmas, exponential: c.UseExponentialSigmas, beta: c.UseBetaSigmas, sigmaMin: c.SigmaMin, sigmaMax: c.SigmaMax}
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
	return &UniPC{cfg: c, tb: tb, sc: sc, thr: thr, cur: cursor{lastOnMissing: true}}, nil
}

// Config returns the scheduler's configuration (solver types read as
// diffusers registers them).
func (u *UniPC) Config() UniPCConfig { return u.cfg }

// Schedule returns the noise schedule (shared; do not modify).
func (u *UniPC) Schedule() *schedule.Schedule { return u.tb.sched }

// SetTimesteps chooses n inference timesteps and their σ and clears the
// solver's history.
func (u *UniPC) SetTimesteps(n int) error {
	ts, sig, err := u.tb.multistepSchedule(u.sc, u.cfg.TimestepSpacing, n, u.cfg.StepsOffset, u.cfg.NumTrainTimesteps, u.cfg.FinalSigmasType)
	if err != nil {
		return err
	}
	u.sigmas = sig
	u.cur.reset(ts)
	u.clear()
	return nil
}

func (u *UniPC) clear() {
	u.outs = make([][]float64, u.cfg.SolverOrder)
	u.lowerNum, u.thisOrder, u.lastSample = 0, 0, nil
}

// Timesteps returns the inference timesteps, descending.
func (u *UniPC) Timesteps() []int { return u.cur.ts }

// Sigmas returns the inference σ followed by the final σ.
func (u *UniPC) Sigmas() []float64 { return u.sigmas }

// InitNoiseSigma is 1: x_T ~ N(0, I).
func (u *UniPC) InitNoiseSigma() float64 { return 1 }

// ScaleModelInput returns x unchanged.
func (u *UniPC) ScaleModelInput(x *tensor.Tensor, t int) *tensor.Tensor { return x }

// convert is diffusers' convert_model_output: x̂0 (thresholded if
// configured) with PredictX0, else ε.
func (u *UniPC) convert(o []float64, xs []float32, sigma float64, B int) []float64 {
	alpha, sigmaT, _ := vpSigma(sigma)
	out := make([]float64, len(o))
	for k, v := range o {
		xv := float64(xs[k])
		switch {
		case u.cfg.PredictX0 && u.cfg.PredictionType == schedule.Epsilon:
			out[k] = (xv - sigmaT*v) / alpha
		case u.cfg.PredictX0 && u.cfg.PredictionType == schedule.VPrediction:
			out[k] = alpha*xv - sigmaT*v
		case u.cfg.PredictionType == schedule.Sample && !u.cfg.PredictX0:
			out[k] = (xv - alpha*v) / sigmaT
		case u.cfg.PredictionType == schedule.VPrediction:
			out[k] = alpha*v + sigmaT*xv
		default: // x̂0 = output, or ε = output
			out[k] = v
		}
	}
	if u.cfg.PredictX0 && u.cfg.Thresholding {
		u.thr.apply(out, B, len(out)/B)
	}
	return out
}

// Step computes x at the next timestep (see UniPC): first the corrector on
// x with this model output (after the first step), then the predictor.
// The step index works as DPMSolver's. It is deterministic.
func (u *UniPC) Step(modelOut *tensor.Tensor, t int, x *tensor.Tensor, noise NoiseFunc) (*tensor.Tensor, error) {
	B, _, err := batchDims(x)
	if err != nil {
		return nil, err
	}
	o, err := meanOutput("UniPC", modelOut, x, false)
	if err != nil {
		return nil, err
	}
	i, fresh, err := u.cur.locate("UniPC", t)
	if err != nil {
		return nil, err
	}
	if fresh {
		u.clear()
	}
	if u.lastSample != nil && len(u.lastSample) != len(o) {
		return nil, fmt.Errorf("scheduler: UniPC: sample %v differs in size from the previous steps'", x.Shape())
	}
	xs := hostRead(x)
	useCorrector := i > 0 && !slices.Contains(u.cfg.DisableCorrector, i-1) && u.lastSample != nil
	m := u.convert(o, xs, u.sigmas[i], B)
	sample := to64s(xs)
	if useCorrector {
		sample = u.correct(m, i, u.thisOrder)
	}
	copy(u.outs, u.outs[1:])
	u.outs[len(u.outs)-1] = m
	order := u.cfg.SolverOrder
	if u.cfg.LowerOrderFinal {
		order = min(order, len(u.cur.ts)-i)
	}
	u.thisOrder = min(order, u.lowerNum+1)
	u.lastSample = sample
	res := u.predict(sample, i, u.thisOrder)
	if u.lowerNum < u.cfg.SolverOrder {
		u.lowerNum++
	}
	u.cur.idx++
	return newLike(x, res), nil
}

// bhCoefficients returns, for the step from σ index s to t (h = λ_t − λ_s),
// the r_k of the earlier outputs at σ indices idx[k], and φ₁, B(h), b.
func (u *UniPC) bhCoefficients(s, t int, idx []int, order int) (rks []float64, h, hPhi1, bh float64, b []float64) {
	_, _, lt := vpSigma(u.sigmas[t])
	_, _, ls := vpSigma(u.sigmas[s])
	h = lt - ls
	for _, j := range idx {
		_, _, lj := vpSigma(u.sigmas[j])
		rks = append(rks, (lj-ls)/h)
	}
	rks = append(rks, 1)
	hh := h
	if u.cfg.PredictX0 {
		hh = -h
	}
	hPhi1 = math.Expm1(hh)
	hPhiK := hPhi1/hh - 1
	fact := 1.0
	bh = hh
	if u.cfg.SolverType == "bh2" {
		bh = math.Expm1(hh)
	}
	for j := 1; j <= order; j++ {
		b = append(b, hPhiK*fact/bh)
		fact *= float64(j + 1)
		hPhiK = hPhiK/hh - 1/fact
	}
	return rks, h, hPhi1, bh, b
}

// vandermonde returns R with R_jk = r_k^j (n×n, the first n of rks).
func vandermonde(rks []float64, n int) [][]float64 {
	R := make([][]float64, n)
	for j := range R {
		R[j] = make([]float64, n)
		for k := range R[j] {
			R[j][k] = math.Pow(rks[k], float64(j))
		}
	}
	return R
}

// predict is UniP (diffusers' multistep_uni_p_bh_update) from step i.
func (u *UniPC) predict(x []float64, i, order int) []float32 {
	L := len(u.outs)
	m0 := u.outs[L-1]
	var idx []int
	for k := 1; k < order; k++ {
		idx = append(idx, i-k)
	}
	rks, h, hPhi1, bh, b := u.bhCoefficients(i, i+1, idx, order)
	if h == 0 {
		// A step of length 0 (see DPMSolver): x stays.
		res := make([]float32, len(x))
		for k, v := range x {
			res[k] = float32(v)
		}
		return res
	}
	var rhos []float64
	switch {
	case order == 2:
		rhos = []float64{0.5}
	case order > 2:
		rhos = solveLinear(vandermonde(rks, order-1), b[:order-1])
	}
	alphaT, sigmaT, _ := vpSigma(u.sigmas[i+1])
	alphaS, sigmaS, _ := vpSigma(u.sigmas[i])
	res := make([]float32, len(x))
	for k, xv := range x {
		pred := 0.0
		for j, rho := range rhos {
			mi := u.outs[L-2-j]
			pred += rho * (mi[k] - m0[k]) / rks[j]
		}
		var y float64
		if u.cfg.PredictX0 {
			y = sigmaT/sigmaS*xv - alphaT*hPhi1*m0[k]
		} else {
			y = alphaT/alphaS*xv - sigmaT*hPhi1*m0[k]
		}
		// Without earlier outputs (order 1) there is no residual term:
		// diffusers multiplies B(h) by 0, which is NaN for bh1 into σ = 0
		// (B(h) = −∞); the term is 0 wherever diffusers is finite.
		if len(rhos) > 0 {
			if u.cfg.PredictX0 {
				y -= alphaT * bh * pred
			} else {
				y -= sigmaT * bh * pred
			}
		}
		res[k] = float32(y)
	}
	return res
}

// correct is UniC (diffusers' multistep_uni_c_bh_update): the step from
// i−1 to i redone from the last sample with the new output mt.
func (u *UniPC) correct(mt []float64, i, order int) []float64 {
	L := len(u.outs)
	m0 := u.outs[L-1]
	var idx []int
	for k := 1; k < order; k++ {
		idx = append(idx, i-k-1)
	}
	rks, _, hPhi1, bh, b := u.bhCoefficients(i-1, i, idx, order)
	var rhos []float64
	if order == 1 {
		rhos = []float64{0.5}
	} else {
		rhos = solveLinear(vandermonde(rks, order), b)
	}
	alphaT, sigmaT, _ := vpSigma(u.sigmas[i])
	alphaS, sigmaS, _ := vpSigma(u.sigmas[i-1])
	x := u.lastSample
	out := make([]float64, len(x))
	for k, xv := range x {
		corr := 0.0
		for j := 0; j < order-1; j++ {
			mi := u.outs[L-2-j]
			corr += rhos[j] * (mi[k] - m0[k]) / rks[j]
		}
		corr += rhos[len(rhos)-1] * (mt[k] - m0[k])
		if u.cfg.PredictX0 {
			out[k] = sigmaT/sigmaS*xv - alphaT*hPhi1*m0[k] - alphaT*bh*corr
		} else {
			out[k] = alphaT/alphaS*xv - sigmaT*hPhi1*m0[k] - sigmaT*bh*corr
		}
	}
	return out
}

// solveLinear solves A x = b by Gaussian elimination with partial pivoting
// (A is small and square; it is modified).
func solveLinear(A [][]float64, b []float64) []float64 {
	n := len(b)
	b = slices.Clone(b)
	for c := 0; c < n; c++ {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(A[r][c]) > math.Abs(A[p][c]) {
				p = r
			}
		}
		A[c], A[p] = A[p], A[c]
		b[c], b[p] = b[p], b[c]
		for r := c + 1; r < n; r++ {
			f := A[r][c] / A[c][c]
			for k := c; k < n; k++ {
				A[r][k] -= f * A[c][k]
			}
			b[r] -= f * b[c]
		}
	}
	x := make([]float64, n)
	for r := n - 1; r >= 0; r-- {
		s := b[r]
		for k := r + 1; k < n; k++ {
			s -= A[r][k] * x[k]
		}
		x[r] = s / A[r][r]
	}
	return x
}
