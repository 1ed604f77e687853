package data

import (
	"bufio"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // registers the JPEG decoder for image.Decode
	_ "image/png"  // registers the PNG decoder for image.Decode
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/diffuse-go/diffuse/tensor"
)

// imageExts are the file name extensions LoadFolder reads (case-insensitive).
var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true}

// LoadFolder loads every PNG and JPEG file directly in dir (by extension,
// case-insensitive; other files and sub-folders are ignored) as an unlabeled
// Dataset of [N, channels, size, size] images in [-1, 1], sorted by file name.
//
// Each image is scaled so its short side is size pixels (area averaging when
// shrinking, bilinear when enlarging) and centre-cropped to size×size.
// channels is 1 (gray, ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B) or 3
// (RGB). Transparent pixels are composed over black. Names holds the file
// names. A folder with no image files, or a file that does not decode, is an
// error naming the folder or file.
func LoadFolder(dir string, size int, channels int) (*Dataset, error) {
	if size <= 0 {
		return nil, fmt.Errorf("data: LoadFolder: size %d must be positive", size)
	}
	if channels != 1 && channels != 3 {
		return nil, fmt.Errorf("data: LoadFolder: channels %d must be 1 (gray) or 3 (RGB)", channels)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("data: cannot read image folder: %v; pass a folder of PNG or JPEG files", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() || !imageExts[strings.ToLower(filepath.Ext(e.Name()))] {
			continue
		}
		names = append(names, e.Name())
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("data: no images in %s: it holds no .png, .jpg or .jpeg files (%d other entries); put the training images directly in that folder", dir, len(entries))
	}
	sort.Strings(names)
	per := channels * size * size
	vals := make([]float32, len(names)*per)
	for i, name := range names {
		p := filepath.Join(dir, name)
		img, err := decodeFile(p)
		if err != nil {
			return nil, err
		}
		convert(img, size, channels, vals[i*per:(i+1)*per])
	}
	return &Dataset{Images: tensor.FromSlice(vals, len(names), channels, size, size), Names: names}, nil
}

func decodeFile(p string) (image.Image, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("data: %v", err)
	}
	defer f.Close()
	img, format, err := image.Decode(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("data: %s: cannot decode image: %v; remove or replace the file", p, err)
	}
	b := img.Bounds()
	if b.Dx() <= 0 || b.Dy() <= 0 {
		return nil, fmt.Errorf("data: %s: %s image is empty (%dx%d); remove the file", p, format, b.Dx(), b.Dy())
	}
	return img, nil
}

// convert resamples the centred square of img to size×size and writes it as
// channels planes of values in [-1, 1] into dst (len channels*size*size).
func convert(img image.Image, size, channels int, dst []float32) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	side := min(w, h)
	x0, y0 := b.Min.X+(w-side)/2, b.Min.Y+(h-side)/2

	// Source planes of the square crop in [0, 1].
	planes := make([][]float32, channels)
	for c := range planes {
		planes[c] = make([]float32, side*side)
	}
	readPixels(img, x0, y0, side, channels, planes)

	wts := resampleWeights(side, size)
	tmp := make([]float32, side*size) // rows of the source, columns resampled
	plane := size * size
	for c := 0; c < channels; c++ {
		src := planes[c]
		for y := 0; y < side; y++ {
			row := src[y*side : (y+1)*side]
			for x, ws := range wts {
				var s float32
				for _, t := range ws {
					s += t.w * row[t.i]
				}
				tmp[y*size+x] = s
			}
		}
		out := dst[c*plane : (c+1)*plane]
		for y, ws := range wts {
			for x := 0; x < size; x++ {
				var s float32
				for _, t := range ws {
					s += t.w * tmp[t.i*size+x]
				}
				out[y*size+x] = min(max(s*2-1, -1), 1)
			}
		}
	}
}

// readPixels fills planes (1 gray or 3 RGB, each side×side) with the pixels
// of the square at (x0, y0) in [0, 1], alpha-premultiplied (over black).
func readPixels(img image.Image, x0, y0, side, channels int, planes [][]float32) {
	const inv8, inv16 = 1.0 / 255, 1.0 / 65535
	put := func(i int, r, g, b float32) {
		if channels == 1 {
			planes[0][i] = 0.299*r + 0.587*g + 0.114*b
		} else {
			planes[0][i], planes[1][i], planes[2][i] = r, g, b
		}
	}
	switch m := img.(type) {
	case *image.Gray:
		for y := 0; y < side; y++ {
			for x := 0; x < side; x++ {
				v := float32(m.Pix[m.PixOffset(x0+x, y0+y)]) * inv8
				for c := range planes {
					planes[c][y*side+x] = v
				}
			}
		}
	case *image.RGBA:
		for y := 0; y < side; y++ {
			for x := 0; x < side; x++ {
				o := m.PixOffset(x0+x, y0+y)
				put(y*side+x, float32(m.Pix[o])*inv8, float32(m.Pix[o+1])*inv8, float32(m.Pix[o+2])*inv8)
			}
		}
	case *image.NRGBA:
		for y := 0; y < side; y++ {
			for x := 0; x < side; x++ {
				o := m.PixOffset(x0+x, y0+y)
				a := float32(m.Pix[o+3]) * inv8
				put(y*side+x, float32(m.Pix[o])*inv8*a, float32(m.Pix[o+1])*inv8*a, float32(m.Pix[o+2])*inv8*a)
			}
		}
	case *image.YCbCr: // what most JPEGs decode to
		for y := 0; y < side; y++ {
			for x := 0; x < side; x++ {
				c := m.YCbCrAt(x0+x, y0+y)
				r, g, b := color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
				put(y*side+x, float32(r)*inv8, float32(g)*inv8, float32(b)*inv8)
			}
		}
	default:
		for y := 0; y < side; y++ {
			for x := 0; x < side; x++ {
				c := color.RGBA64Model.Convert(img.At(x0+x, y0+y)).(color.RGBA64)
				put(y*side+x, float32(c.R)*inv16, float32(c.G)*inv16, float32(c.B)*inv16)
			}
		}
	}
}

type tap struct {
	i int
	w float32
}

// resampleWeights returns, for each of the m output samples of a line of n
// input samples, the input indices and weights that make it. Shrinking
// (m < n) averages the input pixels each output pixel covers, weighted by
// the covered fraction (a box filter); enlarging interpolates linearly
// between the two nearest pixel centres. Weights of each output sum to 1.
func resampleWeights(n, m int) [][]tap {
	out := make([][]tap, m)
	r := float64(n) / float64(m)
	for j := range out {
		if m <= n {
			lo, hi := float64(j)*r, float64(j+1)*r
			var ts []tap
			for k := int(math.Floor(lo)); k < n && float64(k) < hi; k++ {
				cover := math.Min(hi, float64(k+1)) - math.Max(lo, float64(k))
				if cover > 1e-9 {
					ts = append(ts, tap{k, float32(cover / r)})
				}
			}
			out[j] = ts
			continue
		}
		c := (float64(j)+0.5)*r - 0.5
		c = math.Max(0, math.Min(c, float64(n-1)))
		k := int(math.Floor(c))
		f := c - float64(k)
		if k+1 >= n || f == 0 {
			out[j] = []tap{{k, 1}}
		} else {
			out[j] = []tap{{k, float32(1 - f)}, {k + 1, float32(f)}}
		}
	}
	return out
}
