package schedule

import (
	"fmt"
	"math"
)

// MaxLabel is the largest noise label a Ladder gives: the networks' sinusoidal
// timestep embedding was designed for DDPM timesteps 0..999, so score
// networks see their noise level on the same range.
const MaxLabel = 999

// Ladder is the geometric noise ladder of a noise-conditional score network
// (NCSN, Song & Ermon 2019): L levels σ_1 > σ_2 > … > σ_L from SigmaMax down
// to SigmaMin with a constant ratio γ = σ_{i−1}/σ_i. Noise levels are in the
// units of the data (pixels in [−1, 1] for images): x̃ = x + σ·z, z ~ N(0, I).
//
// Label maps a noise level to the network's conditioning input, the
// continuous "timestep" c(σ) of the UNet's sinusoidal embedding:
//
//	c(σ) = 999 · (ln σ − ln σ_min) / (ln σ_max − ln σ_min),
//
// an affine map of ln σ that sends σ_min to 0 and σ_max to 999 (the range the
// DDPM-style embedding expects; small σ ↔ small t, as for DDPM), clamped to
// [0, 999] outside the ladder. Because it is continuous, a network trained
// on the ladder's levels can be queried at any σ in [σ_min, σ_max] (k-diffusion
// samplers, a DDPM/DDIM schedule, a coarser Langevin ladder).
type Ladder struct {
	SigmaMin, SigmaMax float64
	Levels             int
}

// NewLadder returns the ladder of levels σ from sigmaMax down to sigmaMin.
// It needs 0 < sigmaMin < sigmaMax (finite) and levels ≥ 2.
func NewLadder(sigmaMin, sigmaMax float64, levels int) (Ladder, error) {
	l := Ladder{SigmaMin: sigmaMin, SigmaMax: sigmaMax, Levels: levels}
	return l, l.Validate()
}

// Validate reports a ladder whose bounds or level count are unusable.
func (l Ladder) Validate() error {
	switch {
	case !(l.SigmaMin > 0) || math.IsInf(l.SigmaMin, 0):
		return fmt.Errorf("sigma_min must be a positive number (got %g)", l.SigmaMin)
	case !(l.SigmaMax > l.SigmaMin) || math.IsInf(l.SigmaMax, 0):
		return fmt.Errorf("sigma_max must be a finite number above sigma_min = %g (got %g)", l.SigmaMin, l.SigmaMax)
	case l.Levels < 2:
		return fmt.Errorf("num_scales must be ≥ 2 (got %d)", l.Levels)
	}
	return nil
}

// Sigma returns level i (0-based): σ_max·γ^(−i), so Sigma(0) = σ_max and
// Sigma(Levels−1) = σ_min exactly.
func (l Ladder) Sigma(i int) float64 {
	if i <= 0 {
		return l.SigmaMax
	}
	if i >= l.Levels-1 {
		return l.SigmaMin
	}
	f := float64(i) / float64(l.Levels-1)
	return math.Exp((1-f)*math.Log(l.SigmaMax) + f*math.Log(l.SigmaMin))
}

// Sigmas returns all levels, decreasing from σ_max to σ_min (len Levels).
func (l Ladder) Sigmas() []float64 {
	out := make([]float64, l.Levels)
	for i := range out {
		out[i] = l.Sigma(i)
	}
	return out
}

// Ratio is γ = σ_{i−1}/σ_i = (σ_max/σ_min)^(1/(L−1)).
func (l Ladder) Ratio() float64 {
	return math.Pow(l.SigmaMax/l.SigmaMin, 1/float64(l.Levels-1))
}

// Label returns the network's conditioning input c(σ) ∈ [0, 999] (see
// Ladder), clamped to the ladder's range.
func (l Ladder) Label(sigma float64) float32 {
	c := MaxLabel * (math.Log(sigma) - math.Log(l.SigmaMin)) / (math.Log(l.SigmaMax) - math.Log(l.SigmaMin))
	return float32(min(max(c, 0), MaxLabel))
}

// SigmaOfLabel inverts Label on [0, 999]: σ(c) = σ_min·(σ_max/σ_min)^(c/999)
// (c is clamped to [0, 999]).
func (l Ladder) SigmaOfLabel(c float64) float64 {
	c = min(max(c, 0), MaxLabel)
	return math.Exp(math.Log(l.SigmaMin) + c/MaxLabel*(math.Log(l.SigmaMax)-math.Log(l.SigmaMin)))
}

// LevelLabel returns the label of the ladder level nearest to sigma in
// log σ: c(σ_i) = 999·(L−1−i)/(L−1), clamped to the ladder's range. A
// network trained on the ladder has only ever seen these L labels.
func (l Ladder) LevelLabel(sigma float64) float32 {
	c := float64(l.Label(sigma))
	k := math.Round(c / MaxLabel * float64(l.Levels-1))
	return float32(k * MaxLabel / float64(l.Levels-1))
}
