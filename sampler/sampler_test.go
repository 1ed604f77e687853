package sampler

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

func checkSchedule(t *testing.T, name string, s []float64, n int, first, last float64) {
	t.Helper()
	if len(s) != n+1 {
		t.Fatalf("%s: %d values, want n+1 = %d", name, len(s), n+1)
	}
	if s[n] != 0 {
		t.Errorf("%s: last value %g, want 0", name, s[n])
	}
	if !relClose(s[0], first, 1e-13) {
		t.Errorf("%s: first value %.17g, want %.17g", name, s[0], first)
	}
	if !relClose(s[n-1], last, 1e-13) {
		t.Errorf("%s: value n-1 %.17g, want %.17g", name, s[n-1], last)
	}
	for i := 0; i < n; i++ {
		if n > 1 && !(s[i] > s[i+1]) {
			t.Errorf("%s: not decreasing at %d: %g, %g", name, i, s[i], s[i+1])
		}
	}
}

func TestSchedules(t *testing.T) {
	for _, n := range []int{2, 5, 40} {
		k, err := Karras(n, 0.002, 80, 7)
		if err != nil {
			t.Fatal(err)
		}
		checkSchedule(t, "karras", k, n, 80, 0.002)
		e, err := Exponential(n, 0.1, 10)
		if err != nil {
			t.Fatal(err)
		}
		checkSchedule(t, "exponential", e, n, 10, 0.1)
		p, err := PolyExponential(n, 0.1, 10, 2)
		if err != nil {
			t.Fatal(err)
		}
		checkSchedule(t, "polyexponential", p, n, 10, 0.1)
		p1, _ := PolyExponential(n, 0.1, 10, 1)
		for i := range p1 {
			if !relClose(p1[i], e[i], 1e-14) {
				t.Errorf("polyexponential ρ=1 [%d] = %g, exponential %g", i, p1[i], e[i])
			}
		}
		v, err := VP(n, 19.9, 0.1, 1e-3)
		if err != nil {
			t.Fatal(err)
		}
		checkSchedule(t, "vp", v, n, math.Sqrt(math.Exp(19.9/2+0.1)-1), math.Sqrt(math.Exp(19.9*1e-6/2+0.1*1e-3)-1))
	}
	// n = 1: just σ_max and 0, as torch.linspace(·, ·, 1) gives its start.
	k1, _ := Karras(1, 0.1, 10, 7)
	if len(k1) != 2 || !relClose(k1[0], 10, 1e-14) || k1[1] != 0 {
		t.Errorf("Karras(1) = %v", k1)
	}
	for name, err := range map[string]error{
		"karras n=0":          func() error { _, err := Karras(0, 0.1, 10, 7); return err }(),
		"karras min>max":      func() error { _, err := Karras(5, 20, 10, 7); return err }(),
		"karras rho=0":        func() error { _, err := Karras(5, 0.1, 10, 0); return err }(),
		"exponential min=0":   func() error { _, err := Exponential(5, 0, 10); return err }(),
		"polyexp rho<0":       func() error { _, err := PolyExponential(5, 0.1, 10, -1); return err }(),
		"vp eps_s=0":          func() error { _, err := VP(5, 19.9, 0.1, 0); return err }(),
		"exponential max=Inf": func() error { _, err := Exponential(5, 0.1, math.Inf(1)); return err }(),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for _, name := range ScheduleNames() {
		s, err := ByScheduleName(name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := s(10, 0.02, 20)
		if err != nil || len(v) != 11 || v[10] != 0 {
			t.Errorf("%s: %v, %v", name, v, err)
		}
	}
	_, err := ByScheduleName("cosine")
	if err == nil {
		t.Fatal("ByScheduleName(cosine): no error")
	}
	for _, n := range []string{"karras", "exponential", "polyexponential", "vp"} {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not list %s", err, n)
		}
	}
}

func TestByName(t *testing.T) {
	want := []string{"euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde"}
	for _, n := range want {
		if f, err := ByName(n); err != nil || f == nil {
			t.Errorf("ByName(%q): %v", n, err)
		}
	}
	_, err := ByName("ddim")
	if err == nil {
		t.Fatal("ByName(ddim): no error")
	}
	for _, n := range want {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not list %s", err, n)
		}
	}
}

// zeroDenoiser is D(x, σ) = 0 (the data distribution is a point mass at 0):
// the probability-flow ODE dx/dσ = x/σ then has the solution x·σ/σ_0.
func zeroDenoiser(calls *int) Denoiser {
	return func(x *tensor.Tensor, sigma []float64) (*tensor.Tensor, error) {
		*calls++
		if len(sigma) != x.Dim(0) {
			return nil, errors.New("sigma per sample expected")
		}
		return tensor.New(x.Shape()...), nil
	}
}

func testBatch() *tensor.Tensor {
	x := tensor.New(3, 2, 2)
	for i := range x.Data() {
		x.Data()[i] = float32(i) - 5.5
	}
	return x
}

// With η = 0 (the zero Options) every sampler integrates the ODE of the zero
// denoiser exactly: the output is x·σ_last/σ_first.
func TestZeroDenoiserClosedForm(t *testing.T) {
	sigmas := []float64{14.6, 7, 3.1, 1.2, 0.4, 0.1}
	x := testBatch()
	for _, name := range Names() {
		f, _ := ByName(name)
		calls := 0
		out, err := f(zeroDenoiser(&calls), x, sigmas, Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if calls == 0 {
			t.Errorf("%s: denoiser never called", name)
		}
		if !slices.Equal(out.Shape(), x.Shape()) {
			t.Fatalf("%s: shape %v", name, out.Shape())
		}
		ratio := sigmas[len(sigmas)-1] / sigmas[0]
		for i, v := range out.Data() {
			want := float64(x.Data()[i]) * ratio
			if math.Abs(float64(v)-want) > 1e-6*(1+math.Abs(want)) {
				t.Errorf("%s: out[%d] = %g, want x·σ_last/σ_first = %g", name, i, v, want)
				break
			}
		}
		// With the final 0 of a schedule every sampler lands on D = 0.
		zs := append(append([]float64(nil), sigmas...), 0)
		out, err = f(zeroDenoiser(&calls), x, zs, Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i, v := range out.Data() {
			if math.Abs(float64(v)) > 1e-6 {
				t.Errorf("%s: out[%d] = %g at σ = 0, want 0", name, i, v)
				break
			}
		}
	}
}

// constNoise returns a Noise of all ones that records its (σ, σ_next).
func constNoise(draws *[][2]float64) Noise {
	return func(s, sn float64, shape []int) *tensor.Tensor {
		*draws = append(*draws, [2]float64{s, sn})
		x := tensor.New(shape...)
		for i := range x.Data() {
			x.Data()[i] = 1
		}
		return x
	}
}

// One ancestral Euler step from σ = 2 to 1 on the zero denoiser: σ_down =
// 1/2, σ_up = √3/2, so x ↦ x/4 + s_noise·√3/2·z.
func TestEulerAncestralClosedForm(t *testing.T) {
	x := testBatch()
	var draws [][2]float64
	o := DefaultOptions()
	o.SNoise = 0.5
	o.Noise = constNoise(&draws)
	calls := 0
	out, err := EulerAncestral(zeroDenoiser(&calls), x, []float64{2, 1}, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(draws) != 1 || draws[0] != [2]float64{2, 1} {
		t.Errorf("draws %v, want [(2, 1)]", draws)
	}
	for i, v := range out.Data() {
		want := float64(x.Data()[i])/4 + 0.5*math.Sqrt(3)/2
		if math.Abs(float64(v)-want) > 1e-6 {
			t.Errorf("out[%d] = %g, want %g", i, v, want)
		}
	}
}

// Churn raises σ_i to σ̂ = σ_i(1+γ) with one draw (σ_i, σ̂), only inside
// [STMin, STMax]; Euler on the zero denoiser then gives
// (x + s_noise·√(σ̂²−σ²)·z)·σ_next/σ̂ per step.
func TestEulerChurn(t *testing.T) {
	sigmas := []float64{8, 4, 2, 1}
	o := DefaultOptions()
	o.SChurn = 0.3 // γ = 0.1 for 3 steps
	o.STMin, o.STMax = 1.5, 5
	var draws [][2]float64
	o.Noise = constNoise(&draws)
	x := tensor.FromSlice([]float32{1}, 1)
	calls := 0
	out, err := Euler(zeroDenoiser(&calls), x, sigmas, o)
	if err != nil {
		t.Fatal(err)
	}
	want := 1.0
	var wantDraws [][2]float64
	for i := 0; i < 3; i++ {
		hat := sigmas[i]
		if sigmas[i] >= 1.5 && sigmas[i] <= 5 {
			hat = sigmas[i] * 1.1
			want += math.Sqrt(hat*hat - sigmas[i]*sigmas[i])
			wantDraws = append(wantDraws, [2]float64{sigmas[i], hat})
		}
		want *= sigmas[i+1] / hat
	}
	if math.Abs(float64(out.Data()[0])-want) > 1e-6 {
		t.Errorf("out %g, want %g", out.Data()[0], want)
	}
	if len(draws) != len(wantDraws) {
		t.Fatalf("draws %v, want %v", draws, wantDraws)
	}
	for i := range draws {
		if !relClose(draws[i][0], wantDraws[i][0], 1e-15) || !relClose(draws[i][1], wantDraws[i][1], 1e-15) {
			t.Errorf("draw %d = %v, want %v", i, draws[i], wantDraws[i])
		}
	}
}

func TestSeededNoiseDeterminism(t *testing.T) {
	sigmas, _ := Karras(8, 0.05, 10, 7)
	den := toyDenoiser()
	run := func(seed uint64) []float32 {
		o := DefaultOptions()
		o.Noise = SeededNoise(seed)
		calls := 0
		out, err := DPMPP2MSDE(den(&calls), testBatch(), sigmas, o)
		if err != nil {
			t.Fatal(err)
		}
		return out.Data()
	}
	a, b, c := run(7), run(7), run(8)
	same := func(p, q []float32) bool {
		for i := range p {
			if p[i] != q[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Error("same seed, different samples")
	}
	if same(a, c) {
		t.Error("different seeds, same samples")
	}
	n := SeededNoise(3)(0, 0, []int{1000})
	mean, sq := 0.0, 0.0
	for _, v := range n.Data() {
		mean += float64(v)
		sq += float64(v) * float64(v)
	}
	mean /= 1000
	if math.Abs(mean) > 0.15 || math.Abs(sq/1000-1) > 0.2 {
		t.Errorf("SeededNoise: mean %g, second moment %g: not standard normal", mean, sq/1000)
	}
}

// toyDenoiser returns the exact denoiser of a two-component Gaussian
// mixture in 4 dims, for tests that need D to depend on x and σ.
func toyDenoiser() func(calls *int) Denoiser {
	f := mixtureDenoiser([]float64{0.5, 0.5}, [][]float64{{-1, -1, -1, -1}, {1, 1, 1, 1}}, []float64{0.1, 0.1})
	return func(calls *int) Denoiser { return batchDenoiser(f, calls) }
}

func TestCallbackAndErrors(t *testing.T) {
	sigmas := []float64{4, 2, 1, 0}
	var steps []Step
	o := DefaultOptions()
	o.Callback = func(s Step) error { steps = append(steps, s); return nil }
	calls := 0
	if _, err := Heun(zeroDenoiser(&calls), testBatch(), sigmas, o); err != nil {
		t.Fatal(err)
	}
	if len(steps) != 3 {
		t.Fatalf("%d callbacks, want 3", len(steps))
	}
	for i, s := range steps {
		if s.I != i || s.Sigma != sigmas[i] || s.SigmaHat != sigmas[i] || !slices.Equal(s.X.Shape(), []int{3, 2, 2}) || s.Denoised == nil {
			t.Errorf("step %d: %+v", i, s)
		}
	}
	if calls != 5 {
		t.Errorf("heun: %d denoiser calls, want 2+2+1", calls)
	}

	stop := errors.New("stop")
	o.Callback = func(s Step) error {
		if s.I == 1 {
			return stop
		}
		return nil
	}
	if _, err := Euler(zeroDenoiser(&calls), testBatch(), sigmas, o); !errors.Is(err, stop) {
		t.Errorf("callback error: got %v", err)
	}
	o.Callback = nil

	bad := func(x *tensor.Tensor, _ []float64) (*tensor.Tensor, error) { return tensor.New(1), nil }
	if _, err := Euler(bad, testBatch(), sigmas, o); err == nil || !strings.Contains(err.Error(), "shape") {
		t.Errorf("wrong denoiser shape: got %v", err)
	}
	fail := errors.New("model failed")
	failing := func(x *tensor.Tensor, _ []float64) (*tensor.Tensor, error) { return nil, fail }
	if _, err := LMS(failing, testBatch(), sigmas, o); !errors.Is(err, fail) {
		t.Errorf("denoiser error: got %v", err)
	}
	for name, s := range map[string][]float64{"zero inside": {4, 0, 1, 0}, "negative": {4, -1}, "NaN": {math.NaN(), 0}} {
		if _, err := Euler(zeroDenoiser(&calls), testBatch(), s, o); err == nil {
			t.Errorf("sigmas %s: no error", name)
		}
	}
	o.SolverType = "rk4"
	if _, err := DPMPP2MSDE(zeroDenoiser(&calls), testBatch(), sigmas, o); err == nil {
		t.Error("bad SolverType: no error")
	}
	// Fewer than two sigmas: a copy of x, no denoiser call.
	calls = 0
	x := testBatch()
	out, err := DPMPP3MSDE(zeroDenoiser(&calls), x, []float64{3}, DefaultOptions())
	if err != nil || calls != 0 || out.Data()[0] != x.Data()[0] || &out.Data()[0] == &x.Data()[0] {
		t.Errorf("one sigma: err %v, calls %d", err, calls)
	}
}

func TestLMSCoefficient(t *testing.T) {
	sigmas, _ := Karras(10, 0.03, 15, 7)
	for i := 0; i+1 < len(sigmas); i++ {
		for order := 1; order <= min(i+1, 4); order++ {
			sum := 0.0
			for j := 0; j < order; j++ {
				c, err := LMSCoefficient(order, sigmas, i, j)
				if err != nil {
					t.Fatal(err)
				}
				sum += c
			}
			// The basis sums to 1, so the coefficients integrate dτ.
			if !relClose(sum, sigmas[i+1]-sigmas[i], 1e-12) {
				t.Errorf("order %d step %d: Σ coeff = %g, want %g", order, i, sum, sigmas[i+1]-sigmas[i])
			}
		}
	}
	// Order 2, j = 1: ∫ (τ − t_i)/(t_{i−1} − t_i) dτ over [t_i, t_{i+1}].
	i := 3
	c, _ := LMSCoefficient(2, sigmas, i, 1)
	h := sigmas[i+1] - sigmas[i]
	if want := h * h / 2 / (sigmas[i-1] - sigmas[i]); !relClose(c, want, 1e-13) {
		t.Errorf("order-2 coefficient %g, want %g", c, want)
	}
	if _, err := LMSCoefficient(4, sigmas, 2, 0); err == nil {
		t.Error("order 4 at step 2: no error")
	}
	// The Gauss–Legendre rule of n points is exact to degree 2n−1.
	for n := 1; n <= 8; n++ {
		x, w := gaussLegendre(n)
		got := 0.0
		for q := range x {
			got += w[q] * math.Pow(x[q], float64(2*n-2))
		}
		if want := 2 / float64(2*n-1); !relClose(got, want, 1e-14) {
			t.Errorf("GL%d: ∫x^%d = %.17g, want %.17g", n, 2*n-2, got, want)
		}
	}
}
