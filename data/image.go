package data

import (
	"fmt"

	"github.com/diffuse-go/diffuse/tensor"
)

// LoadImage loads one PNG or JPEG file as a [1, channels, size, size]
// tensor in [-1, 1], resampled and centre-cropped like LoadFolder's images
// (a 28×28 grayscale PNG loads unchanged up to 8-bit rounding). An
// unreadable or undecodable file is an error naming it.
func LoadImage(path string, size, channels int) (*tensor.Tensor, error) {
	if size <= 0 {
		return nil, fmt.Errorf("data: LoadImage: size %d must be positive", size)
	}
	if channels != 1 && channels != 3 {
		return nil, fmt.Errorf("data: LoadImage: channels %d must be 1 (gray) or 3 (RGB)", channels)
	}
	img, err := decodeFile(path)
	if err != nil {
		return nil, err
	}
	vals := make([]float32, channels*size*size)
	convert(img, size, channels, vals)
	return tensor.FromSlice(vals, 1, channels, size, size), nil
}
