package sde

import (
	"errors"
	"math"
	"testing"

	"github.com/diffuse-go/diffuse/internal/gmm"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// mixtureScore is the exact SigmaScore of m for x [B, D] (equal to
// m.Score, written without allocations: the tests call it millions of times).
func mixtureScore(m gmm.Mixture) SigmaScore {
	K, D := len(m.W), m.Dim()
	logw := make([]float64, K)
	for k, w := range m.W {
		logw[k] = math.Log(w)
	}
	return func(x *tensor.Tensor, sigma []float64) (*tensor.Tensor, error) {
		b := x.Dim(0)
		out := tensor.New(x.Shape()...)
		xd, od := x.Data(), out.Data()
		lw, vs := make([]float64, K), make([]float64, K)
		for i := 0; i < b; i++ {
			row := xd[i*D : (i+1)*D]
			best := math.Inf(-1)
			for k := range lw {
				v := m.S[k]*m.S[k] + sigma[i]*sigma[i]
				var d2 float64
				for j, xv := range row {
					d := float64(xv) - m.Mu[k][j]
					d2 += d * d
				}
				vs[k], lw[k] = v, logw[k]-float64(D)/2*math.Log(v)-d2/(2*v)
				best = max(best, lw[k])
			}
			var z float64
			for k := range lw {
				lw[k] = math.Exp(lw[k] - best)
				z += lw[k]
			}
			for j, xv := range row {
				var g float64
				for k := range lw {
					g += lw[k] / z * (m.Mu[k][j] - float64(xv)) / vs[k]
				}
				od[i*D+j] = float32(g)
			}
		}
		return out, nil
	}
}

func ladder(t *testing.T, lo, hi float64, n int) []float64 {
	l, err := schedule.NewLadder(lo, hi, n)
	if err != nil {
		t.Fatal(err)
	}
	return l.Sigmas()
}

// start draws n points of dimension d from N(0, s²I).
func start(n, d int, s float64, seed uint64) *tensor.Tensor {
	x := SeededNoise(seed)([]int{n, d})
	for i := range x.Data() {
		x.Data()[i] *= float32(s)
	}
	return x
}

// gaussScore is the exact SigmaScore of N(mu, s²I): (mu − x)/(s² + σ²).
func gaussScore(mu []float64, s float64) SigmaScore {
	return func(x *tensor.Tensor, sigma []float64) (*tensor.Tensor, error) {
		d := len(mu)
		out := tensor.New(x.Shape()...)
		od := out.Data()
		for i, v := range x.Data() {
			b := i / d
			od[i] = float32((mu[i%d] - float64(v)) / (s*s + sigma[b]*sigma[b]))
		}
		return out, nil
	}
}

// predictGauss runs the exact mean/variance map of annealed Langevin on
// N(μ, s²) in one coordinate, from N(m0, v0): each step
//
//	m ← m + (α/2)(μ − m)/(s²+σ²),   v ← (1 − α/(2(s²+σ²)))²·v + α,
//
// and the denoising step likewise with α/2 → σ_L² and no noise.
func predictGauss(al AnnealedLangevin, mu, s, m0, v0 float64) (m, v float64) {
	m, v = m0, v0
	eps := al.StepSize()
	sL := al.Sigmas[len(al.Sigmas)-1]
	for _, sg := range al.Sigmas {
		a, q := eps*sg*sg/(sL*sL), s*s+sg*sg
		for k := 0; k < al.StepsPerLevel; k++ {
			m += a / 2 * (mu - m) / q
			v = (1-a/(2*q))*(1-a/(2*q))*v + a
		}
	}
	if al.Denoise {
		c := sL * sL / (s*s + sL*sL)
		m, v = m+c*(mu-m), (1-c)*(1-c)*v
	}
	return m, v
}

// Annealed Langevin on the exact score of a Gaussian N(μ, s²I), s = 0.2
// (2-D, 10000 chains from N(0, σ_1²I), 30 levels from 5 to 0.01, 20 steps
// each, automatic ε, final denoising). The dynamics stay Gaussian, so the
// per-coordinate mean and variance follow predictGauss exactly: the samples
// must match it within 4 standard errors (mean ±4·√(v/n), variance
// ±4·v·√(2/n) ≈ ±5.7%), which checks the update, the step sizes
// α_i = ε·σ_i²/σ_L² and the denoising step.
//
// The prediction is the sampler's accuracy on this target: the mean is
// exact to 1e-3, the variance is 14% above s² at T = 20 and approaches it
// slowly with T (< 9% at T = 100, < 6% at T = 1000) — annealed Langevin's
// known bias: the step-size rule's excess at large σ is not relaxed at the
// small levels where α_i ≪ s².
func TestAnnealedLangevinGaussian(t *testing.T) {
	mu, s := []float64{0.3, -0.4}, 0.2
	al := AnnealedLangevin{Sigmas: ladder(t, 0.01, 5, 30), StepsPerLevel: 20, Denoise: true}
	n := 10000
	out, err := al.Sample(gaussScore(mu, s), start(n, 2, 5, 1), SeededNoise(2))
	if err != nil {
		t.Fatal(err)
	}
	for j := 0; j < 2; j++ {
		pm, pv := predictGauss(al, mu[j], s, 0, 25)
		var m, m2 float64
		for i := 0; i < n; i++ {
			x := float64(out.Data()[2*i+j])
			m += x
			m2 += x * x
		}
		m /= float64(n)
		v := m2/float64(n) - m*m
		t.Logf("coordinate %d: mean %.4f (predicted %.4f, μ %.1f), variance %.5f (predicted %.5f, s² 0.04)", j, m, pm, mu[j], v, pv)
		if math.Abs(m-pm) > 4*math.Sqrt(pv/float64(n)) {
			t.Errorf("coordinate %d: mean %v, predicted %v", j, m, pm)
		}
		if math.Abs(v-pv) > 4*pv*math.Sqrt(2/float64(n)) {
			t.Errorf("coordinate %d: variance %v, predicted %v", j, v, pv)
		}
		if math.Abs(pm-mu[j]) > 1e-3 || math.Abs(pv-s*s) > 0.15*s*s {
			t.Errorf("coordinate %d: predicted mean %v variance %v, want within 1e-3 of %v and 15%% of %v", j, pm, pv, mu[j], s*s)
		}
	}
	for _, c := range []struct {
		T   int
		tol float64
	}{{100, 0.09}, {1000, 0.06}} {
		al.StepsPerLevel = c.T
		if _, pv := predictGauss(al, 0, s, 0, 25); math.Abs(pv-s*s) > c.tol*s*s {
			t.Errorf("T=%d: predicted variance %v, want within %.0f%% of %v", c.T, pv, 100*c.tol, s*s)
		}
	}
}

// On a two-component mixture with weights 0.3/0.7 annealing recovers the
// weights (within ±0.03; the binomial standard error is 0.007), which
// Langevin dynamics at the smallest level alone does not: started from the
// same wide noise it keeps the split of its starting basins (≈ 50/50).
func TestAnnealedLangevinMixtureWeights(t *testing.T) {
	m := gmm.Mixture{W: []float64{0.3, 0.7}, Mu: [][]float64{{-0.5, 0.2}, {0.5, -0.1}}, S: []float64{0.1, 0.1}}
	n := 4000
	probe := tensor.FromSlice([]float32{0.1, -0.3, -0.7, 0.4, 1.5, 2}, 3, 2)
	fast, _ := mixtureScore(m)(probe, []float64{0.01, 0.3, 2})
	for i, sg := range []float64{0.01, 0.3, 2} {
		want := m.Score([]float64{float64(probe.Data()[2*i]), float64(probe.Data()[2*i+1])}, sg)
		for j := range want {
			if math.Abs(float64(fast.Data()[2*i+j])-want[j]) > 1e-5*(1+math.Abs(want[j])) {
				t.Fatalf("test score %v differs from gmm's %v", fast.Data()[2*i+j], want[j])
			}
		}
	}
	frac := func(x *tensor.Tensor) float64 {
		c := 0
		for i := 0; i < n; i++ {
			if m.Nearest([]float64{float64(x.Data()[2*i]), float64(x.Data()[2*i+1])}) == 0 {
				c++
			}
		}
		return float64(c) / float64(n)
	}
	al := AnnealedLangevin{Sigmas: ladder(t, 0.01, 3, 40), StepsPerLevel: 20, Denoise: true}
	out, err := al.Sample(mixtureScore(m), start(n, 2, 3, 3), SeededNoise(4))
	if err != nil {
		t.Fatal(err)
	}
	annealed := frac(out)
	flat := AnnealedLangevin{Sigmas: []float64{0.01}, StepsPerLevel: 200, Eps: al.StepSize(), Denoise: true}
	outFlat, err := flat.Sample(mixtureScore(m), start(n, 2, 3, 3), SeededNoise(4))
	if err != nil {
		t.Fatal(err)
	}
	single := frac(outFlat)
	t.Logf("fraction in the 0.3 component: annealed %.3f, single level %.3f", annealed, single)
	if math.Abs(annealed-0.3) > 0.03 {
		t.Errorf("annealed: fraction %v in the weight-0.3 component", annealed)
	}
	if math.Abs(single-0.3) < 0.1 {
		t.Errorf("single-level Langevin got the weights right (%v): the test no longer shows what annealing buys", single)
	}
}

// The step-size rule reproduces NCSNv2's CIFAR-10 choice: T = 5 steps on
// 232 levels from 50 to 0.01 (γ ≈ 1.0376) with ε = 6.2e-6 in the paper's
// convention x + ε_p·s + √(2ε_p)·z, i.e. α_L/σ_L² = 2·6.2e-6/1e-4 = 0.124
// here.
func TestLangevinStepSize(t *testing.T) {
	gamma := math.Pow(50/0.01, 1/231.0)
	if a := LangevinStepSize(5, gamma); math.Abs(a-0.124)/0.124 > 0.02 {
		t.Errorf("LangevinStepSize(5, %.4f) = %v, want ≈ 0.124", gamma, a)
	}
	// The result minimizes |v_T/σ² − 1| (checked against neighbours).
	obj := func(a float64) float64 {
		c := 1 / (1 - a/4)
		return math.Abs(math.Pow(1-a/2, 10)*(1.086*1.086-c) + c - 1)
	}
	a := LangevinStepSize(5, 1.086)
	if obj(a) > obj(a*1.01) || obj(a) > obj(a*0.99) {
		t.Errorf("a = %v is not a minimum", a)
	}
	if LangevinStepSize(0, 1.1) != 0 || LangevinStepSize(5, 1) != 0 {
		t.Error("degenerate inputs: want 0")
	}
	al := AnnealedLangevin{Sigmas: ladder(t, 0.01, 35, 100), StepsPerLevel: 5}
	if got, want := al.StepSize(), LangevinStepSize(5, math.Pow(3500, 1/99.0))*1e-4; math.Abs(got-want) > 1e-12 {
		t.Errorf("automatic ε = %v, want %v", got, want)
	}
}

func TestAnnealedLangevinErrorsAndSeeds(t *testing.T) {
	m := gmm.Mixture{W: []float64{1}, Mu: [][]float64{{0, 0}}, S: []float64{0.5}}
	x := start(3, 2, 1, 5)
	ok := AnnealedLangevin{Sigmas: []float64{1, 0.1}, StepsPerLevel: 2}
	a, err := ok.Sample(mixtureScore(m), x, SeededNoise(7))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ok.Sample(mixtureScore(m), x, SeededNoise(7))
	c, _ := ok.Sample(mixtureScore(m), x, SeededNoise(8))
	same, diff := true, false
	for i := range a.Data() {
		same = same && a.Data()[i] == b.Data()[i]
		diff = diff || a.Data()[i] != c.Data()[i]
	}
	if !same || !diff {
		t.Errorf("same seed equal: %v, other seed differs: %v", same, diff)
	}
	if ok.Evals() != 4 {
		t.Errorf("Evals = %d, want 4", ok.Evals())
	}
	for name, al := range map[string]AnnealedLangevin{
		"no levels":      {StepsPerLevel: 1},
		"increasing":     {Sigmas: []float64{0.1, 1}, StepsPerLevel: 1},
		"zero level":     {Sigmas: []float64{1, 0}, StepsPerLevel: 1},
		"no steps":       {Sigmas: []float64{1, 0.1}},
		"negative eps":   {Sigmas: []float64{1, 0.1}, StepsPerLevel: 1, Eps: -1},
		"infinite level": {Sigmas: []float64{math.Inf(1), 0.1}, StepsPerLevel: 1},
	} {
		if _, err := al.Sample(mixtureScore(m), x, SeededNoise(1)); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
	boom := errors.New("boom")
	_, err = ok.Sample(func(*tensor.Tensor, []float64) (*tensor.Tensor, error) { return nil, boom }, x, SeededNoise(1))
	if !errors.Is(err, boom) {
		t.Errorf("score error not passed on: %v", err)
	}
	_, err = ok.Sample(func(*tensor.Tensor, []float64) (*tensor.Tensor, error) { return tensor.New(1), nil }, x, SeededNoise(1))
	if err == nil {
		t.Error("score of the wrong shape: want an error")
	}
}
