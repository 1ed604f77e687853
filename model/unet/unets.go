// Package unet holds diffuse's U-Net denoisers. UNetS is the benchmark
// network of the project (see ../shared/bench/UNET_S.md): 28×28×1 images,
// a 128-wide sinusoidal time embedding, two resolution levels, a 4-head
// attention block at 7×7. Its parameter names equal the PyTorch reference's
// state dict (res1.conv1.weight, attn.qkv.bias, ...), so weights move
// between the two through safetensors.
package unet

import (
	"fmt"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/model/cond"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// TembDim is the width of UNet-S's time embedding.
const TembDim = 128

// ResBlock is h = Conv3x3(SiLU(GN(x))) + Linear(SiLU(temb)) broadcast;
// h = Conv3x3(SiLU(GN(h))); out = h + skip(x), where skip is a 1×1
// convolution when the channel count changes and the identity otherwise.
type ResBlock struct {
	Norm1, Norm2 *nn.GroupNorm
	Conv1, Conv2 *nn.Conv2d
	Temb         *nn.Linear
	Skip         *nn.Conv2d // nil when cin == cout
}

// NewResBlock builds a block from cin to cout channels conditioned on a
// time embedding of width tdim.
func NewResBlock(rng *rand.Rand, cin, cout, tdim int) *ResBlock {
	r := &ResBlock{
		Norm1: nn.NewGroupNorm(8, cin),
		Conv1: nn.NewConv2d(rng, cin, cout, 3, 1, 1),
		Temb:  nn.NewLinear(rng, tdim, cout),
		Norm2: nn.NewGroupNorm(8, cout),
		Conv2: nn.NewConv2d(rng, cout, cout, 3, 1, 1),
	}
	if cin != cout {
		r.Skip = nn.NewConv2d(rng, cin, cout, 1, 1, 0)
	}
	return r
}

// Visit names parameters as the reference: norm1, conv1, temb, norm2,
// conv2, skip.
func (r *ResBlock) Visit(prefix string, fn func(string, *autograd.Var)) {
	r.Norm1.Visit(nn.Join(prefix, "norm1"), fn)
	r.Conv1.Visit(nn.Join(prefix, "conv1"), fn)
	r.Temb.Visit(nn.Join(prefix, "temb"), fn)
	r.Norm2.Visit(nn.Join(prefix, "norm2"), fn)
	r.Conv2.Visit(nn.Join(prefix, "conv2"), fn)
	if r.Skip != nil {
		r.Skip.Visit(nn.Join(prefix, "skip"), fn)
	}
}

// Forward maps x [B, cin, H, W] to [B, cout, H, W]; siluTemb is
// SiLU(temb) [B, tdim], computed once per forward and shared by all blocks.
func (r *ResBlock) Forward(g *autograd.Graph, x, siluTemb *autograd.Var) *autograd.Var {
	h := r.Conv1.Forward(g, r.Norm1.Forward(g, x, true))
	h = g.AddChannels(h, r.Temb.Forward(g, siluTemb))
	h = r.Conv2.Forward(g, r.Norm2.Forward(g, h, true))
	if r.Skip != nil {
		return g.Add(h, r.Skip.Forward(g, x))
	}
	return g.Add(h, x)
}

// Attention is UNet-S's spatial self-attention: h = GN(x); q, k, v from one
// 1×1 convolution (channels [0,C) q, [C,2C) k, [2C,3C) v; head i uses
// channels [i·d, (i+1)·d) of each); softmax(qᵀk/sqrt(d)) over positions;
// out = x + Conv1x1(attention output).
type Attention struct {
	Norm      *nn.GroupNorm
	QKV, Proj *nn.Conv2d
	Heads     int
}

// NewAttention builds attention over c channels with the given heads.
func NewAttention(rng *rand.Rand, c, heads int) *Attention {
	return &Attention{Norm: nn.NewGroupNorm(8, c), QKV: nn.NewConv2d(rng, c, 3*c, 1, 1, 0), Proj: nn.NewConv2d(rng, c, c, 1, 1, 0), Heads: heads}
}

// Visit names parameters norm, qkv, proj.
func (a *Attention) Visit(prefix string, fn func(string, *autograd.Var)) {
	a.Norm.Visit(nn.Join(prefix, "norm"), fn)
	a.QKV.Visit(nn.Join(prefix, "qkv"), fn)
	a.Proj.Visit(nn.Join(prefix, "proj"), fn)
}

// Forward maps x [B, C, H, W] to the same shape.
func (a *Attention) Forward(g *autograd.Graph, x *autograd.Var) *autograd.Var {
	s := x.Shape()
	b, c, n := s[0], s[1], s[2]*s[3]
	d := c / a.Heads
	qkv := g.Reshape(a.QKV.Forward(g, a.Norm.Forward(g, x, false)), b, 3, c*n)
	q := g.Reshape(g.Narrow(qkv, 1, 0, 1), b*a.Heads, d, n)
	k := g.Reshape(g.Narrow(qkv, 1, 1, 1), b*a.Heads, d, n)
	v := g.Reshape(g.Narrow(qkv, 1, 2, 1), b*a.Heads, d, n)
	p := g.Softmax(g.MatMul(q, k, true, false, 1/sqrtf(d))) // [bh, n(i), n(j)]
	o := g.MatMul(v, p, false, true, 1)                     // o[d,i] = Σ_j v[d,j] p[i,j]
	return g.Add(x, a.Proj.Forward(g, g.Reshape(o, s...)))
}

// UNetS is the benchmark U-Net of UNET_S.md.
type UNetS struct {
	T1, T2                 *nn.Linear
	Stem, Down1, Down2     *nn.Conv2d
	Res1, Res2, Mid1, Mid2 *ResBlock
	Attn                   *Attention
	Up2Conv, Up1Conv       *nn.Conv2d
	URes2, URes1           *ResBlock
	OutNorm                *nn.GroupNorm
	OutConv                *nn.Conv2d
	// Class, when non-nil, makes the network class-conditional: row y of
	// this [classes+1, TembDim] table is added to the time embedding for
	// label y, and the last row is the null label (unconditional). It is
	// zero-initialized, so a class-conditional network initialized from an
	// unconditional one starts out computing exactly what that one did.
	Class *nn.Embedding
	// Text, when non-nil, makes the network text-conditional: a text
	// encoder and cross-attention blocks (see NewTextUNetS and TextCond).
	Text *TextCond
}

// ClassScale multiplies the label embedding before it is added to the time
// embedding. Adam moves each table entry by about lr per step whatever the
// gradient's size, and a label row only sees the ~B/10 images of its class
// per batch, so an unscaled zero-initialized table grows slowly: 2000
// fine-tuning steps at lr 5e-4 left rows of norm ≈ 0.5 against a time
// embedding of norm ≈ 5. The factor is a per-parameter learning-rate boost
// that keeps the zero initialization. (That first run's poor CFG result,
// 23% label accuracy at w=3, was mostly DDIM's x̂0 clamping, since fixed:
// see model.Guided.)
const ClassScale = 10

// NewClassUNetS builds UNet-S with a label embedding for classes classes
// plus the null label (see UNetS.Class).
func NewClassUNetS(rng *rand.Rand, classes int) *UNetS {
	u := NewUNetS(rng)
	u.Class = &nn.Embedding{W: autograd.Param(tensor.New(classes+1, TembDim))}
	return u
}

// Classes is the number of class labels the network is conditioned on (0:
// unconditional).
func (u *UNetS) Classes() int {
	if u.Class == nil {
		return 0
	}
	return u.Class.W.Value.Dim(0) - 1
}

// NewUNetS builds UNet-S with PyTorch-default initialization drawn from rng.
func NewUNetS(rng *rand.Rand) *UNetS {
	return &UNetS{
		T1: nn.NewLinear(rng, 32, TembDim), T2: nn.NewLinear(rng, TembDim, TembDim),
		Stem:    nn.NewConv2d(rng, 1, 32, 3, 1, 1),
		Res1:    NewResBlock(rng, 32, 32, TembDim),
		Down1:   nn.NewConv2d(rng, 32, 32, 3, 2, 1),
		Res2:    NewResBlock(rng, 32, 64, TembDim),
		Down2:   nn.NewConv2d(rng, 64, 64, 3, 2, 1),
		Mid1:    NewResBlock(rng, 64, 64, TembDim),
		Attn:    NewAttention(rng, 64, 4),
		Mid2:    NewResBlock(rng, 64, 64, TembDim),
		Up2Conv: nn.NewConv2d(rng, 64, 64, 3, 1, 1),
		URes2:   NewResBlock(rng, 128, 64, TembDim),
		Up1Conv: nn.NewConv2d(rng, 64, 64, 3, 1, 1),
		URes1:   NewResBlock(rng, 96, 32, TembDim),
		OutNorm: nn.NewGroupNorm(8, 32),
		OutConv: nn.NewConv2d(rng, 32, 1, 3, 1, 1),
	}
}

// Visit names parameters exactly as the PyTorch reference's state dict.
func (u *UNetS) Visit(prefix string, fn func(string, *autograd.Var)) {
	j := func(s string) string { return nn.Join(prefix, s) }
	u.T1.Visit(j("t1"), fn)
	u.T2.Visit(j("t2"), fn)
	u.Stem.Visit(j("stem"), fn)
	u.Res1.Visit(j("res1"), fn)
	u.Down1.Visit(j("down1"), fn)
	u.Res2.Visit(j("res2"), fn)
	u.Down2.Visit(j("down2"), fn)
	u.Mid1.Visit(j("mid1"), fn)
	u.Attn.Visit(j("attn"), fn)
	u.Mid2.Visit(j("mid2"), fn)
	u.Up2Conv.Visit(j("up2conv"), fn)
	u.URes2.Visit(j("ures2"), fn)
	u.Up1Conv.Visit(j("up1conv"), fn)
	u.URes1.Visit(j("ures1"), fn)
	u.OutNorm.Visit(j("out_norm"), fn)
	u.OutConv.Visit(j("out_conv"), fn)
	if u.Class != nil {
		u.Class.Visit(j("class_emb"), fn)
	}
	if u.Text != nil {
		u.Text.Visit(prefix, fn)
	}
}

// Forward predicts ε for x [B, 1, 28, 28] at timesteps t (len B, may be
// fractional) and returns [B, 1, 28, 28]. A class-conditional network run
// through Forward is unconditional (every image gets the null label).
func (u *UNetS) Forward(g *autograd.Graph, x *autograd.Var, t []float32) *autograd.Var {
	return u.ForwardCond(g, x, t, nil)
}

// Embed returns SiLU(temb) [B, TembDim], the time embedding (plus the label
// embedding of a class-conditional network, and the pooled prompt
// embedding of a text-conditional one that has it) every ResBlock reads.
func (u *UNetS) Embed(g *autograd.Graph, t []float32, c *cond.Cond) *autograd.Var {
	return u.EmbedText(g, t, c, u.EncodeText(g, c, len(t)))
}

// EmbedText is Embed with the prompts already encoded (tc from EncodeText;
// nil for a network without text conditioning).
func (u *UNetS) EmbedText(g *autograd.Graph, t []float32, c *cond.Cond, tc *TextContext) *autograd.Var {
	temb := u.T2.Forward(g, g.SiLU(u.T1.Forward(g, g.Timestep(t, 32))))
	if u.Class != nil {
		temb = g.Add(temb, g.Scale(u.Class.Forward(g, c.ClassIDs(len(t), u.Classes())), ClassScale))
	}
	if tc != nil && tc.Pooled != nil {
		temb = g.Add(temb, u.Text.Pool.Forward(g, tc.Pooled))
	}
	return g.SiLU(temb)
}

// Encode runs the stem, the down path and the middle block: it returns
// the skips s1 [B, 32, 28, 28], s2 [B, 64, 14, 14] and the middle output
// [B, 64, 7, 7]. hint, when non-nil, is added to the stem output (the
// ControlNet copy feeds its control features in there). It runs no
// cross-attention: a text-conditional network's encoder path is
// EncodeCtx.
func (u *UNetS) Encode(g *autograd.Graph, x, st, hint *autograd.Var) (s1, s2, mid *autograd.Var) {
	return u.EncodeCtx(g, x, st, hint, nil)
}

// EncodeCtx is Encode with the encoded prompts tc (EncodeText; nil: none):
// a text-conditional network's cross-attention runs after res2 (so s2
// includes it) and after the middle attention.
func (u *UNetS) EncodeCtx(g *autograd.Graph, x, st, hint *autograd.Var, tc *TextContext) (s1, s2, mid *autograd.Var) {
	h := u.Stem.Forward(g, x)
	if hint != nil {
		h = g.Add(h, hint)
	}
	s1 = u.Res1.Forward(g, h, st)
	h = u.Down1.Forward(g, s1)
	s2 = u.Res2.Forward(g, h, st)
	if tc != nil {
		s2 = tc.cross(g, u.Text.XRes2, s2)
	}
	h = u.Down2.Forward(g, s2)
	h = u.Attn.Forward(g, u.Mid1.Forward(g, h, st))
	if tc != nil {
		h = tc.cross(g, u.Text.XMid, h)
	}
	mid = u.Mid2.Forward(g, h, st)
	return s1, s2, mid
}

// ForwardCond is Forward with conditioning c (nil: unconditional). c.Labels
// selects classes of a class-conditional network (−1: null label);
// c.Residuals, when set, holds three tensors shaped like s1, s2 and the
// middle output (see Encode) that are added to them before the decoder
// reads them (ControlNet). c.Tokens holds a prompt per image for a
// text-conditional network (empty or nil: the null prompt); other networks
// refuse prompts.
func (u *UNetS) ForwardCond(g *autograd.Graph, x *autograd.Var, t []float32, c *cond.Cond) *autograd.Var {
	tc := u.EncodeText(g, c, x.Shape()[0])
	st := u.EmbedText(g, t, c, tc)
	s1, s2, h := u.EncodeCtx(g, x, st, nil, tc)
	if c != nil && c.Residuals != nil {
		if len(c.Residuals) != 3 {
			panic(&tensor.ShapeError{Op: "unet-s", Msg: fmt.Sprintf("ControlNet residuals: got %d tensors, want 3 (s1, s2, mid)", len(c.Residuals))})
		}
		s1, s2, h = g.Add(s1, c.Residuals[0]), g.Add(s2, c.Residuals[1]), g.Add(h, c.Residuals[2])
	}
	h = u.Up2Conv.Forward(g, g.Upsample(h, 2))
	h = u.URes2.Forward(g, g.Concat(1, h, s2), st)
	if tc != nil {
		h = tc.cross(g, u.Text.XURes2, h)
	}
	h = u.Up1Conv.Forward(g, g.Upsample(h, 2))
	h = u.URes1.Forward(g, g.Concat(1, h, s1), st)
	return u.OutConv.Forward(g, u.OutNorm.Forward(g, h, true))
}
