package sampler

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

// The k-diffusion reference (see ../../shared/refs/README.md): samplers run
// in float64 on the exact denoiser of a Gaussian mixture, with the noise
// sampler replaying a bank of draws.
type kdiffRef struct {
	Defaults map[string]any `json:"defaults"`
	Mixture  struct {
		W   []float64   `json:"w"`
		Mu  [][]float64 `json:"mu"`
		Var []float64   `json:"var"`
	} `json:"mixture"`
	ScheduleArgs struct {
		N               int     `json:"n"`
		SigmaMin        float64 `json:"sigma_min"`
		SigmaMax        float64 `json:"sigma_max"`
		KarrasRho       float64 `json:"karras_rho"`
		PolyExponential float64 `json:"polyexponential_rho"`
		VP              struct {
			BetaD   float64 `json:"beta_d"`
			BetaMin float64 `json:"beta_min"`
			EpsS    float64 `json:"eps_s"`
		} `json:"vp"`
	} `json:"schedule_args"`
	Schedules map[string][]float64 `json:"schedules"`
	XT        [][]float64          `json:"x_T"`
	NoiseBank [][][]float64        `json:"noise_bank"`
	Cases     []struct {
		Sampler    string         `json:"sampler"`
		Schedule   string         `json:"schedule"`
		Options    map[string]any `json:"options"`
		Out        [][]float64    `json:"out"`
		NFE        int            `json:"nfe"`
		NoiseCalls [][2]float64   `json:"noise_calls"`
	} `json:"cases"`
}

// kdiffRefPath is the reference file: DIFFUSE_KDIFF_REF, else the shared one.
func kdiffRefPath() string {
	if p := os.Getenv("DIFFUSE_KDIFF_REF"); p != "" {
		return p
	}
	return filepath.Join("..", "..", "shared", "refs", "kdiffusion_samplers.json")
}

func loadKDiffRef(t *testing.T) *kdiffRef {
	t.Helper()
	p := kdiffRefPath()
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("k-diffusion reference %s: %v (set DIFFUSE_KDIFF_REF to a file of the layout of shared/refs/kdiffusion_samplers.json)", p, err)
	}
	var ref kdiffRef
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatalf("k-diffusion reference %s: %v", p, err)
	}
	if len(ref.XT) == 0 || len(ref.Mixture.W) == 0 || len(ref.Cases) == 0 {
		t.Fatalf("k-diffusion reference %s: missing x_T, mixture or cases", p)
	}
	return &ref
}

// mixtureDenoiser is the exact denoiser E[x0 | x] of x0 ~ Σ_k w_k N(μ_k,
// v_k I) observed as x = x0 + σ ε, computed in float64:
// D(x, σ) = Σ_k r_k(x) (μ_k + v_k/(v_k+σ²) (x − μ_k)) with responsibilities
// r = softmax_k(log w_k − D/2 log(2π(v_k+σ²)) − |x−μ_k|²/(2(v_k+σ²))).
func mixtureDenoiser(w []float64, mu [][]float64, vr []float64) func(x []float64, sigma float64) []float64 {
	return func(x []float64, sigma float64) []float64 {
		dim := len(mu[0])
		K := len(w)
		logit := make([]float64, K)
		s2 := sigma * sigma
		for k := 0; k < K; k++ {
			v := vr[k] + s2
			d2 := 0.0
			for j := 0; j < dim; j++ {
				e := x[j] - mu[k][j]
				d2 += e * e
			}
			logit[k] = math.Log(w[k]) - float64(dim)/2*math.Log(2*math.Pi*v) - d2/(2*v)
		}
		m := math.Inf(-1)
		for _, l := range logit {
			m = math.Max(m, l)
		}
		z := 0.0
		for k := range logit {
			logit[k] = math.Exp(logit[k] - m)
			z += logit[k]
		}
		out := make([]float64, dim)
		for k := 0; k < K; k++ {
			rk := logit[k] / z
			c := vr[k] / (vr[k] + s2)
			for j := 0; j < dim; j++ {
				out[j] += rk * (mu[k][j] + c*(x[j]-mu[k][j]))
			}
		}
		return out
	}
}

// batchDenoiser applies the per-sample denoiser f to a float32 batch [B, D].
func batchDenoiser(f func([]float64, float64) []float64, calls *int) Denoiser {
	return func(x *tensor.Tensor, sigma []float64) (*tensor.Tensor, error) {
		*calls++
		B, D := x.Dim(0), x.Numel()/x.Dim(0)
		if len(sigma) != B {
			return nil, fmt.Errorf("got %d sigmas for batch %d", len(sigma), B)
		}
		in := x.Data()
		out := make([]float32, len(in))
		row := make([]float64, D)
		for b := 0; b < B; b++ {
			for j := range row {
				row[j] = float64(in[b*D+j])
			}
			for j, v := range f(row, sigma[b]) {
				out[b*D+j] = float32(v)
			}
		}
		return tensor.FromSlice(out, x.Shape()...), nil
	}
}

func flatten(rows [][]float64) []float64 {
	var out []float64
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

func toF32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, f := range v {
		out[i] = float32(f)
	}
	return out
}

func relClose(a, b, tol float64) bool {
	return math.Abs(a-b) <= tol*(1+math.Max(math.Abs(a), math.Abs(b)))
}

// applyCaseOptions sets the case's options (k-diffusion keyword names) on o.
func applyCaseOptions(o *Options, opts map[string]any) error {
	for k, v := range opts {
		f, isNum := v.(float64)
		switch k {
		case "eta":
			o.Eta = f
		case "s_noise":
			o.SNoise = f
		case "s_churn":
			o.SChurn = f
		case "s_tmin":
			o.STMin = f
		case "s_tmax":
			o.STMax = f
		case "r":
			o.R = f
		case "order":
			o.Order = int(f)
		case "solver_type":
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("option solver_type = %v is not a string", v)
			}
			o.SolverType = s
			continue
		default:
			return fmt.Errorf("unknown option %q", k)
		}
		if !isNum {
			return fmt.Errorf("option %s = %v is not a number", k, v)
		}
	}
	return nil
}

func TestKDiffusionReference(t *testing.T) {
	ref := loadKDiffRef(t)
	t.Run("defaults", func(t *testing.T) {
		o := DefaultOptions()
		want := map[string]any{"eta": o.Eta, "s_noise": o.SNoise, "dpmpp_sde_r": o.R, "dpmpp_2m_sde_solver_type": o.SolverType, "lms_order": float64(o.Order), "s_churn": o.SChurn}
		for k, v := range want {
			if got, ok := ref.Defaults[k]; ok && got != v {
				t.Errorf("k-diffusion default %s = %v, DefaultOptions has %v", k, got, v)
			}
		}
	})
	B, D := len(ref.XT), len(ref.XT[0])
	f := mixtureDenoiser(ref.Mixture.W, ref.Mixture.Mu, ref.Mixture.Var)
	xT := tensor.FromSlice(toF32(flatten(ref.XT)), B, D)

	t.Run("schedules", func(t *testing.T) {
		a := ref.ScheduleArgs
		build := map[string]func() ([]float64, error){
			"karras":          func() ([]float64, error) { return Karras(a.N, a.SigmaMin, a.SigmaMax, a.KarrasRho) },
			"exponential":     func() ([]float64, error) { return Exponential(a.N, a.SigmaMin, a.SigmaMax) },
			"polyexponential": func() ([]float64, error) { return PolyExponential(a.N, a.SigmaMin, a.SigmaMax, a.PolyExponential) },
			"vp":              func() ([]float64, error) { return VP(a.N, a.VP.BetaD, a.VP.BetaMin, a.VP.EpsS) },
		}
		for name, want := range ref.Schedules {
			fn, ok := build[name]
			if !ok {
				t.Errorf("schedule %q in the reference: no builder", name)
				continue
			}
			got, err := fn()
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if len(got) != len(want) {
				t.Errorf("%s: %d values, reference %d", name, len(got), len(want))
				continue
			}
			worst := 0.0
			for i := range got {
				if !relClose(got[i], want[i], 1e-12) {
					t.Errorf("%s[%d] = %.17g, reference %.17g", name, i, got[i], want[i])
				}
				worst = math.Max(worst, math.Abs(got[i]-want[i])/(1+math.Abs(want[i])))
			}
			t.Logf("%-16s max rel err %.2e", name, worst)
		}
		for name := range build {
			if _, ok := ref.Schedules[name]; !ok {
				t.Errorf("reference has no %s schedule", name)
			}
		}
	})

	for _, c := range ref.Cases {
		name := c.Sampler + "/" + c.Schedule
		t.Run(name, func(t *testing.T) {
			sigmas, ok := ref.Schedules[c.Schedule]
			if !ok {
				t.Fatalf("unknown schedule %q", c.Schedule)
			}
			fn, err := ByName(c.Sampler)
			if err != nil {
				t.Fatalf("%v", err)
			}
			o := DefaultOptions()
			if err := applyCaseOptions(&o, c.Options); err != nil {
				t.Fatalf("options %v: %v", c.Options, err)
			}
			var draws [][2]float64
			bankErr := false
			o.Noise = func(s, sn float64, shape []int) *tensor.Tensor {
				i := len(draws)
				draws = append(draws, [2]float64{s, sn})
				out := tensor.New(shape...)
				if i >= len(ref.NoiseBank) {
					bankErr = true
					return out
				}
				copy(out.Data(), toF32(flatten(ref.NoiseBank[i])))
				return out
			}
			calls := 0
			out, err := fn(batchDenoiser(f, &calls), xT, sigmas, o)
			if err != nil {
				t.Fatalf("%v", err)
			}
			if bankErr {
				t.Errorf("%d noise draws exhaust the bank of %d", len(draws), len(ref.NoiseBank))
			}
			if calls != c.NFE {
				t.Errorf("%d denoiser calls, k-diffusion %d", calls, c.NFE)
			}
			if len(draws) != len(c.NoiseCalls) {
				t.Errorf("%d noise draws, k-diffusion %d", len(draws), len(c.NoiseCalls))
			}
			for i := 0; i < min(len(draws), len(c.NoiseCalls)); i++ {
				g, w := draws[i], c.NoiseCalls[i]
				if !relClose(g[0], w[0], 1e-12) || !relClose(g[1], w[1], 1e-12) {
					t.Errorf("noise draw %d at (σ, σ_next) = (%.17g, %.17g), k-diffusion (%.17g, %.17g)", i, g[0], g[1], w[0], w[1])
				}
			}
			want := flatten(c.Out)
			got := out.Data()
			maxRef, maxErr := 0.0, 0.0
			for i := range want {
				maxRef = math.Max(maxRef, math.Abs(want[i]))
				maxErr = math.Max(maxErr, math.Abs(float64(got[i])-want[i]))
			}
			tol := 1e-4 * (1 + maxRef)
			if !(maxErr <= tol) {
				t.Errorf("max abs diff %.3e > tolerance %.3e", maxErr, tol)
			}
			t.Logf("max abs diff %.3e (tolerance %.3e), nfe %d, noise draws %d", maxErr, tol, calls, len(draws))
		})
	}
}
