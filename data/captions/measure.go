// Package captions describes MNIST digits in words for text-conditional
// training: it measures each image's stroke thickness, size and slant,
// bins them into per-digit terciles, and writes varied captions ("a thin
// slanted seven", "the digit 7, thick strokes", "seven") drawn fresh from a
// seeded generator at every training step.
package captions

import (
	"fmt"
	"math"
	"sort"

	"github.com/diffuse-go/diffuse/tensor"
)

// Measures are an image's raw properties (image values in [-1, 1], -1
// background):
//
//   - Ink is the ink mass Σ (x+1)/2 over all pixels, in pixels of full
//     ink: stroke thickness (for a given digit and size).
//   - Area is the bounding-box area, in pixels, of the pixels > 0 (above
//     mid-grey); Height is that box's height. MNIST digits are scaled so
//     the longer side of their box is 20 px, so Height is 20 for most of
//     them and Area, ≈ 20·width, is the size attribute.
//   - Slant is the shear cov(x, y)/var(y) of the ink distribution (pixel
//     weights (x+1)/2), with x the column (rightwards) and y the row
//     counted upwards: Slant > 0 means the top of the digit lies right of
//     its bottom (right-leaning, like italics), < 0 left-leaning; it is
//     dx/dy, so 0.2 is a lean of atan(0.2) ≈ 11° from vertical.
type Measures struct {
	Ink, Area, Height, Slant float64
}

// Measure computes the Measures of one h×w image stored row-major in img.
func Measure(img []float32, h, w int) Measures {
	var s, mx, my float64
	r0, r1, c0, c1 := h, -1, w, -1
	for r := range h {
		for c := range w {
			x := img[r*w+c]
			v := float64(x+1) / 2
			s += v
			mx += v * float64(c)
			my += v * float64(h-1-r)
			if x > 0 {
				r0, r1, c0, c1 = min(r0, r), max(r1, r), min(c0, c), max(c1, c)
			}
		}
	}
	m := Measures{Ink: s}
	if r1 >= 0 {
		m.Height = float64(r1 - r0 + 1)
		m.Area = m.Height * float64(c1-c0+1)
	}
	if s <= 0 {
		return m
	}
	mx, my = mx/s, my/s
	var cxy, vy float64
	for r := range h {
		for c := range w {
			v := float64(img[r*w+c]+1) / 2
			y := float64(h-1-r) - my
			cxy += v * (float64(c) - mx) * y
			vy += v * y * y
		}
	}
	if vy > 0 {
		m.Slant = cxy / vy
	}
	return m
}

// MeasureAll measures every image of images [N, 1, H, W].
func MeasureAll(images *tensor.Tensor) ([]Measures, error) {
	s := images.Shape()
	if len(s) != 4 || s[1] != 1 {
		return nil, fmt.Errorf("captions: images %v: want [N, 1, H, W] grayscale", s)
	}
	d := images.Data()
	per := s[2] * s[3]
	out := make([]Measures, s[0])
	for i := range out {
		out[i] = Measure(d[i*per:(i+1)*per], s[2], s[3])
	}
	return out, nil
}

// Level is a tercile: 0 low (thin, small, left-slanted), 1 medium
// (upright for slant), 2 high (thick, large, right-slanted).
type Level int

// Levels of an attribute.
const (
	Low Level = iota
	Mid
	High
)

// Cuts are the two tercile boundaries of one attribute: v < Cuts[0] is
// Low, v < Cuts[1] Mid, else High.
type Cuts [2]float64

// Level bins v.
func (c Cuts) Level(v float64) Level {
	switch {
	case v < c[0]:
		return Low
	case v < c[1]:
		return Mid
	}
	return High
}

// Thresholds are the tercile boundaries of each attribute per digit,
// fitted on the training set (Fit). Terciles are per digit because the
// attributes depend on the digit: a "1" has far less ink and a far
// smaller box than a "0" (the MNIST training set's bounding-box area:
// ones p67 = 200 px, all digits p33 = 260 px), so global terciles would
// call nearly every 1 thin and small and make "a large one" unlearnable.
type Thresholds struct {
	Ink   [10]Cuts `json:"ink"`
	Area  [10]Cuts `json:"area"`
	Slant [10]Cuts `json:"slant"`
}

// Fit computes per-digit terciles of ms (labels[i] in 0..9 is ms[i]'s
// digit). Every digit needs at least 3 images.
func Fit(ms []Measures, labels []int) (*Thresholds, error) {
	if len(ms) != len(labels) {
		return nil, fmt.Errorf("captions: %d measures for %d labels", len(ms), len(labels))
	}
	var ink, area, slant [10][]float64
	for i, m := range ms {
		d := labels[i]
		if d < 0 || d > 9 {
			return nil, fmt.Errorf("captions: label %d of image %d is not a digit 0–9", d, i)
		}
		ink[d] = append(ink[d], m.Ink)
		area[d] = append(area[d], m.Area)
		slant[d] = append(slant[d], m.Slant)
	}
	th := &Thresholds{}
	for d := range 10 {
		if len(ink[d]) < 3 {
			return nil, fmt.Errorf("captions: digit %d has %d images; fitting terciles needs at least 3 of each digit", d, len(ink[d]))
		}
		th.Ink[d], th.Area[d], th.Slant[d] = terciles(ink[d]), terciles(area[d]), terciles(slant[d])
	}
	return th, nil
}

// terciles returns the sorted values at ranks ⌊n/3⌋ and ⌊2n/3⌋, so that
// without ties each bin holds a third; with ties (Area is a whole number
// of pixels) a bin holds more or less than a third.
func terciles(v []float64) Cuts {
	s := append([]float64{}, v...)
	sort.Float64s(s)
	q := func(k int) float64 { return s[min(len(s)-1, int(math.Floor(float64(k*len(s))/3)))] }
	return Cuts{q(1), q(2)}
}

// Attributes are a digit and its three binned properties.
type Attributes struct {
	Digit                  int
	Thickness, Size, Slant Level
}

// Classify bins m for an image of digit d.
func (t *Thresholds) Classify(d int, m Measures) Attributes {
	return Attributes{Digit: d, Thickness: t.Ink[d].Level(m.Ink), Size: t.Area[d].Level(m.Area), Slant: t.Slant[d].Level(m.Slant)}
}
