package schedule

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/tensor"
)

// PredictionType names what a denoiser outputs (diffusers' prediction_type).
type PredictionType string

// The three parameterizations of the model output.
const (
	// Epsilon: the model predicts the noise ε.
	Epsilon PredictionType = "epsilon"
	// Sample: the model predicts the clean sample x0.
	Sample PredictionType = "sample"
	// VPrediction: the model predicts v = √ᾱ ε − √(1−ᾱ) x0 (Salimans & Ho 2022).
	VPrediction PredictionType = "v_prediction"
)

// Validate reports an error unless p is one of Epsilon, Sample, VPrediction.
func (p PredictionType) Validate() error {
	switch p {
	case Epsilon, Sample, VPrediction:
		return nil
	}
	return fmt.Errorf("schedule: unknown prediction type %q (valid: %s, %s, %s)", string(p), Epsilon, Sample, VPrediction)
}

// batchCheck checks that every tensor in ts (nil entries skipped) has the
// shape of the first, with a leading batch dim B matching t (len B, or len 1
// for one timestep shared by the whole batch), and that every timestep is in
// range. It returns B and the number of elements per sample.
func (s *Schedule) batchCheck(op string, t []int, ts ...*tensor.Tensor) (B, per int, err error) {
	var ref *tensor.Tensor
	for _, x := range ts {
		if x == nil {
			continue
		}
		if ref == nil {
			ref = x
			continue
		}
		if !tensor.SameShape(ref.Shape(), x.Shape()) {
			return 0, 0, fmt.Errorf("schedule: %s: shapes %v and %v differ", op, ref.Shape(), x.Shape())
		}
	}
	if ref == nil || ref.Rank() < 1 {
		return 0, 0, fmt.Errorf("schedule: %s: tensors need a leading batch dim", op)
	}
	B = ref.Dim(0)
	if len(t) != B && len(t) != 1 {
		return 0, 0, fmt.Errorf("schedule: %s: %d timesteps for a batch of %d (want %d or 1)", op, len(t), B, B)
	}
	for _, ti := range t {
		if ti < 0 || ti >= s.T() {
			return 0, 0, fmt.Errorf("schedule: %s: timestep %d outside [0, %d)", op, ti, s.T())
		}
	}
	if B == 0 {
		return 0, 0, nil
	}
	return B, ref.Numel() / B, nil
}

// hostRead returns the values of x on the host: its own slice for a CPU
// tensor, a copy otherwise. nil for a nil tensor.
func hostRead(x *tensor.Tensor) []float32 {
	if x == nil {
		return nil
	}
	if x.Storage().Host != nil || x.Numel() == 0 {
		return x.Data()
	}
	return x.ToHost()
}

// hostWrite returns a host slice to fill for dst and a function that makes
// the values land in dst (a no-op for CPU tensors, written in place).
func hostWrite(dst *tensor.Tensor) ([]float32, func()) {
	if dst == nil {
		return nil, func() {}
	}
	if dst.Storage().Host != nil || dst.Numel() == 0 {
		return dst.Data(), func() {}
	}
	buf := make([]float32, dst.Numel())
	return buf, func() { dst.Backend().CopyFromHost(dst, buf) }
}

func (s *Schedule) coeffs(t []int, b int) (sa, sb float64) {
	ti := t[0]
	if len(t) > 1 {
		ti = t[b]
	}
	a := s.AlphasCumprod[ti]
	return math.Sqrt(a), math.Sqrt(1 - a)
}

// AddNoise samples the forward process in closed form:
// dst = √ᾱ_t x0 + √(1−ᾱ_t) eps, per sample. x0, eps and dst have the same
// shape [B, ...] (dst may alias either); t holds one timestep per sample, or
// a single one for the whole batch.
func (s *Schedule) AddNoise(dst, x0, eps *tensor.Tensor, t []int) error {
	B, per, err := s.batchCheck("AddNoise", t, dst, x0, eps)
	if err != nil {
		return err
	}
	xs, es := hostRead(x0), hostRead(eps)
	out, flush := hostWrite(dst)
	for b := 0; b < B; b++ {
		sa, sb := s.coeffs(t, b)
		for i := b * per; i < (b+1)*per; i++ {
			out[i] = float32(sa*float64(xs[i]) + sb*float64(es[i]))
		}
	}
	flush()
	return nil
}

// Target writes into dst the regression target of a model of the given
// prediction type trained on x_t = AddNoise(x0, eps, t): eps for Epsilon, x0
// for Sample, and v = √ᾱ_t eps − √(1−ᾱ_t) x0 for VPrediction. All tensors
// are [B, ...]; xt is not needed by these three kinds and may be nil.
func (s *Schedule) Target(kind PredictionType, dst, x0, eps, xt *tensor.Tensor, t []int) error {
	if err := kind.Validate(); err != nil {
		return err
	}
	B, per, err := s.batchCheck("Target", t, dst, x0, eps, xt)
	if err != nil {
		return err
	}
	xs, es := hostRead(x0), hostRead(eps)
	out, flush := hostWrite(dst)
	for b := 0; b < B; b++ {
		sa, sb := s.coeffs(t, b)
		for i := b * per; i < (b+1)*per; i++ {
			switch kind {
			case Epsilon:
				out[i] = es[i]
			case Sample:
				out[i] = xs[i]
			case VPrediction:
				out[i] = float32(sa*float64(es[i]) - sb*float64(xs[i]))
			}
		}
	}
	flush()
	return nil
}

// Split converts a model output of the given prediction type at x_t into the
// implied clean-sample estimate x̂0 and noise estimate ε̂ (so that
// x_t = √ᾱ x̂0 + √(1−ᾱ) ε̂), written into x0hat and epshat (either may be nil
// to skip it; either may alias out or xt). All tensors are [B, ...].
//
//	Epsilon:     ε̂ = out,                 x̂0 = (x_t − √(1−ᾱ) ε̂)/√ᾱ
//	Sample:      x̂0 = out,                ε̂ = (x_t − √ᾱ x̂0)/√(1−ᾱ)
//	VPrediction: x̂0 = √ᾱ x_t − √(1−ᾱ) v,  ε̂ = √ᾱ v + √(1−ᾱ) x_t
//
// Where ᾱ_t = 0 (zero terminal SNR) x̂0 of an ε-prediction is not finite:
// such schedules need v-prediction.
func (s *Schedule) Split(kind PredictionType, out, xt *tensor.Tensor, t []int, x0hat, epshat *tensor.Tensor) error {
	if err := kind.Validate(); err != nil {
		return err
	}
	B, per, err := s.batchCheck("Split", t, out, xt, x0hat, epshat)
	if err != nil {
		return err
	}
	if xt == nil || out == nil {
		return fmt.Errorf("schedule: Split: out and xt are required")
	}
	os, xs := hostRead(out), hostRead(xt)
	// Each element is read before it is written, so outputs may alias inputs.
	x0s, flush0 := hostWrite(x0hat)
	e0s, flush1 := hostWrite(epshat)
	for b := 0; b < B; b++ {
		sa, sb := s.coeffs(t, b)
		for i := b * per; i < (b+1)*per; i++ {
			o, x := float64(os[i]), float64(xs[i])
			var x0, e float64
			switch kind {
			case Epsilon:
				e = o
				x0 = (x - sb*e) / sa
			case Sample:
				x0 = o
				e = (x - sa*x0) / sb
			case VPrediction:
				x0 = sa*x - sb*o
				e = sa*o + sb*x
			}
			if x0s != nil {
				x0s[i] = float32(x0)
			}
			if e0s != nil {
				e0s[i] = float32(e)
			}
		}
	}
	flush0()
	flush1()
	return nil
}

// MinSNRWeight returns the Min-SNR-γ loss weight of timestep t (Hang et al.
// 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy") for a
// loss taken on the given prediction type's target:
//
//	Epsilon:     min(SNR, γ)/SNR
//	Sample:      min(SNR, γ)
//	VPrediction: min(SNR, γ)/(SNR + 1)
//
// At SNR = 0 (zero terminal SNR) the ε weight is its limit 1. γ = 5 is the
// paper's choice. It panics on an unknown kind or a t outside [0, T).
func (s *Schedule) MinSNRWeight(kind PredictionType, t int, gamma float64) float64 {
	snr := s.SNR(t)
	m := math.Min(snr, gamma)
	switch kind {
	case Epsilon:
		if snr == 0 {
			return 1
		}
		return m / snr
	case Sample:
		return m
	case VPrediction:
		return m / (snr + 1)
	}
	panic(kind.Validate())
}
