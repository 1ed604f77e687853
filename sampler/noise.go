package sampler

import (
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/tensor"
)

// SeededNoise returns a reproducible Noise source: standard normal float32
// values from a math/rand/v2 PCG generator seeded with seed, drawn in
// row-major order, ignoring σ and σ_next. Two sources with the same seed
// return the same sequence of tensors; a source is stateful and must not
// be shared by concurrent samplers.
func SeededNoise(seed uint64) Noise {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	return func(_, _ float64, shape []int) *tensor.Tensor {
		t := tensor.New(shape...)
		data := t.Data()
		for i := range data {
			data[i] = float32(rng.NormFloat64())
		}
		return t
	}
}
