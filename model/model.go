// Package model names the denoising networks diffuse can build, so a
// checkpoint records an architecture and its config and is rebuilt from
// them.
package model

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/model/cond"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/text"
)

// Network is a denoiser: given x_t [B, C, H, W] and timesteps t (len B,
// possibly fractional) it returns a tensor of x_t's shape (ε, x0 or v,
// depending on how it was trained).
type Network interface {
	nn.Module
	Forward(g *autograd.Graph, x *autograd.Var, t []float32) *autograd.Var
}

// Guided is a Network whose output is a guided prediction (classifier-free
// or classifier guidance). Its x̂0 may leave the data range on purpose, so
// samplers must not clamp x̂0 while stepping with the guided ε̂: that
// mismatch inverts the guidance. pipeline.Generate suspends the clamping of
// schedulers (scheduler.Clipper) when Guided reports true.
type Guided interface {
	Network
	Guided() bool
}

// Cond is the conditioning of a batch: class labels, text tokens,
// ControlNet residuals (see package cond).
type Cond = cond.Cond

// Conditional is a Network that also takes conditioning. Forward(g, x, t)
// equals ForwardCond(g, x, t, nil): the unconditional prediction.
type Conditional interface {
	Network
	ForwardCond(g *autograd.Graph, x *autograd.Var, t []float32, c *Cond) *autograd.Var
	// Classes is the number of class labels (0: not class-conditional).
	Classes() int
}

// Prompted is a Conditional network that reads text prompts (Cond.Tokens).
// Tokenizer returns the tokenizer its vocabulary was trained with; nil
// means the network takes no prompts (e.g. a UNet-S built without text).
type Prompted interface {
	Conditional
	Tokenizer() *text.Tokenizer
}

// Tokenizer returns net's tokenizer when it reads prompts, else nil.
func Tokenizer(net Network) *text.Tokenizer {
	if p, ok := net.(Prompted); ok {
		return p.Tokenizer()
	}
	return nil
}

// Batched is implemented by networks whose conditioning varies per image
// of a run (class labels, prompts, per-image guidance scales). The pipelines
// call SetBatch(start, n) before denoising images [start, start+n) of the
// run, so the network can pick those images' conditions.
type Batched interface {
	SetBatch(start, n int)
}

// Spec identifies an architecture and the image shape it works on.
type Spec struct {
	Arch     string `json:"arch"`
	Channels int    `json:"channels"`
	Size     int    `json:"size"`
	// Classes > 0 makes the network class-conditional on labels
	// 0..Classes-1 (plus a null label for classifier-free guidance).
	Classes int `json:"classes,omitempty"`
	// Text, when set, makes the network text-conditional: a text encoder
	// of this config (vocabulary included, so the checkpoint alone
	// tokenizes prompts) read through cross-attention.
	Text *text.Config `json:"text,omitempty"`
}

type builder struct {
	build func(rng *rand.Rand, s Spec) (Network, error)
	doc   string
}

var registry = map[string]builder{
	"unet-s": {func(rng *rand.Rand, s Spec) (Network, error) {
		if s.Channels != 1 || s.Size != 28 {
			return nil, fmt.Errorf("unet-s works on 1×28×28 images, not %d×%d×%d", s.Channels, s.Size, s.Size)
		}
		if s.Classes < 0 {
			return nil, fmt.Errorf("unet-s: classes must be ≥ 0 (got %d)", s.Classes)
		}
		if s.Text != nil {
			u, err := unet.NewTextUNetS(rng, s.Classes, *s.Text)
			if err != nil {
				return nil, fmt.Errorf("unet-s: %w", err)
			}
			return u, nil
		}
		if s.Classes > 0 {
			return unet.NewClassUNetS(rng, s.Classes), nil
		}
		return unet.NewUNetS(rng), nil
	}, "the benchmark U-Net for 1×28×28 images (584k parameters; with classes > 0 a label embedding is added to the time embedding; with a text config, a transformer text encoder read through cross-attention at 14×14 and 7×7)"},
}

// Archs lists the known architecture names with a one-line description.
func Archs() []string {
	var out []string
	for k, b := range registry {
		out = append(out, k+": "+b.doc)
	}
	sort.Strings(out)
	return out
}

// Build makes the network of spec s with weights initialized from rng.
func Build(s Spec, rng *rand.Rand) (Network, error) {
	b, ok := registry[s.Arch]
	if !ok {
		var names []string
		for k := range registry {
			names = append(names, k)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("unknown architecture %q; known: %s", s.Arch, strings.Join(names, ", "))
	}
	return b.build(rng, s)
}
