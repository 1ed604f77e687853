package sampler

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// linspace is torch.linspace(start, end, n) in float64: n evenly spaced
// values, the first half stepped from start and the second from end, as
// torch's CPU kernel computes them.
func linspace(start, end float64, n int) []float64 {
	out := make([]float64, n)
	if n == 1 {
		out[0] = start
		return out
	}
	step := (end - start) / float64(n-1)
	half := n / 2
	for i := range out {
		if i < half {
			out[i] = start + step*float64(i)
		} else {
			out[i] = end - step*float64(n-1-i)
		}
	}
	return out
}

func checkRange(name string, n int, sigmaMin, sigmaMax float64, minPositive bool) error {
	if n < 1 {
		return fmt.Errorf("sampler: %s schedule: n = %d, want ≥ 1", name, n)
	}
	ok := sigmaMin >= 0 && sigmaMin <= sigmaMax && !math.IsInf(sigmaMax, 0)
	if minPositive {
		ok = ok && sigmaMin > 0
	}
	if !ok {
		return fmt.Errorf("sampler: %s schedule: need 0 %s σ_min ≤ σ_max < Inf, got σ_min = %g, σ_max = %g", name, map[bool]string{true: "<", false: "≤"}[minPositive], sigmaMin, sigmaMax)
	}
	return nil
}

// Karras is k-diffusion's get_sigmas_karras: n noise levels from sigmaMax
// down to sigmaMin evenly spaced in σ^(1/ρ) (Karras et al. 2022, eq. 5),
// followed by a final 0 — n+1 values in the units of x. It needs n ≥ 1,
// 0 ≤ sigmaMin ≤ sigmaMax and rho > 0 (k-diffusion's default ρ is 7).
func Karras(n int, sigmaMin, sigmaMax, rho float64) ([]float64, error) {
	if err := checkRange("karras", n, sigmaMin, sigmaMax, false); err != nil {
		return nil, err
	}
	if !(rho > 0) {
		return nil, fmt.Errorf("sampler: karras schedule: rho = %g, want > 0", rho)
	}
	ramp := linspace(0, 1, n)
	minInv, maxInv := math.Pow(sigmaMin, 1/rho), math.Pow(sigmaMax, 1/rho)
	out := make([]float64, n+1)
	for i, r := range ramp {
		out[i] = math.Pow(maxInv+r*(minInv-maxInv), rho)
	}
	return out, nil
}

// Exponential is k-diffusion's get_sigmas_exponential: n noise levels from
// sigmaMax down to sigmaMin evenly spaced in log σ, followed by a final 0 —
// n+1 values in the units of x. It needs n ≥ 1 and 0 < sigmaMin ≤ sigmaMax.
func Exponential(n int, sigmaMin, sigmaMax float64) ([]float64, error) {
	if err := checkRange("exponential", n, sigmaMin, sigmaMax, true); err != nil {
		return nil, err
	}
	out := make([]float64, n+1)
	for i, l := range linspace(math.Log(sigmaMax), math.Log(sigmaMin), n) {
		out[i] = math.Exp(l)
	}
	return out, nil
}

// PolyExponential is k-diffusion's get_sigmas_polyexponential: n noise
// levels with log σ = log σ_min + r^ρ·(log σ_max − log σ_min) for r evenly
// spaced from 1 to 0, followed by a final 0 — n+1 values in the units of x.
// ρ = 1 is the exponential schedule. It needs n ≥ 1, 0 < sigmaMin ≤ sigmaMax
// and rho > 0 (k-diffusion's default ρ is 1).
func PolyExponential(n int, sigmaMin, sigmaMax, rho float64) ([]float64, error) {
	if err := checkRange("polyexponential", n, sigmaMin, sigmaMax, true); err != nil {
		return nil, err
	}
	if !(rho > 0) {
		return nil, fmt.Errorf("sampler: polyexponential schedule: rho = %g, want > 0", rho)
	}
	lmin, lmax := math.Log(sigmaMin), math.Log(sigmaMax)
	out := make([]float64, n+1)
	for i, r := range linspace(1, 0, n) {
		out[i] = math.Exp(math.Pow(r, rho)*(lmax-lmin) + lmin)
	}
	return out, nil
}

// VP is k-diffusion's get_sigmas_vp: the noise levels σ(t) =
// √(exp(β_d·t²/2 + β_min·t) − 1) of the continuous variance-preserving SDE
// (Song et al. 2021) at n times t evenly spaced from 1 down to epsS,
// followed by a final 0 — n+1 values in the units of x (the VE-equivalent
// σ of the VP process). It needs n ≥ 1, 0 < epsS ≤ 1, betaD ≥ 0, betaMin ≥ 0
// and betaD+betaMin > 0 (k-diffusion's defaults: 19.9, 0.1, 1e-3).
func VP(n int, betaD, betaMin, epsS float64) ([]float64, error) {
	if n < 1 {
		return nil, fmt.Errorf("sampler: vp schedule: n = %d, want ≥ 1", n)
	}
	if !(epsS > 0 && epsS <= 1) || !(betaD >= 0) || !(betaMin >= 0) || !(betaD+betaMin > 0) {
		return nil, fmt.Errorf("sampler: vp schedule: need β_d ≥ 0, β_min ≥ 0, β_d+β_min > 0, 0 < eps_s ≤ 1; got %g, %g, %g", betaD, betaMin, epsS)
	}
	out := make([]float64, n+1)
	for i, t := range linspace(1, epsS, n) {
		out[i] = math.Sqrt(math.Exp(betaD*t*t/2+betaMin*t) - 1)
	}
	return out, nil
}

// Schedule builds n+1 noise levels (the last 0) from σ_min and σ_max, in the
// units of x.
type Schedule func(n int, sigmaMin, sigmaMax float64) ([]float64, error)

var schedules = map[string]Schedule{
	"karras": func(n int, lo, hi float64) ([]float64, error) { return Karras(n, lo, hi, 7) },
	"exponential": func(n int, lo, hi float64) ([]float64, error) {
		return Exponential(n, lo, hi)
	},
	"polyexponential": func(n int, lo, hi float64) ([]float64, error) { return PolyExponential(n, lo, hi, 1) },
	"vp":              func(n int, _, _ float64) ([]float64, error) { return VP(n, 19.9, 0.1, 1e-3) },
}

// ScheduleNames lists the names ByScheduleName accepts, sorted.
func ScheduleNames() []string {
	names := make([]string, 0, len(schedules))
	for n := range schedules {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ByScheduleName returns a schedule by k-diffusion's name with k-diffusion's
// default parameters: "karras" (ρ = 7), "exponential", "polyexponential"
// (ρ = 1) and "vp" (β_d = 19.9, β_min = 0.1, eps_s = 1e-3; its range comes
// from β, so it ignores σ_min and σ_max). An unknown name is an error
// listing the valid ones.
func ByScheduleName(name string) (Schedule, error) {
	if s, ok := schedules[name]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("sampler: unknown schedule %q (valid: %s)", name, strings.Join(ScheduleNames(), ", "))
}
