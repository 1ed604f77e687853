// Package gmm is an isotropic Gaussian mixture in D dimensions whose noised
// densities have closed-form scores, and "oracle" networks built on them:
// the exact noise predictors a score-trained (NCSN) or DDPM-trained network
// would converge to. Tests of samplers and adapters use them as ground
// truth.
package gmm

import (
	"math"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// Mixture is p(x) = Σ_k W[k]·N(x; Mu[k], S[k]²·I): weights W (summing to
// 1), means Mu[k] (len D each) and per-component standard deviations S[k].
type Mixture struct {
	W  []float64
	Mu [][]float64
	S  []float64
}

// Dim is D.
func (m Mixture) Dim() int { return len(m.Mu[0]) }

// ScoreScaled returns ∇x log q(x) for the mixture with means a·Mu[k] and
// variances a²·S[k]² + b², i.e. the law of a·x0 + b·ε (x0 ~ p, ε ~ N(0, I)):
// a = 1, b = σ is the variance-exploding p_σ; a = √ᾱ, b = √(1−ᾱ) the DDPM
// marginal q(x_t). x has length D.
func (m Mixture) ScoreScaled(x []float64, a, b float64) []float64 {
	D := len(x)
	logw := make([]float64, len(m.W))
	best := math.Inf(-1)
	for k := range m.W {
		v := a*a*m.S[k]*m.S[k] + b*b
		var d2 float64
		for j := 0; j < D; j++ {
			d := x[j] - a*m.Mu[k][j]
			d2 += d * d
		}
		logw[k] = math.Log(m.W[k]) - float64(D)/2*math.Log(v) - d2/(2*v)
		best = max(best, logw[k])
	}
	var z float64
	for k := range logw {
		logw[k] = math.Exp(logw[k] - best)
		z += logw[k]
	}
	out := make([]float64, D)
	for k := range m.W {
		r := logw[k] / z
		v := a*a*m.S[k]*m.S[k] + b*b
		for j := 0; j < D; j++ {
			out[j] += r * (a*m.Mu[k][j] - x[j]) / v
		}
	}
	return out
}

// Score returns ∇x log p_σ(x) of the mixture convolved with N(0, σ²I).
func (m Mixture) Score(x []float64, sigma float64) []float64 { return m.ScoreScaled(x, 1, sigma) }

// Sample draws n points (each len D) from p.
func (m Mixture) Sample(n int, rng *rand.Rand) [][]float64 {
	out := make([][]float64, n)
	for i := range out {
		u, k := rng.Float64(), 0
		for k < len(m.W)-1 && u > m.W[k] {
			u -= m.W[k]
			k++
		}
		p := make([]float64, m.Dim())
		for j := range p {
			p[j] = m.Mu[k][j] + m.S[k]*rng.NormFloat64()
		}
		out[i] = p
	}
	return out
}

// Nearest returns the index of the component mean closest to x.
func (m Mixture) Nearest(x []float64) int {
	best, bd := 0, math.Inf(1)
	for k, mu := range m.Mu {
		var d float64
		for j := range mu {
			d += (x[j] - mu[j]) * (x[j] - mu[j])
		}
		if d < bd {
			best, bd = k, d
		}
	}
	return best
}

// Mean and Var return the mixture's mean (len D) and per-coordinate
// variance (len D).
func (m Mixture) Mean() []float64 {
	out := make([]float64, m.Dim())
	for k, w := range m.W {
		for j := range out {
			out[j] += w * m.Mu[k][j]
		}
	}
	return out
}

// Var is the per-coordinate variance of p.
func (m Mixture) Var() []float64 {
	mean := m.Mean()
	out := make([]float64, m.Dim())
	for k, w := range m.W {
		for j := range out {
			d := m.Mu[k][j] - mean[j]
			out[j] += w * (m.S[k]*m.S[k] + d*d)
		}
	}
	return out
}

// rows applies f to each sample of x [B, ...] (flattened to len D) with
// its timestep label, returning a constant tensor of x's shape.
func rows(x *autograd.Var, t []float32, f func(row []float64, label float64) []float64) *autograd.Var {
	b := x.Value.Dim(0)
	per := x.Value.Numel() / b
	xd := x.Value.ToHost()
	out := make([]float32, len(xd))
	row := make([]float64, per)
	for i := 0; i < b; i++ {
		for j := range row {
			row[j] = float64(xd[i*per+j])
		}
		for j, v := range f(row, float64(t[i])) {
			out[i*per+j] = float32(v)
		}
	}
	return autograd.Const(tensor.FromSlice(out, x.Value.Shape()...))
}

// ScoreNet is the exact NCSN network of the mixture on a noise ladder: for
// label c it returns net(x, c) = −σ·∇x log p_σ(x) with σ = L.SigmaOfLabel(c),
// the minimizer of the σ²-weighted denoising score matching loss. Inputs
// are [B, ...] with D elements per sample. It has no parameters.
type ScoreNet struct {
	M Mixture
	L schedule.Ladder
}

// Visit visits nothing (no parameters).
func (ScoreNet) Visit(string, func(string, *autograd.Var)) {}

// Forward returns the exact noise prediction (a constant).
func (n ScoreNet) Forward(g *autograd.Graph, x *autograd.Var, t []float32) *autograd.Var {
	return rows(x, t, func(row []float64, c float64) []float64 {
		s := n.L.SigmaOfLabel(c)
		sc := n.M.Score(row, s)
		for j := range sc {
			sc[j] *= -s
		}
		return sc
	})
}

// EpsNet is the exact DDPM ε-prediction network of the mixture on schedule
// S: ε*(x_t, t) = −√(1−ᾱ_t)·∇ log q_t(x_t), with ᾱ at fractional t from
// log σ_t interpolated linearly between neighbouring steps (the convention
// of denoiser.Discrete). It has no parameters.
type EpsNet struct {
	M Mixture
	S *schedule.Schedule
}

// Visit visits nothing (no parameters).
func (EpsNet) Visit(string, func(string, *autograd.Var)) {}

// Forward returns the exact ε (a constant).
func (n EpsNet) Forward(g *autograd.Graph, x *autograd.Var, t []float32) *autograd.Var {
	return rows(x, t, func(row []float64, tv float64) []float64 {
		lo := int(math.Floor(tv))
		lo = min(max(lo, 0), n.S.T()-1)
		hi := min(lo+1, n.S.T()-1)
		w := tv - float64(lo)
		sig := math.Exp((1-w)*math.Log(n.S.Sigma(lo)) + w*math.Log(n.S.Sigma(hi)))
		ab := 1 / (1 + sig*sig)
		a, b := math.Sqrt(ab), math.Sqrt(1-ab)
		sc := n.M.ScoreScaled(row, a, b)
		for j := range sc {
			sc[j] *= -b
		}
		return sc
	})
}
