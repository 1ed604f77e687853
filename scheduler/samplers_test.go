package scheduler

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// Tests of the σ-space and multistep schedulers (PNDM, Euler, Euler
// ancestral, DPM-Solver, UniPC, LMS, Heun) beyond the diffusers reference.

var (
	_ RealTimesteps = (*Euler)(nil)
	_ RealTimesteps = (*EulerAncestral)(nil)
	_ RealTimesteps = (*LMS)(nil)
	_ RealTimesteps = (*Heun)(nil)
	_ Scheduler     = (*PNDM)(nil)
	_ Scheduler     = (*DPMSolver)(nil)
	_ Scheduler     = (*UniPC)(nil)
)

func mustFromJSON(t *testing.T, js string) Scheduler {
	t.Helper()
	s, err := FromJSON([]byte(js))
	if err != nil {
		t.Fatalf("FromJSON(%s): %v", js, err)
	}
	return s
}

// trainSigma is σ_t of the default linear schedule in float64.
func trainSigma(t int) float64 {
	s, _ := schedule.New(schedule.Linear, 1000, 1e-4, 0.02, false)
	return s.Sigma(t)
}

// Expected timesteps follow diffusers' set_timesteps (NumPy arithmetic).
func TestSamplerTimesteps(t *testing.T) {
	cases := []struct {
		json string
		n    int
		want []int
		real []float64 // nil: the integers
	}{
		{`{"_class_name":"EulerDiscreteScheduler"}`, 5, []int{999, 749, 500, 250, 0}, []float64{999, 749.25, 499.5, 249.75, 0}},
		{`{"_class_name":"EulerDiscreteScheduler","timestep_spacing":"leading","steps_offset":1}`, 4, []int{751, 501, 251, 1}, nil},
		{`{"_class_name":"EulerAncestralDiscreteScheduler","timestep_spacing":"trailing"}`, 4, []int{999, 749, 499, 249}, nil},
		{`{"_class_name":"LMSDiscreteScheduler"}`, 2, []int{999, 0}, nil},
		{`{"_class_name":"HeunDiscreteScheduler","beta_start":0.0001,"beta_end":0.02}`, 3, []int{999, 500, 500, 0, 0}, []float64{999, 499.5, 499.5, 0, 0}},
		{`{"_class_name":"HeunDiscreteScheduler","beta_start":0.0001,"beta_end":0.02}`, 1, []int{0}, nil}, // numpy's linspace(0, 999, 1) = [0]
		{`{"_class_name":"DPMSolverMultistepScheduler"}`, 5, []int{999, 799, 599, 400, 200}, nil},
		{`{"_class_name":"DPMSolverMultistepScheduler","timestep_spacing":"leading","steps_offset":1}`, 4, []int{801, 601, 401, 201}, nil},
		{`{"_class_name":"DPMSolverMultistepScheduler","timestep_spacing":"trailing"}`, 4, []int{999, 749, 499, 249}, nil},
		{`{"_class_name":"UniPCMultistepScheduler"}`, 5, []int{999, 799, 599, 400, 200}, nil},
		{`{"_class_name":"UniPCMultistepScheduler","timestep_spacing":"leading"}`, 3, []int{750, 500, 250}, nil},
		{`{"_class_name":"PNDMScheduler","skip_prk_steps":true}`, 5, []int{800, 600, 600, 400, 200, 0}, nil},
		{`{"_class_name":"PNDMScheduler","skip_prk_steps":true}`, 1, []int{0}, nil},
		// diffusers' own PNDM test (test_steps_offset).
		{`{"_class_name":"PNDMScheduler","steps_offset":1}`, 10, []int{901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1}, nil},
	}
	for _, c := range cases {
		s := mustFromJSON(t, c.json)
		if err := s.SetTimesteps(c.n); err != nil {
			t.Errorf("%s n=%d: %v", c.json, c.n, err)
			continue
		}
		if !slices.Equal(s.Timesteps(), c.want) {
			t.Errorf("%s n=%d: timesteps %v, want %v", c.json, c.n, s.Timesteps(), c.want)
		}
		if c.real != nil && !slices.Equal(s.(RealTimesteps).TimestepValues(), c.real) {
			t.Errorf("%s n=%d: real timesteps %v, want %v", c.json, c.n, s.(RealTimesteps).TimestepValues(), c.real)
		}
		sg, ok := s.(interface{ Sigmas() []float64 })
		if !ok {
			continue
		}
		sig := sg.Sigmas()
		if len(sig) != len(c.want)+1 || sig[len(sig)-1] != 0 {
			t.Errorf("%s n=%d: σ %v: want %d values ending in 0", c.json, c.n, sig, len(c.want)+1)
			continue
		}
		for i := 0; i < len(sig)-1; i++ {
			// σ at integer timesteps is the training table's (float32).
			if tt := c.want[i]; c.real == nil || c.real[i] == float64(tt) {
				if w := trainSigma(tt); math.Abs(sig[i]-w) > 2e-4*w {
					t.Errorf("%s n=%d: σ[%d] = %g, want σ_%d = %g", c.json, c.n, i, sig[i], tt, w)
				}
			}
			if sig[i+1] > sig[i] {
				t.Errorf("%s n=%d: σ not decreasing: %v", c.json, c.n, sig)
			}
		}
	}
}

func TestSamplerSigmaSchedules(t *testing.T) {
	tb, _ := newSigmaTables(schedule.Linear, 1000, 1e-4, 0.02, nil, false)
	smax, smin := tb.trainSig[999], tb.trainSig[0] // diffusers' float32 values
	// Karras: σ^(1/7) is linear from σ_max to σ_min, timesteps follow σ.
	e := mustFromJSON(t, `{"_class_name":"EulerDiscreteScheduler","use_karras_sigmas":true}`).(*Euler)
	_ = e.SetTimesteps(6)
	sig := e.Sigmas()
	for i := range 6 {
		want := math.Pow(math.Pow(smax, 1/7.0)+float64(i)/5*(math.Pow(smin, 1/7.0)-math.Pow(smax, 1/7.0)), 7)
		if math.Abs(sig[i]-want) > 2e-6*want {
			t.Errorf("Karras σ[%d] = %g, want %g", i, sig[i], want)
		}
	}
	if tv := e.TimestepValues(); tv[0] != 999 || tv[5] != 0 || !(tv[1] < 999 && tv[1] > tv[2]) {
		t.Errorf("Karras timesteps %v", tv)
	}
	if e.InitNoiseSigma() != sig[0] {
		t.Errorf("init_noise_sigma %g, want σ_max %g", e.InitNoiseSigma(), sig[0])
	}
	// Exponential, bounded by sigma_min/sigma_max, and a final σ_min.
	e = mustFromJSON(t, `{"_class_name":"EulerDiscreteScheduler","use_exponential_sigmas":true,"sigma_min":0.1,"sigma_max":10,"final_sigmas_type":"sigma_min","timestep_spacing":"leading"}`).(*Euler)
	_ = e.SetTimesteps(3)
	want := []float64{10, 1, 0.1, smin}
	for i, w := range want {
		if math.Abs(e.Sigmas()[i]-w) > 1e-6*w {
			t.Errorf("exponential σ %v, want %v", e.Sigmas(), want)
			break
		}
	}
	if w := math.Sqrt(101); math.Abs(e.InitNoiseSigma()-w) > 1e-6 {
		t.Errorf("leading init_noise_sigma %g, want √(σ²+1) = %g", e.InitNoiseSigma(), w)
	}
	// sigma_to_t inverts the σ table at integers and interpolates log σ.
	for _, tt := range []int{0, 1, 500, 998, 999} {
		if got := sigmaToT(tb.trainSig[tt], tb.logSig); math.Abs(got-float64(tt)) > 1e-3 {
			t.Errorf("sigmaToT(σ_%d) = %g", tt, got)
		}
	}
	if got := sigmaToT(math.Sqrt(tb.trainSig[10]*tb.trainSig[11]), tb.logSig); math.Abs(got-10.5) > 1e-3 {
		t.Errorf("sigmaToT(geometric mean of σ_10, σ_11) = %g, want 10.5", got)
	}
	if sigmaToT(1e3, tb.logSig) != 999 || sigmaToT(1e-6, tb.logSig) != 0 {
		t.Error("sigmaToT does not clamp")
	}
	// Zero terminal SNR: the last ᾱ is 2⁻²⁴, so σ_max = √(2²⁴ − 1).
	e = mustFromJSON(t, `{"_class_name":"EulerDiscreteScheduler","rescale_betas_zero_snr":true}`).(*Euler)
	if math.Abs(e.Sigmas()[0]-4096) > 1e-3 {
		t.Errorf("zero-SNR σ_max %g, want ≈ 4096", e.Sigmas()[0])
	}
	// lambda_min_clipped drops the timesteps with λ below it (cosine schedule).
	d := mustFromJSON(t, `{"_class_name":"DPMSolverMultistepScheduler","beta_schedule":"squaredcos_cap_v2","lambda_min_clipped":-5.1}`).(*DPMSolver)
	_ = d.SetTimesteps(10)
	ac := d.tb.ac
	for _, tt := range d.Timesteps() {
		if l := 0.5 * math.Log(ac[tt]/(1-ac[tt])); l < -5.1 {
			t.Errorf("timestep %d has λ = %g < −5.1", tt, l)
		}
	}
	if d.Timesteps()[0] >= 999 {
		t.Errorf("lambda_min_clipped did not clip: %v", d.Timesteps())
	}
}

// diffusers' float32 ᾱ table and LMS coefficients, from the reference file.
func TestFloat32TablesAgainstDiffusers(t *testing.T) {
	var f struct {
		AC         []float64 `json:"alphas_cumprod_float32"`
		Schedulers []struct {
			Name  string      `json:"name"`
			Steps int         `json:"num_inference_steps"`
			Coefs [][]float64 `json:"lms_coefficients"`
		} `json:"schedulers"`
	}
	b := readRefBytes(t)
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	tb, _ := newSigmaTables(schedule.Linear, 1000, 1e-4, 0.02, nil, false)
	worst := 0.0
	for i, v := range f.AC {
		worst = max(worst, math.Abs(tb.ac[i]-v)/v)
	}
	if worst > 3e-7 {
		t.Errorf("float32 ᾱ differs from diffusers' by %g relative", worst)
	}
	n := 0
	for _, c := range f.Schedulers {
		if c.Coefs == nil {
			continue
		}
		l, _ := NewLMS(DefaultLMSConfig())
		_ = l.SetTimesteps(c.Steps)
		for _, e := range c.Coefs {
			q, i, cc := int(e[0]), int(e[1]), int(e[2])
			got := l.Coefficient(q, i, cc)
			if math.Abs(got-e[3]) > 1e-6*max(1, math.Abs(e[3])) {
				t.Errorf("LMS coefficient order %d step %d c %d: %g, scipy %g", q, i, cc, got, e[3])
			}
			n++
		}
	}
	if n == 0 {
		t.Error("no LMS coefficients in the reference")
	}
}

func readRefBytes(t *testing.T) []byte {
	t.Helper()
	loadRef(t) // skips when the file is absent
	b, err := os.ReadFile(refPath())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGaussLegendre(t *testing.T) {
	for n := 1; n <= 8; n++ {
		for deg := 0; deg < 2*n; deg++ {
			got := gaussLegendre(func(x float64) float64 { return math.Pow(x, float64(deg)) }, -0.5, 2, n)
			want := (math.Pow(2, float64(deg+1)) - math.Pow(-0.5, float64(deg+1))) / float64(deg+1)
			if math.Abs(got-want) > 1e-12*max(1, math.Abs(want)) {
				t.Errorf("n=%d: ∫x^%d = %g, want %g", n, deg, got, want)
			}
		}
	}
}

// gaussianModel is the exact denoiser for data x0 ~ N(0, s2·I): with
// ᾱ = 1/(1+σ²) and v = ᾱ·s2 + 1 − ᾱ, ε = √(1−ᾱ) z/v and x̂0 = √ᾱ s2 z/v
// for the VP input z. Along the probability-flow ODE x_σ/√(s2+σ²) is
// constant (x_σ = z√(1+σ²)), which gives every deterministic sampler's
// exact answer.
func gaussianOutput(p schedule.PredictionType, z []float32, sigma, s2 float64) []float32 {
	a := 1 / (1 + sigma*sigma)
	v := a*s2 + 1 - a
	out := make([]float32, len(z))
	for k, zv := range z {
		eps := math.Sqrt(1-a) * float64(zv) / v
		x0 := math.Sqrt(a) * s2 * float64(zv) / v
		switch p {
		case schedule.Epsilon:
			out[k] = float32(eps)
		case schedule.Sample:
			out[k] = float32(x0)
		case schedule.VPrediction:
			out[k] = float32(math.Sqrt(a)*eps - math.Sqrt(1-a)*x0)
		}
	}
	return out
}

// callSigma is the σ of model call i at timestep t.
func callSigma(s Scheduler, i, t int) float64 {
	if sg, ok := s.(interface{ Sigmas() []float64 }); ok {
		return sg.Sigmas()[i]
	}
	ac := s.(interface{ Schedule() *schedule.Schedule }).Schedule().AlphasCumprod[t]
	return math.Sqrt((1 - ac) / ac)
}

// isVE reports whether s's samples are x_σ (σ-space) rather than VP.
func isVE(s Scheduler) bool {
	switch s.(type) {
	case *Euler, *EulerAncestral, *LMS, *Heun:
		return true
	}
	return false
}

// runGaussian samples with s on the Gaussian model and returns the result
// and the ODE's exact answer.
func runGaussian(t *testing.T, s Scheduler, n int, p schedule.PredictionType, s2 float64) (got, want []float32) {
	t.Helper()
	if err := s.SetTimesteps(n); err != nil {
		t.Fatal(err)
	}
	const B, D = 2, 4
	xT := make([]float32, B*D)
	for i := range xT {
		xT[i] = float32(math.Sin(1.3*float64(i)+0.4) * 1.5 * s.InitNoiseSigma())
	}
	x := tensor.FromSlice(slices.Clone(xT), B, D)
	ts := s.Timesteps()
	for i, tt := range ts {
		in := s.ScaleModelInput(x, tt)
		out := tensor.FromSlice(gaussianOutput(p, in.Data(), callSigma(s, i, tt), s2), B, D)
		next, err := s.Step(out, tt, x, func(sh []int) *tensor.Tensor { return tensor.New(sh...) })
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		x = next
	}
	start := callSigma(s, 0, ts[0])
	var end float64
	switch s := s.(type) {
	case interface{ Sigmas() []float64 }:
		end = s.Sigmas()[len(s.Sigmas())-1]
	case *DDIM:
		end = math.Sqrt((1 - s.finalAlpha) / s.finalAlpha)
	case *PNDM:
		end = math.Sqrt((1 - s.finalAlpha) / s.finalAlpha)
	}
	ratio := math.Sqrt((s2 + end*end) / (s2 + start*start))
	if !isVE(s) {
		ratio *= math.Sqrt((1 + start*start) / (1 + end*end))
	}
	want = make([]float32, len(xT))
	for i, v := range xT {
		want[i] = float32(float64(v) * ratio)
	}
	return x.Data(), want
}

// Every deterministic configuration solves the probability-flow ODE of
// Gaussian data: within a bound at n steps (calibrated: the last, long λ
// step dominates, and the ones to σ = 0 return x̂0), and at least 3 times
// closer at 4n steps (all are at least first order). A wrong coefficient in
// a path the diffusers reference does not cover fails one or the other.
func TestSamplersSolveGaussianODE(t *testing.T) {
	cases := []struct {
		json string
		n    int
		tol  float64
	}{
		{`{"_class_name":"DDIMScheduler","clip_sample":false}`, 20, 0.06},
		{`{"_class_name":"PNDMScheduler","skip_prk_steps":true}`, 20, 2e-3},
		{`{"_class_name":"PNDMScheduler"}`, 20, 2e-3},
		{`{"_class_name":"PNDMScheduler","skip_prk_steps":true,"prediction_type":"v_prediction","set_alpha_to_one":true}`, 20, 0.06},
		{`{"_class_name":"EulerDiscreteScheduler"}`, 30, 0.05},
		{`{"_class_name":"EulerDiscreteScheduler","use_karras_sigmas":true}`, 30, 0.06},
		{`{"_class_name":"EulerDiscreteScheduler","use_exponential_sigmas":true,"prediction_type":"v_prediction"}`, 30, 0.06},
		{`{"_class_name":"EulerDiscreteScheduler","prediction_type":"sample","final_sigmas_type":"sigma_min","timestep_spacing":"leading"}`, 30, 0.05},
		{`{"_class_name":"LMSDiscreteScheduler"}`, 20, 4e-3},
		{`{"_class_name":"LMSDiscreteScheduler","use_karras_sigmas":true,"prediction_type":"v_prediction"}`, 20, 0.03},
		{`{"_class_name":"HeunDiscreteScheduler"}`, 15, 0.015},
		{`{"_class_name":"HeunDiscreteScheduler","use_karras_sigmas":true,"prediction_type":"sample"}`, 15, 0.03},
		{`{"_class_name":"DPMSolverMultistepScheduler"}`, 15, 0.03},
		{`{"_class_name":"DPMSolverMultistepScheduler","use_karras_sigmas":true,"prediction_type":"v_prediction"}`, 15, 0.06},
		{`{"_class_name":"DPMSolverMultistepScheduler","solver_order":3}`, 15, 0.03},
		{`{"_class_name":"DPMSolverMultistepScheduler","solver_order":3,"lower_order_final":false,"final_sigmas_type":"sigma_min"}`, 20, 0.12},
		{`{"_class_name":"DPMSolverMultistepScheduler","solver_type":"heun","prediction_type":"sample"}`, 15, 0.03},
		{`{"_class_name":"DPMSolverMultistepScheduler","algorithm_type":"dpmsolver","final_sigmas_type":"sigma_min"}`, 15, 0.08},
		{`{"_class_name":"DPMSolverMultistepScheduler","algorithm_type":"dpmsolver","solver_type":"heun","solver_order":3,"final_sigmas_type":"sigma_min","use_karras_sigmas":true}`, 12, 0.1},
		{`{"_class_name":"DPMSolverMultistepScheduler","solver_type":"heun","solver_order":3,"final_sigmas_type":"sigma_min","use_exponential_sigmas":true,"lower_order_final":false}`, 16, 0.1},
		{`{"_class_name":"DPMSolverMultistepScheduler","euler_at_final":true,"timestep_spacing":"trailing","use_exponential_sigmas":true}`, 15, 0.06},
		{`{"_class_name":"UniPCMultistepScheduler"}`, 15, 0.03},
		{`{"_class_name":"UniPCMultistepScheduler","solver_order":3,"use_karras_sigmas":true}`, 15, 0.06},
		{`{"_class_name":"UniPCMultistepScheduler","solver_type":"bh1","prediction_type":"v_prediction"}`, 15, 0.03},
		{`{"_class_name":"UniPCMultistepScheduler","predict_x0":false,"final_sigmas_type":"sigma_min","solver_order":3}`, 15, 0.03},
		{`{"_class_name":"UniPCMultistepScheduler","disable_corrector":[0,1,2],"prediction_type":"sample","lower_order_final":false,"final_sigmas_type":"sigma_min"}`, 15, 0.2},
		{`{"_class_name":"UniPCMultistepScheduler","solver_type":"bh1","use_karras_sigmas":true,"final_sigmas_type":"sigma_min","lower_order_final":false}`, 15, 0.15},
	}
	for _, c := range cases {
		var head struct {
			P schedule.PredictionType `json:"prediction_type"`
		}
		_ = json.Unmarshal([]byte(c.json), &head)
		p := head.P
		if p == "" {
			p = schedule.Epsilon
		}
		var errs [2]float64
		for k, n := range []int{c.n, 4 * c.n} {
			got, want := runGaussian(t, mustFromJSON(t, c.json), n, p, 0.5)
			errs[k] = relDiff(got, to64(want))
		}
		t.Logf("%-170s n=%d: %.2e, 4n: %.2e", c.json, c.n, errs[0], errs[1])
		if !(errs[0] <= c.tol) || !(errs[1] <= errs[0]/3) {
			t.Errorf("%s: error %.3g after %d steps (want ≤ %g), %.3g after %d (want ≤ a third)", c.json, errs[0], c.n, c.tol, errs[1], 4*c.n)
		}
	}
}

// A scheduler that ran to the end starts again at its first timestep (as
// the pipeline does for each batch) with its history cleared; a wrong
// timestep mid-run is an error.
func TestSamplerRestartAndOrder(t *testing.T) {
	for _, js := range []string{
		`{"_class_name":"EulerDiscreteScheduler"}`,
		`{"_class_name":"EulerAncestralDiscreteScheduler"}`,
		`{"_class_name":"LMSDiscreteScheduler"}`,
		`{"_class_name":"HeunDiscreteScheduler"}`,
		`{"_class_name":"DPMSolverMultistepScheduler","solver_order":3}`,
		`{"_class_name":"UniPCMultistepScheduler","solver_order":3}`,
		`{"_class_name":"PNDMScheduler"}`,
		`{"_class_name":"PNDMScheduler","skip_prk_steps":true}`,
	} {
		s := mustFromJSON(t, js)
		first, _ := runGaussian(t, s, 6, schedule.Epsilon, 0.5)
		again, _ := runGaussian(t, s, 6, schedule.Epsilon, 0.5)
		if !slices.Equal(first, again) {
			t.Errorf("%s: second run %v differs from the first %v", js, again, first)
		}
		// Same run without SetTimesteps in between (runGaussian calls it).
		x := tensor.FromSlice([]float32{1, 2}, 1, 2)
		ts := s.Timesteps()
		for i, tt := range ts {
			if _, err := s.Step(x, tt, x, func(sh []int) *tensor.Tensor { return tensor.New(sh...) }); err != nil {
				t.Fatalf("%s: step %d: %v", js, i, err)
			}
		}
		if _, err := s.Step(x, ts[0], x, func(sh []int) *tensor.Tensor { return tensor.New(sh...) }); err != nil {
			t.Errorf("%s: restart after the last step: %v", js, err)
		}
		if _, err := s.Step(x, ts[0], x, nil); err == nil || !strings.Contains(err.Error(), "timestep") {
			t.Errorf("%s: timestep %d again mid-run: %v", js, ts[0], err)
		}
	}
}

func TestSamplerStepErrors(t *testing.T) {
	x := tensor.New(2, 3)
	zero := func(sh []int) *tensor.Tensor { return tensor.New(sh...) }
	for _, js := range []string{
		`{"_class_name":"DPMSolverMultistepScheduler"}`,
		`{"_class_name":"UniPCMultistepScheduler"}`,
		`{"_class_name":"PNDMScheduler"}`,
	} {
		s := mustFromJSON(t, js)
		if _, err := s.Step(x, 999, x, nil); err == nil || !strings.Contains(err.Error(), "SetTimesteps") {
			t.Errorf("%s: Step before SetTimesteps: %v", js, err)
		}
	}
	for _, js := range []string{
		`{"_class_name":"EulerDiscreteScheduler"}`,
		`{"_class_name":"EulerAncestralDiscreteScheduler"}`,
		`{"_class_name":"LMSDiscreteScheduler"}`,
		`{"_class_name":"HeunDiscreteScheduler"}`,
		`{"_class_name":"DPMSolverMultistepScheduler"}`,
		`{"_class_name":"UniPCMultistepScheduler"}`,
		`{"_class_name":"PNDMScheduler"}`,
	} {
		s := mustFromJSON(t, js)
		for _, n := range []int{0, 1001} {
			if err := s.SetTimesteps(n); err == nil {
				t.Errorf("%s: SetTimesteps(%d) accepted", js, n)
			}
		}
		if err := s.SetTimesteps(10); err != nil {
			t.Fatal(err)
		}
		t0 := s.Timesteps()[0]
		if _, err := s.Step(tensor.New(3, 2), t0, x, zero); err == nil {
			t.Errorf("%s: model output of another shape accepted", js)
		}
		if _, err := s.Step(x, t0, tensor.New(0, 3), zero); err == nil {
			t.Errorf("%s: empty batch accepted", js)
		}
		_, err := s.Step(x, 5, x, zero)
		switch s.(type) {
		case *DPMSolver, *UniPC: // diffusers starts at the last step
			if err != nil {
				t.Errorf("%s: unknown first timestep: %v", js, err)
			}
		default:
			if err == nil {
				t.Errorf("%s: timestep 5 accepted", js)
			}
		}
	}
	ea := mustFromJSON(t, `{"_class_name":"EulerAncestralDiscreteScheduler"}`)
	_ = ea.SetTimesteps(4)
	if _, err := ea.Step(x, 999, x, nil); err == nil || !strings.Contains(err.Error(), "noise function is nil") {
		t.Errorf("Euler ancestral without noise: %v", err)
	}
	e := mustFromJSON(t, `{"_class_name":"EulerDiscreteScheduler"}`).(*Euler)
	_ = e.SetTimesteps(4)
	if _, err := e.Step(x, 999, x, nil); err != nil {
		t.Errorf("Euler without churn needs no noise: %v", err)
	}
	e.SChurn = 10
	draws := 0
	if _, err := e.Step(x, e.Timesteps()[1], x, func(sh []int) *tensor.Tensor { draws++; return tensor.New(sh...) }); err != nil || draws != 1 {
		t.Errorf("Euler with s_churn: %d draws, %v", draws, err)
	}
	l := mustFromJSON(t, `{"_class_name":"LMSDiscreteScheduler"}`).(*LMS)
	_ = l.SetTimesteps(4)
	l.Order = 0
	if _, err := l.Step(x, 999, x, nil); err == nil || !strings.Contains(err.Error(), "order") {
		t.Errorf("LMS order 0: %v", err)
	}
	p := mustFromJSON(t, `{"_class_name":"PNDMScheduler"}`)
	if err := p.SetTimesteps(3); err == nil || !strings.Contains(err.Error(), "skip_prk_steps") {
		t.Errorf("PNDM PRK with 3 steps: %v", err)
	}
	d := mustFromJSON(t, `{"_class_name":"DPMSolverMultistepScheduler","variance_type":"learned_range"}`)
	_ = d.SetTimesteps(4)
	if _, err := d.Step(x, 999, x, nil); err == nil || !strings.Contains(err.Error(), "twice the channels") {
		t.Errorf("DPM learned variance with a plain output: %v", err)
	}
	if _, err := d.Step(tensor.New(2, 6), 999, x, nil); err != nil {
		t.Errorf("DPM learned variance: %v", err)
	}
	// An unknown t leaves ScaleModelInput's input as it is.
	h := mustFromJSON(t, `{"_class_name":"HeunDiscreteScheduler"}`)
	_ = h.SetTimesteps(4)
	if h.ScaleModelInput(x, 3) != x {
		t.Error("Heun ScaleModelInput with an unknown timestep changed x")
	}
}

func TestHeunTwoCallsPerStep(t *testing.T) {
	h := mustFromJSON(t, `{"_class_name":"HeunDiscreteScheduler","beta_start":0.0001,"beta_end":0.02}`).(*Heun)
	_ = h.SetTimesteps(3)
	if len(h.Timesteps()) != 5 || len(h.Sigmas()) != 6 {
		t.Fatalf("%d timesteps, %d σ", len(h.Timesteps()), len(h.Sigmas()))
	}
	// With ε = 1 everywhere, x̂0 = x − σ: the derivative is 1 in both calls,
	// so each step moves x by σ_{i+1} − σ_i.
	x := tensor.FromSlice([]float32{1}, 1, 1)
	one := tensor.FromSlice([]float32{1}, 1, 1)
	sig := h.Sigmas()
	var states []bool
	for _, tt := range h.Timesteps() {
		states = append(states, h.StateInFirstOrder())
		var err error
		if x, err = h.Step(one, tt, x, nil); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(states, []bool{true, false, true, false, true}) {
		t.Errorf("first-order states %v", states)
	}
	if want := 1 - sig[0]; math.Abs(float64(x.Data()[0])-want) > 1e-3 {
		t.Errorf("final x %g, want 1 − σ_0 = %g", x.Data()[0], want)
	}
}

func TestSamplerConfigErrors(t *testing.T) {
	for _, c := range []struct{ json, want string }{
		{`{"_class_name":"EulerDiscreteScheduler","interpolation_type":"log_linear"}`, "interpolation_type"},
		{`{"_class_name":"EulerDiscreteScheduler","timestep_type":"continuous","prediction_type":"v_prediction"}`, "continuous"},
		{`{"_class_name":"EulerDiscreteScheduler","final_sigmas_type":"one"}`, "final_sigmas_type"},
		{`{"_class_name":"EulerDiscreteScheduler","use_karras_sigmas":true,"use_exponential_sigmas":true}`, "only one of"},
		{`{"_class_name":"EulerDiscreteScheduler","use_beta_sigmas":true}`, "use_beta_sigmas"},
		{`{"_class_name":"EulerDiscreteScheduler","beta_schedule":"sigmoid"}`, "not implemented"},
		{`{"_class_name":"EulerDiscreteScheduler","sigma_min":-1,"use_karras_sigmas":true}`, "sigma_min"},
		{`{"_class_name":"EulerDiscreteScheduler","clip_sample":true}`, "unsupported keys clip_sample"},
		{`{"_class_name":"EulerAncestralDiscreteScheduler","prediction_type":"sample"}`, "not implemented"},
		{`{"_class_name":"LMSDiscreteScheduler","timestep_spacing":"even"}`, "timestep_spacing"},
		{`{"_class_name":"HeunDiscreteScheduler","clip_sample":true,"clip_sample_range":0}`, "clip_sample_range"},
		{`{"_class_name":"PNDMScheduler","prediction_type":"sample"}`, "epsilon or v_prediction"},
		{`{"_class_name":"DPMSolverMultistepScheduler","algorithm_type":"dpm"}`, "algorithm_type"},
		{`{"_class_name":"DPMSolverMultistepScheduler","solver_type":"rk4"}`, "solver_type"},
		{`{"_class_name":"DPMSolverMultistepScheduler","solver_order":4}`, "solver_order"},
		{`{"_class_name":"DPMSolverMultistepScheduler","algorithm_type":"dpmsolver"}`, "final_sigmas_type zero is not supported"},
		{`{"_class_name":"DPMSolverMultistepScheduler","algorithm_type":"sde-dpmsolver","solver_order":3,"final_sigmas_type":"sigma_min"}`, "third-order"},
		{`{"_class_name":"DPMSolverMultistepScheduler","variance_type":"fixed_small"}`, "variance_type"},
		{`{"_class_name":"DPMSolverMultistepScheduler","use_lu_lambdas":true}`, "use_lu_lambdas"},
		{`{"_class_name":"DPMSolverMultistepScheduler","thresholding":true,"dynamic_thresholding_ratio":2}`, "dynamic_thresholding_ratio"},
		{`{"_class_name":"DPMSolverMultistepScheduler","lambda_min_clipped":"minus five"}`, "not a number"},
		{`{"_class_name":"UniPCMultistepScheduler","solver_p":{"_class_name":"DDIMScheduler"}}`, "solver_p"},
		{`{"_class_name":"UniPCMultistepScheduler","solver_type":"rk4"}`, "solver_type"},
		{`{"_class_name":"UniPCMultistepScheduler","solver_order":0}`, "solver_order"},
		{`{"_class_name":"UniPCMultistepScheduler","shift_terminal":0.5}`, "shift_terminal"},
		{`{"_class_name":"UniPCMultistepScheduler","use_flow_sigmas":true}`, "use_flow_sigmas"},
	} {
		_, err := FromJSON([]byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("FromJSON(%s) = %v, want error with %q", c.json, err, c.want)
		}
	}
	// diffusers' config aliases.
	d := mustFromJSON(t, `{"_class_name":"DPMSolverMultistepScheduler","algorithm_type":"deis","solver_type":"bh2"}`).(*DPMSolver)
	if c := d.Config(); c.AlgorithmType != DPMSolverPP || c.SolverType != "midpoint" {
		t.Errorf("deis/bh2 read as %s/%s", c.AlgorithmType, c.SolverType)
	}
	u := mustFromJSON(t, `{"_class_name":"UniPCMultistepScheduler","solver_type":"midpoint"}`).(*UniPC)
	if u.Config().SolverType != "bh2" {
		t.Errorf("UniPC midpoint read as %s", u.Config().SolverType)
	}
}

func TestSamplerConfigJSONRoundTrip(t *testing.T) {
	for _, js := range []string{
		`{"_class_name":"PNDMScheduler","skip_prk_steps":true,"steps_offset":1,"beta_schedule":"scaled_linear","beta_start":0.00085,"beta_end":0.012}`,
		`{"_class_name":"EulerDiscreteScheduler","use_karras_sigmas":true,"sigma_min":0.02,"sigma_max":80,"final_sigmas_type":"sigma_min"}`,
		`{"_class_name":"EulerAncestralDiscreteScheduler","timestep_spacing":"trailing","rescale_betas_zero_snr":true}`,
		`{"_class_name":"DPMSolverMultistepScheduler","solver_order":3,"variance_type":"learned_range","thresholding":true}`,
		`{"_class_name":"UniPCMultistepScheduler","disable_corrector":[0,3],"predict_x0":false,"solver_type":"bh1"}`,
		`{"_class_name":"LMSDiscreteScheduler","use_exponential_sigmas":true,"prediction_type":"v_prediction"}`,
		`{"_class_name":"HeunDiscreteScheduler","clip_sample":true,"clip_sample_range":2}`,
	} {
		s := mustFromJSON(t, js)
		b, err := MarshalConfig(s)
		if err != nil {
			t.Fatal(err)
		}
		back := mustFromJSON(t, string(b))
		b2, _ := MarshalConfig(back)
		if string(b) != string(b2) {
			t.Errorf("%s round trip:\n%s\n%s", js, b, b2)
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		var in map[string]any
		_ = json.Unmarshal([]byte(js), &in)
		for k, v := range in {
			if fmt.Sprint(m[k]) != fmt.Sprint(v) {
				t.Errorf("%s: %s = %v after the round trip, want %v", js, k, m[k], v)
			}
		}
	}
	// Python's json writes −∞ as a bare -Infinity (not JSON); strings keep
	// such words.
	d := mustFromJSON(t, `{"_class_name":"DPMSolverMultistepScheduler","_name":"NaN \"-Infinity\"","lambda_min_clipped":-Infinity}`).(*DPMSolver)
	if !math.IsInf(float64(d.Config().LambdaMinClipped), -1) {
		t.Errorf("lambda_min_clipped %v", d.Config().LambdaMinClipped)
	}
	b, _ := MarshalConfig(d)
	if !strings.Contains(string(b), `"lambda_min_clipped": "-inf"`) {
		t.Errorf("−∞ written as:\n%s", b)
	}
	if got := string(quoteNonFinite([]byte(`{"a":"x NaN \" Infinity","b":[NaN,Infinity,-Infinity,1]}`))); got != `{"a":"x NaN \" Infinity","b":["nan","inf","-inf",1]}` {
		t.Errorf("quoteNonFinite: %s", got)
	}
}

// The SDE variants of DPM-Solver draw noise once per step, and their noise
// enters with σ_t√(1−e^{−2h}) (dpmsolver++) or σ_t√(e^{2h}−1) (dpmsolver).
func TestDPMSolverSDENoise(t *testing.T) {
	for _, js := range []string{
		`{"_class_name":"DPMSolverMultistepScheduler","algorithm_type":"sde-dpmsolver++","solver_order":3}`,
		`{"_class_name":"DPMSolverMultistepScheduler","algorithm_type":"sde-dpmsolver","final_sigmas_type":"sigma_min","solver_type":"heun"}`,
	} {
		d := mustFromJSON(t, js).(*DPMSolver)
		_ = d.SetTimesteps(5)
		x := tensor.FromSlice([]float32{0.5, -1}, 1, 2)
		eps := tensor.FromSlice([]float32{0.1, 0.2}, 1, 2)
		draws := 0
		for i, tt := range d.Timesteps() {
			// The first step with z = 0 and z = 1 differs by the noise coefficient.
			if i == 0 {
				d2 := mustFromJSON(t, js).(*DPMSolver)
				_ = d2.SetTimesteps(5)
				a, _ := d2.Step(eps, tt, x, func(sh []int) *tensor.Tensor { return tensor.New(sh...) })
				_ = d2.SetTimesteps(5)
				b, _ := d2.Step(eps, tt, x, func(sh []int) *tensor.Tensor { return tensor.FromSlice([]float32{1, 1}, sh...) })
				_, st, lt := vpSigma(d.Sigmas()[1])
				_, _, ls := vpSigma(d.Sigmas()[0])
				h := lt - ls
				want := st * math.Sqrt(1-math.Exp(-2*h))
				if d.Config().AlgorithmType == SDEDPMSolver {
					want = st * math.Sqrt(math.Exp(2*h)-1)
				}
				if got := float64(b.Data()[0] - a.Data()[0]); math.Abs(got-want) > 1e-5*max(1, want) {
					t.Errorf("%s: noise coefficient %g, want %g", js, got, want)
				}
			}
			var err error
			x, err = d.Step(eps, tt, x, func(sh []int) *tensor.Tensor {
				draws++
				return tensor.FromSlice([]float32{0.3, -0.7}, sh...)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if draws != 5 {
			t.Errorf("%s: %d noise draws for 5 steps", js, draws)
		}
		for _, v := range x.Data() {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Errorf("%s: non-finite result %v", js, x.Data())
			}
		}
		if _, err := d.Step(eps, d.Timesteps()[0], x, nil); err == nil || !strings.Contains(err.Error(), "noise function is nil") {
			t.Errorf("%s without noise: %v", js, err)
		}
	}
}
