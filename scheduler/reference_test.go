package scheduler

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// The diffusers reference: trajectories of diffusers' schedulers on the exact
// ε-model of a Gaussian mixture (see ../../shared/refs/diffusers/README.md).

type refMatrix [][]float64

type refStep struct {
	I                  int       `json:"i"`
	T                  float64   `json:"t"`
	Scale              float64   `json:"scale"`
	Eps                refMatrix `json:"eps"`
	PrevSample         refMatrix `json:"prev_sample"`
	PredOriginalSample refMatrix `json:"pred_original_sample"`
}

type refNoise struct {
	Step   int       `json:"step"`
	Shape  []int     `json:"shape"`
	Dtype  string    `json:"dtype"`
	Values refMatrix `json:"values"`
}

type refCase struct {
	Name              string                     `json:"name"`
	Class             string                     `json:"class"`
	Dtype             string                     `json:"dtype"`
	NumInferenceSteps int                        `json:"num_inference_steps"`
	StepKwargs        map[string]json.RawMessage `json:"step_kwargs"`
	GeneratorSeed     int                        `json:"generator_seed"`
	Config            map[string]json.RawMessage `json:"config"`
	Timesteps         []float64                  `json:"timesteps"`
	InitNoiseSigma    float64                    `json:"init_noise_sigma"`
	XInit             refMatrix                  `json:"x_init"`
	Steps             []refStep                  `json:"steps"`
	Noise             []refNoise                 `json:"noise"`
	Final             refMatrix                  `json:"final"`
}

type refFile struct {
	Seed    int `json:"seed"`
	D       int `json:"D"`
	K       int `json:"K"`
	B       int `json:"B"`
	Mixture struct {
		W  []float64   `json:"w"`
		Mu [][]float64 `json:"mu"`
		V  []float64   `json:"v"`
	} `json:"mixture"`
	XT         refMatrix         `json:"x_T"`
	Loop       string            `json:"loop"`
	Schedulers []refCase         `json:"schedulers"`
	Failed     map[string]string `json:"failed"`
}

func refPath() string {
	if p := os.Getenv("DIFFUSE_DIFFUSERS_REF"); p != "" {
		return p
	}
	return filepath.Join("..", "..", "shared", "refs", "diffusers", "schedulers.json")
}

func loadRef(t *testing.T) *refFile {
	t.Helper()
	p := refPath()
	b, err := os.ReadFile(p)
	if err != nil {
		if os.IsNotExist(err) && os.Getenv("DIFFUSE_DIFFUSERS_REF") == "" {
			t.Skipf("reference file %s not found (set DIFFUSE_DIFFUSERS_REF)", p)
		}
		t.Fatal(err)
	}
	var f refFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if f.K != len(f.Mixture.W) || f.K != len(f.Mixture.Mu) || f.K != len(f.Mixture.V) || len(f.XT) != f.B {
		t.Fatalf("%s: inconsistent mixture (K=%d, B=%d)", p, f.K, f.B)
	}
	return &f
}

// epsModel is the exact ε-prediction of the mixture's noised distribution.
type epsModel struct {
	w, v     []float64
	mu       [][]float64
	D        int
	logSigma []float64 // log σ_k of the float64 linear schedule, k = 0..999
}

func newEpsModel(f *refFile) *epsModel {
	s, err := schedule.New(schedule.Linear, 1000, 1e-4, 0.02, false)
	if err != nil {
		panic(err)
	}
	m := &epsModel{w: f.Mixture.W, v: f.Mixture.V, mu: f.Mixture.Mu, D: f.D}
	for k := range 1000 {
		m.logSigma = append(m.logSigma, math.Log(s.Sigma(k)))
	}
	return m
}

// alphaBar returns ᾱ(t) and 1−ᾱ(t) for a real t ∈ [0, 999]: log σ
// interpolated linearly between integer timesteps (numpy.interp), exact at
// integers.
func (m *epsModel) alphaBar(t float64) (a, oneMinus float64) {
	n := len(m.logSigma)
	var ls float64
	switch {
	case t <= 0:
		ls = m.logSigma[0]
	case t >= float64(n-1):
		ls = m.logSigma[n-1]
	default:
		i := int(math.Floor(t))
		fr := t - float64(i)
		ls = m.logSigma[i] + fr*(m.logSigma[i+1]-m.logSigma[i])
	}
	s2 := math.Exp(2 * ls)
	return 1 / (1 + s2), s2 / (1 + s2)
}

// eps evaluates ε*(x, t) in float64 for every row of x ([B, D] flat).
func (m *epsModel) eps(x []float64, t float64) []float64 {
	a, om := m.alphaBar(t)
	sa := math.Sqrt(a)
	D, K := m.D, len(m.w)
	out := make([]float64, len(x))
	logits := make([]float64, K)
	s2 := make([]float64, K)
	for k := range K {
		s2[k] = a*m.v[k] + om
	}
	for r := 0; r < len(x)/D; r++ {
		row := x[r*D : (r+1)*D]
		mx := math.Inf(-1)
		for k := range K {
			d2 := 0.0
			for j, xv := range row {
				d := xv - sa*m.mu[k][j]
				d2 += d * d
			}
			logits[k] = math.Log(m.w[k]) - float64(D)/2*math.Log(2*math.Pi*s2[k]) - d2/(2*s2[k])
			mx = max(mx, logits[k])
		}
		z := 0.0
		for k := range K {
			logits[k] = math.Exp(logits[k] - mx)
			z += logits[k]
		}
		for j, xv := range row {
			x0 := 0.0
			for k := range K {
				rk := logits[k] / z
				x0 += rk * (m.mu[k][j] + sa*m.v[k]/s2[k]*(xv-sa*m.mu[k][j]))
			}
			out[r*D+j] = (xv - sa*x0) / math.Sqrt(om)
		}
	}
	return out
}

func (r refMatrix) flat() []float64 {
	var out []float64
	for _, row := range r {
		out = append(out, row...)
	}
	return out
}

func to32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

func to64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// relDiff returns max|got−ref| / (1 + max|ref|), the reference test's error
// measure (tolerance 1e-4).
func relDiff(got []float32, ref []float64) float64 {
	if len(got) != len(ref) {
		return math.Inf(1)
	}
	d, m := 0.0, 0.0
	for i, r := range ref {
		d = max(d, math.Abs(float64(got[i])-r))
		m = max(m, math.Abs(r))
	}
	return d / (1 + m)
}

const refTol = 1e-4

// buildRefScheduler makes the scheduler of a case from its stored config
// (all keys honored: FromJSON rejects any it does not know) and step kwargs.
func buildRefScheduler(t *testing.T, c refCase) Scheduler {
	t.Helper()
	cfg := map[string]json.RawMessage{}
	for k, v := range c.Config {
		cfg[k] = v
	}
	cls, _ := json.Marshal(c.Class)
	cfg["_class_name"] = cls
	raw, _ := json.Marshal(cfg)
	s, err := FromJSON(raw)
	if err != nil {
		t.Fatalf("config of %s: %v", c.Name, err)
	}
	for k, v := range c.StepKwargs {
		var dst any
		switch s := s.(type) {
		case *DDIM:
			switch k {
			case "eta":
				dst = &s.Eta
			case "use_clipped_model_output":
				dst = &s.UseClippedModelOutput
			}
		case *Euler:
			switch k {
			case "s_churn":
				dst = &s.SChurn
			case "s_tmin":
				dst = &s.STmin
			case "s_tmax":
				dst = &s.STmax
			case "s_noise":
				dst = &s.SNoise
			}
		case *LMS:
			if k == "order" {
				dst = &s.Order
			}
		}
		if dst == nil {
			t.Fatalf("step kwarg %s=%s not supported for %s", k, v, c.Class)
		}
		if err := json.Unmarshal(v, dst); err != nil {
			t.Fatalf("step kwarg %s: %v", k, err)
		}
	}
	return s
}

// realTimesteps returns s's timesteps as the model sees them: the real
// values of a RealTimesteps scheduler, else the integers.
func realTimesteps(s Scheduler) []float64 {
	if r, ok := s.(RealTimesteps); ok {
		return r.TimestepValues()
	}
	var out []float64
	for _, t := range s.Timesteps() {
		out = append(out, float64(t))
	}
	return out
}

// relClose reports |a−b| ≤ tol·max(1, |b|).
func relClose(a, b, tol float64) bool { return math.Abs(a-b) <= tol*max(1, math.Abs(b)) }

func TestDiffusersSchedulerReference(t *testing.T) {
	f := loadRef(t)
	for name, msg := range f.Failed {
		t.Logf("reference generator reported %s failed: %s", name, msg)
	}
	model := newEpsModel(f)
	for _, c := range f.Schedulers {
		t.Run(c.Name, func(t *testing.T) {
			s := buildRefScheduler(t, c)
			if err := s.SetTimesteps(c.NumInferenceSteps); err != nil {
				t.Fatal(err)
			}
			tv := realTimesteps(s)
			if len(tv) != len(c.Timesteps) || len(s.Timesteps()) != len(tv) {
				t.Fatalf("%d timesteps (%d real), want %d", len(s.Timesteps()), len(tv), len(c.Timesteps))
			}
			for i, v := range c.Timesteps {
				// Real timesteps are float32 values computed from float32 σ.
				if !relClose(tv[i], v, 1e-6) || s.Timesteps()[i] != int(math.Round(v)) {
					t.Fatalf("timestep %d: %d (%v), want %v\ngot  %v\nwant %v", i, s.Timesteps()[i], tv[i], v, tv, c.Timesteps)
				}
			}
			if !relClose(s.InitNoiseSigma(), c.InitNoiseSigma, 1e-6) {
				t.Fatalf("init_noise_sigma %g, want %g", s.InitNoiseSigma(), c.InitNoiseSigma)
			}
			if len(c.Steps) != len(tv) {
				t.Fatalf("%d steps recorded for %d timesteps", len(c.Steps), len(tv))
			}

			shape := []int{f.B, f.D}
			xT := f.XT.flat()
			for i := range xT {
				xT[i] *= s.InitNoiseSigma()
			}
			if d := relDiff(to32(xT), c.XInit.flat()); d > 1e-6 {
				t.Fatalf("x_init differs from x_T·init_noise_sigma by %g", d)
			}
			x := tensor.FromSlice(to32(xT), shape...)

			noiseUsed := 0
			var worst, worstEps, worstX0 float64
			worstAt := -1
			for i, st := range c.Steps {
				ti := s.Timesteps()[i]
				if !relClose(tv[i], st.T, 1e-6) {
					t.Fatalf("step %d: timestep %v, reference %g", i, tv[i], st.T)
				}
				in := s.ScaleModelInput(x, ti)
				want := to64(x.Data())
				for k := range want {
					want[k] *= st.Scale
				}
				if d := relDiff(in.Data(), want); d > 1e-6 {
					t.Fatalf("step %d: scale_model_input differs from x·%g by %g", i, st.Scale, d)
				}
				epsv := to32(model.eps(to64(in.Data()), tv[i]))
				worstEps = max(worstEps, relDiff(epsv, st.Eps.flat()))
				out := tensor.FromSlice(epsv, shape...)
				drawn := 0
				noise := func(sh []int) *tensor.Tensor {
					drawn++
					if noiseUsed >= len(c.Noise) {
						t.Fatalf("step %d: noise draw %d, but only %d were recorded", i, noiseUsed, len(c.Noise))
					}
					n := c.Noise[noiseUsed]
					noiseUsed++
					if n.Step != i || !slices.Equal(n.Shape, sh) {
						t.Fatalf("step %d: noise draw %d recorded at step %d with shape %v, asked for shape %v", i, noiseUsed-1, n.Step, n.Shape, sh)
					}
					return tensor.FromSlice(to32(n.Values.flat()), sh...)
				}
				next, err := s.Step(out, ti, x, noise)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if drawn > 1 {
					t.Fatalf("step %d drew noise %d times", i, drawn)
				}
				if d := relDiff(next.Data(), st.PrevSample.flat()); d > worst {
					worst, worstAt = d, i
				}
				if st.PredOriginalSample != nil {
					p, ok := s.(interface{ PredOriginalSample() *tensor.Tensor })
					if !ok {
						t.Fatalf("%T records pred_original_sample in diffusers but has no PredOriginalSample", s)
					}
					pred := p.PredOriginalSample()
					worstX0 = max(worstX0, relDiff(pred.Data(), st.PredOriginalSample.flat()))
				}
				x = next
			}
			if noiseUsed != len(c.Noise) {
				t.Errorf("used %d noise draws, reference recorded %d", noiseUsed, len(c.Noise))
			}
			final := relDiff(x.Data(), c.Final.flat())
			t.Logf("%s (%s, %d steps): max error prev_sample %.3g (step %d), final %.3g, pred_original_sample %.3g, eps %.3g",
				c.Name, c.Class, len(c.Steps), worst, worstAt, final, worstX0, worstEps)
			for _, e := range []struct {
				what string
				v    float64
			}{{"prev_sample", worst}, {"final", final}, {"pred_original_sample", worstX0}} {
				if !(e.v <= refTol) {
					t.Errorf("%s: max |diff|/(1+max|ref|) = %g > %g", e.what, e.v, refTol)
				}
			}
		})
	}
}

// The ε-model must be exact at integer t against the stored eps of the
// first step of each implemented case (a check of the test's own model).
func TestRefEpsModelSelfCheck(t *testing.T) {
	f := loadRef(t)
	m := newEpsModel(f)
	for _, c := range f.Schedulers {
		if c.Class != "DDIMScheduler" {
			continue
		}
		st := c.Steps[0]
		x := c.XInit.flat()
		got := m.eps(x, st.T)
		if d := relDiff(to32(got), st.Eps.flat()); d > 1e-7 {
			t.Errorf("%s: eps model differs from the stored eps by %g", c.Name, d)
		}
		// A fractional t lies between its integer neighbours' ᾱ.
		a0, _ := m.alphaBar(math.Floor(st.T) + 0.5)
		a1, _ := m.alphaBar(math.Floor(st.T))
		a2, _ := m.alphaBar(math.Floor(st.T) + 1)
		if !(a2 < a0 && a0 < a1) {
			t.Errorf("alphaBar not monotone around %g", st.T)
		}
	}
}
