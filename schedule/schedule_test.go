package schedule

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

func relErr(got, want float64) float64 {
	return math.Abs(got-want) / math.Max(math.Abs(want), 1e-300)
}

// Values computed in float64 from diffusers' formulas (NumPy linspace, Python
// math for the cosine schedule).
func TestScheduleValues(t *testing.T) {
	cases := []struct {
		name            string
		kind            string
		T               int
		start, end      float64
		zeroSNR         bool
		idx             int
		beta, alphaBar  float64 // NaN to skip
		tol             float64
		lastAlphaBarMax float64 // upper bound on ᾱ_{T-1}
	}{
		{"linear abar0", Linear, 1000, 1e-4, 0.02, false, 0, 1e-4, 0.9999, 1e-15, 1},
		{"linear abar499", Linear, 1000, 1e-4, 0.02, false, 499, math.NaN(), 0.07858724288177824, 1e-13, 1},
		// diffusers' float32 table has 4.035830352e-05 here (float32 cumprod).
		{"linear abar999", Linear, 1000, 1e-4, 0.02, false, 999, 0.02, 4.035829765375676e-05, 1e-11, 1},
		{"cosine start", Cosine, 1000, 0, 0, false, 0, 4.128422482196914e-05, 0.999958715775178, 1e-12, 1},
		{"cosine mid", CosineAlias, 1000, 0, 0, false, 499, math.NaN(), 0.4938435904406382, 1e-12, 1},
		{"cosine end capped", Cosine, 1000, 0, 0, false, 999, 0.999, 2.4287669070348567e-09, 1e-9, 1},
		{"scaled_linear ends", ScaledLinear, 1000, 0.00085, 0.012, false, 999, 0.012, 0.004660098513077238, 1e-11, 1},
		{"scaled_linear start", ScaledLinear, 1000, 0.00085, 0.012, false, 0, 0.00085, 1 - 0.00085, 1e-14, 1},
		// sigmoid(±6)·(0.02−1e-4)+1e-4 at the two ends.
		{"sigmoid start", Sigmoid, 1000, 1e-4, 0.02, false, 0, 1/(1+math.Exp(6))*(0.02-1e-4) + 1e-4, math.NaN(), 1e-14, 1},
		{"sigmoid end", Sigmoid, 1000, 1e-4, 0.02, false, 999, 1/(1+math.Exp(-6))*(0.02-1e-4) + 1e-4, math.NaN(), 1e-14, 1},
		{"zero snr keeps abar0", Linear, 1000, 1e-4, 0.02, true, 0, math.NaN(), 0.9999, 1e-13, 0},
		{"zero snr last beta", ScaledLinear, 1000, 0.00085, 0.012, true, 999, 1, 0, 0, 0},
		{"zero snr cosine", Cosine, 50, 0, 0, true, 49, 1, 0, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(c.kind, c.T, c.start, c.end, c.zeroSNR)
			if err != nil {
				t.Fatal(err)
			}
			if s.T() != c.T || len(s.Alphas) != c.T || len(s.AlphasCumprod) != c.T {
				t.Fatalf("tables of length %d/%d/%d, want %d", len(s.Betas), len(s.Alphas), len(s.AlphasCumprod), c.T)
			}
			if !math.IsNaN(c.beta) {
				if e := relErr(s.Betas[c.idx], c.beta); e > c.tol {
					t.Errorf("beta[%d] = %.17g, want %.17g (rel err %g)", c.idx, s.Betas[c.idx], c.beta, e)
				}
			}
			if !math.IsNaN(c.alphaBar) {
				got := s.AlphasCumprod[c.idx]
				if c.alphaBar == 0 {
					if got != 0 {
						t.Errorf("abar[%d] = %g, want exactly 0", c.idx, got)
					}
				} else if e := relErr(got, c.alphaBar); e > c.tol {
					t.Errorf("abar[%d] = %.17g, want %.17g (rel err %g)", c.idx, got, c.alphaBar, e)
				}
			}
			if last := s.AlphasCumprod[c.T-1]; last > c.lastAlphaBarMax {
				t.Errorf("abar[T-1] = %g, want ≤ %g", last, c.lastAlphaBarMax)
			}
			// ᾱ is decreasing and tables are consistent.
			for i := range s.Betas {
				if math.Abs(s.Alphas[i]-(1-s.Betas[i])) > 0 {
					t.Fatalf("alpha[%d] != 1-beta", i)
				}
				if i > 0 && s.AlphasCumprod[i] > s.AlphasCumprod[i-1] {
					t.Fatalf("abar not decreasing at %d", i)
				}
			}
		})
	}
}

func TestZeroSNRProperties(t *testing.T) {
	s, err := New(Linear, 1000, 1e-4, 0.02, true)
	if err != nil {
		t.Fatal(err)
	}
	if s.AlphasCumprod[999] != 0 || s.SNR(999) != 0 || !math.IsInf(s.Sigma(999), 1) {
		t.Errorf("last step: abar %g SNR %g sigma %g, want 0, 0, +Inf", s.AlphasCumprod[999], s.SNR(999), s.Sigma(999))
	}
	if w := s.MinSNRWeight(Epsilon, 999, 5); w != 1 {
		t.Errorf("eps Min-SNR weight at SNR 0 = %g, want 1", w)
	}
	if w := s.MinSNRWeight(VPrediction, 999, 5); w != 0 {
		t.Errorf("v Min-SNR weight at SNR 0 = %g, want 0", w)
	}
}

func TestNewErrors(t *testing.T) {
	cases := []struct {
		kind       string
		T          int
		start, end float64
		zero       bool
		want       string
	}{
		{"quadratic", 1000, 1e-4, 0.02, false, "valid: linear, scaled_linear, squaredcos_cap_v2, sigmoid"},
		{Linear, 0, 1e-4, 0.02, false, "T = 0"},
		{Linear, -3, 1e-4, 0.02, false, "T = -3"},
		{Linear, 1000, 0.02, 1e-4, false, "beta_start ≤ beta_end"},
		{Linear, 1000, 0, 0.02, false, "0 < beta_start"},
		{ScaledLinear, 1000, 1e-4, 1, false, "beta_end < 1"},
		{Sigmoid, 1000, math.NaN(), 0.02, false, "beta_start"},
		{Linear, 1, 1e-4, 1e-4, true, "T ≥ 2"},
	}
	for _, c := range cases {
		_, err := New(c.kind, c.T, c.start, c.end, c.zero)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%q, %d, %g, %g, %v) = %v, want error containing %q", c.kind, c.T, c.start, c.end, c.zero, err, c.want)
		}
	}
	if _, err := FromBetas([]float64{0.1, 1.5}); err == nil {
		t.Error("FromBetas accepted beta 1.5")
	}
	if _, err := FromBetas(nil); err == nil {
		t.Error("FromBetas accepted no betas")
	}
	if err := PredictionType("noise").Validate(); err == nil || !strings.Contains(err.Error(), "v_prediction") {
		t.Errorf("Validate(noise) = %v", err)
	}
	s, _ := New(Linear, 10, 1e-4, 0.02, false)
	x := tensor.New(2, 3)
	if err := s.AddNoise(x, x, tensor.New(2, 4), []int{1, 2}); err == nil {
		t.Error("AddNoise accepted mismatched shapes")
	}
	if err := s.AddNoise(x, x, x, []int{1, 2, 3}); err == nil {
		t.Error("AddNoise accepted 3 timesteps for a batch of 2")
	}
	if err := s.AddNoise(x, x, x, []int{1, 10}); err == nil {
		t.Error("AddNoise accepted timestep T")
	}
	if err := s.Target("x0", x, x, x, nil, []int{1}); err == nil {
		t.Error("Target accepted an unknown kind")
	}
}

func TestLinspaceMatchesNumPy(t *testing.T) {
	got := Linspace(0, 999, 20)
	if got[0] != 0 || got[19] != 999 || math.Abs(got[1]-999.0/19) > 1e-12 {
		t.Errorf("Linspace(0, 999, 20) = %v", got)
	}
	if one := Linspace(3, 7, 1); len(one) != 1 || one[0] != 3 {
		t.Errorf("Linspace(3, 7, 1) = %v, want [3]", one)
	}
}

func randTensor(seed uint64, shape ...int) *tensor.Tensor {
	x := tensor.New(shape...)
	d := x.Data()
	s := seed
	for i := range d {
		s = s*6364136223846793005 + 1442695040888963407
		d[i] = float32(int64(s>>33)%2001-1000) / 500
	}
	return x
}

func maxDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

// AddNoise, then Target, then Split of the exact target must give back x0
// and eps, for every prediction type and per-sample timesteps.
func TestRoundTrips(t *testing.T) {
	for _, kind := range []string{Linear, ScaledLinear, Cosine} {
		s, err := New(kind, 1000, 0.00085, 0.012, false)
		if err != nil {
			t.Fatal(err)
		}
		x0 := randTensor(1, 3, 2, 4, 4)
		eps := randTensor(2, 3, 2, 4, 4)
		ts := []int{0, 500, 999}
		xt := tensor.New(3, 2, 4, 4)
		if err := s.AddNoise(xt, x0, eps, ts); err != nil {
			t.Fatal(err)
		}
		// Spot check the closed form on one element of each sample.
		for b, ti := range ts {
			i := b*32 + 5
			want := math.Sqrt(s.AlphasCumprod[ti])*float64(x0.Data()[i]) + math.Sqrt(1-s.AlphasCumprod[ti])*float64(eps.Data()[i])
			if math.Abs(float64(xt.Data()[i])-want) > 1e-6 {
				t.Errorf("%s: AddNoise sample %d = %g, want %g", kind, b, xt.Data()[i], want)
			}
		}
		for _, pt := range []PredictionType{Epsilon, Sample, VPrediction} {
			target := tensor.New(3, 2, 4, 4)
			if err := s.Target(pt, target, x0, eps, xt, ts); err != nil {
				t.Fatal(err)
			}
			x0hat, epshat := tensor.New(3, 2, 4, 4), tensor.New(3, 2, 4, 4)
			if err := s.Split(pt, target, xt, ts, x0hat, epshat); err != nil {
				t.Fatal(err)
			}
			// Errors scale with the conditioning of each conversion: x̂0 from ε at
			// t = 999 divides by √ᾱ, ε̂ from x0 at t = 0 divides by √(1−ᾱ).
			for b, ti := range ts {
				a := s.AlphasCumprod[ti]
				tolX, tolE := 1e-5, 1e-5
				if pt == Epsilon {
					tolX = 1e-6 * 4 / math.Sqrt(a)
				}
				if pt == Sample {
					tolE = 1e-6 * 4 / math.Sqrt(1-a)
				}
				r := func(x *tensor.Tensor) []float32 { return x.Data()[b*32 : (b+1)*32] }
				if d := maxDiff(r(x0hat), r(x0)); d > tolX {
					t.Errorf("%s/%s t=%d: x0 round trip err %g > %g", kind, pt, ti, d, tolX)
				}
				if d := maxDiff(r(epshat), r(eps)); d > tolE {
					t.Errorf("%s/%s t=%d: eps round trip err %g > %g", kind, pt, ti, d, tolE)
				}
			}
			// In-place Split (outputs aliasing the model output) and a shared timestep.
			xt1 := tensor.New(3, 2, 4, 4)
			_ = s.AddNoise(xt1, x0, eps, []int{300})
			tg := tensor.New(3, 2, 4, 4)
			_ = s.Target(pt, tg, x0, eps, nil, []int{300})
			if err := s.Split(pt, tg, xt1, []int{300}, tg, nil); err != nil {
				t.Fatal(err)
			}
			if d := maxDiff(tg.Data(), x0.Data()); d > 1e-5 {
				t.Errorf("%s/%s: in-place Split err %g", kind, pt, d)
			}
		}
	}
}

func TestMinSNRWeight(t *testing.T) {
	s, _ := New(Linear, 1000, 1e-4, 0.02, false)
	for _, ti := range []int{0, 50, 300, 999} {
		snr := s.SNR(ti)
		if e := relErr(snr, s.AlphasCumprod[ti]/(1-s.AlphasCumprod[ti])); e > 1e-15 {
			t.Fatal("SNR")
		}
		if e := relErr(s.Sigma(ti), 1/math.Sqrt(snr)); e > 1e-12 {
			t.Errorf("Sigma(%d) = %g, want 1/sqrt(SNR) = %g", ti, s.Sigma(ti), 1/math.Sqrt(snr))
		}
		m := math.Min(snr, 5)
		for _, c := range []struct {
			pt   PredictionType
			want float64
		}{{Epsilon, m / snr}, {Sample, m}, {VPrediction, m / (snr + 1)}} {
			if got := s.MinSNRWeight(c.pt, ti, 5); relErr(got, c.want) > 1e-15 {
				t.Errorf("MinSNRWeight(%s, %d) = %g, want %g", c.pt, ti, got, c.want)
			}
		}
	}
	// Low-noise steps (SNR > γ) are down-weighted for ε, high-noise ones get 1.
	if w := s.MinSNRWeight(Epsilon, 0, 5); w >= 0.01 {
		t.Errorf("eps weight at t=0 = %g, want ≪ 1", w)
	}
	if w := s.MinSNRWeight(Epsilon, 999, 5); w != 1 {
		t.Errorf("eps weight at t=999 = %g, want 1", w)
	}
}

func TestConfigJSON(t *testing.T) {
	c := DefaultConfig()
	c.BetaSchedule = ScaledLinear
	c.BetaStart, c.BetaEnd = 0.00085, 0.012
	c.PredictionType = VPrediction
	c.RescaleBetasZeroSNR = true
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"num_train_timesteps":1000,"beta_start":0.00085,"beta_end":0.012,"beta_schedule":"scaled_linear","rescale_betas_zero_snr":true,"prediction_type":"v_prediction"}`
	if string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
	var back Config
	if err := json.Unmarshal(b, &back); err != nil || back != c {
		t.Fatalf("round trip %+v, %v", back, err)
	}
	s, err := back.Build()
	if err != nil || s.AlphasCumprod[999] != 0 {
		t.Errorf("Build: %v", err)
	}
	back.PredictionType = "noise"
	if _, err := back.Build(); err == nil {
		t.Error("Build accepted prediction type noise")
	}
}
