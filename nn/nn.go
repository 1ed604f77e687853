// Package nn holds the layers diffusion networks are built from —
// Conv2d, Linear, GroupNorm, LayerNorm, Embedding, multi-head self- and
// cross-attention, the sinusoidal timestep embedding — and state dicts:
// named parameters saved to and loaded from safetensors files.
//
// Layers own their parameters as autograd Vars and run on an
// *autograd.Graph; initialization follows PyTorch's defaults so a model
// built here and one built in PyTorch start from the same distribution.
package nn

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/tensor"
)

// Module is anything with named parameters. Visit calls fn for each
// parameter with its full dotted name (prefix + local name), in a fixed
// order.
type Module interface {
	Visit(prefix string, fn func(name string, p *autograd.Var))
}

// Named is one parameter with its state-dict name.
type Named struct {
	Name string
	Var  *autograd.Var
}

// Parameters lists m's parameters in Visit order.
func Parameters(m Module) []Named {
	var out []Named
	m.Visit("", func(name string, p *autograd.Var) { out = append(out, Named{name, p}) })
	return out
}

// CountParams is the total number of scalar parameters of m.
func CountParams(m Module) int {
	n := 0
	for _, p := range Parameters(m) {
		n += p.Var.Value.Numel()
	}
	return n
}

// Join makes a dotted parameter name.
func Join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func uniform(rng *rand.Rand, bound float64, shape ...int) *tensor.Tensor {
	t := tensor.New(shape...)
	d := t.Data()
	for i := range d {
		d[i] = float32((rng.Float64()*2 - 1) * bound)
	}
	return t
}

func fill(v float32, shape ...int) *tensor.Tensor {
	t := tensor.New(shape...)
	tensor.CPU.Fill(t, v)
	return t
}

// Linear is y = x·Wᵀ + b with W [Out, In] and b [Out].
type Linear struct {
	W, B *autograd.Var
}

// NewLinear initializes like torch.nn.Linear: W, b ~ U(±1/sqrt(in)).
func NewLinear(rng *rand.Rand, in, out int) *Linear {
	k := 1 / math.Sqrt(float64(in))
	return &Linear{W: autograd.Param(uniform(rng, k, out, in)), B: autograd.Param(uniform(rng, k, out))}
}

// Visit names the parameters "weight" and "bias".
func (l *Linear) Visit(prefix string, fn func(string, *autograd.Var)) {
	fn(Join(prefix, "weight"), l.W)
	fn(Join(prefix, "bias"), l.B)
}

// Forward maps x [B, In] to [B, Out].
func (l *Linear) Forward(g *autograd.Graph, x *autograd.Var) *autograd.Var {
	return g.Linear(x, l.W, l.B)
}

// Conv2d is a 2-D convolution with weight [Out, In, K, K] and bias [Out].
type Conv2d struct {
	W, B        *autograd.Var
	Stride, Pad int
}

// NewConv2d initializes like torch.nn.Conv2d: W, b ~ U(±1/sqrt(in·k·k)).
func NewConv2d(rng *rand.Rand, in, out, k, stride, pad int) *Conv2d {
	b := 1 / math.Sqrt(float64(in*k*k))
	return &Conv2d{W: autograd.Param(uniform(rng, b, out, in, k, k)), B: autograd.Param(uniform(rng, b, out)), Stride: stride, Pad: pad}
}

// Visit names the parameters "weight" and "bias".
func (c *Conv2d) Visit(prefix string, fn func(string, *autograd.Var)) {
	fn(Join(prefix, "weight"), c.W)
	fn(Join(prefix, "bias"), c.B)
}

// Forward maps x [N, In, H, W] to [N, Out, OH, OW].
func (c *Conv2d) Forward(g *autograd.Graph, x *autograd.Var) *autograd.Var {
	return g.Conv2d(x, c.W, c.B, c.Stride, c.Pad)
}

// GroupNorm normalizes [N, C, ...] over Groups channel groups, with
// per-channel affine weight (ones) and bias (zeros).
type GroupNorm struct {
	Weight, Bias *autograd.Var
	Groups       int
	Eps          float32
}

// NewGroupNorm is torch.nn.GroupNorm(groups, c, eps=1e-5).
func NewGroupNorm(groups, c int) *GroupNorm {
	return &GroupNorm{Weight: autograd.Param(fill(1, c)), Bias: autograd.Param(fill(0, c)), Groups: groups, Eps: 1e-5}
}

// Visit names the parameters "weight" and "bias".
func (n *GroupNorm) Visit(prefix string, fn func(string, *autograd.Var)) {
	fn(Join(prefix, "weight"), n.Weight)
	fn(Join(prefix, "bias"), n.Bias)
}

// Forward normalizes x; with silu the SiLU is fused into the same pass.
func (n *GroupNorm) Forward(g *autograd.Graph, x *autograd.Var, silu bool) *autograd.Var {
	return g.GroupNorm(x, n.Weight, n.Bias, n.Groups, n.Eps, silu)
}

// LayerNorm normalizes the last dim with affine weight and bias.
type LayerNorm struct {
	Weight, Bias *autograd.Var
	Eps          float32
}

// NewLayerNorm is torch.nn.LayerNorm(d, eps=1e-5).
func NewLayerNorm(d int) *LayerNorm {
	return &LayerNorm{Weight: autograd.Param(fill(1, d)), Bias: autograd.Param(fill(0, d)), Eps: 1e-5}
}

// Visit names the parameters "weight" and "bias".
func (n *LayerNorm) Visit(prefix string, fn func(string, *autograd.Var)) {
	fn(Join(prefix, "weight"), n.Weight)
	fn(Join(prefix, "bias"), n.Bias)
}

// Forward normalizes x [..., D].
func (n *LayerNorm) Forward(g *autograd.Graph, x *autograd.Var) *autograd.Var {
	return g.LayerNorm(x, n.Weight, n.Bias, n.Eps)
}

// Embedding is a lookup table [V, D] initialized N(0, 1) like PyTorch.
type Embedding struct {
	W *autograd.Var
}

// NewEmbedding returns a table of v rows of width d.
func NewEmbedding(rng *rand.Rand, v, d int) *Embedding {
	t := tensor.New(v, d)
	for i, x := range t.Data() {
		_ = x
		t.Data()[i] = float32(rng.NormFloat64())
	}
	return &Embedding{W: autograd.Param(t)}
}

// Visit names the parameter "weight".
func (e *Embedding) Visit(prefix string, fn func(string, *autograd.Var)) {
	fn(Join(prefix, "weight"), e.W)
}

// Forward returns the rows for ids: [len(ids), D].
func (e *Embedding) Forward(g *autograd.Graph, ids []int) *autograd.Var {
	return g.Embedding(e.W, ids)
}

// Timestep is the sinusoidal embedding of timesteps t (see
// autograd.Graph.Timestep): [len(t), dim].
func Timestep(g *autograd.Graph, t []float32, dim int) *autograd.Var {
	return g.Timestep(t, dim)
}

// checkName is used by state-dict loading to name the offending entry.
func checkName(name string, want, got []int) error {
	if !tensor.SameShape(want, got) {
		return fmt.Errorf("parameter %q: file has shape %v, model expects %v", name, got, want)
	}
	return nil
}
