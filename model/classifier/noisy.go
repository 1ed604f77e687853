package classifier

import (
	"fmt"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// TimeDim is the width of NoisyNet's sinusoidal timestep embedding and
// EmbDim the width of the embedding MLP's output.
const (
	TimeDim = 64
	EmbDim  = 128
)

// DefaultNoisyWidths are the channel widths of NoisyNet's four conv layers
// used for the embedded noisy classifier.
var DefaultNoisyWidths = [4]int{16, 32, 64, 64}

// NoisyNet is a time-conditioned classifier p(y | x_t, t) for classifier
// guidance (Dhariwal & Nichol 2021): Net's conv stack with the diffusion
// timestep injected into every layer. The timestep t (a DDPM training
// timestep, possibly fractional) goes through the sinusoidal embedding
// (TimeDim) → Linear(TimeDim→EmbDim) → SiLU; each conv layer ℓ adds a
// per-channel bias Linear_ℓ(EmbDim→Widths[ℓ]) of that embedding to its
// output before its GroupNorm and SiLU — the place DDPM's residual blocks
// add their time embedding. Injecting t into every layer (rather than once
// after the conv stack) lets the time modulate the non-linear features:
// a per-channel bias added after the last layer would reach the logits
// only as a per-class offset, which does not change ∇x log p at all.
//
// Layers: conv(C→w0) → conv(w0→w1, stride 2) → conv(w1→w2, stride 2) →
// conv(w2→w3), each 3×3 with GroupNorm(8) and SiLU → global average pool
// (features [B, w3]) → Linear(w3→classes). Widths must be multiples of 8.
type NoisyNet struct {
	C       [4]*nn.Conv2d
	N       [4]*nn.GroupNorm
	T       [4]*nn.Linear // per-layer projections of the time embedding
	Emb     *nn.Linear    // TimeDim → EmbDim
	Head    *nn.Linear
	Widths  [4]int
	Classes int
}

// NewNoisy builds a time-conditioned classifier for inChannels-channel
// images with the given layer widths (multiples of 8) and class count.
func NewNoisy(rng *rand.Rand, inChannels int, widths [4]int, classes int) (*NoisyNet, error) {
	if inChannels < 1 || classes < 2 {
		return nil, fmt.Errorf("noisy classifier: need ≥ 1 input channel and ≥ 2 classes (got %d, %d)", inChannels, classes)
	}
	for _, w := range widths {
		if w < 8 || w%8 != 0 {
			return nil, fmt.Errorf("noisy classifier: widths %v: each must be a positive multiple of 8 (GroupNorm uses 8 groups)", widths)
		}
	}
	n := &NoisyNet{Widths: widths, Classes: classes, Emb: nn.NewLinear(rng, TimeDim, EmbDim)}
	in := inChannels
	for i, w := range widths {
		stride := 1
		if i == 1 || i == 2 {
			stride = 2
		}
		n.C[i] = nn.NewConv2d(rng, in, w, 3, stride, 1)
		n.N[i] = nn.NewGroupNorm(8, w)
		n.T[i] = nn.NewLinear(rng, EmbDim, w)
		in = w
	}
	n.Head = nn.NewLinear(rng, widths[3], classes)
	return n, nil
}

// Visit names parameters c1..c4, n1..n4, t1..t4 (time projections), emb
// and head.
func (n *NoisyNet) Visit(prefix string, fn func(string, *autograd.Var)) {
	for i := range n.C {
		n.C[i].Visit(nn.Join(prefix, fmt.Sprintf("c%d", i+1)), fn)
	}
	for i := range n.N {
		n.N[i].Visit(nn.Join(prefix, fmt.Sprintf("n%d", i+1)), fn)
	}
	for i := range n.T {
		n.T[i].Visit(nn.Join(prefix, fmt.Sprintf("t%d", i+1)), fn)
	}
	n.Emb.Visit(nn.Join(prefix, "emb"), fn)
	n.Head.Visit(nn.Join(prefix, "head"), fn)
}

// Forward returns logits [B, classes] and features [B, Widths[3]] for x_t
// [B, C, H, W] (data in [-1, 1] noised by the forward process) at DDPM
// timesteps t (len B, in [0, T), fractional allowed).
func (n *NoisyNet) Forward(g *autograd.Graph, x *autograd.Var, t []float32) (logits, features *autograd.Var) {
	if b := x.Value.Dim(0); len(t) != b {
		panic(&tensor.ShapeError{Op: "NoisyNet.Forward", Msg: fmt.Sprintf("%d timesteps for a batch of %d", len(t), b)})
	}
	emb := g.SiLU(n.Emb.Forward(g, g.Timestep(t, TimeDim)))
	h := x
	for i := range n.C {
		h = n.C[i].Forward(g, h)
		h = g.AddChannels(h, n.T[i].Forward(g, emb))
		h = n.N[i].Forward(g, h, true)
	}
	features = g.SpatialMean(h)
	return n.Head.Forward(g, features), features
}

// Frozen returns a view of n whose parameters are constants sharing n's
// weights: on a gradient-recording graph only gradients with respect to
// the input are computed (what guidance needs), and n's parameter
// gradients are left untouched.
func (n *NoisyNet) Frozen() *NoisyNet {
	c := func(v *autograd.Var) *autograd.Var { return autograd.Const(v.Value) }
	lin := func(l *nn.Linear) *nn.Linear { return &nn.Linear{W: c(l.W), B: c(l.B)} }
	f := &NoisyNet{Emb: lin(n.Emb), Head: lin(n.Head), Widths: n.Widths, Classes: n.Classes}
	for i := range n.C {
		f.C[i] = &nn.Conv2d{W: c(n.C[i].W), B: c(n.C[i].B), Stride: n.C[i].Stride, Pad: n.C[i].Pad}
		f.N[i] = &nn.GroupNorm{Weight: c(n.N[i].Weight), Bias: c(n.N[i].Bias), Groups: n.N[i].Groups, Eps: n.N[i].Eps}
		f.T[i] = lin(n.T[i])
	}
	return f
}
