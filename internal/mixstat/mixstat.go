// Package mixstat checks samples against an isotropic Gaussian mixture:
// it assigns each sample to a component by posterior responsibility and
// compares the component weights, means and covariances with the
// mixture's, with tolerances of a stated number of Monte-Carlo standard
// errors plus a bias allowance. The sampler and scheduler tests use it to
// check that samplers draw the right distribution.
package mixstat

import (
	"fmt"
	"math"
)

// Mixture is x ~ Σ_k W[k]·N(Mu[k], Var[k]·I) in D = len(Mu[k])
// dimensions: weights W summing to 1, means Mu [K][D], variances Var [K]
// (per coordinate, in squared data units).
type Mixture struct {
	W, Var []float64
	Mu     [][]float64
}

// Dim is D.
func (m Mixture) Dim() int { return len(m.Mu[0]) }

// Separation is the smallest distance between two means in units of the
// larger of the two components' standard deviations (+Inf for K = 1).
// With separation s, the boundary between two components lies about s/2
// standard deviations from each mean, so assignment by responsibility
// misassigns a fraction ≈ Φ(−s/2) of the samples: 1e-9 at s = 12.
func (m Mixture) Separation() float64 {
	sep := math.Inf(1)
	for a := range m.W {
		for b := a + 1; b < len(m.W); b++ {
			d := 0.0
			for j := range m.Mu[a] {
				e := m.Mu[a][j] - m.Mu[b][j]
				d += e * e
			}
			sep = math.Min(sep, math.Sqrt(d/math.Max(m.Var[a], m.Var[b])))
		}
	}
	return sep
}

// logResp writes into lr the unnormalized log posterior of each component
// for x (len D): log W_k + log N(x; Mu_k, Var_k·I).
func (m Mixture) logResp(x, lr []float64) {
	D := float64(len(x))
	for k := range m.W {
		d2 := 0.0
		for j, v := range x {
			e := v - m.Mu[k][j]
			d2 += e * e
		}
		lr[k] = math.Log(m.W[k]) - D/2*math.Log(2*math.Pi*m.Var[k]) - d2/(2*m.Var[k])
	}
}

// Moments are the statistics of a batch of samples assigned to components.
type Moments struct {
	// N is the number of samples, Nk the number assigned to each component.
	N  int
	Nk []int
	// Mean [K][D] and Cov [K][D][D] (unbiased, divisor Nk−1) are the
	// sample mean and covariance of each component's samples.
	Mean [][]float64
	Cov  [][][]float64
	// Ambiguous counts the samples whose largest responsibility is below
	// 0.99: none for a sampler of a well-separated mixture.
	Ambiguous int
}

// Measure assigns each row of x ([n, D] row-major, data units) to the
// component of largest posterior responsibility under m (the Bayes
// classifier) and returns the per-component counts, means and
// covariances. For a mixture of large Separation the assignment is
// essentially never wrong, so the assigned samples' moments estimate the
// components' moments without bias.
func Measure(x []float32, n int, m Mixture) Moments {
	D, K := m.Dim(), len(m.W)
	st := Moments{N: n, Nk: make([]int, K), Mean: make([][]float64, K), Cov: make([][][]float64, K)}
	for k := range K {
		st.Mean[k] = make([]float64, D)
		st.Cov[k] = make([][]float64, D)
		for i := range D {
			st.Cov[k][i] = make([]float64, D)
		}
	}
	lab := make([]int, n)
	row := make([]float64, D)
	lr := make([]float64, K)
	for s := range n {
		for j := range D {
			row[j] = float64(x[s*D+j])
		}
		m.logResp(row, lr)
		best := 0
		for k := range K {
			if lr[k] > lr[best] {
				best = k
			}
		}
		z := 0.0
		for k := range K {
			z += math.Exp(lr[k] - lr[best])
		}
		if !(1/z >= 0.99) {
			st.Ambiguous++
		}
		lab[s] = best
		st.Nk[best]++
		for j := range D {
			st.Mean[best][j] += row[j]
		}
	}
	for k := range K {
		for j := range D {
			st.Mean[k][j] /= float64(max(st.Nk[k], 1))
		}
	}
	for s := range n {
		k := lab[s]
		for i := range D {
			di := float64(x[s*D+i]) - st.Mean[k][i]
			for j := 0; j <= i; j++ {
				st.Cov[k][i][j] += di * (float64(x[s*D+j]) - st.Mean[k][j])
			}
		}
	}
	for k := range K {
		for i := range D {
			for j := 0; j <= i; j++ {
				st.Cov[k][i][j] /= float64(max(st.Nk[k]-1, 1))
				st.Cov[k][j][i] = st.Cov[k][i][j]
			}
		}
	}
	return st
}

// Bias is an allowance for a sampler's systematic error, added to the
// Monte-Carlo tolerance of Check, or an observed error (Deviations): W in
// absolute weight, Mean in component standard deviations √Var_k, Cov as a
// fraction of Var_k.
type Bias struct{ W, Mean, Cov float64 }

// Z is the Monte-Carlo part of every tolerance of Check, in standard
// errors. At 5 a correct sampler fails one of the ~135 checks of a K = 3,
// D = 8 mixture with probability ≈ 135·5.7e-7 ≈ 1e-4.
const Z = 5

// Check compares st with the mixture m. Tolerances, with n_k the samples
// of component k and N the total:
//
//	weight     |N_k/N − W_k|      ≤ Z·√(W_k(1−W_k)/N)      + b.W
//	mean       |m̂_kj − μ_kj|     ≤ Z·√(Var_k/n_k)          + b.Mean·√Var_k
//	variance   |Ĉ_k,jj − Var_k|   ≤ Z·Var_k·√(2/(n_k−1))    + b.Cov·Var_k
//	covariance |Ĉ_k,ij|           ≤ Z·Var_k/√(n_k−1)        + b.Cov·Var_k   (i ≠ j)
//
// The standard errors are those of a binomial proportion, a sample mean,
// and a Gaussian sample variance and covariance. Any ambiguous sample, or
// a component with fewer than 10 samples, fails too. It returns one
// message per violation (nil if all pass) and the largest
// |error|/tolerance (+Inf for the count failures).
func Check(st Moments, m Mixture, b Bias) (fails []string, worst float64) {
	check := func(what string, got, want, tol float64) {
		r := math.Abs(got-want) / tol
		if math.IsNaN(r) {
			r = math.Inf(1)
		}
		worst = math.Max(worst, r)
		if !(r <= 1) {
			fails = append(fails, fmt.Sprintf("%s = %.4f, want %.4f ± %.4f", what, got, want, tol))
		}
	}
	if st.Ambiguous > 0 {
		fails = append(fails, fmt.Sprintf("%d samples lie between components (largest responsibility < 0.99)", st.Ambiguous))
		worst = math.Inf(1)
	}
	N := float64(st.N)
	for k, wk := range m.W {
		check(fmt.Sprintf("weight[%d]", k), float64(st.Nk[k])/N, wk, Z*math.Sqrt(wk*(1-wk)/N)+b.W)
		nk := float64(st.Nk[k])
		if nk < 10 {
			fails = append(fails, fmt.Sprintf("component %d has %d samples", k, st.Nk[k]))
			worst = math.Inf(1)
			continue
		}
		v := m.Var[k]
		for j := range m.Dim() {
			check(fmt.Sprintf("mean[%d][%d]", k, j), st.Mean[k][j], m.Mu[k][j], Z*math.Sqrt(v/nk)+b.Mean*math.Sqrt(v))
		}
		for i := range m.Dim() {
			for j := 0; j <= i; j++ {
				if i == j {
					check(fmt.Sprintf("cov[%d][%d][%d]", k, i, j), st.Cov[k][i][j], v, Z*v*math.Sqrt(2/(nk-1))+b.Cov*v)
				} else {
					check(fmt.Sprintf("cov[%d][%d][%d]", k, i, j), st.Cov[k][i][j], 0, Z*v/math.Sqrt(nk-1)+b.Cov*v)
				}
			}
		}
	}
	return fails, worst
}

// Deviations returns the largest |N_k/N − W_k|, |m̂_kj − μ_kj|/√Var_k and
// |Ĉ_k,ij − Var_k·δ_ij|/Var_k of st: the observed error in the units of
// Bias (Monte-Carlo noise plus bias).
func Deviations(st Moments, m Mixture) Bias {
	var d Bias
	for k, wk := range m.W {
		d.W = math.Max(d.W, math.Abs(float64(st.Nk[k])/float64(st.N)-wk))
		v := m.Var[k]
		for i := range m.Dim() {
			d.Mean = math.Max(d.Mean, math.Abs(st.Mean[k][i]-m.Mu[k][i])/math.Sqrt(v))
			for j := 0; j <= i; j++ {
				want := 0.0
				if i == j {
					want = v
				}
				d.Cov = math.Max(d.Cov, math.Abs(st.Cov[k][i][j]-want)/v)
			}
		}
	}
	return d
}
