package unet

import (
	"fmt"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/model/cond"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/text"
)

// CrossAttention lets image features read text tokens, as Stable
// Diffusion's transformer blocks do: h = GN(x); queries from a 1×1
// convolution of h (channels [i·d, (i+1)·d) for head i), keys and values
// from Linear projections of the token embeddings ctx [B, L, D];
// softmax(qᵀk/sqrt(d)) over the tokens with padded ones masked; out =
// x + Proj(attention output). Proj is zero-initialized, so a new block is
// the identity until training moves it.
//
// The attention runs in the U-Net's channel-major layout with MatMul's
// transpose flags (no transpose op): per head, logits [B, HW, L] =
// q_hᵀ k_hᵀ and output [B, d, HW] = v_hᵀ pᵀ.
type CrossAttention struct {
	Norm  *nn.GroupNorm
	Q     *nn.Conv2d // 1×1, C → C
	K, V  *nn.Linear // D → C
	Proj  *nn.Conv2d // 1×1, C → C, zero-initialized
	Heads int
}

// NewCrossAttention builds a block over c image channels reading tokens of
// width ctxDim, with heads heads (c divisible by heads).
func NewCrossAttention(rng *rand.Rand, c, ctxDim, heads int) *CrossAttention {
	a := &CrossAttention{
		Norm: nn.NewGroupNorm(8, c), Q: nn.NewConv2d(rng, c, c, 1, 1, 0),
		K: nn.NewLinear(rng, ctxDim, c), V: nn.NewLinear(rng, ctxDim, c),
		Proj:  &nn.Conv2d{W: autograd.Param(tensor.New(c, c, 1, 1)), B: autograd.Param(tensor.New(c)), Stride: 1},
		Heads: heads,
	}
	return a
}

// Visit names parameters norm, to_q, to_k, to_v, proj.
func (a *CrossAttention) Visit(prefix string, fn func(string, *autograd.Var)) {
	a.Norm.Visit(nn.Join(prefix, "norm"), fn)
	a.Q.Visit(nn.Join(prefix, "to_q"), fn)
	a.K.Visit(nn.Join(prefix, "to_k"), fn)
	a.V.Visit(nn.Join(prefix, "to_v"), fn)
	a.Proj.Visit(nn.Join(prefix, "proj"), fn)
}

// Forward maps x [B, C, H, W] to the same shape, attending to ctx
// [B, L, D]; bias [B, H·W, L] (text.Mask.Bias) masks padded tokens, nil
// attends to all.
func (a *CrossAttention) Forward(g *autograd.Graph, x, ctx, bias *autograd.Var) *autograd.Var {
	s, cs := x.Shape(), ctx.Shape()
	b, c, n := s[0], s[1], s[2]*s[3]
	if len(cs) != 3 || cs[0] != b {
		panic(&tensor.ShapeError{Op: "cross-attention", Msg: fmt.Sprintf("tokens %v for images %v: want [%d, L, D]", cs, s, b)})
	}
	l, dctx := cs[1], cs[2]
	d := c / a.Heads
	q := g.Reshape(a.Q.Forward(g, a.Norm.Forward(g, x, false)), b, c, n)
	flat := g.Reshape(ctx, b*l, dctx)
	k := g.Reshape(a.K.Forward(g, flat), b, l, c)
	v := g.Reshape(a.V.Forward(g, flat), b, l, c)
	heads := make([]*autograd.Var, a.Heads)
	for h := range heads {
		qh := g.Narrow(q, 1, h*d, d)                       // [b, d, n]
		kh := g.Narrow(k, 2, h*d, d)                       // [b, l, d]
		vh := g.Narrow(v, 2, h*d, d)                       // [b, l, d]
		logits := g.MatMul(qh, kh, true, true, 1/sqrtf(d)) // [b, n, l]
		if bias != nil {
			logits = g.Add(logits, bias)
		}
		heads[h] = g.MatMul(vh, g.Softmax(logits), true, true, 1) // [b, d, n]
	}
	o := heads[0]
	if a.Heads > 1 {
		o = g.Concat(1, heads...)
	}
	return g.Add(x, a.Proj.Forward(g, g.Reshape(o, s...)))
}

// TextCond is the text conditioning of a UNet-S: the text encoder, the
// cross-attention blocks after res2 (14×14), after the middle attention
// (7×7) and after ures2 (14×14), and, when the config asks for it, the
// projection of the pooled prompt embedding added to the time embedding
// (zero-initialized like the blocks' output projections).
type TextCond struct {
	Config              text.Config
	Tok                 *text.Tokenizer
	Encoder             *text.Encoder
	XRes2, XMid, XURes2 *CrossAttention
	Pool                *nn.Linear // nil unless Config.Pooled
}

// Visit names parameters text_encoder.*, xattn_res2.*, xattn_mid.*,
// xattn_ures2.*, text_pool.*.
func (tc *TextCond) Visit(prefix string, fn func(string, *autograd.Var)) {
	tc.Encoder.Visit(nn.Join(prefix, "text_encoder"), fn)
	tc.XRes2.Visit(nn.Join(prefix, "xattn_res2"), fn)
	tc.XMid.Visit(nn.Join(prefix, "xattn_mid"), fn)
	tc.XURes2.Visit(nn.Join(prefix, "xattn_ures2"), fn)
	if tc.Pool != nil {
		tc.Pool.Visit(nn.Join(prefix, "text_pool"), fn)
	}
}

// NewTextUNetS builds UNet-S (class-conditional when classes > 0) with
// text conditioning tc. The base network's weights are drawn from rng
// first, so NewTextUNetS and NewUNetS with equal seeds agree on every
// shared parameter; the new output projections are zero, so the text
// network starts out computing exactly what the base one does.
func NewTextUNetS(rng *rand.Rand, classes int, tc text.Config) (*UNetS, error) {
	if err := tc.Validate(); err != nil {
		return nil, err
	}
	tok, err := tc.Tokenizer()
	if err != nil {
		return nil, err
	}
	var u *UNetS
	if classes > 0 {
		u = NewClassUNetS(rng, classes)
	} else {
		u = NewUNetS(rng)
	}
	t := &TextCond{Config: tc, Tok: tok, Encoder: text.NewEncoder(rng, tc)}
	t.XRes2 = NewCrossAttention(rng, 64, tc.Width, 4)
	t.XMid = NewCrossAttention(rng, 64, tc.Width, 4)
	t.XURes2 = NewCrossAttention(rng, 64, tc.Width, 4)
	if tc.Pooled {
		t.Pool = &nn.Linear{W: autograd.Param(tensor.New(TembDim, tc.Width)), B: autograd.Param(tensor.New(TembDim))}
	}
	u.Text = t
	return u, nil
}

// Tokenizer returns the tokenizer of a text-conditional network, nil for
// others.
func (u *UNetS) Tokenizer() *text.Tokenizer {
	if u.Text == nil {
		return nil
	}
	return u.Text.Tok
}

// TextContext is a batch's encoded prompts: token embeddings H [B, L, D],
// which positions are padding, and the pooled embedding [B, D] (nil
// unless the network uses it).
type TextContext struct {
	H      *autograd.Var
	Mask   *text.Mask
	Pooled *autograd.Var
	bias   map[int]*autograd.Var // cross-attention masks by query count
}

// EncodeText encodes c.Tokens (nil c or Tokens: every image gets the null
// prompt) for a batch of b images; nil for a network without text
// conditioning (then Tokens must be empty).
func (u *UNetS) EncodeText(g *autograd.Graph, c *cond.Cond, b int) *TextContext {
	if u.Text == nil {
		if c != nil && len(c.Tokens) > 0 {
			panic(&tensor.ShapeError{Op: "unet-s", Msg: "this network has no text encoder; a prompt needs a text-conditional model (train one with 'diffuse train --text')"})
		}
		return nil
	}
	tokens := make([][]int, b)
	if c != nil && c.Tokens != nil {
		if len(c.Tokens) != b {
			panic(&tensor.ShapeError{Op: "unet-s", Msg: fmt.Sprintf("%d prompts for a batch of %d images", len(c.Tokens), b)})
		}
		tokens = c.Tokens
	}
	h, m := u.Text.Encoder.Forward(g, tokens)
	tc := &TextContext{H: h, Mask: m, bias: map[int]*autograd.Var{}}
	if u.Text.Pool != nil {
		tc.Pooled = m.Pool(g, h)
	}
	return tc
}

// cross applies block a to x with tc's tokens (x unchanged when tc is nil).
func (tc *TextContext) cross(g *autograd.Graph, a *CrossAttention, x *autograd.Var) *autograd.Var {
	if tc == nil {
		return x
	}
	s := x.Shape()
	n := s[2] * s[3]
	bias, ok := tc.bias[n]
	if !ok {
		bias = tc.Mask.Bias(g, n)
		tc.bias[n] = bias
	}
	return a.Forward(g, x, tc.H, bias)
}
