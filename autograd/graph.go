// Package autograd is diffuse's reverse-mode automatic differentiation.
//
// A Graph records the ops applied to Vars and replays them backwards. Every
// intermediate tensor comes from the graph's tensor.Arena, so a training loop
// that calls Reset after each step allocates no tensor memory in steady
// state. A graph with gradients off (NoGrad) records nothing: sampling pays
// no tape cost.
//
// Ops panic with a *tensor.ShapeError on operands that do not fit; Catch
// turns that into an error at API boundaries.
package autograd

import (
	"errors"
	"fmt"

	"github.com/diffuse-go/diffuse/tensor"
)

// Var is a tensor in a graph: its value and, after Backward, its gradient.
type Var struct {
	Value *tensor.Tensor
	// Grad has Value's shape once a gradient reached this Var; for
	// parameters it persists across steps (see ZeroGrad).
	Grad *tensor.Tensor

	requiresGrad bool
	leaf         bool // parameter: Grad is owned by the Var, not the arena
	hasGrad      bool
	donated      bool // Grad's storage was handed on to an input (see pass)
}

// Param wraps t as a trainable leaf: gradients accumulate into its Grad,
// which survives Graph.Reset.
func Param(t *tensor.Tensor) *Var { return &Var{Value: t, requiresGrad: true, leaf: true} }

// Const wraps t as a leaf that receives no gradient.
func Const(t *tensor.Tensor) *Var { return &Var{Value: t} }

// Input wraps t as a leaf whose gradient is wanted (e.g. ∇x log p for
// classifier guidance). Its Grad is owned by the Var like a parameter's.
func Input(t *tensor.Tensor) *Var { return &Var{Value: t, requiresGrad: true, leaf: true} }

// RequiresGrad reports whether gradients flow into v.
func (v *Var) RequiresGrad() bool { return v.requiresGrad }

// HasGrad reports whether v.Grad holds a gradient from the last Backward.
func (v *Var) HasGrad() bool { return v.hasGrad }

// ZeroGrad marks the gradient empty; the next Backward overwrites it.
func (v *Var) ZeroGrad() { v.hasGrad = false }

// SetGrad copies grad (same shape as the value) into v's gradient and
// marks it present, as if a backward pass had produced it.
func (v *Var) SetGrad(grad *tensor.Tensor) {
	if !tensor.SameShape(grad.Shape(), v.Value.Shape()) {
		panic(&tensor.ShapeError{Op: "SetGrad", Msg: fmt.Sprintf("gradient %v does not match value %v", grad.Shape(), v.Value.Shape())})
	}
	if v.Grad == nil {
		v.Grad = tensor.Empty(v.Value.Backend(), v.Value.Shape()...)
	}
	v.Value.Backend().Copy(v.Grad, grad)
	v.hasGrad = true
}

// Shape is the value's shape.
func (v *Var) Shape() []int { return v.Value.Shape() }

type node struct {
	out  *Var
	back func()
}

// Graph records ops for one forward/backward pass.
type Graph struct {
	arena  *tensor.Arena
	be     tensor.Backend
	noGrad bool
	nodes  []node
}

// New returns a graph that records ops (gradients on) on backend be.
func New(be tensor.Backend) *Graph {
	return &Graph{arena: tensor.NewArena(be), be: be}
}

// NoGrad returns a graph that records nothing: for sampling and evaluation.
func NoGrad(be tensor.Backend) *Graph {
	g := New(be)
	g.noGrad = true
	return g
}

// Backend is the graph's backend.
func (g *Graph) Backend() tensor.Backend { return g.be }

// Arena is the graph's arena; tensors from it are valid until Reset.
func (g *Graph) Arena() *tensor.Arena { return g.arena }

// Grad reports whether the graph records ops.
func (g *Graph) Grad() bool { return !g.noGrad }

// Reset forgets recorded ops and recycles every intermediate tensor. Vars
// made by ops of this graph (and their values) must not be used afterwards.
func (g *Graph) Reset() {
	for i := range g.nodes {
		g.nodes[i] = node{}
	}
	g.nodes = g.nodes[:0]
	g.arena.Reset()
}

// Bytes is the tensor memory the graph's arena holds.
func (g *Graph) Bytes() int64 { return g.arena.Bytes() }

// newVar makes an op's output, recording back if any input needs a gradient.
func (g *Graph) newVar(val *tensor.Tensor, back func(out *Var), inputs ...*Var) *Var {
	out := &Var{Value: val}
	if g.noGrad {
		return out
	}
	for _, in := range inputs {
		if in != nil && in.requiresGrad {
			out.requiresGrad = true
			break
		}
	}
	if out.requiresGrad {
		g.nodes = append(g.nodes, node{out: out, back: func() { back(out) }})
	}
	return out
}

// need reports whether v wants a gradient.
func need(v *Var) bool { return v != nil && v.requiresGrad }

// accum adds the gradient that fn writes into v's gradient: fn receives a
// destination to overwrite. The first contribution is written in place;
// later ones go through a scratch tensor and are added.
func (g *Graph) accum(v *Var, fn func(dst *tensor.Tensor)) {
	if !need(v) {
		return
	}
	if !v.hasGrad {
		if v.Grad == nil {
			if v.leaf {
				v.Grad = tensor.Empty(g.be, v.Value.Shape()...)
			} else {
				v.Grad = g.arena.Get(v.Value.Shape()...)
			}
		}
		fn(v.Grad)
		v.hasGrad = true
		return
	}
	tmp := g.arena.Get(v.Value.Shape()...)
	fn(tmp)
	g.be.Axpby(v.Grad, 1, tmp, 1)
	g.arena.Release(tmp)
}

// gradDst returns where an op should write v's gradient contribution, and a
// commit to call after writing: the gradient itself when v has none yet,
// else a scratch tensor that commit adds in and recycles. dst is nil when v
// needs no gradient.
func (g *Graph) gradDst(v *Var) (dst *tensor.Tensor, commit func()) {
	if !need(v) {
		return nil, func() {}
	}
	if !v.hasGrad {
		if v.Grad == nil {
			if v.leaf {
				v.Grad = tensor.Empty(g.be, v.Value.Shape()...)
			} else {
				v.Grad = g.arena.Get(v.Value.Shape()...)
			}
		}
		v.hasGrad = true
		return v.Grad, func() {}
	}
	tmp := g.arena.Get(v.Value.Shape()...)
	return tmp, func() {
		g.be.Axpby(v.Grad, 1, tmp, 1)
		g.arena.Release(tmp)
	}
}

// pass gives v the gradient grad of op output o unchanged (identity-like
// ops: Add, Reshape). The first eligible input takes over o's gradient
// storage instead of copying it; later ones (and leaves) get a copy.
func (g *Graph) pass(v *Var, o *Var) {
	if !need(v) {
		return
	}
	if !v.hasGrad && !v.leaf && !o.donated {
		v.Grad = o.Grad.Reshape(v.Value.Shape()...)
		v.hasGrad = true
		o.donated = true
		return
	}
	g.accum(v, func(d *tensor.Tensor) { g.be.Copy(d, o.Grad) })
}

// Backward computes gradients of the scalar loss with respect to every Var
// that requires one, replaying recorded ops in reverse. Gradients of
// intermediates are recycled as soon as they have been propagated; those of
// leaves (parameters, inputs) accumulate until ZeroGrad.
func (g *Graph) Backward(loss *Var) error {
	if g.noGrad {
		return errors.New("autograd: Backward on a no-grad graph: build the forward pass with autograd.New to record it")
	}
	if loss.Value.Numel() != 1 {
		return fmt.Errorf("autograd: Backward needs a scalar loss, got shape %v: reduce it with Mean or Sum first", loss.Value.Shape())
	}
	if !loss.requiresGrad {
		return errors.New("autograd: loss does not depend on any parameter or input that requires a gradient")
	}
	g.accum(loss, func(dst *tensor.Tensor) { g.be.Fill(dst, 1) })
	for i := len(g.nodes) - 1; i >= 0; i-- {
		n := g.nodes[i]
		if n.out.hasGrad {
			n.back()
			if !n.out.leaf {
				if !n.out.donated {
					g.arena.Release(n.out.Grad)
				}
				n.out.Grad, n.out.hasGrad = nil, false
			}
		}
	}
	return nil
}

// Catch runs fn and returns the *tensor.ShapeError it panicked with, if any,
// as an error. Other panics propagate.
func Catch(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if se, ok := r.(*tensor.ShapeError); ok {
				err = se
				return
			}
			panic(r)
		}
	}()
	fn()
	return nil
}

func bad(op, format string, args ...any) {
	panic(&tensor.ShapeError{Op: op, Msg: fmt.Sprintf(format, args...)})
}
