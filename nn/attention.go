package nn

import (
	"math"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/autograd"
)

// MultiHeadAttention is multi-head attention over token sequences, used for
// self-attention (context nil) and cross-attention (queries from x, keys and
// values from a context such as text-encoder tokens), as in Stable
// Diffusion's transformer blocks. Q, K, V and Out are Linear layers named
// "to_q", "to_k", "to_v", "to_out" in the state dict.
type MultiHeadAttention struct {
	Q, K, V, Out *Linear
	Heads        int
}

// NewMultiHeadAttention makes attention with model width dim, context width
// ctxDim (use dim for self-attention) and the given number of heads (dim must
// be divisible by heads).
func NewMultiHeadAttention(rng *rand.Rand, dim, ctxDim, heads int) *MultiHeadAttention {
	return &MultiHeadAttention{
		Q: NewLinear(rng, dim, dim), K: NewLinear(rng, ctxDim, dim), V: NewLinear(rng, ctxDim, dim),
		Out: NewLinear(rng, dim, dim), Heads: heads,
	}
}

// Visit names the parameters to_q.*, to_k.*, to_v.*, to_out.*.
func (a *MultiHeadAttention) Visit(prefix string, fn func(string, *autograd.Var)) {
	a.Q.Visit(Join(prefix, "to_q"), fn)
	a.K.Visit(Join(prefix, "to_k"), fn)
	a.V.Visit(Join(prefix, "to_v"), fn)
	a.Out.Visit(Join(prefix, "to_out"), fn)
}

// Forward attends x [B, L, D] to ctx [B, S, Dctx] (ctx nil: to x itself)
// and returns [B, L, D]: per head h, softmax(q_h k_hᵀ / sqrt(D/H)) v_h,
// heads concatenated, then the output projection.
func (a *MultiHeadAttention) Forward(g *autograd.Graph, x, ctx *autograd.Var) *autograd.Var {
	return a.ForwardMasked(g, x, ctx, nil)
}

// ForwardMasked is Forward with bias [B, L, S] added to every head's
// attention logits before the softmax (nil: none). A large negative bias
// (e.g. −1e9) on a key position masks it out, as for padding tokens; every
// query row must keep at least one unmasked key.
func (a *MultiHeadAttention) ForwardMasked(g *autograd.Graph, x, ctx, bias *autograd.Var) *autograd.Var {
	if ctx == nil {
		ctx = x
	}
	xs, cs := x.Shape(), ctx.Shape()
	if len(xs) != 3 || len(cs) != 3 || xs[0] != cs[0] {
		panicShape("MultiHeadAttention", "x %v and context %v: want [B, L, D] and [B, S, Dctx]", xs, cs)
	}
	B, L, D := xs[0], xs[1], xs[2]
	S := cs[1]
	if D%a.Heads != 0 {
		panicShape("MultiHeadAttention", "width %d not divisible by %d heads", D, a.Heads)
	}
	dh := D / a.Heads
	if bias != nil {
		if bs := bias.Shape(); len(bs) != 3 || bs[0] != B || bs[1] != L || bs[2] != S {
			panicShape("MultiHeadAttention", "bias %v: want [B, L, S] = [%d, %d, %d]", bs, B, L, S)
		}
	}
	q := g.Reshape(a.Q.Forward(g, g.Reshape(x, B*L, D)), B, L, D)
	k := g.Reshape(a.K.Forward(g, g.Reshape(ctx, B*S, cs[2])), B, S, D)
	v := g.Reshape(a.V.Forward(g, g.Reshape(ctx, B*S, cs[2])), B, S, D)
	scale := float32(1 / math.Sqrt(float64(dh)))
	heads := make([]*autograd.Var, a.Heads)
	for h := range heads {
		qh := g.Narrow(q, 2, h*dh, dh)
		kh := g.Narrow(k, 2, h*dh, dh)
		vh := g.Narrow(v, 2, h*dh, dh)
		logits := g.MatMul(qh, kh, false, true, scale) // [B, L, S]
		if bias != nil {
			logits = g.Add(logits, bias)
		}
		p := g.Softmax(logits)
		heads[h] = g.MatMul(p, vh, false, false, 1) // [B, L, dh]
	}
	o := heads[0]
	if a.Heads > 1 {
		o = g.Concat(2, heads...)
	}
	return g.Reshape(a.Out.Forward(g, g.Reshape(o, B*L, D)), B, L, D)
}
