package sampler

import (
	"fmt"
	"math"
	"sync"
)

// LMSCoefficient is k-diffusion's linear_multistep_coeff: the weight of the
// derivative at sigmas[i-j] in the order-`order` linear multistep step from
// sigmas[i] to sigmas[i+1], that is the integral over [sigmas[i],
// sigmas[i+1]] of the Lagrange basis polynomial ℓ_j(τ) = Π_{k≠j, k<order}
// (τ − sigmas[i−k]) / (sigmas[i−j] − sigmas[i−k]). k-diffusion integrates it
// with scipy's adaptive quad; ℓ_j has degree order−1, so an order-point
// Gauss–Legendre rule (exact up to degree 2·order−1) gives the integral
// exactly up to rounding. It is an error unless 1 ≤ order ≤ i+1, 0 ≤ j <
// order and i+1 < len(sigmas).
func LMSCoefficient(order int, sigmas []float64, i, j int) (float64, error) {
	if order < 1 || order-1 > i {
		return 0, fmt.Errorf("sampler: lms: order %d too high for step %d", order, i)
	}
	if j < 0 || j >= order || i+1 >= len(sigmas) {
		return 0, fmt.Errorf("sampler: lms: coefficient j=%d of order %d at step %d of %d sigmas", j, order, i, len(sigmas))
	}
	basis := func(tau float64) float64 {
		p := 1.0
		for k := 0; k < order; k++ {
			if k != j {
				p *= (tau - sigmas[i-k]) / (sigmas[i-j] - sigmas[i-k])
			}
		}
		return p
	}
	a, b := sigmas[i], sigmas[i+1]
	nodes, weights := gaussLegendre(order)
	mid, half := (a+b)/2, (b-a)/2
	sum := 0.0
	for q, x := range nodes {
		sum += weights[q] * basis(mid+half*x)
	}
	return sum * half, nil
}

var (
	glMu    sync.Mutex
	glCache = map[int][2][]float64{}
)

// gaussLegendre returns the n nodes on [-1, 1] and weights of the n-point
// Gauss–Legendre rule (Newton's method on the Legendre polynomial P_n).
func gaussLegendre(n int) (nodes, weights []float64) {
	glMu.Lock()
	defer glMu.Unlock()
	if c, ok := glCache[n]; ok {
		return c[0], c[1]
	}
	nodes, weights = make([]float64, n), make([]float64, n)
	for k := 0; k < n; k++ {
		x := math.Cos(math.Pi * (float64(k) + 0.75) / (float64(n) + 0.5))
		var dp float64
		for it := 0; it < 100; it++ {
			// P_n(x) and P_n'(x) by the three-term recurrence.
			p0, p1 := 1.0, x
			for m := 2; m <= n; m++ {
				p0, p1 = p1, ((2*float64(m)-1)*x*p1-(float64(m)-1)*p0)/float64(m)
			}
			dp = float64(n) * (x*p1 - p0) / (x*x - 1)
			dx := p1 / dp
			x -= dx
			if math.Abs(dx) < 1e-16 {
				break
			}
		}
		// Recompute the derivative at the converged node for the weight.
		p0, p1 := 1.0, x
		for m := 2; m <= n; m++ {
			p0, p1 = p1, ((2*float64(m)-1)*x*p1-(float64(m)-1)*p0)/float64(m)
		}
		dp = float64(n) * (x*p1 - p0) / (x*x - 1)
		nodes[k] = x
		weights[k] = 2 / ((1 - x*x) * dp * dp)
	}
	glCache[n] = [2][]float64{nodes, weights}
	return nodes, weights
}
