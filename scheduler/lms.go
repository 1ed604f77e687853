package scheduler

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// LMSConfig is LMSDiscreteScheduler's configuration, with diffusers' JSON
// names and defaults (DefaultLMSConfig). The order, which diffusers passes
// to step(), is LMS.Order. The fields mean what they do in EulerConfig.
type LMSConfig struct {
	NumTrainTimesteps    int                     `json:"num_train_timesteps"`
	BetaStart            float64                 `json:"beta_start"`
	BetaEnd              float64                 `json:"beta_end"`
	BetaSchedule         string                  `json:"beta_schedule"`
	TrainedBetas         []float64               `json:"trained_betas"`
	UseKarrasSigmas      bool                    `json:"use_karras_sigmas"`
	UseExponentialSigmas bool                    `json:"use_exponential_sigmas"`
	UseBetaSigmas        bool                    `json:"use_beta_sigmas"`
	PredictionType       schedule.PredictionType `json:"prediction_type"`
	TimestepSpacing      string                  `json:"timestep_spacing"`
	StepsOffset          int                     `json:"steps_offset"`
}

// DefaultLMSConfig returns diffusers' LMSDiscreteScheduler defaults.
func DefaultLMSConfig() LMSConfig {
	return LMSConfig{
		NumTrainTimesteps: 1000, BetaStart: 0.0001, BetaEnd: 0.02, BetaSchedule: schedule.Linear,
		PredictionType: schedule.Epsilon, TimestepSpacing: Linspace,
	}
}

// LMS is diffusers' LMSDiscreteScheduler: the linear multistep method
// (k-diffusion's sample_lms) on dx/dσ = d = (x − x̂0)/σ. σ_i, the real
// timesteps, ScaleModelInput and InitNoiseSigma are Euler's. With the last
// q = min(i+1, Order) derivatives d_i, d_{i−1}, …:
//
//	x_{i+1} = x_i + Σ_{c<q} C_c d_{i−c},
//	C_c = ∫_{σ_i}^{σ_{i+1}} Π_{k<q, k≠c} (τ − σ_{i−k})/(σ_{i−c} − σ_{i−k}) dτ
//
// (the integral of the Lagrange basis polynomial through σ_i, …, σ_{i−q+1}).
// diffusers integrates with scipy's adaptive quad (epsrel 1e-4) in float32;
// the basis is a polynomial of degree q−1, which Gauss–Legendre quadrature
// with q nodes integrates exactly (to rounding). The scheduler keeps the
// derivatives and a step index (see Step).
type LMS struct {
	// Order is step()'s order (default 4), ≥ 1.
	Order int

	cfg    LMSConfig
	tb     sigmaTables
	sc     sigmaConfig
	tv     []float64
	sigmas []float64
	cur    cursor
	derivs [][]float64
	pred   *tensor.Tensor
}

// NewLMS validates c and returns its scheduler (order 4), with all T
// training timesteps and their σ set.
func NewLMS(c LMSConfig) (*LMS, error) {
	if err := c.PredictionType.Validate(); err != nil {
		return nil, err
	}
	sc := sigmaConfig{karras: c.UseKarrasSigmas, exponential: c.UseExponentialSigmas, beta: c.UseBetaSigmas}
	if err := sc.validate(); err != nil {
		return nil, err
	}
	if _, err := SpacedTimesteps(c.TimestepSpacing, max(c.NumTrainTimesteps, 1), 1, 0); err != nil {
		return nil, err
	}
	tb, err := newSigmaTables(c.BetaSchedule, c.NumTrainTimesteps, c.BetaStart, c.BetaEnd, c.TrainedBetas, false)
	if err != nil {
		return nil, err
	}
	l := &LMS{Order: 4, cfg: c, tb: tb, sc: sc}
	l.tv, l.sigmas = tb.fullSchedule()
	l.cur.reset(roundTimesteps(l.tv))
	return l, nil
}

// Config returns the scheduler's configuration.
func (l *LMS) Config() LMSConfig { return l.cfg }

// Schedule returns the noise schedule (shared; do not modify).
func (l *LMS) Schedule() *schedule.Schedule { return l.tb.sched }

// SetTimesteps chooses n inference timesteps and their σ, and clears the
// derivatives and the step index.
func (l *LMS) SetTimesteps(n int) error {
	tv, sig, err := l.tb.realSchedule(l.sc, l.cfg.TimestepSpacing, n, l.cfg.StepsOffset, 0)
	if err != nil {
		return err
	}
	l.tv, l.sigmas, l.derivs = tv, sig, nil
	l.cur.reset(roundTimesteps(tv))
	return nil
}

// Timesteps returns the inference timesteps rounded to integers.
func (l *LMS) Timesteps() []int { return l.cur.ts }

// TimestepValues returns the real inference timesteps (float32 values).
func (l *LMS) TimestepValues() []float64 { return l.tv }

// Sigmas returns the inference σ followed by the final 0.
func (l *LMS) Sigmas() []float64 { return l.sigmas }

// InitNoiseSigma is the largest σ (√(σ²+1) of it for leading spacing).
func (l *LMS) InitNoiseSigma() float64 { return initSigma(l.sigmas, l.cfg.TimestepSpacing) }

// PredOriginalSample returns the x̂0 of the last Step, or nil before the
// first.
func (l *LMS) PredOriginalSample() *tensor.Tensor { return l.pred }

// ScaleModelInput returns x/√(σ²+1), as Euler's.
func (l *LMS) ScaleModelInput(x *tensor.Tensor, t int) *tensor.Tensor {
	i, fresh, err := l.cur.locate("LMS", t)
	if err != nil {
		return x
	}
	if fresh {
		l.derivs = nil
	}
	return scaleBySigma(x, l.sigmas[i])
}

// Coefficient returns the multistep coefficient C_c of step i with q
// derivatives (see LMS), for 0 ≤ c < q ≤ i+1 and i < len(Timesteps()).
func (l *LMS) Coefficient(q, i, c int) float64 {
	s := l.sigmas
	basis := func(tau float64) float64 {
		p := 1.0
		for k := 0; k < q; k++ {
			if k != c {
				p *= (tau - s[i-k]) / (s[i-c] - s[i-k])
			}
		}
		return p
	}
	return gaussLegendre(basis, s[i], s[i+1], max(q, 2))
}

// Step computes x at the next σ (see LMS). The step index works as Euler's;
// a new start clears the derivatives. It is deterministic.
func (l *LMS) Step(modelOut *tensor.Tensor, t int, x *tensor.Tensor, noise NoiseFunc) (*tensor.Tensor, error) {
	if l.Order < 1 {
		return nil, fmt.Errorf("scheduler: LMS: order = %d, want ≥ 1", l.Order)
	}
	if !tensor.SameShape(modelOut.Shape(), x.Shape()) {
		return nil, fmt.Errorf("scheduler: LMS: model output %v and sample %v differ in shape", modelOut.Shape(), x.Shape())
	}
	if _, _, err := batchDims(x); err != nil {
		return nil, err
	}
	i, fresh, err := l.cur.locate("LMS", t)
	if err != nil {
		return nil, err
	}
	if fresh {
		l.derivs = nil
	}
	if len(l.derivs) > 0 && len(l.derivs[0]) != x.Numel() {
		return nil, fmt.Errorf("scheduler: LMS: sample %v differs in size from the previous steps'", x.Shape())
	}
	sigma := l.sigmas[i]
	xs, outs := hostRead(x), hostRead(modelOut)
	d := make([]float64, len(xs))
	pred := make([]float32, len(xs))
	for k, v := range xs {
		x0 := sigmaX0(l.cfg.PredictionType, float64(outs[k]), float64(v), sigma, sigma)
		d[k] = (float64(v) - x0) / sigma
		pred[k] = float32(x0)
	}
	l.derivs = append(l.derivs, d)
	if len(l.derivs) > l.Order {
		l.derivs = l.derivs[1:]
	}
	q := min(i+1, l.Order)
	// diffusers zips the coefficients with the derivatives, newest first.
	n := min(q, len(l.derivs))
	coef := make([]float64, n)
	for c := range coef {
		coef[c] = l.Coefficient(q, i, c)
	}
	res := make([]float32, len(xs))
	for k, v := range xs {
		y := float64(v)
		for c, cc := range coef {
			y += cc * l.derivs[len(l.derivs)-1-c][k]
		}
		res[k] = float32(y)
	}
	l.cur.idx++
	l.pred = newLike(x, pred)
	return newLike(x, res), nil
}

// gaussLegendre integrates f over [a, b] with the n-node Gauss–Legendre
// rule (exact for polynomials of degree < 2n). The nodes are the roots of
// the Legendre polynomial P_n, found by Newton's method.
func gaussLegendre(f func(float64) float64, a, b float64, n int) float64 {
	mid, half := (a+b)/2, (b-a)/2
	sum := 0.0
	for i := 0; i < (n+1)/2; i++ {
		x := math.Cos(math.Pi * (float64(i) + 0.75) / (float64(n) + 0.5))
		var dp float64
		for iter := 0; iter < 100; iter++ {
			// P_n(x) and P_n'(x) by the three-term recurrence.
			p0, p1 := 1.0, x
			for k := 2; k <= n; k++ {
				p0, p1 = p1, (float64(2*k-1)*x*p1-float64(k-1)*p0)/float64(k)
			}
			dp = float64(n) * (x*p1 - p0) / (x*x - 1)
			dx := p1 / dp
			x -= dx
			if math.Abs(dx) < 1e-16 {
				break
			}
		}
		w := 2 / ((1 - x*x) * dp * dp)
		if 2*i+1 == n { // the middle node x = 0 of odd n
			sum += w * f(mid)
		} else {
			sum += w * (f(mid-half*x) + f(mid+half*x))
		}
	}
	return half * sum
}
