package scheduler

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

func seq(from, step, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = from + i*step
	}
	return out
}

// Expected values follow diffusers' set_timesteps (NumPy arithmetic).
func TestSpacedTimesteps(t *testing.T) {
	cases := []struct {
		spacing   string
		T, n, off int
		want      []int
	}{
		{Leading, 1000, 10, 1, seq(901, -100, 10)}, // Stable Diffusion's DDIM
		{Leading, 1000, 50, 0, seq(980, -20, 50)},
		{Leading, 1000, 3, 0, []int{666, 333, 0}},
		{Leading, 1000, 1, 0, []int{0}},
		{Trailing, 1000, 10, 0, seq(999, -100, 10)},
		{Trailing, 1000, 3, 7, []int{999, 666, 332}}, // offset ignored
		{Trailing, 1000, 1, 0, []int{999}},
		{Linspace, 1000, 10, 0, seq(999, -111, 10)},
		{Linspace, 1000, 20, 0, []int{999, 946, 894, 841, 789, 736, 684, 631, 578, 526, 473, 421, 368, 315, 263, 210, 158, 105, 53, 0}},
		{Linspace, 1000, 7, 0, []int{999, 832, 666, 500, 333, 166, 0}}, // 166.5, 499.5, 832.5 round half to even
		{Linspace, 1000, 1, 0, []int{0}},
		{Leading, 1000, 1000, 0, seq(999, -1, 1000)},
	}
	for _, c := range cases {
		got, err := SpacedTimesteps(c.spacing, c.T, c.n, c.off)
		if err != nil {
			t.Errorf("%s T=%d n=%d: %v", c.spacing, c.T, c.n, err)
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s T=%d n=%d offset=%d:\n got %v\nwant %v", c.spacing, c.T, c.n, c.off, got, c.want)
		}
	}
	// NumPy's arange gives 62 values for n = 61 (last one −1); we keep 61.
	for _, n := range []int{61, 103, 998} {
		got, err := SpacedTimesteps(Trailing, 1000, n, 0)
		if err != nil || len(got) != n || got[0] != 999 || got[n-1] < 0 {
			t.Errorf("trailing n=%d: %d timesteps ending %d, %v", n, len(got), got[len(got)-1], err)
		}
	}
	for _, c := range []struct {
		spacing   string
		T, n, off int
		want      string
	}{
		{Leading, 1000, 0, 0, "0 inference steps"},
		{Leading, 1000, 1001, 0, "1001 inference steps"},
		{Leading, 1000, 1000, 1, "timestep 1000 outside"},
		{"uniform", 1000, 10, 0, "valid: leading, trailing, linspace"},
	} {
		_, err := SpacedTimesteps(c.spacing, c.T, c.n, c.off)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("SpacedTimesteps(%s, %d, %d, %d) = %v, want error with %q", c.spacing, c.T, c.n, c.off, err, c.want)
		}
	}
}

func TestConfigJSONRoundTrip(t *testing.T) {
	dc := DefaultDDPMConfig()
	dc.VarianceType, dc.PredictionType, dc.TimestepSpacing, dc.StepsOffset = FixedLarge, schedule.VPrediction, Trailing, 1
	ddpm, err := NewDDPM(dc)
	if err != nil {
		t.Fatal(err)
	}
	ic := DefaultDDIMConfig()
	ic.BetaSchedule, ic.BetaStart, ic.BetaEnd, ic.SetAlphaToOne, ic.RescaleBetasZeroSNR = schedule.ScaledLinear, 0.00085, 0.012, false, true
	ddim, err := NewDDIM(ic)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []Scheduler{ddpm, ddim} {
		b, err := MarshalConfig(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{`"_class_name"`, `"num_train_timesteps": 1000`, `"prediction_type"`, `"timestep_spacing"`, `"rescale_betas_zero_snr"`, `"trained_betas": null`} {
			if !strings.Contains(string(b), key) {
				t.Errorf("%T config JSON lacks %s:\n%s", s, key, b)
			}
		}
		back, err := FromJSON(b)
		if err != nil {
			t.Fatal(err)
		}
		switch s := s.(type) {
		case *DDPM:
			if got := back.(*DDPM).Config(); !configEqual(got, s.Config()) {
				t.Errorf("DDPM round trip %+v, want %+v", got, s.Config())
			}
		case *DDIM:
			if got := back.(*DDIM).Config(); !configEqual(got, s.Config()) {
				t.Errorf("DDIM round trip %+v, want %+v", got, s.Config())
			}
		}
	}
	// Absent keys keep diffusers' defaults (clip_sample true), unknown ones fail.
	s, err := FromJSON([]byte(`{"_class_name":"DDPMScheduler","_diffusers_version":"0.40.0","beta_schedule":"squaredcos_cap_v2"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c := s.(*DDPM).Config(); !c.ClipSample || c.VarianceType != FixedSmall {
		t.Errorf("defaults not kept: %+v", c)
	}
	if s.(*DDPM).Schedule().Betas[999] != schedule.CosineMaxBeta {
		t.Error("beta_schedule from JSON not honored")
	}
	for _, c := range []struct{ json, want string }{
		{`{"_class_name":"DDIMScheduler","skip_prk_steps":true}`, "unsupported keys skip_prk_steps"},
		{`{"_class_name":"KarrasVeScheduler"}`, `unsupported _class_name "KarrasVeScheduler"`},
		{`{"_class_name":"DDIMScheduler","beta_schedule":"exp"}`, `unknown beta schedule "exp"`},
		{`{"_class_name":"DDIMScheduler","prediction_type":"noise"}`, `unknown prediction type "noise"`},
		{`{"_class_name":"DDPMScheduler","variance_type":"fixed_large_log"}`, "fixed_large_log is not supported"},
		{`{"_class_name":"DDPMScheduler","variance_type":"tiny"}`, `unknown DDPM variance_type "tiny"`},
		{`{"_class_name":"DDIMScheduler","timestep_spacing":"even"}`, `unknown timestep_spacing "even"`},
		{`{"_class_name":"DDIMScheduler","trained_betas":[0.1,0.2]}`, "2 trained_betas for num_train_timesteps 1000"},
		{`{"_class_name":"DDIMScheduler","thresholding":true,"sample_max_value":0.5}`, "sample_max_value"},
	} {
		_, err := FromJSON([]byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("FromJSON(%s) = %v, want error with %q", c.json, err, c.want)
		}
	}
}

func configEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func sdTinyDir() string {
	if p := os.Getenv("DIFFUSE_SD_TINY_REF"); p != "" {
		return p
	}
	return filepath.Join("..", "..", "shared", "refs", "diffusers", "sd_tiny")
}

func f32(t *testing.T, f *safetensors.File, name string) ([]float32, []int) {
	t.Helper()
	tt, ok := f.Get(name)
	if !ok {
		t.Fatalf("no tensor %s", name)
	}
	v, err := tt.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v, tt.Shape
}

// Stable Diffusion's DDIM settings (scaled_linear, steps_offset 1,
// set_alpha_to_one false) from diffusers' own scheduler_config.json, replayed
// on the guided ε of the sd_tiny reference run.
func TestDDIMStableDiffusionConfig(t *testing.T) {
	dir := sdTinyDir()
	cfg, err := os.ReadFile(filepath.Join(dir, "scheduler", "scheduler_config.json"))
	if os.IsNotExist(err) {
		t.Skipf("%s not found (set DIFFUSE_SD_TINY_REF)", dir)
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err := FromJSON(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetTimesteps(10); err != nil {
		t.Fatal(err)
	}
	if want := seq(901, -100, 10); !slices.Equal(s.Timesteps(), want) {
		t.Fatalf("timesteps %v, want %v", s.Timesteps(), want)
	}
	ddim := s.(*DDIM)
	if ddim.finalAlpha != ddim.Schedule().AlphasCumprod[0] {
		t.Errorf("set_alpha_to_one false not honored")
	}
	f, err := safetensors.ReadFile(filepath.Join(dir, "io.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	lat, shape := f32(t, f, "latents_init")
	eps, _ := f32(t, f, "eps_guided")
	steps, _ := f32(t, f, "latents_steps")
	n := len(lat)
	x := tensor.FromSlice(slices.Clone(lat), shape...)
	worst := 0.0
	for i, ti := range s.Timesteps() {
		out := tensor.FromSlice(eps[i*n:(i+1)*n], shape...)
		x, err = s.Step(out, ti, x, nil)
		if err != nil {
			t.Fatal(err)
		}
		worst = max(worst, relDiff(x.Data(), to64(steps[i*n:(i+1)*n])))
	}
	t.Logf("sd_tiny DDIM: max |diff|/(1+max|ref|) over 10 steps %.3g", worst)
	if worst > 1e-5 {
		t.Errorf("latents differ from diffusers by %g relative", worst)
	}
}

// toyEps is a smooth stand-in denoiser for tests that need no reference.
func toyEps(x []float32, t int) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(0.8*float64(v) + 0.1*math.Sin(float64(v)+float64(t)/300))
	}
	return out
}

type noiseBank struct {
	draws int
	seed  uint64
}

func (nb *noiseBank) fn(shape []int) *tensor.Tensor {
	nb.draws++
	x := tensor.New(shape...)
	d := x.Data()
	for i := range d {
		nb.seed = nb.seed*6364136223846793005 + 1442695040888963407
		u1 := (float64(nb.seed>>11) + 0.5) / (1 << 53)
		nb.seed = nb.seed*6364136223846793005 + 1442695040888963407
		u2 := float64(nb.seed>>11) / (1 << 53)
		d[i] = float32(math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2))
	}
	return x
}

// run samples with a model that predicts kind, derived from toyEps through
// schedule.Split/Target so that all kinds describe the same denoiser.
func run(t *testing.T, s Scheduler, sched *schedule.Schedule, kind schedule.PredictionType, steps int) ([]float32, int) {
	t.Helper()
	if err := s.SetTimesteps(steps); err != nil {
		t.Fatal(err)
	}
	nb := &noiseBank{seed: 7}
	x := tensor.New(2, 3, 2, 2)
	x = nb.fn(x.Shape())
	nb.draws = 0
	for _, ti := range s.Timesteps() {
		in := s.ScaleModelInput(x, ti)
		eps := tensor.FromSlice(toyEps(in.Data(), ti), x.Shape()...)
		out := eps
		if kind != schedule.Epsilon {
			x0 := tensor.New(x.Shape()...)
			if err := sched.Split(schedule.Epsilon, eps, in, []int{ti}, x0, nil); err != nil {
				t.Fatal(err)
			}
			out = tensor.New(x.Shape()...)
			if err := sched.Target(kind, out, x0, eps, in, []int{ti}); err != nil {
				t.Fatal(err)
			}
		}
		var err error
		if x, err = s.Step(out, ti, x, nb.fn); err != nil {
			t.Fatal(err)
		}
	}
	return x.Data(), nb.draws
}

func maxAbsDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

// The three prediction types of one denoiser give the same trajectory, and
// the number of noise draws is diffusers'.
func TestPredictionTypesAgree(t *testing.T) {
	for _, tc := range []struct {
		name      string
		make      func(kind schedule.PredictionType) (Scheduler, *schedule.Schedule)
		steps     int
		wantDraws int
	}{
		{"ddpm fixed_small", func(k schedule.PredictionType) (Scheduler, *schedule.Schedule) {
			c := DefaultDDPMConfig()
			c.ClipSample, c.PredictionType = false, k
			s, _ := NewDDPM(c)
			return s, s.Schedule()
		}, 25, 24},
		{"ddpm fixed_large offset 1", func(k schedule.PredictionType) (Scheduler, *schedule.Schedule) {
			c := DefaultDDPMConfig()
			c.ClipSample, c.PredictionType, c.VarianceType, c.StepsOffset = false, k, FixedLarge, 1
			s, _ := NewDDPM(c)
			return s, s.Schedule()
		}, 25, 25},
		{"ddim eta 0 trailing", func(k schedule.PredictionType) (Scheduler, *schedule.Schedule) {
			c := DefaultDDIMConfig()
			c.ClipSample, c.PredictionType, c.TimestepSpacing = false, k, Trailing
			s, _ := NewDDIM(c)
			return s, s.Schedule()
		}, 15, 0},
		{"ddim eta 0.5 linspace", func(k schedule.PredictionType) (Scheduler, *schedule.Schedule) {
			c := DefaultDDIMConfig()
			c.ClipSample, c.PredictionType, c.TimestepSpacing = false, k, Linspace
			s, _ := NewDDIM(c)
			s.Eta = 0.5
			return s, s.Schedule()
		}, 15, 15},
	} {
		s0, sch := tc.make(schedule.Epsilon)
		ref, draws := run(t, s0, sch, schedule.Epsilon, tc.steps)
		if draws != tc.wantDraws {
			t.Errorf("%s: %d noise draws, want %d", tc.name, draws, tc.wantDraws)
		}
		for _, k := range []schedule.PredictionType{schedule.Sample, schedule.VPrediction} {
			s, sch := tc.make(k)
			got, _ := run(t, s, sch, k, tc.steps)
			if d := maxAbsDiff(got, ref); d > 2e-4 {
				t.Errorf("%s: %s trajectory differs from epsilon's by %g", tc.name, k, d)
			}
		}
	}
}

// One DDPM step with each variance type against the formulas.
func TestDDPMVarianceTypes(t *testing.T) {
	x := tensor.FromSlice([]float32{0.5, -1, 2, 0.25}, 1, 2, 2)
	eps := tensor.FromSlice([]float32{0.1, 0.2, -0.3, 0.4}, 1, 2, 2)
	z := []float32{1, -1, 0.5, 2}
	noise := func(shape []int) *tensor.Tensor { return tensor.FromSlice(slices.Clone(z), shape...) }
	stepWith := func(vt string, out *tensor.Tensor) []float32 {
		c := DefaultDDPMConfig()
		c.ClipSample, c.VarianceType = false, vt
		s, err := NewDDPM(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SetTimesteps(10); err != nil {
			t.Fatal(err)
		}
		y, err := s.Step(out, 500, x, noise)
		if err != nil {
			t.Fatal(err)
		}
		return y.Data()
	}
	s, _ := schedule.New(schedule.Linear, 1000, 1e-4, 0.02, false)
	aT, aP := s.AlphasCumprod[500], s.AlphasCumprod[400]
	curBeta := 1 - aT/aP
	small := (1 - aP) / (1 - aT) * curBeta
	mean := make([]float64, 4)
	for i := range mean {
		x0 := (float64(x.Data()[i]) - math.Sqrt(1-aT)*float64(eps.Data()[i])) / math.Sqrt(aT)
		mean[i] = math.Sqrt(aP)*curBeta/(1-aT)*x0 + math.Sqrt(aT/aP)*(1-aP)/(1-aT)*float64(x.Data()[i])
	}
	want := func(std float64) []float64 {
		out := make([]float64, 4)
		for i := range out {
			out[i] = mean[i] + std*float64(z[i])
		}
		return out
	}
	check := func(name string, got []float32, want []float64) {
		for i := range want {
			if math.Abs(float64(got[i])-want[i]) > 1e-6 {
				t.Errorf("%s: element %d = %g, want %g", name, i, got[i], want[i])
			}
		}
	}
	check(FixedSmall, stepWith(FixedSmall, eps), want(math.Sqrt(small)))
	check(FixedSmallLog, stepWith(FixedSmallLog, eps), want(math.Sqrt(small)))
	check(FixedLarge, stepWith(FixedLarge, eps), want(math.Sqrt(curBeta)))
	// Learned types: output [1, 4, 2] = ε channels then variance channels.
	withVar := func(v float32) *tensor.Tensor {
		d := append(slices.Clone(eps.Data()), v, v, v, v)
		return tensor.FromSlice(d, 1, 4, 2)
	}
	check("learned_range -1", stepWith(LearnedRange, withVar(-1)), want(math.Sqrt(small)))
	check("learned_range +1", stepWith(LearnedRange, withVar(1)), want(math.Sqrt(curBeta)))
	check("learned_range 0", stepWith(LearnedRange, withVar(0)), want(math.Pow(small*curBeta, 0.25)))
	check("learned 0.09", stepWith(Learned, withVar(0.09)), want(0.3))

	c := DefaultDDPMConfig()
	c.VarianceType = LearnedRange
	d, _ := NewDDPM(c)
	if _, err := d.Step(eps, 999, x, noise); err == nil || !strings.Contains(err.Error(), "twice the channels") {
		t.Errorf("learned_range with a C-channel output: %v", err)
	}
}

func TestClipAndThreshold(t *testing.T) {
	x := tensor.FromSlice([]float32{0.5, -1, 2, 0.25, 3, -4, 0.1, 0}, 2, 4)
	out := tensor.FromSlice([]float32{3, -0.5, 0.2, -2, 1.5, -6, 0.3, 0.9}, 2, 4)
	// Sample prediction: x̂0 is the output, then clipped.
	c := DefaultDDIMConfig()
	c.PredictionType = schedule.Sample
	c.ClipSampleRange = 1.5
	d, _ := NewDDIM(c)
	_ = d.SetTimesteps(10)
	if _, err := d.Step(out, 900, x, nil); err != nil {
		t.Fatal(err)
	}
	wantClip := []float32{1.5, -0.5, 0.2, -1.5, 1.5, -1.5, 0.3, 0.9}
	if !slices.Equal(d.PredOriginalSample().Data(), wantClip) {
		t.Errorf("clipped x0 %v, want %v", d.PredOriginalSample().Data(), wantClip)
	}
	// Dynamic thresholding, ratio 0.5: per row the median of |x0| (linear
	// interpolation), clamped to [1, 2.5]; x0 = clamp(x0, ±s)/s.
	c.Thresholding, c.DynamicThresholdingRatio, c.SampleMaxValue = true, 0.5, 2.5
	d, _ = NewDDIM(c)
	_ = d.SetTimesteps(10)
	if _, err := d.Step(out, 900, x, nil); err != nil {
		t.Fatal(err)
	}
	// Row 0 |x0| sorted 0.2 0.5 2 3 → median 1.25. Row 1: 0.3 0.9 1.5 6 → 1.2.
	s0, s1 := 1.25, 1.2
	want := []float64{1, -0.5 / s0, 0.2 / s0, -1, 1, -1, 0.3 / s1, 0.9 / s1}
	for i, w := range want {
		if g := float64(d.PredOriginalSample().Data()[i]); math.Abs(g-w) > 1e-6 {
			t.Errorf("thresholded x0[%d] = %g, want %g", i, g, w)
		}
	}
}

func TestStepErrors(t *testing.T) {
	x := tensor.New(2, 3)
	ddim, _ := NewDDIM(DefaultDDIMConfig())
	if _, err := ddim.Step(x, 999, x, nil); err == nil || !strings.Contains(err.Error(), "SetTimesteps") {
		t.Errorf("DDIM Step before SetTimesteps: %v", err)
	}
	_ = ddim.SetTimesteps(10)
	if _, err := ddim.Step(x, 1000, x, nil); err == nil {
		t.Error("DDIM accepted timestep 1000")
	}
	if _, err := ddim.Step(tensor.New(3, 2), 900, x, nil); err == nil {
		t.Error("DDIM accepted a model output of another shape")
	}
	ddim.Eta = 1
	if _, err := ddim.Step(x, 900, x, nil); err == nil || !strings.Contains(err.Error(), "noise function is nil") {
		t.Errorf("DDIM eta 1 without noise: %v", err)
	}
	if _, err := ddim.Step(x, 900, x, func([]int) *tensor.Tensor { return tensor.New(5) }); err == nil {
		t.Error("DDIM accepted noise of the wrong size")
	}
	if err := ddim.SetTimesteps(1001); err == nil {
		t.Error("SetTimesteps(1001) accepted")
	}

	ddpm, _ := NewDDPM(DefaultDDPMConfig())
	// Before SetTimesteps: all T timesteps, previous is t−1.
	if ts := ddpm.Timesteps(); len(ts) != 1000 || ts[0] != 999 || ts[999] != 0 {
		t.Errorf("initial DDPM timesteps %v...", ts[:3])
	}
	if _, err := ddpm.Step(x, 0, x, nil); err != nil {
		t.Errorf("deterministic last step without noise: %v", err)
	}
	_ = ddpm.SetTimesteps(10)
	if _, err := ddpm.Step(x, 905, x, nil); err == nil || !strings.Contains(err.Error(), "not one of the inference timesteps") {
		t.Errorf("DDPM with an unscheduled timestep: %v", err)
	}
	if _, err := ddpm.Step(x, 900, x, nil); err == nil {
		t.Error("stochastic DDPM step without noise accepted")
	}
}

// Zero terminal SNR with v-prediction and trailing spacing (Lin et al.): the
// first step starts at ᾱ = 0 and stays finite; x̂0 there is −v.
func TestZeroSNRVPrediction(t *testing.T) {
	c := DefaultDDIMConfig()
	c.ClipSample, c.RescaleBetasZeroSNR, c.PredictionType, c.TimestepSpacing = false, true, schedule.VPrediction, Trailing
	d, err := NewDDIM(c)
	if err != nil {
		t.Fatal(err)
	}
	_ = d.SetTimesteps(10)
	if d.Timesteps()[0] != 999 || d.Schedule().AlphasCumprod[999] != 0 {
		t.Fatal("not starting at the zero-SNR step")
	}
	x := tensor.FromSlice([]float32{1, -2, 0.5}, 1, 3)
	v := tensor.FromSlice([]float32{0.3, 0.1, -0.2}, 1, 3)
	y, err := d.Step(v, 999, x, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range d.PredOriginalSample().Data() {
		if g != -v.Data()[i] {
			t.Errorf("x0[%d] = %g, want %g", i, g, -v.Data()[i])
		}
		if math.IsNaN(float64(y.Data()[i])) || math.IsInf(float64(y.Data()[i]), 0) {
			t.Errorf("non-finite sample %g", y.Data()[i])
		}
	}
}
