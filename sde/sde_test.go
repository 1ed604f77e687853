package sde

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

func testSDEs() map[string]SDE {
	return map[string]SDE{
		"vp":    DefaultVP(),
		"subvp": NewSubVP(0.1, 20, 1000),
		"ve":    NewVE(0.01, 50, 1000),
	}
}

// driftCoef reads a(t) of a linear drift f(x, t) = a(t)·x through Drift.
func driftCoef(s SDE, t float64) float64 {
	return float64(s.Drift(tensor.FromSlice([]float32{1}, 1, 1), []float64{t}).Data()[0])
}

// The marginal formulas solve the moment ODEs of the SDE: for a linear
// drift a(t)·x, d/dt log m = a and dv/dt = 2a·v + g², v(t) the transition
// variance. Checked by central differences (h = 1e-4, error O(h²)).
func TestMarginalSolvesMomentODEs(t *testing.T) {
	for name, s := range testSDEs() {
		for _, tt := range []float64{0.01, 0.1, 0.3, 0.5, 0.8, 0.99} {
			const h = 1e-4
			mp, _ := s.Marginal(tt + h)
			mm, _ := s.Marginal(tt - h)
			m, _ := s.Marginal(tt)
			a := driftCoef(s, tt)
			dlogm := (math.Log(mp) - math.Log(mm)) / (2 * h)
			if math.Abs(dlogm-a) > 1e-5*math.Max(1, math.Abs(a)) {
				t.Errorf("%s t=%g: d log m/dt = %g, drift coefficient %g", name, tt, dlogm, a)
			}
			v := transVar(s, tt)
			dv := (transVar(s, tt+h) - transVar(s, tt-h)) / (2 * h)
			g := s.Diffusion(tt)
			want := 2*a*v + g*g
			if math.Abs(dv-want) > 1e-5*math.Max(1, math.Abs(want)) {
				t.Errorf("%s t=%g: dv/dt = %g, 2a·v + g² = %g", name, tt, dv, want)
			}
			_ = m
		}
	}
	// VP: std² + m² = 1; sub-VP: std = 1 − m² ≤ VP std.
	vp, sub := DefaultVP(), NewSubVP(0.1, 20, 1000)
	for _, tt := range []float64{1e-5, 0.2, 1} {
		m, std := vp.Marginal(tt)
		if math.Abs(m*m+std*std-1) > 1e-12 {
			t.Errorf("VP t=%g: m²+std² = %g", tt, m*m+std*std)
		}
		_, sstd := sub.Marginal(tt)
		if sstd > std || math.Abs(sstd-(1-m*m)) > 1e-12 {
			t.Errorf("sub-VP t=%g: std %g, VP std %g, 1−m² = %g", tt, sstd, std, 1-m*m)
		}
	}
}

// Simulating the forward SDE with Euler–Maruyama (500 steps to t = 0.5,
// 5000 paths from x0 = 1.5) reproduces m(t)·x0 and v(t). Tolerances: 5
// standard errors of the Monte-Carlo estimates (mean: 5·√(v/n); variance:
// 5·√(2/n)·v = 10%), far above the O(dt) = 1e-3 discretization bias.
func TestMarginalMonteCarlo(t *testing.T) {
	const n, steps, x0, tEnd = 5000, 500, 1.5, 0.5
	for name, s := range testSDEs() {
		rng := rand.New(rand.NewPCG(7, 7))
		x := make([]float64, n)
		for i := range x {
			x[i] = x0
		}
		dt := tEnd / steps
		for k := 0; k < steps; k++ {
			tt := float64(k) * dt
			a := driftCoef(s, tt)
			g := s.Diffusion(tt) * math.Sqrt(dt)
			for i := range x {
				x[i] += a*x[i]*dt + g*rng.NormFloat64()
			}
		}
		var mean, vr float64
		for _, v := range x {
			mean += v / n
		}
		for _, v := range x {
			vr += (v - mean) * (v - mean) / (n - 1)
		}
		m, _ := s.Marginal(tEnd)
		v := transVar(s, tEnd)
		t.Logf("%s: mean %.5f (exact %.5f), var %.5f (exact %.5f)", name, mean, m*x0, vr, v)
		if math.Abs(mean-m*x0) > 5*math.Sqrt(v/n) {
			t.Errorf("%s: mean %g, want %g", name, mean, m*x0)
		}
		if math.Abs(vr/v-1) > 5*math.Sqrt(2.0/n) {
			t.Errorf("%s: variance %g, want %g", name, vr, v)
		}
	}
}

// The discretizations: VP's DDPM table is linspace(1e-4, 0.02, 1000) for the
// default SDE, and its N noise-free steps shrink x by Π√(1−β_i) = √ᾱ_999,
// which is m(1) = exp(−½Σβ_i) up to the second-order term Σβ_i²/4 = 0.033 of
// −½Σlog(1−β_i) (steps are taken at t = (i+½)/999, inside step i); VE's
// SMLD variances telescope to σ_max²; sub-VP is Euler–Maruyama.
func TestDiscretize(t *testing.T) {
	vp := DefaultVP()
	if b := vp.DiscreteBeta(0); math.Abs(b-1e-4) > 1e-15 {
		t.Errorf("β_0 = %g, want 1e-4", b)
	}
	if b := vp.DiscreteBeta(1); math.Abs(b-0.02) > 1e-15 {
		t.Errorf("β_999 = %g, want 0.02", b)
	}
	if b := vp.DiscreteBeta(500.0 / 999); math.Abs(b-(1e-4+500*(0.02-1e-4)/999)) > 1e-15 {
		t.Errorf("β_500 = %g", b)
	}
	x := tensor.FromSlice([]float32{1}, 1, 1)
	prod := 1.0
	for i := vp.N - 1; i >= 0; i-- {
		ti := (float64(i) + 0.5) / 999
		f, G := vp.Discretize(x, []float64{ti}, 1.0/1000)
		prod *= 1 + float64(f.Data()[0])
		if math.Abs(G[0]-math.Sqrt(vp.DiscreteBeta(ti))) > 1e-15 {
			t.Fatalf("G at step %d", i)
		}
	}
	m1, _ := vp.Marginal(1)
	if d := math.Log(m1) - math.Log(prod); d < 0.03 || d > 0.036 {
		t.Errorf("Π√α_i = %g, m(1) = %g", prod, m1)
	}
	ab := vp.AlphasCumprod()
	if math.Abs(math.Sqrt(ab[999])/prod-1) > 1e-5 {
		t.Errorf("√ᾱ_999 = %g, Π√α_i = %g", math.Sqrt(ab[999]), prod)
	}

	ve := NewVE(0.01, 50, 1000)
	var sum float64
	for i := 0; i < ve.N; i++ {
		_, G := ve.Discretize(x, []float64{(float64(i) + 0.5) / 999}, 1.0/1000)
		sum += G[0] * G[0]
	}
	if math.Abs(sum/2500-1) > 1e-12 {
		t.Errorf("Σ G_i² = %g, want σ_max² = 2500", sum)
	}

	sub := NewSubVP(0.1, 20, 1000)
	f, G := sub.Discretize(tensor.FromSlice([]float32{2}, 1, 1), []float64{0.4}, 0.01)
	if want := -0.5 * (0.1 + 0.4*19.9) * 2 * 0.01; math.Abs(float64(f.Data()[0])-want) > 1e-6 {
		t.Errorf("sub-VP f = %g, want %g", f.Data()[0], want)
	}
	if want := sub.Diffusion(0.4) * 0.1; math.Abs(G[0]-want) > 1e-12 {
		t.Errorf("sub-VP G = %g, want %g", G[0], want)
	}
}

// Priors: log densities against the closed form, samples with the right scale.
func TestPrior(t *testing.T) {
	z := tensor.FromSlice([]float32{0.5, -1, 2, 0, 0, 0}, 2, 3)
	vp, ve := DefaultVP(), NewVE(0.01, 50, 1000)
	lp := vp.PriorLogP(z)
	if want := -1.5*math.Log(2*math.Pi) - (0.25+1+4)/2; math.Abs(lp[0]-want) > 1e-12 {
		t.Errorf("VP prior log p = %g, want %g", lp[0], want)
	}
	lv := ve.PriorLogP(z)
	if want := -1.5 * math.Log(2*math.Pi*2500); math.Abs(lv[1]-want) > 1e-12 {
		t.Errorf("VE prior log p = %g, want %g", lv[1], want)
	}
	x := ve.PriorSample([]int{4000, 1}, SeededNoise(3))
	_, v := moments(x)
	if math.Abs(v[0]/2500-1) > 5*math.Sqrt(2.0/4000) {
		t.Errorf("VE prior variance %g, want 2500", v[0])
	}
}

// Dormand–Prince on y' = y·cos t, y(0) = 1 (y = exp(sin t)): tight
// tolerances reach the exact solution forwards and backwards; NFE is 2 +
// 6 per attempted step; with a fixed step (huge tolerances, MaxStep = h)
// halving h divides the error by ≈ 2⁵ (5th-order local extrapolation).
func TestRK45ScalarODE(t *testing.T) {
	f := func(tt float64, y, dy []float64) error { dy[0] = y[0] * math.Cos(tt); return nil }
	exact := func(tt float64) float64 { return math.Exp(math.Sin(tt)) }
	for _, tol := range []float64{1e-6, 1e-10} {
		res, err := SolveRK45(f, 0, 5, []float64{1}, RK45Options{RTol: tol, ATol: tol})
		if err != nil {
			t.Fatal(err)
		}
		e := math.Abs(res.Y[0] - exact(5))
		t.Logf("tol %g: y(5) error %.2e, NFE %d, accepted %d, rejected %d", tol, e, res.NFE, res.Accepted, res.Rejected)
		if e > 50*tol {
			t.Errorf("tol %g: error %g", tol, e)
		}
		if res.NFE != 2+6*(res.Accepted+res.Rejected) {
			t.Errorf("NFE %d, steps %d+%d", res.NFE, res.Accepted, res.Rejected)
		}
		back, err := SolveRK45(f, 5, 0, []float64{exact(5)}, RK45Options{RTol: tol, ATol: tol})
		if err != nil {
			t.Fatal(err)
		}
		if e := math.Abs(back.Y[0] - 1); e > 50*tol {
			t.Errorf("backwards: y(0) = %g", back.Y[0])
		}
	}
	fixed := func(h float64) float64 {
		res, err := SolveRK45(f, 0, 2, []float64{1}, RK45Options{RTol: 1e6, ATol: 1e6, FirstStep: h, MaxStep: h})
		if err != nil {
			t.Fatal(err)
		}
		if res.Accepted != int(math.Round(2/h)) {
			t.Fatalf("h=%g: %d steps", h, res.Accepted)
		}
		return math.Abs(res.Y[0] - exact(2))
	}
	e1, e2 := fixed(0.1), fixed(0.05)
	t.Logf("fixed steps: error %.3e (h=0.1), %.3e (h=0.05), ratio %.1f", e1, e2, e1/e2)
	if r := e1 / e2; r < 20 || r > 50 {
		t.Errorf("error ratio %g for halved h, want ≈ 32", r)
	}
	// A 3-dim linear system y' = A y with a rotation: exact solution.
	rot := func(tt float64, y, dy []float64) error {
		dy[0], dy[1], dy[2] = -y[1], y[0], -0.5*y[2]
		return nil
	}
	res, err := SolveRK45(rot, 0, math.Pi, []float64{1, 0, 2}, RK45Options{RTol: 1e-9, ATol: 1e-12})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(res.Y[0]+1) > 1e-7 || math.Abs(res.Y[1]) > 1e-7 || math.Abs(res.Y[2]-2*math.Exp(-math.Pi/2)) > 1e-7 {
		t.Errorf("rotation: %v", res.Y)
	}
}
