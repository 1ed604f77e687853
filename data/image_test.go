package data

import (
	"image"
	"image/color"
	"path/filepath"
	"strings"
	"testing"
)

// A 28×28 grayscale PNG loads pixel for pixel; a 56×56 one is averaged
// down 2×2; a missing or broken file is an error naming it.
func TestLoadImage(t *testing.T) {
	dir := t.TempDir()
	small := image.NewGray(image.Rect(0, 0, 28, 28))
	big := image.NewGray(image.Rect(0, 0, 56, 56))
	for y := 0; y < 28; y++ {
		for x := 0; x < 28; x++ {
			small.SetGray(x, y, color.Gray{uint8(9 * ((x + y) % 29))})
		}
	}
	for y := 0; y < 56; y++ {
		for x := 0; x < 56; x++ {
			if x < 28 {
				big.SetGray(x, y, color.Gray{255})
			}
		}
	}
	writeImage(t, dir, "small.png", small)
	writeImage(t, dir, "big.png", big)
	s, err := LoadImage(filepath.Join(dir, "small.png"), 28, 1)
	if err != nil {
		t.Fatal(err)
	}
	if sh := s.Shape(); len(sh) != 4 || sh[0] != 1 || sh[1] != 1 || sh[2] != 28 || sh[3] != 28 {
		t.Fatalf("shape %v, want [1 1 28 28]", sh)
	}
	for y := 0; y < 28; y++ {
		for x := 0; x < 28; x++ {
			want := float32(9*((x+y)%29))/255*2 - 1
			if d := s.Data()[y*28+x] - want; d > 1e-5 || d < -1e-5 {
				t.Fatalf("pixel (%d,%d) = %g, want %g", x, y, s.Data()[y*28+x], want)
			}
		}
	}
	b, err := LoadImage(filepath.Join(dir, "big.png"), 28, 1)
	if err != nil {
		t.Fatal(err)
	}
	if b.Data()[5*28+3] != 1 || b.Data()[5*28+20] != -1 {
		t.Fatalf("56→28: left half %g (want 1), right half %g (want -1)", b.Data()[5*28+3], b.Data()[5*28+20])
	}
	if _, err := LoadImage(filepath.Join(dir, "none.png"), 28, 1); err == nil || !strings.Contains(err.Error(), "none.png") {
		t.Fatalf("missing file: error %v", err)
	}
}
