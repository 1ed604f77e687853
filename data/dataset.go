// Package data loads image data sets for training: MNIST (from the module
// cache or a folder of idx files) and folders of the user's own PNG and JPEG
// images. Every loader returns a Dataset whose images are a float32
// [N, C, H, W] tensor scaled to [-1, 1], the range diffusion models train on.
package data

import (
	"fmt"

	"github.com/diffuse-go/diffuse/tensor"
)

// Dataset is a set of images held in memory.
type Dataset struct {
	// Images is a CPU tensor of shape [N, C, H, W] with values in [-1, 1]
	// (-1 is black, 1 is white).
	Images *tensor.Tensor
	// Labels holds the class of each image (0–9 for MNIST); nil when the
	// data set is unlabeled.
	Labels []int
	// Names holds the source file name (base name) of each image for data
	// sets loaded from a folder; nil otherwise.
	Names []string
}

// Len is the number of images N.
func (d *Dataset) Len() int { return d.Images.Dim(0) }

// Shape returns the shape [C, H, W] of one image.
func (d *Dataset) Shape() []int {
	s := d.Images.Shape()
	return []int{s[1], s[2], s[3]}
}

// Batch copies the images at the indices idx (each in [0, Len())) into dst,
// a CPU tensor of shape [len(idx), C, H, W], without allocating. It panics if
// dst has the wrong shape or an index is out of range.
func (d *Dataset) Batch(idx []int, dst *tensor.Tensor) {
	s := d.Images.Shape()
	ds := dst.Shape()
	if len(ds) != 4 || ds[0] != len(idx) || ds[1] != s[1] || ds[2] != s[2] || ds[3] != s[3] {
		panic(fmt.Sprintf("data: Batch: dst has shape %v, want [%d %d %d %d]", ds, len(idx), s[1], s[2], s[3]))
	}
	per := s[1] * s[2] * s[3]
	src := d.Images.Data()
	out := dst.Data()
	n := s[0]
	for j, i := range idx {
		if i < 0 || i >= n {
			panic(fmt.Sprintf("data: Batch: index %d out of range [0, %d)", i, n))
		}
		copy(out[j*per:(j+1)*per], src[i*per:(i+1)*per])
	}
}

// BatchLabels writes the labels of the images at idx into dst (len(idx)
// entries) and reports true, or reports false when the data set has no
// labels. A call with empty idx only asks whether labels exist.
func (d *Dataset) BatchLabels(idx, dst []int) bool {
	if d.Labels == nil {
		return false
	}
	for j, i := range idx {
		dst[j] = d.Labels[i]
	}
	return true
}
