package mixstat

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// A mixture like the k-diffusion reference's (K = 3, D = 8, standard
// deviations ≈ 0.4, means several units apart).
var mix = Mixture{
	W:   []float64{0.3, 0.3, 0.4},
	Var: []float64{0.18, 0.17, 0.14},
	Mu: [][]float64{
		{-0.6, -0.5, -0.7, 1.9, 2.3, -1.7, 0.8, -2.4},
		{2.6, 3.5, -0.8, -2.0, -0.6, 1.3, 0.2, -3.0},
		{5.1, -1.0, 2.0, 0.6, 2.0, 3.1, 4.5, 4.2},
	},
}

// draw returns n exact samples, the component of each scaled about its
// mean by sdScale and shifted by shift standard deviations on coordinate 0.
func draw(m Mixture, n int, seed uint64, sdScale, shift float64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	D := m.Dim()
	out := make([]float32, n*D)
	for s := range n {
		u, k := rng.Float64(), 0
		for k < len(m.W)-1 && u >= m.W[k] {
			u -= m.W[k]
			k++
		}
		sd := math.Sqrt(m.Var[k])
		for j := range D {
			v := m.Mu[k][j] + sdScale*sd*rng.NormFloat64()
			if j == 0 {
				v += shift * sd
			}
			out[s*D+j] = float32(v)
		}
	}
	return out
}

// Exact samples pass with no bias allowance (the Monte-Carlo tolerances
// are wide enough), for several seeds.
func TestExactSamplesPass(t *testing.T) {
	if s := mix.Separation(); !(s > 12) {
		t.Fatalf("test mixture separation %.1f", s)
	}
	for seed := uint64(1); seed <= 5; seed++ {
		st := Measure(draw(mix, 10000, seed, 1, 0), 10000, mix)
		fails, worst := Check(st, mix, Bias{})
		if len(fails) > 0 {
			t.Errorf("seed %d: exact samples fail: %v", seed, fails)
		}
		if st.Ambiguous != 0 {
			t.Errorf("seed %d: %d ambiguous samples", seed, st.Ambiguous)
		}
		d := Deviations(st, mix)
		t.Logf("seed %d: worst |error|/tolerance %.2f, deviations %+v", seed, worst, d)
		// The Monte-Carlo errors are of the size of their standard errors,
		// not far below: the tolerances are not vacuous.
		if !(worst > 0.1 && d.W > 0 && d.Mean > 0.005 && d.Cov > 0.01) {
			t.Errorf("seed %d: errors suspiciously small (worst %.3f, %+v)", seed, worst, d)
		}
	}
}

// Wrong distributions fail: a 0.2 σ mean shift, 15% too wide components,
// swapped weights.
func TestWrongSamplesFail(t *testing.T) {
	for _, c := range []struct {
		name      string
		x         []float32
		m         Mixture
		wantInMsg string
	}{
		{"mean shifted 0.2σ", draw(mix, 10000, 1, 1, 0.2), mix, "mean["},
		{"15% wider", draw(mix, 10000, 1, 1.15, 0), mix, "cov["},
		{"weights swapped", draw(Mixture{W: []float64{0.4, 0.3, 0.3}, Var: mix.Var, Mu: mix.Mu}, 10000, 1, 1, 0), mix, "weight["},
	} {
		fails, _ := Check(Measure(c.x, 10000, c.m), c.m, Bias{})
		if len(fails) == 0 || !strings.Contains(strings.Join(fails, "; "), c.wantInMsg) {
			t.Errorf("%s: want a failure about %s, got %v", c.name, c.wantInMsg, fails)
		}
	}
	// A point halfway between two means is ambiguous.
	mid := make([]float32, mix.Dim())
	for j := range mid {
		mid[j] = float32((mix.Mu[0][j] + mix.Mu[1][j]) / 2)
	}
	x := append(draw(mix, 999, 2, 1, 0), mid...)
	st := Measure(x, 1000, mix)
	if st.Ambiguous != 1 {
		t.Errorf("ambiguous = %d, want 1", st.Ambiguous)
	}
	if fails, worst := Check(st, mix, Bias{W: 1, Mean: 10, Cov: 10}); len(fails) == 0 || !math.IsInf(worst, 1) {
		t.Errorf("an ambiguous sample passes: %v", fails)
	}
}

func TestSeparation(t *testing.T) {
	m := Mixture{W: []float64{0.5, 0.5}, Var: []float64{0.25, 1}, Mu: [][]float64{{0, 0}, {3, 4}}}
	if s := m.Separation(); math.Abs(s-5) > 1e-12 {
		t.Errorf("separation %g, want 5 (distance 5, larger sd 1)", s)
	}
}
