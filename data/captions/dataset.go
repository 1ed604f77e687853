package captions

import (
	"fmt"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/data"
)

// Dataset is a labeled image data set with each image's attributes, from
// which Caption draws captions: the training data of a text-conditional
// model (train.Captioned).
type Dataset struct {
	*data.Dataset
	Attrs      []Attributes
	Thresholds *Thresholds
}

// NewDataset measures every image of ds (grayscale, labels 0–9) and bins it
// with th; th nil fits the thresholds on ds itself (Fit).
func NewDataset(ds *data.Dataset, th *Thresholds) (*Dataset, error) {
	if ds.Labels == nil {
		return nil, fmt.Errorf("captions: the data set has no labels; captions name the digit, so text-conditional training needs labeled MNIST-like data")
	}
	ms, err := MeasureAll(ds.Images)
	if err != nil {
		return nil, err
	}
	if th == nil {
		if th, err = Fit(ms, ds.Labels); err != nil {
			return nil, err
		}
	}
	out := &Dataset{Dataset: ds, Attrs: make([]Attributes, len(ms)), Thresholds: th}
	for i, m := range ms {
		d := ds.Labels[i]
		if d < 0 || d > 9 {
			return nil, fmt.Errorf("captions: label %d of image %d is not a digit 0–9", d, i)
		}
		out.Attrs[i] = th.Classify(d, m)
	}
	return out, nil
}

// Caption draws a caption of image i with rng (see Caption).
func (d *Dataset) Caption(i int, rng *rand.Rand) string { return Caption(d.Attrs[i], rng) }
