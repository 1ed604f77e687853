package guidance

import (
	"fmt"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/model/cond"
	"github.com/diffuse-go/diffuse/tensor"
)

// CFG is classifier-free guidance (Ho & Salimans 2022) as a model.Network,
// so every scheduler and sampler runs it unchanged:
//
//	out = out_neg + w·(out_cond − out_neg)
//
// where out_cond is the network's prediction under Cond and out_neg under
// Neg (nil: the null label / empty prompt, i.e. the unconditional
// prediction; a negative label or prompt steers away from it). w = 1 is
// plain conditional sampling, w = 0 unconditional, w > 1 sharpens. The two
// passes of a batch of B images run as one forward of 2B images. The
// combination is linear in the network output, so it is the same for ε-,
// x0- and v-prediction networks.
//
// Cond, Neg and Scales hold one entry per image of the whole run (Labels
// and Tokens of length N, Scales of length N or 1); the pipelines call
// SetBatch so each batch picks its images' entries.
type CFG struct {
	Net    model.Conditional
	Cond   *model.Cond
	Neg    *model.Cond
	Scales []float64
	start  int
	total  int
}

// NewCFG checks that cond and neg have n entries and scales has n or 1.
func NewCFG(net model.Conditional, c, neg *model.Cond, scales []float64, n int) (*CFG, error) {
	check := func(what string, cc *model.Cond) error {
		if cc == nil {
			return nil
		}
		if cc.Labels != nil && len(cc.Labels) != n {
			return fmt.Errorf("cfg: %s has %d labels for %d images", what, len(cc.Labels), n)
		}
		if cc.Tokens != nil && len(cc.Tokens) != n {
			return fmt.Errorf("cfg: %s has %d prompts for %d images", what, len(cc.Tokens), n)
		}
		if cc.Residuals != nil {
			return fmt.Errorf("cfg: %s: ControlNet residuals are per batch, not per run", what)
		}
		return nil
	}
	if err := check("the condition", c); err != nil {
		return nil, err
	}
	if err := check("the negative condition", neg); err != nil {
		return nil, err
	}
	if len(scales) != 1 && len(scales) != n {
		return nil, fmt.Errorf("cfg: %d guidance scales for %d images: give one, or one per image", len(scales), n)
	}
	return &CFG{Net: net, Cond: c, Neg: neg, Scales: scales, total: n}, nil
}

// Visit exposes the wrapped network's parameters.
func (c *CFG) Visit(prefix string, fn func(string, *autograd.Var)) { c.Net.Visit(prefix, fn) }

// Guided reports whether any guidance scale differs from 1 (model.Guided):
// at 1 everywhere CFG is the conditional model itself.
func (c *CFG) Guided() bool {
	for _, w := range c.Scales {
		if w != 1 {
			return true
		}
	}
	return false
}

// SetBatch selects images [start, start+n) of the run.
func (c *CFG) SetBatch(start, n int) { c.start = start }

func (c *CFG) scale(i int) float64 {
	if len(c.Scales) == 1 {
		return c.Scales[0]
	}
	return c.Scales[c.start+i]
}

// Forward returns the guided prediction for x [B, C, H, W] at timesteps t.
// It must run in a no-grad graph (sampling).
func (c *CFG) Forward(g *autograd.Graph, x *autograd.Var, t []float32) *autograd.Var {
	b := x.Shape()[0]
	if c.start+b > c.total {
		panic(&tensor.ShapeError{Op: "cfg", Msg: fmt.Sprintf("images [%d, %d) of a run of %d: call SetBatch before each batch", c.start, c.start+b, c.total)})
	}
	cc := c.Cond.Slice(c.start, b)
	allOne, allZero := true, true
	for i := range b {
		allOne = allOne && c.scale(i) == 1
		allZero = allZero && c.scale(i) == 0
	}
	switch {
	case allOne:
		return c.Net.ForwardCond(g, x, t, cc)
	case allZero:
		return c.Net.ForwardCond(g, x, t, c.Neg.Slice(c.start, b))
	}
	x2 := g.Concat(0, x, x)
	t2 := append(append(make([]float32, 0, 2*b), t...), t...)
	out := c.Net.ForwardCond(g, x2, t2, cond.Concat(cc, b, c.Neg.Slice(c.start, b), b)).Value
	od := out.ToHost()
	per := len(od) / (2 * b)
	res := tensor.New(x.Shape()...)
	rd := res.Data()
	for i := range b {
		w := float32(c.scale(i))
		oc, on := od[i*per:(i+1)*per], od[(b+i)*per:(b+i+1)*per]
		r := rd[i*per : (i+1)*per]
		for j := range r {
			r[j] = on[j] + w*(oc[j]-on[j])
		}
	}
	return autograd.Const(res)
}
