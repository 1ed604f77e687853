package scheduler

import (
	"fmt"
	"math"
	"slices"

	"github.com/diffuse-go/diffuse/schedule"
)

// This file holds what the σ-space schedulers (Euler, Euler ancestral, LMS,
// Heun, DPM-Solver, UniPC) share: diffusers' float32 ᾱ and σ tables, the
// σ schedules (interpolated, Karras, exponential), the σ → t map, and the
// step index that diffusers keeps between steps.
//
// With σ_t = √((1−ᾱ_t)/ᾱ_t), x_t/√ᾱ_t = x_0 + σ_t ε: these schedulers walk
// down a decreasing list of σ (one per inference step, then a final σ,
// usually 0).

// round32 rounds x to float32 precision.
func round32(x float64) float64 { return float64(float32(x)) }

// alphasCumprod32 returns ᾱ as diffusers' float32 table: β and α = 1 − β
// rounded to float32, the cumulative product accumulated in float64 and
// rounded to float32 (torch's CPU cumprod). It agrees with diffusers' table
// to about 2e-7 relative. zeroSNR sets the last value to 2⁻²⁴ as diffusers
// does after rescale_betas_zero_snr, so that σ stays finite.
func alphasCumprod32(s *schedule.Schedule, zeroSNR bool) []float64 {
	ac := make([]float64, len(s.Betas))
	p := 1.0
	for i, b := range s.Betas {
		p *= float64(float32(1) - float32(b))
		ac[i] = round32(p)
	}
	if zeroSNR {
		ac[len(ac)-1] = 0x1p-24
	}
	return ac
}

// sigmas32 returns σ_t = √((1−ᾱ_t)/ᾱ_t) computed in float32 as diffusers
// does (ascending in t).
func sigmas32(ac []float64) []float64 {
	out := make([]float64, len(ac))
	for i, v := range ac {
		a := float32(v)
		r := (float32(1) - a) / a
		out[i] = round32(math.Sqrt(float64(r)))
	}
	return out
}

// logSigmas32 is np.log of the float32 σ table (a float32 result).
func logSigmas32(sig []float64) []float64 {
	out := make([]float64, len(sig))
	for i, s := range sig {
		out[i] = round32(math.Log(s))
	}
	return out
}

// interpIndex is np.interp(x, arange(len(fp)), fp): linear interpolation
// between integer abscissae, clamped to the ends.
func interpIndex(x float64, fp []float64) float64 {
	n := len(fp)
	switch {
	case x <= 0:
		return fp[0]
	case x >= float64(n-1):
		return fp[n-1]
	}
	j := int(math.Floor(x))
	if float64(j) == x {
		return fp[j]
	}
	return (fp[j+1]-fp[j])*(x-float64(j)) + fp[j]
}

// karrasSigmas is the schedule of Karras et al. 2022 (eq. 5) with ρ = 7:
//
//	σ_i = (σ_max^(1/ρ) + i/(n−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ,  i = 0..n−1
func karrasSigmas(sigmaMin, sigmaMax float64, n int) []float64 {
	const rho = 7.0
	ramp := schedule.Linspace(0, 1, n)
	lo, hi := math.Pow(sigmaMin, 1/rho), math.Pow(sigmaMax, 1/rho)
	out := make([]float64, n)
	for i, r := range ramp {
		out[i] = math.Pow(hi+r*(lo-hi), rho)
	}
	return out
}

// exponentialSigmas is σ_i = exp(linspace(log σ_max, log σ_min, n)_i).
func exponentialSigmas(sigmaMin, sigmaMax float64, n int) []float64 {
	out := schedule.Linspace(math.Log(sigmaMax), math.Log(sigmaMin), n)
	for i, v := range out {
		out[i] = math.Exp(v)
	}
	return out
}

// sigmaToT is diffusers' _sigma_to_t: the real timestep whose log σ is
// interpolated linearly between its two neighbours in logSigmas
// (ascending), clamped to [0, T−1].
func sigmaToT(sigma float64, logSigmas []float64) float64 {
	ls := math.Log(math.Max(sigma, 1e-10))
	// low: the last index with logSigmas[k] ≤ ls (0 when there is none),
	// as argmax(cumsum(ls − logSigmas ≥ 0)) finds it.
	low := 0
	for k, v := range logSigmas {
		if ls-v >= 0 {
			low = k
		}
	}
	low = min(low, len(logSigmas)-2)
	lo, hi := logSigmas[low], logSigmas[low+1]
	w := min(max((lo-ls)/(lo-hi), 0), 1)
	return (1-w)*float64(low) + w*float64(low+1)
}

// sigmaConfig is the σ-schedule part of a scheduler config.
type sigmaConfig struct {
	karras, exponential, beta bool
	sigmaMin, sigmaMax        *float64
}

func (c sigmaConfig) validate() error {
	n := 0
	for _, b := range []bool{c.karras, c.exponential, c.beta} {
		if b {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("scheduler: only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas can be set")
	}
	if c.beta {
		return fmt.Errorf("scheduler: use_beta_sigmas is not supported")
	}
	for _, p := range []*float64{c.sigmaMin, c.sigmaMax} {
		if p != nil && !(*p > 0) {
			return fmt.Errorf("scheduler: sigma_min/sigma_max = %g, want > 0", *p)
		}
	}
	return nil
}

// convert turns σ (descending, from interpolation) into the configured
// schedule of n values: Karras or exponential between σ_min and σ_max
// (sigma_min and sigma_max of the config, else the ends of sigmas), or
// sigmas itself. converted reports whether it changed anything (the
// timesteps must then be recomputed from σ).
func (c sigmaConfig) convert(sigmas []float64, n int) (out []float64, converted bool) {
	lo, hi := sigmas[len(sigmas)-1], sigmas[0]
	if c.sigmaMin != nil {
		lo = *c.sigmaMin
	}
	if c.sigmaMax != nil {
		hi = *c.sigmaMax
	}
	switch {
	case c.karras:
		return karrasSigmas(lo, hi, n), true
	case c.exponential:
		return exponentialSigmas(lo, hi, n), true
	}
	return sigmas, false
}

// sigmaTimesteps returns the real timesteps of the Euler-family schedulers
// (descending): linspace(0, T−1, n) reversed and rounded to float32, or the
// leading/trailing integer timesteps of SpacedTimesteps.
func sigmaTimesteps(spacing string, T, n, offset int) ([]float64, error) {
	if spacing == Linspace {
		if _, err := SpacedTimesteps(spacing, T, n, offset); err != nil {
			return nil, err
		}
		v := schedule.Linspace(0, float64(T-1), n)
		slices.Reverse(v)
		for i := range v {
			v[i] = round32(v[i])
		}
		return v, nil
	}
	ts, err := SpacedTimesteps(spacing, T, n, offset)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(ts))
	for i, t := range ts {
		out[i] = float64(t)
	}
	return out, nil
}

// roundTimesteps returns real timesteps rounded to the nearest integer
// (halves away from zero), the values Timesteps() hands out.
func roundTimesteps(v []float64) []int {
	out := make([]int, len(v))
	for i, t := range v {
		out[i] = int(math.Round(t))
	}
	return out
}

// cursor is diffusers' _step_index. It is unset after SetTimesteps; the
// first ScaleModelInput or Step then finds its timestep t in the
// timesteps (the second occurrence when t repeats, as index_for_timestep
// does), and every Step advances it by one. Unlike diffusers, a later t
// must be the timestep at the index (an error otherwise, where diffusers
// would silently use the index), and a t after the last step starts the
// schedule again (as a new SetTimesteps would), so that one scheduler can
// sample several batches.
type cursor struct {
	ts  []int
	idx int // −1: unset
	// lastOnMissing: a t that is not a timestep gives the last index (DPM-Solver
	// and UniPC) instead of an error.
	lastOnMissing bool
}

func (c *cursor) reset(ts []int) { c.ts, c.idx = ts, -1 }

// locate returns the step index of t. fresh reports a new start: the
// scheduler must then clear what it keeps between steps.
func (c *cursor) locate(name string, t int) (idx int, fresh bool, err error) {
	if c.ts == nil {
		return 0, false, fmt.Errorf("scheduler: %s: call SetTimesteps before Step", name)
	}
	if c.idx >= 0 && c.idx < len(c.ts) {
		if c.ts[c.idx] != t {
			return 0, false, fmt.Errorf("scheduler: %s: timestep %d, but step %d of %d is at timestep %d (call SetTimesteps to start again)", name, t, c.idx, len(c.ts), c.ts[c.idx])
		}
		return c.idx, false, nil
	}
	first, n := -1, 0
	for i, v := range c.ts {
		if v == t {
			n++
			if n == 1 {
				first = i
			} else {
				first = i
				break
			}
		}
	}
	switch {
	case n == 0 && c.lastOnMissing:
		first = len(c.ts) - 1
	case n == 0:
		return 0, false, fmt.Errorf("scheduler: %s: timestep %d is not one of the inference timesteps", name, t)
	}
	c.idx = first
	return first, true, nil
}
