package eval

import (
	"math"
	"math/rand/v2"
	"testing"
)

func gaussian(rng *rand.Rand, n int, mu []float64, scale []float64) [][]float64 {
	out := make([][]float64, n)
	for i := range out {
		out[i] = make([]float64, len(mu))
		for j := range mu {
			out[i][j] = mu[j] + scale[j]*rng.NormFloat64()
		}
	}
	return out
}

// For diagonal covariances the Fréchet distance has the closed form
// |μ1−μ2|² + Σ (s1 − s2)², which the general computation must reproduce.
func TestFrechetClosedForm(t *testing.T) {
	a := Stats{Mu: []float64{0, 1, 2}, Cov: [][]float64{{4, 0, 0}, {0, 1, 0}, {0, 0, 9}}}
	b := Stats{Mu: []float64{1, 1, 0}, Cov: [][]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 4}}}
	want := 1.0 + 4 + (2-1)*(2-1) + 0 + (3-2)*(3-2)
	if got := Frechet(a, b); math.Abs(got-want) > 1e-9 {
		t.Fatalf("Frechet = %v, want %v", got, want)
	}
	if got := Frechet(a, a); math.Abs(got) > 1e-9 {
		t.Fatalf("distance to itself = %v", got)
	}
}

// A rotated (non-diagonal) covariance: the distance is invariant under a
// common rotation of both distributions.
func TestFrechetRotationInvariant(t *testing.T) {
	c, s := math.Cos(0.7), math.Sin(0.7)
	rot := [][]float64{{c, -s}, {s, c}}
	rotT := [][]float64{{c, s}, {-s, c}}
	a := Stats{Mu: []float64{0, 0}, Cov: [][]float64{{4, 0}, {0, 1}}}
	b := Stats{Mu: []float64{1, 0}, Cov: [][]float64{{1, 0}, {0, 2}}}
	ra := Stats{Mu: []float64{0, 0}, Cov: mul(mul(rot, a.Cov), rotT)}
	rb := Stats{Mu: []float64{c, s}, Cov: mul(mul(rot, b.Cov), rotT)}
	if d1, d2 := Frechet(a, b), Frechet(ra, rb); math.Abs(d1-d2) > 1e-9 {
		t.Fatalf("rotated %v, original %v", d2, d1)
	}
}

func TestComputeStats(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	f := gaussian(rng, 20000, []float64{1, -2}, []float64{0.5, 2})
	s, err := ComputeStats(f)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(s.Mu[0]-1) > 0.02 || math.Abs(s.Cov[1][1]-4) > 0.15 || math.Abs(s.Cov[0][1]) > 0.05 {
		t.Fatalf("stats %v %v", s.Mu, s.Cov)
	}
	if _, err := ComputeStats(f[:1]); err == nil {
		t.Fatal("one sample: want an error")
	}
}
