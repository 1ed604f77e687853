package pipeline

import (
	"fmt"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/denoiser"
	"github.com/diffuse-go/diffuse/internal/progress"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/sde"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/train"
)

// Denoiser is a trained network seen in continuous noise levels σ (data
// units, x = x0 + σ·ε): its estimate of x0, its score, and the σ range it
// was trained on. Every k-diffusion sampler and annealed Langevin dynamics
// run on it.
type Denoiser interface {
	// Denoise returns x̂0 for x [B, ...] at levels sigma (len B).
	Denoise(x *tensor.Tensor, sigma []float64) (*tensor.Tensor, error)
	// Score returns ∇x log p_σ(x) for x [B, ...] at levels sigma (len B).
	Score(x *tensor.Tensor, sigma []float64) (*tensor.Tensor, error)
	SigmaMin() float64
	SigmaMax() float64
}

// NewDenoiser adapts a network trained with cfg: denoiser.VE (score
// parameterization s = −net/σ on the config's noise ladder) for NCSN
// models, denoiser.Discrete (the DDPM timesteps of the config's β schedule)
// for DDPM ones.
func NewDenoiser(net model.Network, cfg train.Config) (Denoiser, error) {
	if cfg.IsNCSN() {
		l, err := cfg.NCSNLadder()
		if err != nil {
			return nil, err
		}
		return denoiser.NewVE(net, l)
	}
	sched, err := cfg.NoiseSchedule()
	if err != nil {
		return nil, err
	}
	return denoiser.NewDiscrete(net, sched, schedule.PredictionType(cfg.Prediction))
}

// EpsNetwork returns what the DDPM/DDIM schedulers (NewScheduler, Generate)
// need: a network predicting ε on the timesteps of cfg's β schedule and the
// config to build the scheduler from. DDPM models are returned unchanged;
// an NCSN model's score network is wrapped as denoiser.ScoreEps, with the
// returned config's prediction type epsilon.
func EpsNetwork(net model.Network, cfg train.Config) (model.Network, train.Config, error) {
	if !cfg.IsNCSN() {
		return net, cfg, nil
	}
	l, err := cfg.NCSNLadder()
	if err != nil {
		return nil, cfg, err
	}
	sched, err := cfg.NoiseSchedule()
	if err != nil {
		return nil, cfg, err
	}
	w, err := denoiser.NewScoreEps(net, l, sched)
	if err != nil {
		return nil, cfg, err
	}
	cfg.Prediction = string(schedule.Epsilon)
	return w, cfg, nil
}

// Langevin configures annealed Langevin sampling (sde.AnnealedLangevin) over
// Levels noise levels spaced geometrically from the model's σ_max down to
// its σ_min.
type Langevin struct {
	Levels        int     // noise levels L (≥ 2)
	StepsPerLevel int     // Langevin steps T per level (≥ 1)
	Eps           float64 // ε = α at the last level (0: sde.LangevinStepSize)
	Denoise       bool    // final denoising step x + σ_L²·s(x, σ_L)
}

// GenerateLangevin samples N images [N, C, H, W] from a model trained with
// cfg (NCSN or DDPM, through NewDenoiser's score) by annealed Langevin
// dynamics, starting from x ~ N(0, σ_max²I). Noise comes from o.Seed.
func GenerateLangevin(net model.Network, cfg train.Config, lv Langevin, o Options) (*tensor.Tensor, error) {
	if o.N < 1 {
		return nil, fmt.Errorf("sample: need at least one image (got -n %d)", o.N)
	}
	if o.Batch < 1 {
		o.Batch = 64
	}
	if lv.Levels < 2 {
		return nil, fmt.Errorf("sample langevin: need at least 2 noise levels (got --steps %d)", lv.Levels)
	}
	d, err := NewDenoiser(net, cfg)
	if err != nil {
		return nil, err
	}
	l, err := schedule.NewLadder(d.SigmaMin(), d.SigmaMax(), lv.Levels)
	if err != nil {
		return nil, fmt.Errorf("sample langevin: %w", err)
	}
	al := sde.AnnealedLangevin{Sigmas: l.Sigmas(), StepsPerLevel: lv.StepsPerLevel, Eps: lv.Eps, Denoise: lv.Denoise}
	if err := al.Validate(); err != nil {
		return nil, err
	}
	spec := cfg.Model
	per := spec.Channels * spec.Size * spec.Size
	out := tensor.New(o.N, spec.Channels, spec.Size, spec.Size)
	rng := rand.New(rand.NewPCG(o.Seed, 0x5a3b1e))
	noise := sde.SeededNoise(o.Seed + 1)
	batches := (o.N + o.Batch - 1) / o.Batch
	bar := progress.New(o.Progress, batches*al.Evals(), "sample langevin")
	done := 0
	for b0 := 0; b0 < o.N; b0 += o.Batch {
		b := min(o.Batch, o.N-b0)
		if bn, ok := net.(model.Batched); ok {
			bn.SetBatch(b0, b)
		}
		x := tensor.New(b, spec.Channels, spec.Size, spec.Size)
		for i := range x.Data() {
			x.Data()[i] = float32(rng.NormFloat64() * d.SigmaMax())
		}
		base := done
		al.OnStep = func(k int) { bar.Set(base + k) }
		res, err := al.Sample(d.Score, x, noise)
		if err != nil {
			return nil, fmt.Errorf("sample langevin: %w", err)
		}
		done += al.Evals()
		copy(out.Data()[b0*per:(b0+b)*per], res.Data())
	}
	bar.Finish()
	return out, nil
}
