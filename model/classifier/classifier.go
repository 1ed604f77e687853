// Package classifier holds the small convolutional MNIST classifier diffuse
// uses to evaluate generated digits: its predicted class histogram and
// confidence, and its penultimate features for the classifier-FID (a
// Fréchet distance in this network's feature space, not Inception's: call it
// classifier-FID, never FID).
package classifier

import (
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/nn"
)

// FeatureDim is the width of the penultimate features.
const FeatureDim = 128

// Net is conv(1→32) → conv(32→64, stride 2) → conv(64→128, stride 2) →
// conv(128→128) (each with GroupNorm and SiLU) → global average pool
// (features, 128) → Linear(128→classes).
type Net struct {
	C1, C2, C3, C4 *nn.Conv2d
	N1, N2, N3, N4 *nn.GroupNorm
	Head           *nn.Linear
	Classes        int
}

// New builds a classifier for 1-channel images with the given class count.
func New(rng *rand.Rand, inChannels, classes int) *Net {
	return &Net{
		C1: nn.NewConv2d(rng, inChannels, 32, 3, 1, 1), N1: nn.NewGroupNorm(8, 32),
		C2: nn.NewConv2d(rng, 32, 64, 3, 2, 1), N2: nn.NewGroupNorm(8, 64),
		C3: nn.NewConv2d(rng, 64, 128, 3, 2, 1), N3: nn.NewGroupNorm(8, 128),
		C4: nn.NewConv2d(rng, 128, 128, 3, 1, 1), N4: nn.NewGroupNorm(8, 128),
		Head: nn.NewLinear(rng, FeatureDim, classes), Classes: classes,
	}
}

// Visit names parameters c1..c4, n1..n4, head.
func (n *Net) Visit(prefix string, fn func(string, *autograd.Var)) {
	for i, c := range []*nn.Conv2d{n.C1, n.C2, n.C3, n.C4} {
		c.Visit(nn.Join(prefix, "c"+string(rune('1'+i))), fn)
	}
	for i, g := range []*nn.GroupNorm{n.N1, n.N2, n.N3, n.N4} {
		g.Visit(nn.Join(prefix, "n"+string(rune('1'+i))), fn)
	}
	n.Head.Visit(nn.Join(prefix, "head"), fn)
}

// Forward returns logits [B, classes] and features [B, FeatureDim] for x
// [B, C, H, W] in [-1, 1].
func (n *Net) Forward(g *autograd.Graph, x *autograd.Var) (logits, features *autograd.Var) {
	h := n.N1.Forward(g, n.C1.Forward(g, x), true)
	h = n.N2.Forward(g, n.C2.Forward(g, h), true)
	h = n.N3.Forward(g, n.C3.Forward(g, h), true)
	h = n.N4.Forward(g, n.C4.Forward(g, h), true)
	features = g.SpatialMean(h)
	return n.Head.Forward(g, features), features
}
