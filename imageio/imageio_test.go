package imageio

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

func TestToImageGrayClamp(t *testing.T) {
	// [2, 1, 1, 4]: sample 1 holds -2 (clamped), -1, 0, 1.5 (clamped).
	x := tensor.FromSlice([]float32{0, 0, 0, 0, -2, -1, 0, 1.5}, 2, 1, 1, 4)
	img, ok := ToImage(x, 1).(*image.Gray)
	if !ok {
		t.Fatalf("C=1 gives %T, want *image.Gray", ToImage(x, 1))
	}
	if img.Bounds() != image.Rect(0, 0, 4, 1) {
		t.Fatalf("bounds %v", img.Bounds())
	}
	want := []uint8{0, 0, 128, 255} // 0 → round(127.5) = 128
	for i, w := range want {
		if img.Pix[i] != w {
			t.Fatalf("pixels %v, want %v", img.Pix, want)
		}
	}
	if toByte(float32(math.NaN())) != 0 || toByte(0.5) != 191 {
		t.Fatal("toByte")
	}
}

func TestToImageRGB(t *testing.T) {
	// [1, 3, 1, 2]: pixel 0 = (1, -1, 0), pixel 1 = (-1, 1, 3→1).
	x := tensor.FromSlice([]float32{1, -1, -1, 1, 0, 3}, 1, 3, 1, 2)
	img, ok := ToImage(x, 0).(*image.NRGBA)
	if !ok {
		t.Fatalf("C=3 gives %T, want *image.NRGBA", ToImage(x, 0))
	}
	if got := img.NRGBAAt(0, 0); got != (color.NRGBA{255, 0, 128, 255}) {
		t.Fatalf("pixel 0 = %v", got)
	}
	if got := img.NRGBAAt(1, 0); got != (color.NRGBA{0, 255, 255, 255}) {
		t.Fatalf("pixel 1 = %v", got)
	}
	mustPanic(t, "C=2", func() { ToImage(tensor.New(1, 2, 2, 2), 0) })
	mustPanic(t, "index", func() { ToImage(x, 1) })
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", what)
		}
	}()
	f()
}

func TestGrid(t *testing.T) {
	// 3 gray samples of 2×3 (H=2, W=3), sample s filled with value level[s].
	level := []float32{-1, 0, 1}
	d := make([]float32, 3*6)
	for s := range level {
		for k := 0; k < 6; k++ {
			d[s*6+k] = level[s]
		}
	}
	d[6+5] = 1 // sample 1, bottom-right pixel white
	x := tensor.FromSlice(d, 3, 1, 2, 3)
	const cols, pad, scale = 2, 1, 2
	g := Grid(x, cols, pad, scale).(*image.Gray)
	// 2 columns of 6 px, 2 rows of 4 px, padding 1.
	if g.Bounds() != image.Rect(0, 0, 2*6+3, 2*4+3) {
		t.Fatalf("grid bounds %v, want 15×11", g.Bounds())
	}
	at := func(x, y int) uint8 { return g.GrayAt(x, y).Y }
	if at(0, 0) != PadGray || at(7, 3) != PadGray || at(14, 10) != PadGray {
		t.Fatal("padding is not PadGray")
	}
	if at(1, 1) != 0 || at(6, 4) != 0 { // sample 0 spans x 1..6, y 1..4
		t.Fatalf("sample 0: %d %d", at(1, 1), at(6, 4))
	}
	if at(8, 1) != 128 || at(12, 3) != 255 || at(13, 4) != 255 || at(11, 4) != 128 { // sample 1 at x 8..13
		t.Fatalf("sample 1 upscaling wrong: %d %d %d %d", at(8, 1), at(12, 3), at(13, 4), at(11, 4))
	}
	if at(1, 6) != 255 || at(6, 9) != 255 { // sample 2, second row at y 6..9
		t.Fatal("sample 2")
	}
	if at(8, 6) != PadGray || at(13, 9) != PadGray { // empty last cell
		t.Fatal("empty cell is not padding")
	}

	// RGB, automatic columns (⌈√5⌉ = 3), no padding, scale 1.
	rgb := Grid(tensor.New(5, 3, 4, 4), 0, 0, 1).(*image.NRGBA)
	if rgb.Bounds() != image.Rect(0, 0, 12, 8) {
		t.Fatalf("rgb grid bounds %v", rgb.Bounds())
	}
	if rgb.NRGBAAt(0, 0) != (color.NRGBA{128, 128, 128, 255}) || rgb.NRGBAAt(11, 7) != (color.NRGBA{PadGray, PadGray, PadGray, 255}) {
		t.Fatalf("rgb pixels %v %v", rgb.NRGBAAt(0, 0), rgb.NRGBAAt(11, 7))
	}
}

func TestSavePNGAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.png")
	img := ToImage(tensor.FromSlice([]float32{-1, 0, 1, 0.5}, 1, 1, 2, 2), 0)
	if err := SavePNG(p, img); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(p)
	back, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if g := back.(*image.Gray); !bytes.Equal(g.Pix, img.(*image.Gray).Pix) {
		t.Fatalf("round trip %v", g.Pix)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", st.Mode())
	}
	before, _ := os.ReadFile(p)

	// An encode error (png refuses an empty image) leaves the file intact
	// and no temporary file behind.
	err = SavePNG(p, image.NewGray(image.Rect(0, 0, 0, 0)))
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("empty image: %v", err)
	}
	after, _ := os.ReadFile(p)
	if !bytes.Equal(before, after) {
		t.Fatal("existing file changed by a failed save")
	}
	onlyFile(t, dir, "out.png")

	// A folder that cannot hold files: its "parent" is a regular file (root
	// may write anywhere, so permissions would not show it).
	notDir := filepath.Join(p, "x.png")
	if err := SavePNG(notDir, img); err == nil || !strings.Contains(err.Error(), notDir) || !strings.Contains(err.Error(), "not a folder") {
		t.Fatalf("unwritable folder: %v", err)
	}
	missing := filepath.Join(dir, "no", "such", "x.png")
	if err := SavePNG(missing, img); err == nil || !strings.Contains(err.Error(), "create the folder") {
		t.Fatalf("missing folder: %v", err)
	}
	// Saving over a folder fails at the rename and cleans up.
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	if err := SavePNG(sub, img); err == nil || !strings.Contains(err.Error(), sub) {
		t.Fatalf("path is a folder: %v", err)
	}
	onlyFile(t, dir, "out.png", "sub")
}

// onlyFile fails unless dir holds exactly the names want.
func onlyFile(t *testing.T, dir string, want ...string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("folder holds %v, want %v (a temporary file left behind?)", got, want)
	}
}

func TestSaveSingles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "samples")
	paths, err := SaveSingles(dir, "s", tensor.New(3, 3, 2, 2))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 || filepath.Base(paths[2]) != "s_0002.png" {
		t.Fatalf("paths %v", paths)
	}
	onlyFile(t, dir, "s_0000.png", "s_0001.png", "s_0002.png")
}

func TestLossPlot(t *testing.T) {
	var tr, va Series
	tr.Name, va.Name = "train", "val"
	for s := 0; s < 500; s++ {
		tr.X = append(tr.X, float64(s))
		tr.Y = append(tr.Y, 0.02+math.Exp(-float64(s)/50)*(1+0.2*math.Sin(float64(s))))
	}
	va.Y = []float64{1, 0.5, math.NaN(), 0.1, 0.05} // X nil: 0..4; NaN breaks the line
	opt := LossPlotOptions([]Series{tr, va}, "t")
	if !opt.LogY || opt.Smooth != 10 || opt.XLabel != "step" {
		t.Fatalf("LossPlotOptions %+v", opt)
	}
	p := filepath.Join(t.TempDir(), "loss.png")
	if err := LossPlot(p, []Series{tr, va}, "test loss"); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(p)
	cfg, err := png.DecodeConfig(f)
	f.Close()
	if err != nil || cfg.Width != 800 || cfg.Height != 500 {
		t.Fatalf("plot %dx%d, %v; want 800×500", cfg.Width, cfg.Height, err)
	}
	// The chart has the series colour in it, and some dark text.
	img, err := RenderPlot([]Series{tr}, PlotOptions{Width: 400, Height: 300, Title: "x", Smooth: 5})
	if err != nil || img.Bounds().Dx() != 400 || img.Bounds().Dy() != 300 {
		t.Fatalf("RenderPlot %v %v", img.Bounds(), err)
	}
	blue := 0
	for y := 0; y < 300; y++ {
		for x := 0; x < 400; x++ {
			if img.RGBAAt(x, y) == palette[0] {
				blue++
			}
		}
	}
	if blue < 200 {
		t.Fatalf("only %d pixels of the series colour", blue)
	}
	// Nothing drawable is an error; a log axis needs positive values.
	if _, err := RenderPlot([]Series{{Y: []float64{0, -1}}}, PlotOptions{LogY: true}); err == nil || !strings.Contains(err.Error(), "Y > 0") {
		t.Fatalf("log of non-positive: %v", err)
	}
	if err := LossPlot(p, []Series{{X: []float64{1}, Y: []float64{1, 2}}}, ""); err == nil {
		t.Fatal("mismatched X and Y accepted")
	}
	// One point, a flat line and linear ticks still render.
	if _, err := RenderPlot([]Series{{Name: "one", Y: []float64{3}}}, PlotOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestTicks(t *testing.T) {
	var got []string
	for _, tk := range linearTicks(0, 1, 5) {
		got = append(got, tk.label)
	}
	if strings.Join(got, " ") != "0.0 0.2 0.4 0.6 0.8 1.0" {
		t.Fatalf("linear ticks %v", got)
	}
	got = nil
	for _, tk := range logTicks(-3.2, 0.1) {
		if tk.label != "" {
			got = append(got, tk.label)
		}
	}
	if strings.Join(got, " ") != "0.001 0.01 0.1 1" {
		t.Fatalf("log ticks %v", got)
	}
}
