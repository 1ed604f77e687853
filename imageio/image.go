// Package imageio turns tensors into images and writes them: single samples,
// grids of samples, PNG files written atomically, and line charts of
// training losses.
package imageio

import (
	"fmt"
	"image"
	"math"

	"github.com/diffuse-go/diffuse/tensor"
)

// PadGray is the gray level (0–255) of the padding between and around the
// cells of a Grid; mid gray sets off both white-on-black digits and photos.
const PadGray = 128

// toByte maps a value in [-1, 1] to 0..255 (clamping outside values, NaN to
// 0): v ↦ round((v+1)·127.5).
func toByte(v float32) uint8 {
	if !(v > -1) { // also NaN
		return 0
	}
	if v >= 1 {
		return 255
	}
	return uint8(math.Round(float64(v+1) * 127.5))
}

// host returns the values of t in host memory (shared for CPU tensors).
func host(t *tensor.Tensor) []float32 {
	if t.Storage().Host != nil {
		return t.Data()
	}
	return t.ToHost()
}

// checkNCHW panics unless t has shape [N, C, H, W] with C 1 or 3.
func checkNCHW(op string, t *tensor.Tensor) (n, c, h, w int) {
	s := t.Shape()
	if len(s) != 4 || (s[1] != 1 && s[1] != 3) {
		panic(fmt.Sprintf("imageio: %s: tensor of shape %v, want [N, C, H, W] with C = 1 (gray) or 3 (RGB)", op, s))
	}
	return s[0], s[1], s[2], s[3]
}

// ToImage returns sample i of t, a tensor of shape [N, C, H, W] with values
// in [-1, 1] (outside values are clamped, -1 is black, 1 white), as an
// *image.Gray (C = 1) or an opaque *image.NRGBA (C = 3) of W×H pixels. It
// panics on another shape or an index outside [0, N).
func ToImage(t *tensor.Tensor, i int) image.Image {
	n, c, h, w := checkNCHW("ToImage", t)
	if i < 0 || i >= n {
		panic(fmt.Sprintf("imageio: ToImage: sample %d out of range [0, %d)", i, n))
	}
	d := host(t)[i*c*h*w : (i+1)*c*h*w]
	if c == 1 {
		img := image.NewGray(image.Rect(0, 0, w, h))
		for k, v := range d {
			img.Pix[k] = toByte(v)
		}
		return img
	}
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	plane := h * w
	for k := 0; k < plane; k++ {
		img.Pix[4*k] = toByte(d[k])
		img.Pix[4*k+1] = toByte(d[plane+k])
		img.Pix[4*k+2] = toByte(d[2*plane+k])
		img.Pix[4*k+3] = 255
	}
	return img
}

// Grid tiles all N samples of t ([N, C, H, W], values in [-1, 1] as for
// ToImage) row by row into one image with cols columns (cols ≤ 0 picks
// ⌈√N⌉), pad pixels of PadGray between and around the cells, and every
// sample pixel enlarged to scale×scale pixels (nearest neighbour; scale ≤ 0
// means 1). The result is (cols·W·scale + (cols+1)·pad) ×
// (rows·H·scale + (rows+1)·pad) pixels, rows = ⌈N/cols⌉; an *image.Gray for
// C = 1 and an *image.NRGBA for C = 3. Unused cells of the last row are pad.
func Grid(t *tensor.Tensor, cols int, pad int, scale int) image.Image {
	n, c, h, w := checkNCHW("Grid", t)
	if cols <= 0 {
		cols = int(math.Ceil(math.Sqrt(float64(n))))
	}
	cols = max(1, min(cols, max(n, 1)))
	pad = max(pad, 0)
	scale = max(scale, 1)
	rows := (n + cols - 1) / cols
	cw, ch := w*scale, h*scale
	W, H := cols*cw+(cols+1)*pad, rows*ch+(rows+1)*pad
	d := host(t)
	plane := h * w
	var pix []uint8
	var stride, bpp int
	var out image.Image
	if c == 1 {
		g := image.NewGray(image.Rect(0, 0, W, H))
		pix, stride, bpp, out = g.Pix, g.Stride, 1, g
		for k := range pix {
			pix[k] = PadGray
		}
	} else {
		g := image.NewNRGBA(image.Rect(0, 0, W, H))
		pix, stride, bpp, out = g.Pix, g.Stride, 4, g
		for k := 0; k < len(pix); k += 4 {
			pix[k], pix[k+1], pix[k+2], pix[k+3] = PadGray, PadGray, PadGray, 255
		}
	}
	for s := 0; s < n; s++ {
		ox := pad + (s%cols)*(cw+pad)
		oy := pad + (s/cols)*(ch+pad)
		src := d[s*c*plane : (s+1)*c*plane]
		for y := 0; y < ch; y++ {
			row := pix[(oy+y)*stride+ox*bpp:]
			sy := y / scale
			for x := 0; x < cw; x++ {
				k := sy*w + x/scale
				if c == 1 {
					row[x] = toByte(src[k])
				} else {
					row[4*x] = toByte(src[k])
					row[4*x+1] = toByte(src[plane+k])
					row[4*x+2] = toByte(src[2*plane+k])
				}
			}
		}
	}
	return out
}
