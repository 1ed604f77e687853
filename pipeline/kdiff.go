package pipeline

import (
	"fmt"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/internal/progress"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/sampler"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/train"
)

// KSampler names a k-diffusion-style run: a sampler from package sampler
// (euler, heun, dpmpp_2m, ...) over a σ schedule (karras, exponential,
// polyexponential, vp) of Steps steps.
type KSampler struct {
	Name, Schedule string
	Steps          int
	Eta            float64 // ancestral/SDE noise scale (k-diffusion's default 1)
}

// IsKSampler reports whether name is a k-diffusion sampler name.
func IsKSampler(name string) bool {
	_, err := sampler.ByName(name)
	return err == nil
}

// GenerateK samples N images with a k-diffusion sampler from a network
// trained with cfg (DDPM with any prediction type, through the discrete-time
// denoiser adapter, or NCSN through the VE one; see NewDenoiser). The σ
// range is the network's training range.
func GenerateK(net model.Network, cfg train.Config, ks KSampler, o Options) (*tensor.Tensor, error) {
	if o.N < 1 {
		return nil, fmt.Errorf("sample: need at least one image (got -n %d)", o.N)
	}
	if o.Batch < 1 {
		o.Batch = 64
	}
	fn, err := sampler.ByName(ks.Name)
	if err != nil {
		return nil, err
	}
	d, err := NewDenoiser(net, cfg)
	if err != nil {
		return nil, err
	}
	sf, err := sampler.ByScheduleName(ks.Schedule)
	if err != nil {
		return nil, err
	}
	sigmas, err := sf(ks.Steps, d.SigmaMin(), d.SigmaMax())
	if err != nil {
		return nil, err
	}
	spec := cfg.Model
	per := spec.Channels * spec.Size * spec.Size
	out := tensor.New(o.N, spec.Channels, spec.Size, spec.Size)
	rng := rand.New(rand.NewPCG(o.Seed, 0x5a3b1e))
	opts := sampler.DefaultOptions()
	opts.Eta = ks.Eta
	opts.Noise = sampler.SeededNoise(o.Seed + 1)
	bar := progress.New(o.Progress, o.N, "sample "+ks.Name)
	for b0 := 0; b0 < o.N; b0 += o.Batch {
		b := min(o.Batch, o.N-b0)
		x := tensor.New(b, spec.Channels, spec.Size, spec.Size)
		if bn, ok := net.(model.Batched); ok {
			bn.SetBatch(b0, b)
		}
		for i := range x.Data() {
			x.Data()[i] = float32(rng.NormFloat64() * sigmas[0])
		}
		res, err := fn(d.Denoise, x, sigmas, opts)
		if err != nil {
			return nil, fmt.Errorf("sample %s: %w", ks.Name, err)
		}
		copy(out.Data()[b0*per:(b0+b)*per], res.Data())
		bar.Set(b0 + b)
	}
	bar.Finish()
	return out, nil
}
