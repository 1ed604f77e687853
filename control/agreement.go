package control

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/tensor"
)

// Agreement scores how well control maps a match control maps b (both
// [N, 1, H, W] in [-1, 1], as Spec.Apply makes them; map i against map
// i): for each pair it returns the IoU of the binarized maps (value ≥ 0;
// two empty maps count as IoU 1) and the Pearson correlation of the values
// over the pixels (0 when either map is constant). For soft edge maps
// (2m−1) the binarization is m ≥ 0.5, half a full-contrast step edge, and
// the correlation is that of the edge magnitudes m. IoU is in [0, 1],
// the correlation in [-1, 1]; 1 is perfect agreement.
func Agreement(a, b *tensor.Tensor) (iou, corr []float64, err error) {
	if !tensor.SameShape(a.Shape(), b.Shape()) {
		return nil, nil, fmt.Errorf("control agreement: shapes %v and %v differ", a.Shape(), b.Shape())
	}
	if err := check(a, b); err != nil {
		return nil, nil, fmt.Errorf("control agreement: %w", err)
	}
	n := a.Dim(0)
	per := a.Numel() / n
	for i := 0; i < n; i++ {
		x, y := a.Data()[i*per:(i+1)*per], b.Data()[i*per:(i+1)*per]
		iou = append(iou, IoU(x, y, 0))
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
