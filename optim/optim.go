// Package optim holds optimizers (Adam, AdamW with PyTorch's update rule),
// gradient clipping by global norm, and an exponential moving average of
// weights.
package optim

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// Adam is torch.optim.Adam / AdamW. State (moments, step) is exposed so
// checkpoints can save and restore it exactly.
type Adam struct {
	Params                []nn.Named
	LR, Beta1, Beta2, Eps float32
	WeightDecay           float32
	Decoupled             bool // AdamW
	Step                  int
	M, V                  []*tensor.Tensor
}

// NewAdam is torch.optim.Adam(params, lr) with betas (0.9, 0.999), eps 1e-8.
func NewAdam(params []nn.Named, lr float32) *Adam {
	a := &Adam{Params: params, LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}
	for _, p := range params {
		be := p.Var.Value.Backend()
		a.M = append(a.M, tensor.NewOn(be, p.Var.Value.Shape()...))
		a.V = append(a.V, tensor.NewOn(be, p.Var.Value.Shape()...))
	}
	return a
}

// NewAdamW is torch.optim.AdamW(params, lr, weight_decay=wd).
func NewAdamW(params []nn.Named, lr, wd float32) *Adam {
	a := NewAdam(params, lr)
	a.WeightDecay, a.Decoupled = wd, true
	return a
}

// Update applies one step to every parameter that has a gradient (others
// are skipped, like PyTorch parameters whose grad is None).
func (a *Adam) Update() {
	a.Step++
	h := tensor.AdamHyper{LR: a.LR, Beta1: a.Beta1, Beta2: a.Beta2, Eps: a.Eps, WeightDecay: a.WeightDecay, Decoupled: a.Decoupled, Step: a.Step}
	for i, p := range a.Params {
		if !p.Var.HasGrad() {
			continue
		}
		p.Var.Value.Backend().AdamStep(p.Var.Value, p.Var.Grad, a.M[i], a.V[i], h)
	}
}

// ZeroGrad clears every parameter's gradient.
func ZeroGrad(params []nn.Named) {
	for _, p := range params {
		p.Var.ZeroGrad()
	}
}

// GradNorm is the global L2 norm of all present gradients.
func GradNorm(params []nn.Named) float64 {
	var s float64
	for _, p := range params {
		if p.Var.HasGrad() {
			s += p.Var.Grad.Backend().Dot(p.Var.Grad, p.Var.Grad)
		}
	}
	return math.Sqrt(s)
}

// ClipGradNorm scales all gradients so their global L2 norm is at most
// maxNorm (torch.nn.utils.clip_grad_norm_) and returns the norm before
// clipping. A non-finite norm is returned as an error and nothing is scaled.
func ClipGradNorm(params []nn.Named, maxNorm float64) (float64, error) {
	n := GradNorm(params)
	if math.IsNaN(n) || math.IsInf(n, 0) {
		return n, fmt.Errorf("gradient norm is %v: the loss diverged; lower the learning rate or check the data", n)
	}
	coef := maxNorm / (n + 1e-6)
	if coef < 1 {
		for _, p := range params {
			if p.Var.HasGrad() {
				p.Var.Grad.Backend().Scale(p.Var.Grad, p.Var.Grad, float32(coef))
			}
		}
	}
	return n, nil
}

// EMA keeps an exponential moving average of parameters:
// shadow = decay·shadow + (1−decay)·param.
type EMA struct {
	Decay  float32
	Shadow []*tensor.Tensor
	params []nn.Named
}

// NewEMA starts the average at the current parameter values.
func NewEMA(params []nn.Named, decay float32) *EMA {
	e := &EMA{Decay: decay, params: params}
	for _, p := range params {
		t := tensor.Empty(p.Var.Value.Backend(), p.Var.Value.Shape()...)
		t.Backend().Copy(t, p.Var.Value)
		e.Shadow = append(e.Shadow, t)
	}
	return e
}

// Update folds the current parameters into the average with the full
// decay.
func (e *EMA) Update() { e.update(e.Decay) }

// UpdateAt folds the parameters in after optimizer step `step` (counting
// from 0) with a warmed-up decay min(Decay, (1+step)/(10+step)), so early
// averages are not dominated by the random initial weights (the warm-up of
// diffusers' EMAModel).
func (e *EMA) UpdateAt(step int) {
	d := min(e.Decay, float32(1+step)/float32(10+step))
	e.update(d)
}

func (e *EMA) update(d float32) {
	for i, p := range e.params {
		e.Shadow[i].Backend().Axpby(e.Shadow[i], 1-d, p.Var.Value, d)
	}
}

// Module returns a Module view of the averaged weights under the same
// names, for saving or for copying into a model.
func (e *EMA) Module() nn.Module { return emaModule{e} }

// CopyTo overwrites the parameters with the averaged weights.
func (e *EMA) CopyTo() {
	for i, p := range e.params {
		p.Var.Value.Backend().Copy(p.Var.Value, e.Shadow[i])
	}
}

type emaModule struct{ e *EMA }

func (m emaModule) Visit(prefix string, fn func(string, *autograd.Var)) {
	for i, p := range m.e.params {
		fn(nn.Join(prefix, p.Name), autograd.Const(m.e.Shadow[i]))
	}
}
