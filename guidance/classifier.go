// Package guidance steers a trained diffusion network at sampling time.
// Each guide is a model.Network wrapping the network, so every sampler
// (DDPM, DDIM, the k-diffusion samplers through denoiser.Discrete) runs it
// unchanged, and a model.Batched one, so conditions can vary per image of
// a run.
//
// CFG is classifier-free guidance for class-conditional networks.
//
// ClassifierGuided is classifier guidance (Dhariwal & Nichol 2021,
// "Diffusion Models Beat GANs on Image Synthesis", Algorithm 2 for DDIM):
// an unconditional ε-network is combined with a noise-aware classifier
// p(y | x_t, t) (a classifier.NoisyNet, trained by TrainNoisyClassifier) as
//
//	ε̂(x_t, t) = ε(x_t, t) − s·√(1−ᾱ_t)·∇_{x_t} log p_τ(y | x_t, t),
//
// log p_τ = log_softmax(logits/τ): the ε of the tilted density
// p(x_t)·p_τ(y|x_t)^s.
package guidance

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/model/classifier"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// ClassifierOptions configure NewClassifierGuided.
type ClassifierOptions struct {
	// Scale is the guidance scale s ≥ 0 (0: the base network unchanged).
	Scale float64
	// Temperature τ > 0 of the classifier's softmax (0 means 1): below 1
	// sharpens p_τ(y|x), above 1 flattens it.
	Temperature float64
	// Labels[i] is the class requested for image i of a sampling run (the
	// pipelines' SetBatch says which images a batch holds).
	Labels []int
	// ClipDenoised > 0 clamps the base network's x̂0 to ±ClipDenoised
	// before the guidance is added (guided-diffusion's clip_denoised). Use
	// it instead of the scheduler's x̂0 clipping (which pipeline.Generate
	// suspends for guided networks, see model.Guided):
	// a scheduler that clips the guided x̂0 undoes the shift where x̂0 is
	// saturated while its ε̂ term keeps it, which reverses the guidance
	// there (MNIST's background sits at −1, so "less ink" turns into
	// "more ink"). 0: no clamping.
	ClipDenoised float64
}

// ClassifierGuided is a model.Network (and model.Batched) computing the
// classifier-guided noise prediction of Net; see the package doc. Net may
// predict ε, x0 or v (Pred): the guidance shift is applied to the implied
// ε̂ and mapped back to Net's output. The guidance term (and the x̂0
// clamp, see ClipDenoised) is added as a constant: on a
// gradient-recording graph, gradients flow through Net's output as if
// the shift were not there.
type ClassifierGuided struct {
	Net  model.Network
	Pred schedule.PredictionType
	ClassifierOptions

	cls       *classifier.NoisyNet // frozen: input gradients only
	alphasBar []float64
	logSigma  []float64
	g         *autograd.Graph // records the classifier for ∇x log p
	start     int
}

// NewClassifierGuided wraps net (trained with prediction type pred on
// schedule sched) with classifier guidance by cls, which must have been
// trained on the same schedule's timesteps.
func NewClassifierGuided(net model.Network, cls *classifier.NoisyNet, sched *schedule.Schedule, pred schedule.PredictionType, o ClassifierOptions) (*ClassifierGuided, error) {
	if net == nil || cls == nil || sched == nil {
		return nil, fmt.Errorf("classifier guidance: need a network, a noisy classifier and a schedule")
	}
	if err := pred.Validate(); err != nil {
		return nil, err
	}
	if !(o.Scale >= 0) || math.IsInf(o.Scale, 0) {
		return nil, fmt.Errorf("classifier guidance: scale must be a finite number ≥ 0 (got %g)", o.Scale)
	}
	if o.Temperature == 0 {
		o.Temperature = 1
	}
	if !(o.Temperature > 0) || math.IsInf(o.Temperature, 0) {
		return nil, fmt.Errorf("classifier guidance: temperature must be > 0 (got %g)", o.Temperature)
	}
	if !(o.ClipDenoised >= 0) || math.IsInf(o.ClipDenoised, 0) {
		return nil, fmt.Errorf("classifier guidance: clip range must be a finite number ≥ 0 (got %g)", o.ClipDenoised)
	}
	if len(o.Labels) == 0 {
		return nil, fmt.Errorf("classifier guidance: no labels: give one class per image to generate")
	}
	for i, l := range o.Labels {
		if l < 0 || l >= cls.Classes {
			return nil, fmt.Errorf("classifier guidance: label %d of image %d is outside the classifier's classes [0, %d)", l, i, cls.Classes)
		}
	}
	ab := append([]float64(nil), sched.AlphasCumprod...)
	ls := make([]float64, len(ab))
	for i, a := range ab {
		ls[i] = 0.5 * math.Log((1-a)/a) // +Inf where ᾱ = 0
	}
	o.Labels = append([]int(nil), o.Labels...)
	return &ClassifierGuided{Net: net, Pred: pred, ClassifierOptions: o, cls: cls.Frozen(),
		alphasBar: ab, logSigma: ls, g: autograd.New(tensor.CPU)}, nil
}

// Guided reports whether the guidance scale is non-zero (model.Guided); the
// wrapper clamps x̂0 itself when ClipDenoised > 0.
func (c *ClassifierGuided) Guided() bool { return c.Scale != 0 }

// Visit visits the base network's parameters (the classifier's are not
// part of the wrapped model's state).
func (c *ClassifierGuided) Visit(prefix string, fn func(string, *autograd.Var)) {
	c.Net.Visit(prefix, fn)
}

// SetBatch records that the next calls denoise images [start, start+n) of
// the run, so image start+i is guided towards Labels[start+i]; it is passed
// on to Net when Net is itself Batched.
func (c *ClassifierGuided) SetBatch(start, n int) {
	c.start = start
	if b, ok := c.Net.(model.Batched); ok {
		b.SetBatch(start, n)
	}
}

// AlphaBar returns ᾱ at a (possibly fractional) timestep t: the
// schedule's value at integer t, and between timesteps the ᾱ = 1/(1+σ²) of
// σ interpolated log-linearly, as denoiser.Discrete maps σ to t (t is
// clamped to [0, T−1]).
func (c *ClassifierGuided) AlphaBar(t float64) float64 {
	n := len(c.alphasBar)
	if !(t > 0) {
		return c.alphasBar[0]
	}
	if t >= float64(n-1) {
		return c.alphasBar[n-1]
	}
	lo := int(math.Floor(t))
	w := t - float64(lo)
	if w == 0 {
		return c.alphasBar[lo]
	}
	a, b := c.logSigma[lo], c.logSigma[lo+1]
	if math.IsInf(b, 1) { // zero terminal SNR: interpolate ᾱ itself
		return (1-w)*c.alphasBar[lo] + w*c.alphasBar[lo+1]
	}
	ls := (1-w)*a + w*b
	return 1 / (1 + math.Exp(2*ls))
}

// Forward returns Net's prediction for x_t [B, C, H, W] at timesteps t
// (len B), shifted by the classifier guidance of the current batch's
// labels. With Scale 0 it returns Net's output itself. It panics with a
// *tensor.ShapeError (see autograd.Catch) when the run has fewer labels
// than images.
func (c *ClassifierGuided) Forward(g *autograd.Graph, x *autograd.Var, t []float32) *autograd.Var {
	out := c.Net.Forward(g, x, t)
	if c.Scale == 0 {
		return out
	}
	b := x.Value.Dim(0)
	if c.start+b > len(c.Labels) {
		panic(&tensor.ShapeError{Op: "ClassifierGuided", Msg: fmt.Sprintf("images [%d, %d) but only %d labels: give one label per image", c.start, c.start+b, len(c.Labels))})
	}
	grad, _ := logProbGrad(c.g, c.cls, x.Value, t, c.Labels[c.start:c.start+b], c.Temperature)
	per := x.Value.Numel() / b
	delta := g.Arena().Get(x.Value.Shape()...)
	dd, gd := delta.Data(), grad.Data()
	xd, od := x.Value.ToHost(), out.Value.ToHost()
	clip := c.ClipDenoised
	for i := 0; i < b; i++ {
		ab := c.AlphaBar(float64(t[i]))
		sa, sb := math.Sqrt(ab), math.Sqrt(1-ab)
		for j := i * per; j < (i+1)*per; j++ {
			xv, o := float64(xd[j]), float64(od[j])
			var x0, eps float64 // the base prediction as x̂0 and ε̂
			switch c.Pred {
			case schedule.Epsilon:
				eps, x0 = o, (xv-sb*o)/sa
			case schedule.Sample:
				x0, eps = o, (xv-sa*o)/sb
			case schedule.VPrediction:
				x0, eps = sa*xv-sb*o, sa*o+sb*xv
			}
			if clip > 0 && (x0 > clip || x0 < -clip) {
				x0 = math.Max(-clip, math.Min(clip, x0))
				eps = (xv - sa*x0) / sb
			}
			eps -= c.Scale * sb * float64(gd[j]) // ε̂ − s·√(1−ᾱ)·∇ log p
			x0 = (xv - sb*eps) / sa
			var want float64
			switch c.Pred {
			case schedule.Epsilon:
				want = eps
			case schedule.Sample:
				want = x0
			case schedule.VPrediction:
				want = sa*eps - sb*x0
			}
			dd[j] = float32(want - o)
		}
	}
	return g.Add(out, autograd.Const(delta))
}

// LogProbGrad returns ∇_x Σ_i log p_τ(labels[i] | x_i, t_i) [B, C, H, W]
// (each image's gradient of its own log-probability) and the
// log-probabilities log p_τ(labels[i] | x_i, t_i) (nats) under the noisy
// classifier cls at temperature tau (> 0), for x [B, C, H, W] and t, labels
// of length B. cls's parameter gradients are not touched.
func LogProbGrad(cls *classifier.NoisyNet, x *tensor.Tensor, t []float32, labels []int, tau float64) (*tensor.Tensor, []float64, error) {
	if !(tau > 0) {
		return nil, nil, fmt.Errorf("classifier guidance: temperature must be > 0 (got %g)", tau)
	}
	var grad *tensor.Tensor
	var logp []float64
	err := autograd.Catch(func() {
		grad, logp = logProbGrad(autograd.New(tensor.CPU), cls.Frozen(), x, t, labels, tau)
	})
	return grad, logp, err
}

// logProbGrad runs cls (frozen) on g and returns the gradient (a fresh
// tensor) and the log-probabilities; it resets g. It panics with a
// *tensor.ShapeError on bad shapes.
func logProbGrad(g *autograd.Graph, cls *classifier.NoisyNet, x *tensor.Tensor, t []float32, labels []int, tau float64) (*tensor.Tensor, []float64) {
	defer g.Reset()
	b := x.Dim(0)
	if len(labels) != b {
		panic(&tensor.ShapeError{Op: "ClassifierGuided", Msg: fmt.Sprintf("%d labels for a batch of %d", len(labels), b)})
	}
	xv := autograd.Input(x)
	logits, _ := cls.Forward(g, xv, t)
	if tau != 1 {
		logits = g.Scale(logits, float32(1/tau))
	}
	k := logits.Value.Dim(1)
	ld := logits.Value.ToHost()
	logp := make([]float64, b)
	for i := 0; i < b; i++ {
		row := ld[i*k : (i+1)*k]
		m := math.Inf(-1)
		for _, v := range row {
			m = math.Max(m, float64(v))
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v) - m)
		}
		logp[i] = float64(row[labels[i]]) - m - math.Log(z)
	}
	// CrossEntropy is the batch mean of −log p; scaling by −B gives Σ log p.
	loss := g.Scale(g.CrossEntropy(logits, labels), -float32(b))
	if err := g.Backward(loss); err != nil {
		panic(&tensor.ShapeError{Op: "ClassifierGuided", Msg: err.Error()})
	}
	grad := tensor.New(x.Shape()...)
	copy(grad.Data(), xv.Grad.ToHost())
	return grad, logp
}
