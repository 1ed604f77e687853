// Package controlnet adds spatial control to a trained UNet-S (ControlNet,
// Zhang, Rao & Agrawala 2023): a trainable copy of the base network's
// encoder reads x_t plus features of a control image (an edge map, a
// silhouette, see package control) and adds its features, through
// zero-initialized 1×1 convolutions, to the skips and middle features the
// frozen base's decoder reads.
//
//	hint     = ZeroConv3×3(SiLU(Conv3×3 16→32(SiLU(Conv3×3 1→16(control)))))
//	s1,s2,m  = Copy.Encode(x_t, SiLU(temb), hint)      // hint added to the stem output
//	residual = ZeroConv1×1(s1), ZeroConv1×1(s2), ZeroConv1×1(m)
//	ε̂       = Base with its s1, s2, mid increased by the residuals
//
// The zero convolutions make a fresh ControlNet an exact no-op (the
// controlled network equals the base bit for bit), so training starts
// from the base's behaviour and the copy's pretrained features are not
// disturbed by random noise at the start. Controlled wraps base, ControlNet
// and the controls of a run as a model.Network, so every scheduler and
// sampler runs it unchanged.
package controlnet

import (
	"fmt"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/model/cond"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// Image geometry of UNet-S, which ControlNet controls.
const (
	Size     = 28 // control images are [B, 1, Size, Size]
	HintMid  = 16 // channels after the hint encoder's first convolution
	StemOut  = 32 // channels of the stem output (and of s1)
	Channels = 64 // channels of s2 and the middle features
)

// ControlNet is the trainable part: the encoder copy, the hint encoder and
// the zero convolutions. Its parameter names are copy.<UNet-S name> (t1,
// t2, stem, res1, down1, res2, down2, mid1, attn, mid2), hint.0, hint.1,
// hint.out, zero.s1, zero.s2 and zero.mid.
type ControlNet struct {
	// Copy holds the encoder half of a UNet-S (the decoder fields are nil
	// and never used).
	Copy *unet.UNetS
	// Hint0 (1→16), Hint1 (16→32) are 3×3 convolutions followed by SiLU;
	// HintOut (32→32, 3×3) is zero-initialized and feeds the copy's stem
	// output.
	Hint0, Hint1, HintOut *nn.Conv2d
	// ZeroS1 (32→32), ZeroS2 (64→64), ZeroMid (64→64) are zero-initialized
	// 1×1 convolutions producing the residuals.
	ZeroS1, ZeroS2, ZeroMid *nn.Conv2d
}

// encoder lists the encoder modules of u with their UNet-S names.
func encoder(u *unet.UNetS) []struct {
	name string
	m    nn.Module
} {
	return []struct {
		name string
		m    nn.Module
	}{
		{"t1", u.T1}, {"t2", u.T2}, {"stem", u.Stem}, {"res1", u.Res1}, {"down1", u.Down1},
		{"res2", u.Res2}, {"down2", u.Down2}, {"mid1", u.Mid1}, {"attn", u.Attn}, {"mid2", u.Mid2},
	}
}

func zeroConv(in, out, k, pad int) *nn.Conv2d {
	return &nn.Conv2d{W: autograd.Param(tensor.New(out, in, k, k)), B: autograd.Param(tensor.New(out)), Stride: 1, Pad: pad}
}

// New builds a ControlNet for base: the encoder copy starts as an exact
// copy of base's encoder weights, the hint encoder's first two
// convolutions are drawn from rng (PyTorch's default initialization) and
// the zero convolutions are zero. base must be an unconditional UNet-S.
func New(base *unet.UNetS, rng *rand.Rand) (*ControlNet, error) {
	if base == nil {
		return nil, fmt.Errorf("controlnet: no base network")
	}
	if base.Classes() > 0 {
		return nil, fmt.Errorf("controlnet: the base is class-conditional (%d classes); ControlNet here controls unconditional UNet-S models (train one with 'diffuse train', or use the embedded one)", base.Classes())
	}
	cp := unet.NewUNetS(rand.New(rand.NewPCG(0, 0)))
	cp.Up2Conv, cp.URes2, cp.Up1Conv, cp.URes1, cp.OutNorm, cp.OutConv = nil, nil, nil, nil, nil, nil
	src, dst := encoder(base), encoder(cp)
	for i := range src {
		sp, dp := nn.Parameters(src[i].m), nn.Parameters(dst[i].m)
		if len(sp) != len(dp) {
			return nil, fmt.Errorf("controlnet: base module %s has %d parameters, the copy %d", src[i].name, len(sp), len(dp))
		}
		for j := range sp {
			sv, dv := sp[j].Var.Value, dp[j].Var.Value
			if !tensor.SameShape(sv.Shape(), dv.Shape()) {
				return nil, fmt.Errorf("controlnet: base parameter %s.%s has shape %v, the copy %v", src[i].name, sp[j].Name, sv.Shape(), dv.Shape())
			}
			dv.Backend().CopyFromHost(dv, sv.ToHost())
		}
	}
	return &ControlNet{
		Copy:    cp,
		Hint0:   nn.NewConv2d(rng, 1, HintMid, 3, 1, 1),
		Hint1:   nn.NewConv2d(rng, HintMid, StemOut, 3, 1, 1),
		HintOut: zeroConv(StemOut, StemOut, 3, 1),
		ZeroS1:  zeroConv(StemOut, StemOut, 1, 0),
		ZeroS2:  zeroConv(Channels, Channels, 1, 0),
		ZeroMid: zeroConv(Channels, Channels, 1, 0),
	}, nil
}

// Visit names the parameters (see ControlNet).
func (c *ControlNet) Visit(prefix string, fn func(string, *autograd.Var)) {
	for _, e := range encoder(c.Copy) {
		e.m.Visit(nn.Join(prefix, "copy."+e.name), fn)
	}
	c.Hint0.Visit(nn.Join(prefix, "hint.0"), fn)
	c.Hint1.Visit(nn.Join(prefix, "hint.1"), fn)
	c.HintOut.Visit(nn.Join(prefix, "hint.out"), fn)
	c.ZeroS1.Visit(nn.Join(prefix, "zero.s1"), fn)
	c.ZeroS2.Visit(nn.Join(prefix, "zero.s2"), fn)
	c.ZeroMid.Visit(nn.Join(prefix, "zero.mid"), fn)
}

// Forward returns the residuals for x_t [B, 1, 28, 28] at timesteps t (len
// B) under control [B, 1, 28, 28] (values in [-1, 1]): three tensors
// shaped like UNet-S's s1 [B, 32, 28, 28], s2 [B, 64, 14, 14] and middle
// features [B, 64, 7, 7], to pass as cond.Cond.Residuals. It panics with a
// *tensor.ShapeError on shapes that do not fit (autograd.Catch turns that
// into an error).
func (c *ControlNet) Forward(g *autograd.Graph, x *autograd.Var, t []float32, control *autograd.Var) []*autograd.Var {
	xs, cs := x.Shape(), control.Shape()
	if len(cs) != 4 || len(xs) != 4 || cs[0] != xs[0] || cs[1] != 1 || cs[2] != xs[2] || cs[3] != xs[3] {
		panic(&tensor.ShapeError{Op: "controlnet", Msg: fmt.Sprintf("control %v does not fit x_t %v: want one 1-channel control image of x_t's size per image", cs, xs)})
	}
	st := c.Copy.Embed(g, t, nil)
	h := g.SiLU(c.Hint0.Forward(g, control))
	h = g.SiLU(c.Hint1.Forward(g, h))
	s1, s2, mid := c.Copy.Encode(g, x, st, c.HintOut.Forward(g, h))
	return []*autograd.Var{c.ZeroS1.Forward(g, s1), c.ZeroS2.Forward(g, s2), c.ZeroMid.Forward(g, mid)}
}

// Freeze turns every parameter of m into a constant: later graphs record no
// gradient for it and optimizers built afterwards must not be given it.
// It freezes the base of ControlNet training, so backward passes compute
// only the input gradients the ControlNet needs.
func Freeze(m nn.Module) {
	m.Visit("", func(_ string, p *autograd.Var) { *p = *autograd.Const(p.Value) })
}

// Controlled is a model.Network and model.Batched: the frozen Base steered
// by Net with the control images of a whole run. Image i of the run gets
// Control[i] (or Control[0] for all, when Control holds one image); the
// pipelines call SetBatch before each batch. Scale multiplies the
// residuals (1: as trained; 0: the base alone; between: weaker control).
type Controlled struct {
	Base    *unet.UNetS
	Net     *ControlNet
	Control *tensor.Tensor // [N or 1, 1, 28, 28], values in [-1, 1]
	Scale   float32
	start   int
}

// NewControlled checks that control is [N, 1, 28, 28] with N = n (the
// images of the run) or 1 (one control for all) and wraps base and net.
func NewControlled(base *unet.UNetS, net *ControlNet, control *tensor.Tensor, n int, scale float32) (*Controlled, error) {
	if base == nil || net == nil || control == nil {
		return nil, fmt.Errorf("controlnet: need a base network, a ControlNet and control images")
	}
	s := control.Shape()
	if len(s) != 4 || s[1] != 1 || s[2] != Size || s[3] != Size {
		return nil, fmt.Errorf("controlnet: control images are %v; want [N, 1, %d, %d] (grayscale, the model's size)", s, Size, Size)
	}
	if s[0] != 1 && s[0] != n {
		return nil, fmt.Errorf("controlnet: %d control images for %d samples: give one for all, or one per sample", s[0], n)
	}
	return &Controlled{Base: base, Net: net, Control: control, Scale: scale}, nil
}

// Visit names the base's parameters base.* and the ControlNet's
// controlnet.*.
func (c *Controlled) Visit(prefix string, fn func(string, *autograd.Var)) {
	c.Base.Visit(nn.Join(prefix, "base"), fn)
	c.Net.Visit(nn.Join(prefix, "controlnet"), fn)
}

// SetBatch says the next Forward calls denoise images [start, start+n) of
// the run.
func (c *Controlled) SetBatch(start, n int) { c.start = start }

// Forward predicts the base's output (ε for an ε-model) for x_t [B, 1, 28,
// 28] at timesteps t with the controls of images [start, start+B) of the
// run.
func (c *Controlled) Forward(g *autograd.Graph, x *autograd.Var, t []float32) *autograd.Var {
	b := x.Shape()[0]
	ctrl := c.batch(g, b)
	res := c.Net.Forward(g, x, t, autograd.Const(ctrl))
	if c.Scale != 1 {
		for i := range res {
			res[i] = g.Scale(res[i], c.Scale)
		}
	}
	return c.Base.ForwardCond(g, x, t, &cond.Cond{Residuals: res})
}

// batch returns the controls of images [start, start+b).
func (c *Controlled) batch(g *autograd.Graph, b int) *tensor.Tensor {
	n := c.Control.Dim(0)
	per := Size * Size
	if n == 1 {
		out := g.Arena().Get(b, 1, Size, Size)
		d, src := out.Data(), c.Control.Data()
		for i := 0; i < b; i++ {
			copy(d[i*per:(i+1)*per], src)
		}
		return out
	}
	if c.start < 0 || c.start+b > n {
		panic(&tensor.ShapeError{Op: "controlnet", Msg: fmt.Sprintf("images [%d, %d) of a run with %d controls: call SetBatch before each batch", c.start, c.start+b, n)})
	}
	return tensor.FromSlice(c.Control.Data()[c.start*per:(c.start+b)*per], b, 1, Size, Size)
}
