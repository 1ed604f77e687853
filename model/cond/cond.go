// Package cond holds the conditioning a denoiser can take besides x_t and
// t: class labels, text tokens and ControlNet residuals. It is its own tiny
// package so that networks (model/unet, ...) and the model registry can
// both use it without importing each other; package model re-exports it as
// model.Cond.
package cond

import (
	"fmt"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/tensor"
)

// Null is the label value meaning "no label" (the unconditional branch of
// classifier-free guidance).
const Null = -1

// Cond is the conditioning of one batch of B images. Every field is
// optional; a nil *Cond means unconditional.
type Cond struct {
	// Labels holds a class per image (len B), or Null for "no label".
	Labels []int
	// Tokens holds a token-id sequence per image (len B) for text
	// conditioning; an empty sequence is the null prompt.
	Tokens [][]int
	// Residuals are ControlNet outputs added to the base network's
	// features (their number and shapes are defined by the network).
	Residuals []*autograd.Var
}

// ClassIDs returns the embedding rows for a batch of b images of a network
// with classes labels: Labels[i], or classes (the null row) for Null, a nil
// Cond or nil Labels. It panics with a *tensor.ShapeError naming the bad
// label when one is outside [0, classes) — networks run under
// autograd.Catch, which turns that into an error.
func (c *Cond) ClassIDs(b, classes int) []int {
	ids := make([]int, b)
	for i := range ids {
		ids[i] = classes
		if c == nil || c.Labels == nil {
			continue
		}
		if len(c.Labels) != b {
			panic(&tensor.ShapeError{Op: "cond", Msg: fmt.Sprintf("%d labels for a batch of %d images", len(c.Labels), b)})
		}
		switch y := c.Labels[i]; {
		case y == Null:
		case y < 0 || y >= classes:
			panic(&tensor.ShapeError{Op: "cond", Msg: fmt.Sprintf("label %d is outside [0, %d): this model knows %d classes", y, classes, classes)})
		default:
			ids[i] = y
		}
	}
	return ids
}

// Slice returns the conditioning of images [start, start+n) of a run whose
// fields each hold one entry per image (Residuals are not sliced: they are
// per batch and must be nil here).
func (c *Cond) Slice(start, n int) *Cond {
	if c == nil {
		return nil
	}
	out := &Cond{}
	if c.Labels != nil {
		out.Labels = c.Labels[start : start+n]
	}
	if c.Tokens != nil {
		out.Tokens = c.Tokens[start : start+n]
	}
	return out
}

// Concat returns the conditioning of the batch a then b (labels and tokens
// appended; residuals must be nil). A nil side stands for null conditioning
// of na or nb images.
func Concat(a *Cond, na int, b *Cond, nb int) *Cond {
	out := &Cond{}
	lab := func(c *Cond, n int) []int {
		if c != nil && c.Labels != nil {
			return c.Labels
		}
		l := make([]int, n)
		for i := range l {
			l[i] = Null
		}
		return l
	}
	tok := func(c *Cond, n int) [][]int {
		if c != nil && c.Tokens != nil {
			return c.Tokens
		}
		return make([][]int, n)
	}
	if (a != nil && a.Labels != nil) || (b != nil && b.Labels != nil) {
		out.Labels = append(append([]int{}, lab(a, na)...), lab(b, nb)...)
	}
	if (a != nil && a.Tokens != nil) || (b != nil && b.Tokens != nil) {
		out.Tokens = append(append([][]int{}, tok(a, na)...), tok(b, nb)...)
	}
	return out
}
