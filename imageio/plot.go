package imageio

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math"
	"strconv"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
	"golang.org/x/image/vector"
)

// Series is one line of a chart: the points (X[i], Y[i]). A nil X means
// X[i] = i. Points with a non-finite coordinate (or Y ≤ 0 on a log axis) are
// left out and break the line.
type Series struct {
	Name string
	X, Y []float64
}

// PlotOptions says how Plot draws a chart. The zero value is an 800×500
// linear chart without labels or smoothing.
type PlotOptions struct {
	// Title is drawn centred above the chart; XLabel and YLabel name the axes.
	Title, XLabel, YLabel string
	// Width and Height are the image size in pixels (default 800×500,
	// at least 200×150).
	Width, Height int
	// LogY draws the Y axis on a log10 scale (only Y > 0 is drawn).
	LogY bool
	// Smooth is the window, in points, of a centred moving average drawn over
	// each series, whose raw values then show faintly behind it; 0 or 1
	// draws the raw values only. A series is averaged over at most a fifth
	// of its points, one under 50 points not at all (so a sparse validation
	// curve keeps its shape), and its legend entry gives the window used.
	Smooth int
}

// LossPlotOptions returns the options LossPlot uses for series: the title,
// axes "step" and "loss", a log Y axis when every Y is positive and the
// largest is over 20 times the smallest, and smoothing over len/50 points
// (at least 5) when the longest series has 100 points or more.
func LossPlotOptions(series []Series, title string) PlotOptions {
	opt := PlotOptions{Title: title, XLabel: "step", YLabel: "loss"}
	lo, hi, n := math.Inf(1), math.Inf(-1), 0
	pos := true
	for _, s := range series {
		n = max(n, len(s.Y))
		for _, y := range s.Y {
			if math.IsNaN(y) || math.IsInf(y, 0) {
				continue
			}
			if y <= 0 {
				pos = false
			}
			lo, hi = math.Min(lo, y), math.Max(hi, y)
		}
	}
	opt.LogY = pos && lo > 0 && hi/lo > 20
	if n >= 100 {
		opt.Smooth = max(5, n/50)
	}
	return opt
}

// LossPlot writes a line chart of series (for example train and validation
// loss against step) as an 800×500 PNG at path, atomically (see SavePNG),
// with the options of LossPlotOptions. Use Plot to choose them yourself.
func LossPlot(path string, series []Series, title string) error {
	return Plot(path, series, LossPlotOptions(series, title))
}

// Plot writes the chart RenderPlot draws as a PNG at path, atomically.
func Plot(path string, series []Series, opt PlotOptions) error {
	img, err := RenderPlot(series, opt)
	if err != nil {
		return fmt.Errorf("imageio: plot %s: %v", path, err)
	}
	return SavePNG(path, img)
}

// palette holds the series colours (matplotlib's tab10), used in turn.
var palette = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
	{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
	{188, 189, 34, 255}, {23, 190, 207, 255},
}

var (
	black      = color.RGBA{0, 0, 0, 255}
	textGray   = color.RGBA{60, 60, 60, 255}
	gridMajor  = color.RGBA{225, 225, 225, 255}
	gridMinor  = color.RGBA{242, 242, 242, 255}
	legendEdge = color.RGBA{190, 190, 190, 255}
	face       = basicfont.Face7x13
)

// point is a chart point in data coordinates.
type point struct{ x, y float64 }

// RenderPlot draws series as a line chart with axes, tick marks, tick
// labels, grid lines, a title, axis labels and (when any series has a name)
// a legend, per opt. It fails when no series has a point that can be drawn.
func RenderPlot(series []Series, opt PlotOptions) (*image.RGBA, error) {
	W, H := opt.Width, opt.Height
	if W <= 0 {
		W = 800
	}
	if H <= 0 {
		H = 500
	}
	W, H = max(W, 200), max(H, 150)

	// Collect the drawable points (Y in log10 on a log axis) and the range.
	pts := make([][]point, len(series))
	xlo, xhi, ylo, yhi := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for i, s := range series {
		if s.X != nil && len(s.X) != len(s.Y) {
			return nil, fmt.Errorf("series %q has %d X and %d Y values", s.Name, len(s.X), len(s.Y))
		}
		p := make([]point, len(s.Y))
		for k, y := range s.Y {
			x := float64(k)
			if s.X != nil {
				x = s.X[k]
			}
			if opt.LogY {
				y = math.Log10(y) // NaN or -Inf for y ≤ 0
			}
			p[k] = point{x, y}
			if finite(x) && finite(y) {
				xlo, xhi = math.Min(xlo, x), math.Max(xhi, x)
				ylo, yhi = math.Min(ylo, y), math.Max(yhi, y)
			}
		}
		pts[i] = p
	}
	if !finite(xlo) {
		return nil, fmt.Errorf("nothing to draw: no series has a finite point%s", map[bool]string{true: " with Y > 0 (the Y axis is logarithmic)"}[opt.LogY])
	}
	if xhi == xlo {
		xlo, xhi = xlo-1, xhi+1
	}
	if yhi == ylo {
		d := math.Max(math.Abs(ylo)*0.1, 0.5)
		if opt.LogY {
			d = 0.5
		}
		ylo, yhi = ylo-d, yhi+d
	}
	padY := (yhi - ylo) * 0.05
	ylo, yhi = ylo-padY, yhi+padY

	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)

	// Ticks, then the plot area from the widest Y tick label.
	var yt []tick
	if opt.LogY {
		yt = logTicks(ylo, yhi)
	} else {
		yt = linearTicks(ylo, yhi, max(3, (H-100)/50))
	}
	labelW := 0
	for _, t := range yt {
		labelW = max(labelW, textWidth(t.label))
	}
	left := 14 + labelW + 8
	if opt.YLabel != "" {
		left += 18
	}
	top := 16
	if opt.Title != "" {
		top = 34
	}
	bottom := H - 38
	if opt.XLabel != "" {
		bottom = H - 52
	}
	right := W - 24
	area := image.Rect(left, top, right, bottom)
	xt := linearTicks(xlo, xhi, max(3, area.Dx()/90))

	sx := func(x float64) float64 { return float64(area.Min.X) + (x-xlo)/(xhi-xlo)*float64(area.Dx()) }
	sy := func(y float64) float64 { return float64(area.Max.Y) - (y-ylo)/(yhi-ylo)*float64(area.Dy()) }

	// Grid lines, minor first.
	for _, t := range yt {
		if t.v < ylo || t.v > yhi {
			continue
		}
		c := gridMajor
		if t.label == "" {
			c = gridMinor
		}
		hline(img, area.Min.X, area.Max.X, int(math.Round(sy(t.v))), c)
	}
	for _, t := range xt {
		if t.v >= xlo && t.v <= xhi {
			vline(img, int(math.Round(sx(t.v))), area.Min.Y, area.Max.Y, gridMajor)
		}
	}

	// The series: the raw line faint when smoothing, then the main line.
	names := false
	for i, p := range pts {
		c := palette[i%len(palette)]
		names = names || series[i].Name != ""
		if w := smoothWindow(opt.Smooth, len(p)); w > 1 {
			faint := color.NRGBA{c.R, c.G, c.B, 70}
			strokeLine(img, p, sx, sy, 1.0, faint, area)
			p = movingAverage(p, w)
		}
		strokeLine(img, p, sx, sy, 1.8, c, area)
	}

	// Frame, ticks and tick labels.
	hline(img, area.Min.X, area.Max.X, area.Min.Y, black)
	hline(img, area.Min.X, area.Max.X, area.Max.Y, black)
	vline(img, area.Min.X, area.Min.Y, area.Max.Y, black)
	vline(img, area.Max.X, area.Min.Y, area.Max.Y, black)
	for _, t := range yt {
		if t.v < ylo || t.v > yhi {
			continue
		}
		y := int(math.Round(sy(t.v)))
		n := 3
		if t.label != "" {
			n = 6
			drawText(img, t.label, area.Min.X-9-textWidth(t.label), y+4, black)
		}
		hline(img, area.Min.X-n, area.Min.X, y, black)
	}
	lastEnd := math.MinInt
	for _, t := range xt {
		if t.v < xlo || t.v > xhi {
			continue
		}
		x := int(math.Round(sx(t.v)))
		vline(img, x, area.Max.Y, area.Max.Y+6, black)
		w := textWidth(t.label)
		x0 := min(max(x-w/2, 0), W-w)
		if x0 > lastEnd+6 {
			drawText(img, t.label, x0, area.Max.Y+20, black)
			lastEnd = x0 + w
		}
	}

	// Title and axis labels.
	if opt.Title != "" {
		x := area.Min.X + (area.Dx()-textWidth(opt.Title))/2
		drawText(img, opt.Title, x, 22, black)
		drawText(img, opt.Title, x+1, 22, black) // bold
	}
	if opt.XLabel != "" {
		drawText(img, opt.XLabel, area.Min.X+(area.Dx()-textWidth(opt.XLabel))/2, H-14, textGray)
	}
	if opt.YLabel != "" {
		drawTextUp(img, opt.YLabel, 6, area.Min.Y+(area.Dy()+textWidth(opt.YLabel))/2, textGray)
	}
	if opt.LogY {
		drawText(img, "log scale", area.Min.X, area.Min.Y-5, textGray)
	}

	if names {
		drawLegend(img, series, opt.Smooth, area)
	}
	return img, nil
}

// smoothWindow is the moving-average window for a series of n points.
// Series under 50 points are not smoothed.
func smoothWindow(smooth, n int) int {
	if n < 50 {
		return 1
	}
	return min(smooth, n/5)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// movingAverage returns the centred mean over window points of each point's
// Y; near the ends the window shrinks symmetrically (to the point itself at
// the first and last point) so a steep start is not pulled towards later
// values. Non-finite points stay as they are and are skipped by the means.
func movingAverage(p []point, window int) []point {
	out := make([]point, len(p))
	h := window / 2
	// Prefix sums over finite values.
	sum := make([]float64, len(p)+1)
	cnt := make([]int, len(p)+1)
	for i, q := range p {
		sum[i+1], cnt[i+1] = sum[i], cnt[i]
		if finite(q.y) {
			sum[i+1] += q.y
			cnt[i+1]++
		}
	}
	for i, q := range p {
		out[i] = q
		if !finite(q.y) {
			continue
		}
		r := min(h, i, len(p)-1-i)
		lo, hi := i-r, i+r+1
		if n := cnt[hi] - cnt[lo]; n > 0 {
			out[i].y = (sum[hi] - sum[lo]) / float64(n)
		}
	}
	return out
}

// strokeLine draws the polyline p (data coordinates mapped by sx, sy) with
// anti-aliasing, width pixels wide, clipped to area. Each segment is a
// rectangle and each joint a small octagon, all wound the same way so that
// overlaps do not cancel.
func strokeLine(img *image.RGBA, p []point, sx, sy func(float64) float64, width float64, c color.Color, area image.Rectangle) {
	z := vector.NewRasterizer(area.Dx()+1, area.Dy()+1)
	ox, oy := float64(area.Min.X), float64(area.Min.Y)
	hw := width / 2
	var px, py float64
	have := false
	joint := func(x, y float64) {
		r := hw
		for k := 0; k < 8; k++ {
			a := -float64(k) * math.Pi / 4 // clockwise, as the segments
			vx, vy := float32(x+r*math.Cos(a)), float32(y+r*math.Sin(a))
			if k == 0 {
				z.MoveTo(vx, vy)
			} else {
				z.LineTo(vx, vy)
			}
		}
		z.ClosePath()
	}
	for _, q := range p {
		if !finite(q.x) || !finite(q.y) {
			have = false
			continue
		}
		x, y := sx(q.x)-ox, sy(q.y)-oy
		if have {
			dx, dy := x-px, y-py
			l := math.Hypot(dx, dy)
			if l > 1e-6 {
				nx, ny := -dy/l*hw, dx/l*hw
				z.MoveTo(float32(px+nx), float32(py+ny))
				z.LineTo(float32(x+nx), float32(y+ny))
				z.LineTo(float32(x-nx), float32(y-ny))
				z.LineTo(float32(px-nx), float32(py-ny))
				z.ClosePath()
			}
			if width > 1.2 {
				joint(x, y)
			}
		} else if width > 1.2 {
			joint(x, y)
		}
		px, py, have = x, y, true
	}
	z.Draw(img, image.Rect(area.Min.X, area.Min.Y, area.Max.X+1, area.Max.Y+1), image.NewUniform(c), image.Point{})
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	for x := x0; x <= x1; x++ {
		img.SetRGBA(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	for y := y0; y <= y1; y++ {
		img.SetRGBA(x, y, c)
	}
}

func textWidth(s string) int { return font.MeasureString(face, s).Ceil() }

// drawText draws s with its baseline at y, starting at x.
func drawText(dst draw.Image, s string, x, y int, c color.Color) {
	d := font.Drawer{Dst: dst, Src: image.NewUniform(c), Face: face, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// drawTextUp draws s rotated a quarter turn counter-clockwise (reading
// upwards), its first letter's left edge at (x, y) and its top at x.
func drawTextUp(dst *image.RGBA, s string, x, y int, c color.Color) {
	w, h := textWidth(s), face.Ascent+face.Descent
	tmp := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(tmp, tmp.Bounds(), image.White, image.Point{}, draw.Src)
	drawText(tmp, s, 0, face.Ascent, c)
	for ty := 0; ty < h; ty++ {
		for tx := 0; tx < w; tx++ {
			dst.Set(x+ty, y-tx, tmp.At(tx, ty))
		}
	}
}

// drawLegend draws a boxed legend of the named series in the top-right
// corner of area.
func drawLegend(img *image.RGBA, series []Series, smooth int, area image.Rectangle) {
	var lines []string
	var idx []int
	w := 0
	note := ""
	for i, s := range series {
		if s.Name == "" {
			continue
		}
		name := s.Name
		if k := smoothWindow(smooth, len(s.Y)); k > 1 {
			name += " (mean of " + strconv.Itoa(k) + ")"
			note = "faint: raw values"
		}
		lines = append(lines, name)
		idx = append(idx, i)
		w = max(w, textWidth(name))
	}
	if note != "" {
		w = max(w, textWidth(note)-38)
	}
	const row = 16
	bw := 8 + 24 + 6 + w + 8
	bh := 6 + row*len(lines) + 4
	if note != "" {
		bh += row
	}
	r := image.Rect(area.Max.X-10-bw, area.Min.Y+10, area.Max.X-10, area.Min.Y+10+bh)
	draw.Draw(img, r, image.White, image.Point{}, draw.Src)
	hline(img, r.Min.X, r.Max.X, r.Min.Y, legendEdge)
	hline(img, r.Min.X, r.Max.X, r.Max.Y, legendEdge)
	vline(img, r.Min.X, r.Min.Y, r.Max.Y, legendEdge)
	vline(img, r.Max.X, r.Min.Y, r.Max.Y, legendEdge)
	for k, name := range lines {
		y := r.Min.Y + 6 + k*row
		c := palette[idx[k]%len(palette)]
		for t := -1; t <= 1; t++ {
			hline(img, r.Min.X+8, r.Min.X+8+24, y+6+t, c)
		}
		drawText(img, name, r.Min.X+8+24+6, y+11, black)
	}
	if note != "" {
		drawText(img, note, r.Min.X+8, r.Min.Y+6+len(lines)*row+11, textGray)
	}
}

// tick is an axis tick at data value v; an empty label marks a minor tick.
type tick struct {
	v     float64
	label string
}

// linearTicks returns about n ticks at round values (1, 2 or 5 × 10^k
// apart) covering [lo, hi].
func linearTicks(lo, hi float64, n int) []tick {
	raw := (hi - lo) / float64(n)
	e := math.Floor(math.Log10(raw))
	base := math.Pow(10, e)
	step := base
	for _, m := range []float64{1, 2, 5, 10} {
		if m*base >= raw {
			step = m * base
			break
		}
	}
	dec := max(0, -int(math.Floor(math.Log10(step)+1e-9)))
	var out []tick
	for k := math.Ceil(lo / step); k*step <= hi+step*1e-9; k++ {
		v := k * step
		out = append(out, tick{v, formatTick(v, dec, step)})
	}
	return out
}

func formatTick(v float64, dec int, step float64) string {
	if math.Abs(v) < step*1e-6 {
		v = 0
	}
	if math.Abs(v) >= 1e6 || (v != 0 && step < 1e-4) {
		s := strconv.FormatFloat(v, 'g', 3, 64)
		return strings.Replace(strings.Replace(s, "e+0", "e", 1), "e-0", "e-", 1)
	}
	return strconv.FormatFloat(v, 'f', dec, 64)
}

// logTicks returns ticks for a log10 axis over [lo, hi] (log10 units):
// labelled ticks at the powers of ten (every other one or sparser for wide
// ranges), also at 2 and 5 × 10^k when the range spans under three decades,
// and unlabelled minor ticks at 2..9 × 10^k.
func logTicks(lo, hi float64) []tick {
	var out []tick
	d0, d1 := int(math.Floor(lo)), int(math.Ceil(hi))
	every := max(1, (d1-d0+7)/8)
	few := hi-lo < 3
	for d := d0; d <= d1; d++ {
		for m := 1; m <= 9; m++ {
			v := math.Log10(float64(m)) + float64(d)
			if v < lo || v > hi {
				continue
			}
			label := ""
			if (m == 1 && d%every == 0) || (few && (m == 2 || m == 5)) {
				label = formatPow(m, d)
			}
			if m == 1 || d1-d0 <= 6 || label != "" {
				out = append(out, tick{v, label})
			}
		}
	}
	return out
}

// formatPow formats m × 10^d plainly ("0.05", "200") or, far from 1, in
// exponent form ("1e-6").
func formatPow(m, d int) string {
	if d >= -4 && d <= 5 {
		return strconv.FormatFloat(float64(m)*math.Pow(10, float64(d)), 'f', max(0, -d), 64)
	}
	return strconv.Itoa(m) + "e" + strconv.Itoa(d)
}
