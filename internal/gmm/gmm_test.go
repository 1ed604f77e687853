package gmm

import (
	"math"
	"math/rand/v2"
	"testing"
)

var mix = Mixture{W: []float64{0.3, 0.7}, Mu: [][]float64{{-0.5, 0.2}, {0.5, -0.1}}, S: []float64{0.1, 0.2}}

// logp is log q(x) for the scaled mixture, computed directly.
func logp(m Mixture, x []float64, a, b float64) float64 {
	var p float64
	for k, w := range m.W {
		v := a*a*m.S[k]*m.S[k] + b*b
		var d2 float64
		for j := range x {
			d := x[j] - a*m.Mu[k][j]
			d2 += d * d
		}
		p += w * math.Exp(-d2/(2*v)) / math.Pow(2*math.Pi*v, float64(len(x))/2)
	}
	return math.Log(p)
}

// The closed-form score equals central differences of log q.
func TestScoreMatchesFiniteDifferences(t *testing.T) {
	for _, ab := range [][2]float64{{1, 0.05}, {1, 0.7}, {0.6, 0.8}} {
		for _, x := range [][]float64{{0, 0}, {-0.4, 0.3}, {1.2, -0.9}} {
			s := mix.ScoreScaled(x, ab[0], ab[1])
			for j := range x {
				h := 1e-5
				xp, xm := append([]float64{}, x...), append([]float64{}, x...)
				xp[j] += h
				xm[j] -= h
				fd := (logp(mix, xp, ab[0], ab[1]) - logp(mix, xm, ab[0], ab[1])) / (2 * h)
				if math.Abs(fd-s[j]) > 1e-4*(1+math.Abs(fd)) {
					t.Errorf("a=%v b=%v x=%v: score[%d] %v, finite difference %v", ab[0], ab[1], x, j, s[j], fd)
				}
			}
		}
	}
}

func TestSampleMoments(t *testing.T) {
	n := 20000
	pts := mix.Sample(n, rand.New(rand.NewPCG(1, 2)))
	mean, v := mix.Mean(), mix.Var()
	for j := 0; j < 2; j++ {
		var m, m2 float64
		for _, p := range pts {
			m += p[j]
			m2 += p[j] * p[j]
		}
		m /= float64(n)
		vv := m2/float64(n) - m*m
		if math.Abs(m-mean[j]) > 4*math.Sqrt(v[j]/float64(n)) || math.Abs(vv-v[j]) > 0.05*v[j] {
			t.Errorf("coordinate %d: mean %v var %v, want %v, %v", j, m, vv, mean[j], v[j])
		}
	}
	var first int
	for _, p := range pts {
		if mix.Nearest(p) == 0 {
			first++
		}
	}
	if f := float64(first) / float64(n); math.Abs(f-0.3) > 0.015 {
		t.Errorf("fraction in component 0: %v, want 0.3", f)
	}
}
