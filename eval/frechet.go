package eval

import (
	"fmt"
	"math"
)

// Stats are the mean and covariance of a set of feature vectors.
type Stats struct {
	Mu  []float64
	Cov [][]float64 // unbiased (n−1) covariance
	N   int
}

// ComputeStats fits a Gaussian to feats (each row one sample).
func ComputeStats(feats [][]float64) (Stats, error) {
	n := len(feats)
	if n < 2 {
		return Stats{}, fmt.Errorf("need at least 2 feature vectors for a covariance, got %d", n)
	}
	d := len(feats[0])
	mu := make([]float64, d)
	for _, f := range feats {
		for i, v := range f {
			mu[i] += v
		}
	}
	for i := range mu {
		mu[i] /= float64(n)
	}
	cov := make([][]float64, d)
	for i := range cov {
		cov[i] = make([]float64, d)
	}
	for _, f := range feats {
		for i := 0; i < d; i++ {
			a := f[i] - mu[i]
			row := cov[i]
			for j := i; j < d; j++ {
				row[j] += a * (f[j] - mu[j])
			}
		}
	}
	for i := 0; i < d; i++ {
		for j := i; j < d; j++ {
			cov[i][j] /= float64(n - 1)
			cov[j][i] = cov[i][j]
		}
	}
	return Stats{Mu: mu, Cov: cov, N: n}, nil
}

// Frechet is the Fréchet distance between two Gaussians:
// |μ1−μ2|² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2}), with the trace of the matrix
// square root computed as Σ sqrt(λ_i) of the symmetric PSD matrix
// Σ1^{1/2} Σ2 Σ1^{1/2} (same eigenvalues as Σ1 Σ2).
func Frechet(a, b Stats) float64 {
	d := len(a.Mu)
	var dm float64
	for i := range a.Mu {
		x := a.Mu[i] - b.Mu[i]
		dm += x * x
	}
	var tr float64
	for i := 0; i < d; i++ {
		tr += a.Cov[i][i] + b.Cov[i][i]
	}
	s1 := sqrtPSD(a.Cov)
	m := mul(mul(s1, b.Cov), s1)
	vals, _ := jacobiEigen(m)
	var trs float64
	for _, v := range vals {
		trs += math.Sqrt(math.Max(v, 0))
	}
	return dm + tr - 2*trs
}

func mul(a, b [][]float64) [][]float64 {
	n := len(a)
	out := make([][]float64, n)
	for i := range out {
		out[i] = make([]float64, n)
		for k := 0; k < n; k++ {
			aik := a[i][k]
			if aik == 0 {
				continue
			}
			for j := 0; j < n; j++ {
				out[i][j] += aik * b[k][j]
			}
		}
	}
	return out
}

// sqrtPSD is the symmetric square root of a PSD matrix (negative
// eigenvalues from round-off are clamped to 0).
func sqrtPSD(a [][]float64) [][]float64 {
	vals, vecs := jacobiEigen(a)
	n := len(a)
	out := make([][]float64, n)
	for i := range out {
		out[i] = make([]float64, n)
	}
	for k, l := range vals {
		s := math.Sqrt(math.Max(l, 0))
		for i := 0; i < n; i++ {
			vi := vecs[i][k] * s
			for j := 0; j < n; j++ {
				out[i][j] += vi * vecs[j][k]
			}
		}
	}
	return out
}

// jacobiEigen diagonalizes a symmetric matrix with cyclic Jacobi rotations:
// it returns the eigenvalues and the eigenvectors as columns.
func jacobiEigen(in [][]float64) ([]float64, [][]float64) {
	n := len(in)
	a := make([][]float64, n)
	v := make([][]float64, n)
	for i := range a {
		a[i] = append([]float64(nil), in[i]...)
		v[i] = make([]float64, n)
		v[i][i] = 1
	}
	for sweep := 0; sweep < 100; sweep++ {
		var off, total float64
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				total += a[i][j] * a[i][j]
				if i != j {
					off += a[i][j] * a[i][j]
				}
			}
		}
		if off <= 1e-22*total || off == 0 {
			break
		}
		for p := 0; p < n-1; p++ {
			for q := p + 1; q < n; q++ {
				apq := a[p][q]
				if math.Abs(apq) < 1e-300 {
					continue
				}
				theta := (a[q][q] - a[p][p]) / (2 * apq)
				t := math.Copysign(1, theta) / (math.Abs(theta) + math.Sqrt(theta*theta+1))
				c := 1 / math.Sqrt(t*t+1)
				s := t * c
				for k := 0; k < n; k++ {
					akp, akq := a[k][p], a[k][q]
					a[k][p] = c*akp - s*akq
					a[k][q] = s*akp + c*akq
				}
				for k := 0; k < n; k++ {
					apk, aqk := a[p][k], a[q][k]
					a[p][k] = c*apk - s*aqk
					a[q][k] = s*apk + c*aqk
				}
				for k := 0; k < n; k++ {
					vkp, vkq := v[k][p], v[k][q]
					v[k][p] = c*vkp - s*vkq
					v[k][q] = s*vkp + c*vkq
				}
			}
		}
	}
	vals := make([]float64, n)
	for i := range vals {
		vals[i] = a[i][i]
	}
	return vals, v
}
