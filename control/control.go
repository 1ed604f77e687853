// Package control computes the control images a ControlNet is conditioned
// on (package model/controlnet): Sobel edge maps and coarse silhouettes of
// 1-channel images. Inputs and outputs are [B, 1, H, W] tensors in the
// project's image range [-1, 1] (−1 black, 1 white), so a control image is
// itself an image: it is saved and loaded as a PNG like any other.
package control

import (
	"fmt"
	"math"
	"strings"

	"github.com/diffuse-go/diffuse/tensor"
)

// Control kinds (Spec.Kind).
const (
	KindEdges      = "edges"
	KindSilhouette = "silhouette"
)

// Kinds lists the control kinds with a one-line description each.
func Kinds() []string {
	return []string{
		KindEdges + ": Sobel edge magnitude (white edges on black)",
		KindSilhouette + ": coarse silhouette (ink on a 7×7 grid, thresholded, blown up to the image size)",
	}
}

// Defaults of Spec.Threshold per kind (used when the threshold is 0 for a
// silhouette; edges at threshold 0 are soft magnitudes).
const (
	// DefaultSilhouetteThreshold is the mean ink (intensity in [0, 1]) a
	// 7×7 cell needs to count as inside the silhouette: a 4×4 cell of a
	// 28×28 MNIST digit with a fifth of its area covered by a stroke.
	DefaultSilhouetteThreshold = 0.2
	// EdgeScale is the Sobel magnitude of a full-contrast step edge on
	// intensities in [0, 1] (the kernel's weights 1, 2, 1 sum to 4): edge
	// magnitudes are divided by it, so such an edge maps to 1.
	EdgeScale = 4
	// SilhouetteCells is the side of the silhouette's coarse grid.
	SilhouetteCells = 7
)

// Spec selects a control kind and its threshold.
//
// Edges: intensity p = (x+1)/2 in [0, 1]; m = min(|Sobel ∇p| / EdgeScale,
// 1) with pixels outside the image taken as black (p = 0, MNIST's
// background); with Threshold = 0 the control is the soft magnitude
// 2m−1, with Threshold τ > 0 it is binary: 1 where m ≥ τ, −1 elsewhere.
//
// Silhouette: the image is cut into a SilhouetteCells×SilhouetteCells grid;
// a cell is on (1) when its mean intensity p is ≥ Threshold (0 means
// DefaultSilhouetteThreshold) and off (−1) otherwise; every pixel takes its
// cell's value (nearest-neighbour upsampling).
type Spec struct {
	Kind      string  `json:"kind"`
	Threshold float64 `json:"threshold,omitempty"`
}

// Validate reports an unknown kind or a threshold outside [0, 1].
func (s Spec) Validate() error {
	if s.Kind != KindEdges && s.Kind != KindSilhouette {
		return fmt.Errorf("unknown control kind %q: use %s or %s", s.Kind, KindEdges, KindSilhouette)
	}
	if !(s.Threshold >= 0 && s.Threshold <= 1) {
		return fmt.Errorf("control threshold must be in [0, 1] (got %g)", s.Threshold)
	}
	return nil
}

// String describes the spec, e.g. "edges" or "edges (threshold 0.3)".
func (s Spec) String() string {
	if s.Threshold == 0 {
		return s.Kind
	}
	return fmt.Sprintf("%s (threshold %g)", s.Kind, s.Threshold)
}

// Apply writes the control of images x [B, 1, H, W] (values in [-1, 1])
// into dst (same shape, values in [-1, 1]). It returns an error for a bad
// spec, a shape that is not [B, 1, H, W] or dst of another shape.
func (s Spec) Apply(dst, x *tensor.Tensor) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if err := check(dst, x); err != nil {
		return fmt.Errorf("control %s: %w", s.Kind, err)
	}
	if s.Kind == KindEdges {
		Edges(dst, x, s.Threshold)
		return nil
	}
	t := s.Threshold
	if t == 0 {
		t = DefaultSilhouetteThreshold
	}
	Silhouette(dst, x, t)
	return nil
}

// Compute returns the control of images x [B, 1, H, W] as a new tensor.
func (s Spec) Compute(x *tensor.Tensor) (*tensor.Tensor, error) {
	dst := tensor.New(x.Shape()...)
	if err := s.Apply(dst, x); err != nil {
		return nil, err
	}
	return dst, nil
}

func check(dst, x *tensor.Tensor) error {
	sh := x.Shape()
	if len(sh) != 4 || sh[1] != 1 || sh[2] < 3 || sh[3] < 3 {
		return fmt.Errorf("images must be [B, 1, H, W] with H, W ≥ 3 (got %v); convert color images to grayscale first", sh)
	}
	if !tensor.SameShape(dst.Shape(), sh) {
		return fmt.Errorf("destination has shape %v, images %v", dst.Shape(), sh)
	}
	return nil
}

// Magnitude writes m = min(|Sobel ∇p| / EdgeScale, 1) in [0, 1] for the
// intensities p = (x+1)/2 of images x [B, 1, H, W] into dst (same shape),
// with pixels outside the image taken as black (p = 0). It panics if the
// shapes differ or are not [B, 1, H, W] (Spec.Apply checks them).
func Magnitude(dst, x *tensor.Tensor) {
	if err := check(dst, x); err != nil {
		panic(&tensor.ShapeError{Op: "control.Magnitude", Msg: err.Error()})
	}
	sh := x.Shape()
	b, h, w := sh[0], sh[2], sh[3]
	xd, dd := x.Data(), dst.Data()
	for i := 0; i < b; i++ {
		img := xd[i*h*w : (i+1)*h*w]
		out := dd[i*h*w : (i+1)*h*w]
		p := func(y, x int) float64 {
			if y < 0 || y >= h || x < 0 || x >= w {
				return 0
			}
			return (float64(img[y*w+x]) + 1) / 2
		}
		for y := 0; y < h; y++ {
			for xx := 0; xx < w; xx++ {
				gx := (p(y-1, xx+1) + 2*p(y, xx+1) + p(y+1, xx+1)) - (p(y-1, xx-1) + 2*p(y, xx-1) + p(y+1, xx-1))
				gy := (p(y+1, xx-1) + 2*p(y+1, xx) + p(y+1, xx+1)) - (p(y-1, xx-1) + 2*p(y-1, xx) + p(y-1, xx+1))
				out[y*w+xx] = float32(min(math.Hypot(gx, gy)/EdgeScale, 1))
			}
		}
	}
}

// Edges writes the edge control of images x [B, 1, H, W] into dst (see
// Spec): soft magnitudes 2m−1 for threshold 0, else 1 where m ≥ threshold
// and −1 elsewhere. dst may be x itself only if the caller no longer needs
// x (the magnitude is computed first, then mapped in place).
func Edges(dst, x *tensor.Tensor, threshold float64) {
	if dst == x {
		tmp := tensor.New(x.Shape()...)
		Magnitude(tmp, x)
		copy(dst.Data(), tmp.Data())
	} else {
		Magnitude(dst, x)
	}
	d := dst.Data()
	for i, m := range d {
		switch {
		case threshold == 0:
			d[i] = 2*m - 1
		case float64(m) >= threshold:
			d[i] = 1
		default:
			d[i] = -1
		}
	}
}

// Silhouette writes the silhouette control of images x [B, 1, H, W] into
// dst (see Spec) with the given cell threshold on mean intensity in
// [0, 1]. Cell j of SilhouetteCells along an axis of n pixels covers pixels
// [j·n/7, (j+1)·n/7) (integer division), so any H, W ≥ 7 work.
func Silhouette(dst, x *tensor.Tensor, threshold float64) {
	if err := check(dst, x); err != nil {
		panic(&tensor.ShapeError{Op: "control.Silhouette", Msg: err.Error()})
	}
	sh := x.Shape()
	b, h, w := sh[0], sh[2], sh[3]
	if h < SilhouetteCells || w < SilhouetteCells {
		panic(&tensor.ShapeError{Op: "control.Silhouette", Msg: fmt.Sprintf("images of %d×%d are smaller than the %d×%d grid", h, w, SilhouetteCells, SilhouetteCells)})
	}
	const n = SilhouetteCells
	xd, dd := x.Data(), dst.Data()
	cells := make([]float32, n*n)
	rowCell, colCell := cellOf(h), cellOf(w)
	for i := 0; i < b; i++ {
		img := xd[i*h*w : (i+1)*h*w]
		for cy := 0; cy < n; cy++ {
			for cx := 0; cx < n; cx++ {
				y0, y1, x0, x1 := cy*h/n, (cy+1)*h/n, cx*w/n, (cx+1)*w/n
				s := 0.0
				for y := y0; y < y1; y++ {
					for xx := x0; xx < x1; xx++ {
						s += (float64(img[y*w+xx]) + 1) / 2
					}
				}
				cells[cy*n+cx] = -1
				if s/float64((y1-y0)*(x1-x0)) >= threshold {
					cells[cy*n+cx] = 1
				}
			}
		}
		out := dd[i*h*w : (i+1)*h*w]
		for y := 0; y < h; y++ {
			for xx := 0; xx < w; xx++ {
				out[y*w+xx] = cells[rowCell[y]*n+colCell[xx]]
			}
		}
	}
}

// ParseKind accepts a kind name (case-insensitive) and returns it.
func ParseKind(s string) (string, error) {
	k := strings.ToLower(strings.TrimSpace(s))
	if k != KindEdges && k != KindSilhouette {
		return "", fmt.Errorf("unknown control kind %q: use %s or %s", s, KindEdges, KindSilhouette)
	}
	return k, nil
}

// cellOf maps each of n pixels to its silhouette cell: cell j covers
// [j·n/SilhouetteCells, (j+1)·n/SilhouetteCells).
func cellOf(n int) []int {
	out := make([]int, n)
	for j := 0; j < SilhouetteCells; j++ {
		for p := j * n / SilhouetteCells; p < (j+1)*n/SilhouetteCells; p++ {
			out[p] = j
		}
	}
	return out
}
