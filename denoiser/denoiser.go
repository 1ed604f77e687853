// Package denoiser adapts trained networks to the one contract every
// k-diffusion-style sampler uses: D(x, σ) returns x̂0 for x = x0 + σ·ε.
//
// A network trained on DDPM timesteps (ε-, x0- or v-prediction) becomes a
// denoiser by the change of variables σ_t = sqrt((1−ᾱ_t)/ᾱ_t): its input is
// x/sqrt(σ²+1) (the variance-preserving x_t) at the continuous timestep t(σ)
// found by interpolating log σ between the training timesteps, as
// k-diffusion's DiscreteSchedule does. Its score is (x̂0 − x)/σ² = −ε/σ, so
// a DDPM-trained network serves as a score model and vice versa.
package denoiser

import (
	"fmt"
	"math"
	"sort"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// Discrete wraps a network trained on the discrete timesteps of a schedule.
type Discrete struct {
	Net  model.Network
	Pred schedule.PredictionType
	// LogSigmas[t] = log σ_t for the training timesteps, increasing in t.
	LogSigmas []float64
	g         *autograd.Graph
}

// NewDiscrete adapts net, trained with schedule s and prediction type pred.
func NewDiscrete(net model.Network, s *schedule.Schedule, pred schedule.PredictionType) (*Discrete, error) {
	if err := pred.Validate(); err != nil {
		return nil, err
	}
	ls := make([]float64, s.T())
	for t := range ls {
		sig := s.Sigma(t)
		if !(sig > 0) || math.IsInf(sig, 0) {
			return nil, fmt.Errorf("denoiser: σ_%d = %v: a zero-terminal-SNR schedule has no finite σ_max; use the DDPM/DDIM schedulers for it", t, sig)
		}
		ls[t] = math.Log(sig)
	}
	return &Discrete{Net: net, Pred: pred, LogSigmas: ls, g: autograd.NoGrad(tensor.CPU)}, nil
}

// SigmaMin and SigmaMax bound the noise levels the network was trained on.
func (d *Discrete) SigmaMin() float64 { return math.Exp(d.LogSigmas[0]) }

// SigmaMax is σ at the last training timestep.
func (d *Discrete) SigmaMax() float64 { return math.Exp(d.LogSigmas[len(d.LogSigmas)-1]) }

// SigmaToT maps σ to a continuous timestep by linear interpolation of
// log σ between neighbouring training timesteps (clamped to the range).
func (d *Discrete) SigmaToT(sigma float64) float64 {
	ls := math.Log(sigma)
	n := len(d.LogSigmas)
	if ls <= d.LogSigmas[0] {
		return 0
	}
	if ls >= d.LogSigmas[n-1] {
		return float64(n - 1)
	}
	hi := sort.SearchFloat64s(d.LogSigmas, ls)
	lo := hi - 1
	w := (ls - d.LogSigmas[lo]) / (d.LogSigmas[hi] - d.LogSigmas[lo])
	return float64(lo) + w
}

// Denoise returns x̂0 for x [B, ...] at noise levels sigma (len B).
func (d *Discrete) Denoise(x *tensor.Tensor, sigma []float64) (*tensor.Tensor, error) {
	b := x.Dim(0)
	if len(sigma) != b {
		return nil, fmt.Errorf("denoiser: %d sigmas for a batch of %d", len(sigma), b)
	}
	per := x.Numel() / b
	xd := x.Data()
	in := tensor.New(x.Shape()...)
	id := in.Data()
	t := make([]float32, b)
	for i := 0; i < b; i++ {
		c := 1 / math.Sqrt(sigma[i]*sigma[i]+1)
		for j := i * per; j < (i+1)*per; j++ {
			id[j] = float32(float64(xd[j]) * c)
		}
		t[i] = float32(d.SigmaToT(sigma[i]))
	}
	var out *tensor.Tensor
	err := autograd.Catch(func() { out = d.Net.Forward(d.g, autograd.Const(in), t).Value })
	defer d.g.Reset()
	if err != nil {
		return nil, err
	}
	od := out.Data()
	res := tensor.New(x.Shape()...)
	rd := res.Data()
	for i := 0; i < b; i++ {
		s := sigma[i]
		for j := i * per; j < (i+1)*per; j++ {
			xv, ov := float64(xd[j]), float64(od[j])
			switch d.Pred {
			case schedule.Epsilon:
				rd[j] = float32(xv - s*ov)
			case schedule.Sample:
				rd[j] = float32(ov)
			case schedule.VPrediction:
				rd[j] = float32(xv/(s*s+1) - s/math.Sqrt(s*s+1)*ov)
			}
		}
	}
	return res, nil
}

// Score returns ∇x log p_σ(x) = (x̂0 − x)/σ² for x [B, ...] (equal to −ε̂/σ
// for an ε-prediction network).
func (d *Discrete) Score(x *tensor.Tensor, sigma []float64) (*tensor.Tensor, error) {
	x0, err := d.Denoise(x, sigma)
	if err != nil {
		return nil, err
	}
	b := x.Dim(0)
	per := x.Numel() / b
	xd, od := x.Data(), x0.Data()
	for i := 0; i < b; i++ {
		s2 := sigma[i] * sigma[i]
		for j := i * per; j < (i+1)*per; j++ {
			od[j] = float32((float64(od[j]) - float64(xd[j])) / s2)
		}
	}
	return x0, nil
}
