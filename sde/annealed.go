package sde

// Annealed Langevin dynamics lives in this package, next to the VE SDE and
// the Langevin corrector, because it is their discrete precursor (SMLD,
// Song & Ermon 2019: the VE SDE is its continuous limit and the PC sampler's
// corrector is the same update with another step-size rule) and it shares
// the noise contract (Noise, SeededNoise). Its score is indexed by noise
// level σ rather than SDE time: SigmaScore, the contract that
// denoiser.VE.Score (NCSN models) and denoiser.Discrete.Score (DDPM models)
// already implement.

import (
	"errors"
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/tensor"
)

// SigmaScore is a score indexed by noise level: for x [B, ...] and σ (len B,
// data units) it returns ∇x log p_σ(x), a new tensor of x's shape in units
// of 1/x, where p_σ is the data distribution convolved with N(0, σ²I).
type SigmaScore func(x *tensor.Tensor, sigma []float64) (*tensor.Tensor, error)

// AnnealedLangevin is annealed Langevin dynamics (Song & Ermon 2019,
// Algorithm 1): for each level σ_i of a decreasing ladder σ_1 > … > σ_L it
// runs StepsPerLevel steps of
//
//	x ← x + (α_i/2)·s(x, σ_i) + √α_i·z,   α_i = ε·σ_i²/σ_L²,   z ~ N(0, I),
//
// and, with Denoise, ends with the denoising step x ← x + σ_L²·s(x, σ_L)
// (Tweedie's formula; Jolicoeur-Martineau et al. 2021, NCSNv2's sampler).
type AnnealedLangevin struct {
	// Sigmas are the levels σ_1 > … > σ_L (> 0, strictly decreasing).
	Sigmas []float64
	// StepsPerLevel is T (≥ 1).
	StepsPerLevel int
	// Eps is ε, the step size at the last level in units of σ_L² (so the
	// step at σ_L is α_L = ε); 0 picks LangevinStepSize(T, γ)·σ_L² for the
	// ladder's mean ratio γ.
	Eps float64
	// Denoise applies the final denoising step.
	Denoise bool
	// OnStep, if set, is called after every score evaluation with the
	// number done so far (progress).
	OnStep func(done int)
}

// Validate reports an unusable ladder or step count.
func (a AnnealedLangevin) Validate() error {
	if len(a.Sigmas) < 1 {
		return errors.New("annealed Langevin: no noise levels")
	}
	for i, s := range a.Sigmas {
		if !(s > 0) || math.IsInf(s, 0) {
			return fmt.Errorf("annealed Langevin: σ_%d = %v: levels must be finite and > 0", i+1, s)
		}
		if i > 0 && !(s < a.Sigmas[i-1]) {
			return fmt.Errorf("annealed Langevin: levels must decrease (σ_%d = %v ≥ σ_%d = %v)", i+1, s, i, a.Sigmas[i-1])
		}
	}
	if a.StepsPerLevel < 1 {
		return fmt.Errorf("annealed Langevin: steps per level must be ≥ 1 (got %d)", a.StepsPerLevel)
	}
	if a.Eps < 0 || math.IsNaN(a.Eps) || math.IsInf(a.Eps, 0) {
		return fmt.Errorf("annealed Langevin: step size ε must be ≥ 0 (0: automatic), got %v", a.Eps)
	}
	return nil
}

// StepSize returns the ε used: Eps, or the automatic choice when Eps is 0.
func (a AnnealedLangevin) StepSize() float64 {
	if a.Eps > 0 {
		return a.Eps
	}
	L := len(a.Sigmas)
	gamma := 1.0
	if L > 1 {
		gamma = math.Pow(a.Sigmas[0]/a.Sigmas[L-1], 1/float64(L-1))
	}
	sL := a.Sigmas[L-1]
	return LangevinStepSize(a.StepsPerLevel, gamma) * sL * sL
}

// Evals is the number of score evaluations Sample makes.
func (a AnnealedLangevin) Evals() int {
	n := len(a.Sigmas) * a.StepsPerLevel
	if a.Denoise {
		n++
	}
	return n
}

// Sample runs the dynamics from x [B, ...] (not modified; draw it from
// N(0, σ_1²I) or the data's range) and returns the final sample. Every
// z comes from noise, one draw of x's shape per step.
func (a AnnealedLangevin) Sample(score SigmaScore, x *tensor.Tensor, noise Noise) (*tensor.Tensor, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	if score == nil || noise == nil {
		return nil, errors.New("annealed Langevin: nil score or noise source")
	}
	if x == nil || x.Rank() < 1 || x.Dim(0) < 1 {
		return nil, errors.New("annealed Langevin: x must be a batch [B, ...] with B ≥ 1")
	}
	b := x.Dim(0)
	eps := a.StepSize()
	sL := a.Sigmas[len(a.Sigmas)-1]
	cur := tensor.FromSlice(x.ToHost(), x.Shape()...)
	sig := make([]float64, b)
	done := 0
	call := func(s float64) (*tensor.Tensor, error) {
		for i := range sig {
			sig[i] = s
		}
		g, err := score(cur, sig)
		if err != nil {
			return nil, fmt.Errorf("annealed Langevin at σ = %.4g: %w", s, err)
		}
		if g == nil || !tensor.SameShape(g.Shape(), cur.Shape()) {
			return nil, fmt.Errorf("annealed Langevin: score returned shape %v for x %v", shapeOf(g), cur.Shape())
		}
		done++
		if a.OnStep != nil {
			a.OnStep(done)
		}
		return g, nil
	}
	for _, s := range a.Sigmas {
		alpha := eps * (s / sL) * (s / sL)
		half, sq := alpha/2, math.Sqrt(alpha)
		for k := 0; k < a.StepsPerLevel; k++ {
			g, err := call(s)
			if err != nil {
				return nil, err
			}
			z := noise(cur.Shape())
			if !tensor.SameShape(z.Shape(), cur.Shape()) {
				return nil, fmt.Errorf("annealed Langevin: noise shape %v, want %v", z.Shape(), cur.Shape())
			}
			cd, gd, zd := cur.Data(), g.ToHost(), z.ToHost()
			for j := range cd {
				cd[j] = float32(float64(cd[j]) + half*float64(gd[j]) + sq*float64(zd[j]))
			}
		}
	}
	if a.Denoise {
		g, err := call(sL)
		if err != nil {
			return nil, err
		}
		cd, gd := cur.Data(), g.ToHost()
		for j := range cd {
			cd[j] = float32(float64(cd[j]) + sL*sL*float64(gd[j]))
		}
	}
	return cur, nil
}

func shapeOf(t *tensor.Tensor) []int {
	if t == nil {
		return nil
	}
	return t.Shape()
}

// LangevinStepSize returns NCSNv2's step-size rule (Song & Ermon 2020,
// technique 4) in this package's convention: the ratio a = α_i/σ_i² (so
// ε = a·σ_L²) that makes T steps at one level bring the variance of a
// Gaussian started at the previous level, γ²σ_i² (γ = σ_{i−1}/σ_i), as
// close as possible to the level's σ_i². For data concentrated at one
// point, one step maps the variance v to (1−a/2)²·v + a·σ_i², so after T
// steps
//
//	v_T/σ_i² = (1 − a/2)^(2T)·(γ² − c) + c,   c = 1/(1 − a/4),
//
// and a minimizes |v_T/σ_i² − 1| over (0, 2) (a golden-section search on
// log a). With T = 5 and γ ≈ 1.086 it gives a ≈ 0.2. γ ≤ 1 or T < 1 give 0.
func LangevinStepSize(T int, gamma float64) float64 {
	if T < 1 || !(gamma > 1) {
		return 0
	}
	f := func(la float64) float64 {
		a := math.Exp(la)
		c := 1 / (1 - a/4)
		return math.Abs(math.Pow(1-a/2, 2*float64(T))*(gamma*gamma-c) + c - 1)
	}
	lo, hi := math.Log(1e-8), math.Log(1.999)
	// The objective is unimodal in log a on this range (a decaying transient
	// plus a growing discretization bias); refine a coarse grid minimum.
	best, bf := lo, f(lo)
	const n = 400
	for i := 1; i <= n; i++ {
		x := lo + (hi-lo)*float64(i)/n
		if v := f(x); v < bf {
			best, bf = x, v
		}
	}
	step := (hi - lo) / n
	l, h := max(lo, best-step), min(hi, best+step)
	phi := (math.Sqrt(5) - 1) / 2
	for h-l > 1e-10 {
		m1, m2 := h-phi*(h-l), l+phi*(h-l)
		if f(m1) < f(m2) {
			h = m2
		} else {
			l = m1
		}
	}
	return math.Exp((l + h) / 2)
}
