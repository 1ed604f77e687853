// Package pipeline turns a trained network and a scheduler into images:
// draw x_T from a seed, run the scheduler's timesteps with the network in
// no-grad mode, and return x_0, in batches, with progress.
package pipeline

import (
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/internal/progress"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/train"
)

// Options configure Generate.
type Options struct {
	N        int    // number of images
	Batch    int    // images per forward pass (default 64)
	Seed     uint64 // x_T and every stochastic step's noise come from this seed
	Progress io.Writer
}

// Generate samples N images [N, C, H, W] from net with scheduler s (whose
// timesteps must already be set). The same seed, options and build give
// the same images. For a guided net (model.Guided) it suspends s's
// clamping of x̂0 (scheduler.Clipper) for the run: a clamped x̂0 with the
// unclamped guided ε̂ inverts the guidance.
func Generate(net model.Network, spec model.Spec, s scheduler.Scheduler, o Options) (*tensor.Tensor, error) {
	if o.N < 1 {
		return nil, fmt.Errorf("sample: need at least one image (got -n %d)", o.N)
	}
	if o.Batch < 1 {
		o.Batch = 64
	}
	ts := s.Timesteps()
	if len(ts) == 0 {
		return nil, fmt.Errorf("sample: scheduler has no timesteps; call SetTimesteps first")
	}
	if g, ok := net.(model.Guided); ok && g.Guided() {
		if c, ok := s.(scheduler.Clipper); ok && c.Clips() {
			c.SetClip(false)
			defer c.SetClip(true)
		}
	}
	out := tensor.New(o.N, spec.Channels, spec.Size, spec.Size)
	per := spec.Channels * spec.Size * spec.Size
	rng := rand.New(rand.NewPCG(o.Seed, 0x5a3b1e))
	normal := func(shape []int) *tensor.Tensor {
		t := tensor.New(shape...)
		for i := range t.Data() {
			t.Data()[i] = float32(rng.NormFloat64())
		}
		return t
	}
	g := autograd.NoGrad(tensor.CPU)
	bar := progress.New(o.Progress, ((o.N+o.Batch-1)/o.Batch)*len(ts), "sample")
	done := 0
	for b0 := 0; b0 < o.N; b0 += o.Batch {
		b := min(o.Batch, o.N-b0)
		x := normal([]int{b, spec.Channels, spec.Size, spec.Size})
		if bn, ok := net.(model.Batched); ok {
			bn.SetBatch(b0, b)
		}
		tensor.CPU.Scale(x, x, float32(s.InitNoiseSigma()))
		tf := make([]float32, b)
		var real []float64
		if r, ok := s.(scheduler.RealTimesteps); ok {
			real = r.TimestepValues() // σ-space schedulers: give the network the exact t
		}
		for k, t := range ts {
			for i := range tf {
				tf[i] = float32(t)
				if real != nil {
					tf[i] = float32(real[k])
				}
			}
			in := s.ScaleModelInput(x, t)
			var eps *tensor.Tensor
			err := autograd.Catch(func() {
				eps = net.Forward(g, autograd.Const(in), tf).Value
			})
			if err != nil {
				return nil, err
			}
			nx, err := s.Step(eps, t, x, normal)
			g.Reset()
			if err != nil {
				return nil, fmt.Errorf("sample: step at t=%d: %w", t, err)
			}
			x = nx
			done++
			bar.Set(done)
		}
		copy(out.Data()[b0*per:(b0+b)*per], x.Data())
	}
	bar.Finish()
	return out, nil
}

// Sampler names a DDPM/DDIM configuration for the CLI.
type Sampler struct {
	Name     string  // ddpm or ddim
	Steps    int     // inference steps
	Eta      float64 // DDIM η
	Variance string  // DDPM: fixed_small (β̃_t) or fixed_large (β_t)
	Spacing  string  // leading, trailing, linspace
	// NoClip skips the schedulers' clamping of x̂0 to [-1, 1] (the CLI's
	// --clip off). Guided networks (model.Guided) run unclamped without it:
	// Generate suspends the clamping for them.
	NoClip bool
	// ClipEps makes DDIM step with the ε̂ recomputed from the clamped x̂0
	// (diffusers' use_clipped_model_output), so that x̂0 and ε̂ agree on
	// x_t; by default DDIM clamps x̂0 but steps with the model's own ε̂.
	// DDPM steps from x̂0 alone and ignores it.
	ClipEps bool
}

// NewScheduler builds the scheduler of sm for a model trained with cfg.
func NewScheduler(cfg train.Config, sm Sampler) (scheduler.Scheduler, error) {
	pred := schedule.PredictionType(cfg.Prediction)
	spacing := sm.Spacing
	if spacing == "" {
		spacing = scheduler.Leading
	}
	switch sm.Name {
	case "ddim":
		c := scheduler.DefaultDDIMConfig()
		c.NumTrainTimesteps, c.BetaStart, c.BetaEnd, c.BetaSchedule = cfg.Timesteps, cfg.BetaStart, cfg.BetaEnd, cfg.Schedule
		c.RescaleBetasZeroSNR, c.PredictionType, c.TimestepSpacing = cfg.ZeroSNR, pred, spacing
		c.ClipSample, c.ClipSampleRange = !sm.NoClip, 1
		c.SetAlphaToOne = true
		d, err := scheduler.NewDDIM(c)
		if err != nil {
			return nil, err
		}
		if sm.Eta < 0 || sm.Eta > 1 {
			return nil, fmt.Errorf("--eta must be in [0, 1] (got %g)", sm.Eta)
		}
		d.Eta = sm.Eta
		d.UseClippedModelOutput = sm.ClipEps && !sm.NoClip
		if err := d.SetTimesteps(sm.Steps); err != nil {
			return nil, err
		}
		return d, nil
	case "ddpm":
		c := scheduler.DefaultDDPMConfig()
		c.NumTrainTimesteps, c.BetaStart, c.BetaEnd, c.BetaSchedule = cfg.Timesteps, cfg.BetaStart, cfg.BetaEnd, cfg.Schedule
		c.RescaleBetasZeroSNR, c.PredictionType, c.TimestepSpacing = cfg.ZeroSNR, pred, spacing
		c.ClipSample, c.ClipSampleRange = !sm.NoClip, 1
		if sm.Variance != "" {
			c.VarianceType = sm.Variance
		}
		d, err := scheduler.NewDDPM(c)
		if err != nil {
			return nil, err
		}
		if err := d.SetTimesteps(sm.Steps); err != nil {
			return nil, err
		}
		return d, nil
	}
	return nil, fmt.Errorf("unknown sampler %q: use ddim or ddpm", sm.Name)
}
