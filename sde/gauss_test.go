package sde

import (
	"math"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/tensor"
)

// gauss is Gaussian data x0 ~ N(mu, Σ) in D dims, Σ = Q·diag(lam)·Qᵀ with
// Q orthogonal (its columns are the eigenvectors). Under any of this
// package's SDEs x_t ~ N(m(t)·mu, m(t)²Σ + v(t)·I), where v(t) is the exact
// variance of the transition from time 0 to t: std(t)² − m(t)²·std(0)² (for
// VE std(0) = σ_min ≠ 0, see VE's doc), so the score is known in closed
// form at every t:
//
//	∇x log p_t(x) = −Q·diag(1/(m²λ_k + v))·Qᵀ·(x − m·mu).
type gauss struct {
	mu, lam []float64
	q       [][]float64 // q[i][k]: component i of eigenvector k
	iso     bool        // Q = I (fast path of score)
}

func isoGauss(mu []float64, s float64) gauss {
	d := len(mu)
	g := gauss{mu: mu, lam: make([]float64, d), q: make([][]float64, d), iso: true}
	for i := range g.q {
		g.q[i] = make([]float64, d)
		g.q[i][i] = 1
		g.lam[i] = s * s
	}
	return g
}

// rotGauss is N(mu, Q diag(lam) Qᵀ) with Q a random orthogonal matrix
// (Gram–Schmidt on Gaussian columns from seed).
func rotGauss(mu, lam []float64, seed uint64) gauss {
	d := len(mu)
	rng := rand.New(rand.NewPCG(seed, 1))
	cols := make([][]float64, d)
	for k := range cols {
		c := make([]float64, d)
		for i := range c {
			c[i] = rng.NormFloat64()
		}
		for p := 0; p < k; p++ {
			var dot float64
			for i := range c {
				dot += c[i] * cols[p][i]
			}
			for i := range c {
				c[i] -= dot * cols[p][i]
			}
		}
		var n float64
		for _, v := range c {
			n += v * v
		}
		n = math.Sqrt(n)
		for i := range c {
			c[i] /= n
		}
		cols[k] = c
	}
	g := gauss{mu: mu, lam: lam, q: make([][]float64, d)}
	for i := range g.q {
		g.q[i] = make([]float64, d)
		for k := range cols {
			g.q[i][k] = cols[k][i]
		}
	}
	return g
}

// transVar is v(t) = std(t)² − m(t)²·std(0)².
func transVar(s SDE, t float64) float64 {
	m, std := s.Marginal(t)
	_, std0 := s.Marginal(0)
	return std*std - m*m*std0*std0
}

// eig returns m(t) and the eigenvalues of Cov(x_t).
func (g gauss) eig(s SDE, t float64) (float64, []float64) {
	m, _ := s.Marginal(t)
	v := transVar(s, t)
	ev := make([]float64, len(g.lam))
	for k, l := range g.lam {
		ev[k] = m*m*l + v
	}
	return m, ev
}

// logp is log p_t(x) for one point x (len D), in nats.
func (g gauss) logp(s SDE, t float64, x []float64) float64 {
	m, ev := g.eig(s, t)
	d := len(x)
	lp := -0.5 * float64(d) * math.Log(2*math.Pi)
	for k := range ev {
		var c float64
		for i := range x {
			c += g.q[i][k] * (x[i] - m*g.mu[i])
		}
		lp -= 0.5 * (math.Log(ev[k]) + c*c/ev[k])
	}
	return lp
}

// score is the exact ScoreFunc for x [B, D], in float64.
func (g gauss) score(s SDE) ScoreFunc {
	d := len(g.mu)
	return func(x *tensor.Tensor, t []float64) (*tensor.Tensor, error) {
		b := x.Dim(0)
		out := tensor.New(x.Shape()...)
		xd, od := x.Data(), out.Data()
		c := make([]float64, d)
		var m float64
		var ev []float64
		for r := 0; r < b; r++ {
			if r == 0 || t[r] != t[r-1] {
				m, ev = g.eig(s, t[r])
			}
			row := xd[r*d : (r+1)*d]
			if g.iso {
				for i, v := range row {
					od[r*d+i] = float32(-(float64(v) - m*g.mu[i]) / ev[i])
				}
				continue
			}
			for k := range c {
				var a float64
				for i := range row {
					a += g.q[i][k] * (float64(row[i]) - m*g.mu[i])
				}
				c[k] = -a / ev[k]
			}
			for i := 0; i < d; i++ {
				var a float64
				for k := range c {
					a += g.q[i][k] * c[k]
				}
				od[r*d+i] = float32(a)
			}
		}
		return out, nil
	}
}

// diff is the exact score as a DiffScore built from autograd ops, so the
// likelihood's vector–Jacobian products run through Sub, Linear and Mul:
// score = ((x − m·mu)·Q ⊙ (−1/ev))·Qᵀ.
func (g gauss) diff(s SDE) DiffScore {
	d := len(g.mu)
	qT := tensor.New(d, d) // Linear computes x·wᵀ: w = Qᵀ gives x·Q
	qq := tensor.New(d, d) // w = Q gives y·Qᵀ
	for i := 0; i < d; i++ {
		for k := 0; k < d; k++ {
			qT.Data()[k*d+i] = float32(g.q[i][k])
			qq.Data()[i*d+k] = float32(g.q[i][k])
		}
	}
	wA, wB := autograd.Const(qT), autograd.Const(qq)
	return func(gr *autograd.Graph, x *autograd.Var, t []float64) *autograd.Var {
		b := x.Shape()[0]
		mean := tensor.New(b, d)
		inv := tensor.New(b, d)
		for r := 0; r < b; r++ {
			m, ev := g.eig(s, t[r])
			for i := 0; i < d; i++ {
				mean.Data()[r*d+i] = float32(m * g.mu[i])
				inv.Data()[r*d+i] = float32(-1 / ev[i])
			}
		}
		c := gr.Linear(gr.Sub(x, autograd.Const(mean)), wA, nil)
		return gr.Linear(gr.Mul(c, autograd.Const(inv)), wB, nil)
	}
}

// sample draws n points of the data distribution as a [n, D] tensor.
func (g gauss) sample(n int, seed uint64) *tensor.Tensor {
	d := len(g.mu)
	rng := rand.New(rand.NewPCG(seed, 2))
	out := tensor.New(n, d)
	z := make([]float64, d)
	for r := 0; r < n; r++ {
		for k := range z {
			z[k] = rng.NormFloat64() * math.Sqrt(g.lam[k])
		}
		for i := 0; i < d; i++ {
			a := g.mu[i]
			for k := range z {
				a += g.q[i][k] * z[k]
			}
			out.Data()[r*d+i] = float32(a)
		}
	}
	return out
}

// moments returns the per-dim sample mean and (unbiased) variance of x [n, D].
func moments(x *tensor.Tensor) (mean, variance []float64) {
	n, d := x.Dim(0), x.Dim(1)
	mean = make([]float64, d)
	variance = make([]float64, d)
	xd := x.Data()
	for r := 0; r < n; r++ {
		for i := 0; i < d; i++ {
			mean[i] += float64(xd[r*d+i]) / float64(n)
		}
	}
	for r := 0; r < n; r++ {
		for i := 0; i < d; i++ {
			e := float64(xd[r*d+i]) - mean[i]
			variance[i] += e * e / float64(n-1)
		}
	}
	return mean, variance
}

// flow maps x (one point) at time t0 along the exact probability-flow ODE
// to time t1: x₁ = m₁·mu + Q·diag(√(ev₁/ev₀))·Qᵀ·(x − m₀·mu).
func (g gauss) flow(s SDE, t0, t1 float64, x []float64) []float64 {
	m0, ev0 := g.eig(s, t0)
	m1, ev1 := g.eig(s, t1)
	d := len(x)
	out := make([]float64, d)
	for i := range out {
		out[i] = m1 * g.mu[i]
	}
	for k := 0; k < d; k++ {
		var c float64
		for i := range x {
			c += g.q[i][k] * (x[i] - m0*g.mu[i])
		}
		c *= math.Sqrt(ev1[k] / ev0[k])
		for i := range out {
			out[i] += g.q[i][k] * c
		}
	}
	return out
}

// procedureLogP is what LogLikelihood computes with the exact score and an
// exact solver: log p_ε(x) with p_T replaced by the SDE's prior at the end
// of the flow, log p_ε(x) + log prior(z) − log p_T(z), z the flow of x to T.
func (g gauss) procedureLogP(s SDE, eps float64, x []float64) float64 {
	z := g.flow(s, eps, s.T(), x)
	zt := tensor.New(1, len(z))
	for i, v := range z {
		zt.Data()[i] = float32(v)
	}
	return g.logp(s, eps, x) + s.PriorLogP(zt)[0] - g.logp(s, s.T(), z)
}
