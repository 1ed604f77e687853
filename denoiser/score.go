package denoiser

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// VE adapts a noise-conditional score network (NCSN, trained by denoising
// score matching with train's objective "ncsn") to the denoiser and score
// contracts, in variance-exploding coordinates x = x0 + σ·ε (σ in data
// units). The network is parameterized as
//
//	s(x, σ) = ∇x log p_σ(x) = −net(x, c(σ))/σ,
//
// with c the ladder's noise label (schedule.Ladder.Label), so net predicts
// the noise ε̂ and the denoiser is D(x, σ) = x + σ²·s(x, σ) = x − σ·ε̂.
//
// Labels snap to the ladder: at any σ the network is given the label of the
// nearest trained level (schedule.Ladder.LevelLabel) while the formulas use
// σ itself. A network trained on L levels has seen only L labels, and the
// sinusoidal embedding does not interpolate between them reliably: on a
// 2-D mixture with L = 50 (pipeline's DSM test network), 100 DDIM steps
// with exact labels c(σ) spread the samples 60% wider than the data and
// Euler pulled the component means 20% towards the origin; with snapped
// labels both were as good as a 1000-level ladder. Set ContinuousLabels for
// networks that are valid at every σ (trained on continuous σ, or exact).
//
// Outside the trained range: below σ_min the label is clamped to c(σ_min)
// (the correction σ·ε̂ is then tiny); above σ_max, where the network has
// never seen data, the denoised estimate is held at the largest trained
// level: D(x, σ) = D(r·x, σ_max) with r = σ_max/σ, which rescales x to the
// noise level the network knows. Then ε̂ = (x − D)/σ = (1−r)·x/σ +
// r·net(r·x, c(σ_max)); this is exact when the data is a single point and
// is what lets DDPM/DDIM schedules, whose σ_T (≈157 for the linear
// schedule) is far above a typical σ_max, run on an NCSN model.
type VE struct {
	Net    model.Network
	Ladder schedule.Ladder
	// ContinuousLabels feeds c(σ) itself instead of the nearest level's label.
	ContinuousLabels bool
	g                *autograd.Graph
}

// NewVE adapts net, trained on the noise ladder l.
func NewVE(net model.Network, l schedule.Ladder) (*VE, error) {
	if net == nil {
		return nil, fmt.Errorf("denoiser: nil score network")
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("denoiser: noise ladder: %w", err)
	}
	return &VE{Net: net, Ladder: l, g: autograd.NoGrad(tensor.CPU)}, nil
}

// SigmaMin is the smallest trained noise level σ_L.
func (d *VE) SigmaMin() float64 { return d.Ladder.SigmaMin }

// SigmaMax is the largest trained noise level σ_1.
func (d *VE) SigmaMax() float64 { return d.Ladder.SigmaMax }

// label is the network's noise label at σ (see VE).
func (d *VE) label(sigma float64) float32 {
	if d.ContinuousLabels {
		return d.Ladder.Label(sigma)
	}
	return d.Ladder.LevelLabel(sigma)
}

// coeffs returns, for one sample at noise level sigma, the network input
// scale in, the output coefficients A, B and the label such that
// ε̂ = A·x + B·net(in·x, label). With vp the input x is the
// variance-preserving x_t = x̃/√(1+σ²) instead of x̃ (σ = +Inf allowed:
// then ε̂ = x_t).
func (d *VE) coeffs(sigma float64, vp bool) (in, A, B float64, label float32) {
	smax := d.Ladder.SigmaMax
	if sigma <= smax {
		in, A, B = 1, 0, 1
		if vp {
			in = math.Sqrt(1 + sigma*sigma)
		}
		return in, A, B, d.label(sigma)
	}
	u := 1 / sigma // 0 for σ = +Inf
	r := smax * u
	in, A, B = r, (1-r)*u, r
	if vp {
		// x̃ = x_t·√(1+σ²) = x_t·σ·√(1+u²), and u·σ = 1.
		k := math.Sqrt(1 + u*u)
		in, A = smax*k, (1-r)*k
	}
	return in, A, B, d.label(smax)
}

// epsVar returns ε̂ for x [B, ...] at per-sample levels sigma (len B) as
// ops on g.
func (d *VE) epsVar(g *autograd.Graph, x *autograd.Var, sigma []float64, vp bool) *autograd.Var {
	b := x.Value.Dim(0)
	if len(sigma) != b {
		panic(&tensor.ShapeError{Op: "denoiser", Msg: fmt.Sprintf("%d noise levels for a batch of %d", len(sigma), b)})
	}
	in, A, B := make([]float64, b), make([]float64, b), make([]float64, b)
	labels := make([]float32, b)
	plain := true
	for i, s := range sigma {
		if !(s > 0) {
			panic(&tensor.ShapeError{Op: "denoiser", Msg: fmt.Sprintf("noise level σ = %v: it must be > 0", s)})
		}
		in[i], A[i], B[i], labels[i] = d.coeffs(s, vp)
		plain = plain && in[i] == 1 && A[i] == 0 && B[i] == 1
	}
	if plain {
		return d.Net.Forward(g, x, labels)
	}
	out := d.Net.Forward(g, g.Mul(x, rowConst(g, x.Shape(), in)), labels)
	if !tensor.SameShape(out.Shape(), x.Shape()) {
		panic(&tensor.ShapeError{Op: "denoiser", Msg: fmt.Sprintf("network output %v differs from input %v", out.Shape(), x.Shape())})
	}
	return g.Add(g.Mul(out, rowConst(g, x.Shape(), B)), g.Mul(x, rowConst(g, x.Shape(), A)))
}

// EpsVar returns the network's noise estimate ε̂(x, σ) for x [B, ...] at
// noise levels sigma (len B, each > 0) as ops on g, so gradients reach x
// when g records them.
func (d *VE) EpsVar(g *autograd.Graph, x *autograd.Var, sigma []float64) *autograd.Var {
	return d.epsVar(g, x, sigma, false)
}

// eps evaluates ε̂ without gradients as a fresh tensor of x's shape.
func (d *VE) eps(x *tensor.Tensor, sigma []float64) (*tensor.Tensor, error) {
	if x == nil || x.Rank() < 1 || x.Dim(0) != len(sigma) {
		return nil, fmt.Errorf("denoiser: %d noise levels for a batch of %v", len(sigma), x.Shape())
	}
	var out *tensor.Tensor
	err := autograd.Catch(func() {
		out = tensor.FromSlice(d.epsVar(d.g, autograd.Const(x), sigma, false).Value.ToHost(), x.Shape()...)
	})
	d.g.Reset()
	return out, err
}

// Denoise returns D(x, σ) = x − σ·ε̂ (the estimate of x0) for x [B, ...] at
// noise levels sigma (len B): the contract of package sampler.
func (d *VE) Denoise(x *tensor.Tensor, sigma []float64) (*tensor.Tensor, error) {
	e, err := d.eps(x, sigma)
	if err != nil {
		return nil, err
	}
	combineRows(e, x, sigma, func(s, xv, ev float64) float64 { return xv - s*ev })
	return e, nil
}

// Score returns s(x, σ) = −ε̂/σ = ∇x log p_σ(x) (units 1/x) for x [B, ...]
// at noise levels sigma (len B).
func (d *VE) Score(x *tensor.Tensor, sigma []float64) (*tensor.Tensor, error) {
	e, err := d.eps(x, sigma)
	if err != nil {
		return nil, err
	}
	combineRows(e, x, sigma, func(s, xv, ev float64) float64 { return -ev / s })
	return e, nil
}

// combineRows sets e[b,j] = f(σ_b, x[b,j], e[b,j]) for every element.
func combineRows(e, x *tensor.Tensor, sigma []float64, f func(s, xv, ev float64) float64) {
	b := x.Dim(0)
	per := x.Numel() / b
	ed, xd := e.Data(), x.Data()
	for i := 0; i < b; i++ {
		for j := i * per; j < (i+1)*per; j++ {
			ed[j] = float32(f(sigma[i], float64(xd[j]), float64(ed[j])))
		}
	}
}

// rowConst returns a constant tensor of shape [B, ...] from g's arena with
// c[b] in every element of sample b (valid until g.Reset).
func rowConst(g *autograd.Graph, shape []int, c []float64) *autograd.Var {
	t := g.Arena().Get(shape...)
	host := make([]float32, t.Numel())
	per := len(host) / shape[0]
	for i := 0; i < shape[0]; i++ {
		for j := i * per; j < (i+1)*per; j++ {
			host[j] = float32(c[i])
		}
	}
	t.Backend().CopyFromHost(t, host)
	return autograd.Const(t)
}

// ScoreEps presents a score network (see VE) as a DDPM ε-prediction network
// on the timesteps of a β schedule, so the DDPM/DDIM schedulers (and
// anything else that drives ε-networks on timesteps) can sample from it.
// With x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε = √ᾱ_t·(x0 + σ_t·ε) and
// σ_t = √((1−ᾱ_t)/ᾱ_t),
//
//	ε̂(x_t, t) = net(x_t/√ᾱ_t, c(σ_t))
//
// for σ_t within the ladder (outside it, VE's clamping and hold rules
// apply; at a zero-terminal-SNR step, σ = ∞, ε̂ = x_t exactly). Fractional
// timesteps interpolate log σ_t linearly between neighbouring steps (the
// inverse of Discrete.SigmaToT).
type ScoreEps struct {
	VE *VE
	// LogSigmas[t] = log σ_t of the schedule's T timesteps (may end in +Inf).
	LogSigmas []float64
}

// NewScoreEps wraps net, trained on the noise ladder l, as an ε-network on
// the timesteps of schedule s.
func NewScoreEps(net model.Network, l schedule.Ladder, s *schedule.Schedule) (*ScoreEps, error) {
	ve, err := NewVE(net, l)
	if err != nil {
		return nil, err
	}
	if s == nil || s.T() < 1 {
		return nil, fmt.Errorf("denoiser: ScoreEps needs a β schedule with at least one timestep")
	}
	ls := make([]float64, s.T())
	for t := range ls {
		ls[t] = math.Log(s.Sigma(t))
	}
	return &ScoreEps{VE: ve, LogSigmas: ls}, nil
}

// Visit visits the wrapped network's parameters (names unchanged).
func (n *ScoreEps) Visit(prefix string, fn func(string, *autograd.Var)) { n.VE.Net.Visit(prefix, fn) }

// SetBatch forwards model.Batched to the wrapped network (per-image
// conditioning), if it implements it.
func (n *ScoreEps) SetBatch(start, count int) {
	if b, ok := n.VE.Net.(model.Batched); ok {
		b.SetBatch(start, count)
	}
}

// SigmaAt returns σ at a possibly fractional timestep t (clamped to
// [0, T−1]), interpolating log σ linearly.
func (n *ScoreEps) SigmaAt(t float64) float64 {
	last := len(n.LogSigmas) - 1
	t = min(max(t, 0), float64(last))
	lo := int(math.Floor(t))
	if lo >= last {
		return math.Exp(n.LogSigmas[last])
	}
	w := t - float64(lo)
	if w == 0 {
		return math.Exp(n.LogSigmas[lo])
	}
	return math.Exp((1-w)*n.LogSigmas[lo] + w*n.LogSigmas[lo+1])
}

// Forward returns ε̂(x_t, t) [B, C, H, W] for x_t [B, C, H, W] at timesteps
// t (len B, possibly fractional), built from ops on g.
func (n *ScoreEps) Forward(g *autograd.Graph, x *autograd.Var, t []float32) *autograd.Var {
	sig := make([]float64, len(t))
	for i, tv := range t {
		sig[i] = n.SigmaAt(float64(tv))
	}
	return n.VE.epsVar(g, x, sig, true)
}
