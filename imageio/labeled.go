package imageio

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
)

// LabelRows puts a text label left of each row of a grid made by Grid with
// rows = len(labels), cells cellH pixels high (H·scale) and pad pixels of
// padding: the result is the grid with a white label column in front, each
// label in black, vertically centred on its row (basicfont 7×13).
func LabelRows(grid image.Image, labels []string, cellH, pad int) (*image.RGBA, error) {
	b := grid.Bounds()
	if want := len(labels)*cellH + (len(labels)+1)*pad; b.Dy() != want {
		return nil, fmt.Errorf("imageio: LabelRows: grid is %d px high; %d rows of %d px with padding %d need %d", b.Dy(), len(labels), cellH, pad, want)
	}
	lw := 0
	for _, l := range labels {
		lw = max(lw, textWidth(l))
	}
	lw += 12
	out := image.NewRGBA(image.Rect(0, 0, lw+b.Dx(), b.Dy()))
	draw.Draw(out, out.Bounds(), image.White, image.Point{}, draw.Src)
	draw.Draw(out, image.Rect(lw, 0, lw+b.Dx(), b.Dy()), grid, b.Min, draw.Src)
	for r, l := range labels {
		mid := pad + r*(cellH+pad) + cellH/2
		drawText(out, l, 6, mid+(face.Ascent-face.Descent)/2, color.Black)
	}
	return out, nil
}
