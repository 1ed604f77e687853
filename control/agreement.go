package control

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/tensor"
)

// DefaultIoUThreshold is the edge magnitude (m in [0, 1], see Magnitude) at
// which Agreement binarizes edge maps for the IoU: half a full-contrast
// step edge.
const DefaultIoUThreshold = 0.5

// Agreement scores how well the edges of images a match those of images b
// (both [N, 1, H, W] in [-1, 1], image i against image i): for each pair
// it returns the IoU of the binarized edge maps (m ≥ threshold; two empty
// maps count as IoU 1) and the Pearson correlation of the edge magnitudes
// m over the pixels (0 when either map is constant). Both are in [-1, 1]
// (IoU in [0, 1]); 1 is perfect agreement.
func Agreement(a, b *tensor.Tensor, threshold float64) (iou, corr []float64, err error) {
	if !tensor.SameShape(a.Shape(), b.Shape()) {
		return nil, nil, fmt.Errorf("edge agreement: shapes %v and %v differ", a.Shape(), b.Shape())
	}
	if !(threshold > 0 && threshold <= 1) {
		return nil, nil, fmt.Errorf("edge agreement: threshold must be in (0, 1] (got %g)", threshold)
	}
	ma, mb := tensor.New(a.Shape()...), tensor.New(b.Shape()...)
	if err := check(ma, a); err != nil {
		return nil, nil, fmt.Errorf("edge agreement: %w", err)
	}
	Magnitude(ma, a)
	Magnitude(mb, b)
	n := a.Dim(0)
	per := a.Numel() / n
	for i := 0; i < n; i++ {
		x, y := ma.Data()[i*per:(i+1)*per], mb.Data()[i*per:(i+1)*per]
		iou = append(iou, IoU(x, y, threshold))
		corr = append(corr, Pearson(x, y))
	}
	return iou, corr, nil
}

// IoU is |A ∩ B| / |A ∪ B| of the sets A = {i : a[i] ≥ threshold} and
// B = {i : b[i] ≥ threshold}; 1 when both are empty.
func IoU(a, b []float32, threshold float64) float64 {
	inter, union := 0, 0
	for i := range a {
		ia, ib := float64(a[i]) >= threshold, float64(b[i]) >= threshold
		if ia && ib {
			inter++
		}
		if ia || ib {
			union++
		}
	}
	if union == 0 {
		return 1
	}
	return float64(inter) / float64(union)
}

// Pearson is the correlation coefficient of a and b (same length); 0 when
// either has zero variance.
func Pearson(a, b []float32) float64 {
	n := float64(len(a))
	var sa, sb float64
	for i := range a {
		sa += float64(a[i])
		sb += float64(b[i])
	}
	ma, mb := sa/n, sb/n
	var cab, caa, cbb float64
	for i := range a {
		da, db := float64(a[i])-ma, float64(b[i])-mb
		cab += da * db
		caa += da * da
		cbb += db * db
	}
	if caa == 0 || cbb == 0 {
		return 0
	}
	return cab / math.Sqrt(caa*cbb)
}

// MeanSE returns the mean of v and its standard error s/√n (s the sample
// standard deviation; 0 for fewer than two values).
func MeanSE(v []float64) (mean, se float64) {
	if len(v) == 0 {
		return 0, 0
	}
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	if len(v) < 2 {
		return mean, 0
	}
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss/float64(len(v)-1)) / math.Sqrt(float64(len(v)))
}
