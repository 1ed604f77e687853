package eval

import (
	"fmt"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/tensor"
)

// LabelAccuracy is the fraction of samples whose predicted class (e.g.
// Report.Predicted) equals the label requested for it: the accuracy of a
// class-conditional or guided sampler at producing the digit it was asked
// for. predicted and labels must have the same nonzero length.
func LabelAccuracy(predicted, labels []int) (float64, error) {
	if len(predicted) == 0 || len(predicted) != len(labels) {
		return 0, fmt.Errorf("label accuracy: %d predictions for %d requested labels: need one label per sample", len(predicted), len(labels))
	}
	ok := 0
	for i, p := range predicted {
		if p == labels[i] {
			ok++
		}
	}
	return float64(ok) / float64(len(predicted)), nil
}

// Shift writes x [B, C, H, W] translated by a random offset in [-s, s]²
// pixels per sample into dst (same shape), filling uncovered pixels with
// -1 (the MNIST background): the augmentation of TrainClassifier.
func Shift(dst, x *tensor.Tensor, s int, rng *rand.Rand) { shift(dst, x, s, rng) }
