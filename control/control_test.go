package control

import (
	"math"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

// square returns a [1, 1, n, n] black image with a white square on rows and
// columns [lo, hi].
func square(n, lo, hi int) *tensor.Tensor {
	x := tensor.New(1, 1, n, n)
	for y := 0; y < n; y++ {
		for xx := 0; xx < n; xx++ {
			v := float32(-1)
			if y >= lo && y <= hi && xx >= lo && xx <= hi {
				v = 1
			}
			x.Data()[y*n+xx] = v
		}
	}
	return x
}

// ring reports whether (y, x) lies on the square [lo, hi]²'s border: the
// inner ring (border pixels of the square) or the outer ring (the
// background pixels touching it, corners included).
func ring(y, x, lo, hi int) (inner, outer bool) {
	in := func(a, b, l, h int) bool { return a >= l && a <= h && b >= l && b <= h }
	inner = in(y, x, lo, hi) && !in(y, x, lo+1, hi-1)
	outer = in(y, x, lo-1, hi+1) && !in(y, x, lo, hi)
	return
}

// The binarized edge map of a white square is its border: every inner-ring
// pixel and every outer-ring pixel but the four diagonal corners (whose
// Sobel response is √2/4 of a step) is an edge, nothing else is.
func TestEdgesOfSquareAreItsBorder(t *testing.T) {
	const n, lo, hi = 16, 4, 10
	x := square(n, lo, hi)
	e, err := Spec{Kind: KindEdges, Threshold: 0.5}.Compute(x)
	if err != nil {
		t.Fatal(err)
	}
	for y := 0; y < n; y++ {
		for xx := 0; xx < n; xx++ {
			inner, outer := ring(y, xx, lo, hi)
			corner := (y == lo-1 || y == hi+1) && (xx == lo-1 || xx == hi+1)
			want := float32(-1)
			if inner || (outer && !corner) {
				want = 1
			}
			if got := e.Data()[y*n+xx]; got != want {
				t.Fatalf("edge at (%d,%d) = %g, want %g (inner %v outer %v)", y, xx, got, want, inner, outer)
			}
		}
	}
	// Soft edges: −1 (no edge) off the border, exactly 1 on a straight
	// stretch of it, and √2/4 → 2·0.354−1 at an outer corner.
	s, err := Spec{Kind: KindEdges}.Compute(x)
	if err != nil {
		t.Fatal(err)
	}
	for y := 0; y < n; y++ {
		for xx := 0; xx < n; xx++ {
			inner, outer := ring(y, xx, lo, hi)
			if v := s.Data()[y*n+xx]; !inner && !outer && v != -1 {
				t.Fatalf("soft edge off the border at (%d,%d) = %g, want -1", y, xx, v)
			}
		}
	}
	if v := s.Data()[7*n+lo]; v != 1 {
		t.Fatalf("soft edge on the left side = %g, want 1", v)
	}
	if v, want := float64(s.Data()[(lo-1)*n+lo-1]), 2*math.Sqrt2/4-1; math.Abs(v-want) > 1e-6 {
		t.Fatalf("soft edge at the outer corner = %g, want %g", v, want)
	}
}

// A black image has no edges (outside pixels count as black, so the
// image border is no edge either); a white one has edges only along the
// image border.
func TestEdgesOfFlatImages(t *testing.T) {
	const n = 9
	black := tensor.New(2, 1, n, n)
	tensor.CPU.Fill(black, -1)
	e, err := Spec{Kind: KindEdges}.Compute(black)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range e.Data() {
		if v != -1 {
			t.Fatalf("black image: edge %g at %d", v, i)
		}
	}
	white := square(n, 0, n-1)
	Edges(white, white, 0.5) // in place
	for y := 0; y < n; y++ {
		for xx := 0; xx < n; xx++ {
			border := y == 0 || xx == 0 || y == n-1 || xx == n-1
			if got := white.Data()[y*n+xx] == 1; got != border {
				t.Fatalf("white image: edge at (%d,%d) is %v, want %v", y, xx, got, border)
			}
		}
	}
}

// The silhouette is the set of 4×4 cells (of a 28×28 image) whose mean ink
// reaches the threshold, blown up to 28×28.
func TestSilhouette(t *testing.T) {
	x := tensor.New(1, 1, 28, 28)
	tensor.CPU.Fill(x, -1)
	set := func(y0, y1, x0, x1 int) {
		for y := y0; y < y1; y++ {
			for xx := x0; xx < x1; xx++ {
				x.Data()[y*28+xx] = 1
			}
		}
	}
	set(4, 12, 8, 20) // cells rows 1–2, columns 2–4: fully inked
	set(24, 25, 0, 4) // cell (6, 0): 4 of 16 pixels = 0.25 ≥ 0.2
	set(24, 25, 4, 7) // cell (6, 1): 3 of 16 = 0.19 < 0.2
	s, err := Spec{Kind: KindSilhouette}.Compute(x)
	if err != nil {
		t.Fatal(err)
	}
	on := map[[2]int]bool{{6, 0}: true}
	for cy := 1; cy <= 2; cy++ {
		for cx := 2; cx <= 4; cx++ {
			on[[2]int{cy, cx}] = true
		}
	}
	for y := 0; y < 28; y++ {
		for xx := 0; xx < 28; xx++ {
			want := float32(-1)
			if on[[2]int{y / 4, xx / 4}] {
				want = 1
			}
			if got := s.Data()[y*28+xx]; got != want {
				t.Fatalf("silhouette at (%d,%d) = %g, want %g", y, xx, got, want)
			}
		}
	}
	// A stricter threshold drops the quarter-inked cell.
	s2, _ := Spec{Kind: KindSilhouette, Threshold: 0.3}.Compute(x)
	if s2.Data()[24*28] != -1 || s2.Data()[4*28+8] != 1 {
		t.Fatalf("threshold 0.3: cell (6,0) = %g (want -1), cell (1,2) = %g (want 1)", s2.Data()[24*28], s2.Data()[4*28+8])
	}
	// Sizes that are not multiples of 7 still map every pixel to a cell.
	y := tensor.New(1, 1, 10, 15)
	tensor.CPU.Fill(y, 1)
	s3, err := Spec{Kind: KindSilhouette}.Compute(y)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range s3.Data() {
		if v != 1 {
			t.Fatalf("white 10×15 image: silhouette pixel %d = %g, want 1", i, v)
		}
	}
}

func TestSpecErrors(t *testing.T) {
	x := tensor.New(1, 1, 28, 28)
	for _, c := range []struct {
		s    Spec
		x    *tensor.Tensor
		want string
	}{
		{Spec{Kind: "canny"}, x, "unknown control kind"},
		{Spec{Kind: KindEdges, Threshold: 2}, x, "threshold"},
		{Spec{Kind: KindEdges}, tensor.New(1, 3, 28, 28), "grayscale"},
	} {
		_, err := c.s.Compute(c.x)
		if err == nil || !contains(err.Error(), c.want) {
			t.Errorf("%+v on %v: error %v, want one mentioning %q", c.s, c.x.Shape(), err, c.want)
		}
	}
	if k, err := ParseKind(" Edges "); err != nil || k != KindEdges {
		t.Fatalf("ParseKind(Edges) = %q, %v", k, err)
	}
	if _, err := ParseKind("depth"); err == nil {
		t.Fatal("ParseKind(depth) accepted an unknown kind")
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestAgreement(t *testing.T) {
	edges := func(x *tensor.Tensor) *tensor.Tensor {
		e, err := Spec{Kind: KindEdges}.Compute(x)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a := edges(square(16, 4, 10))
	iou, corr, err := Agreement(a, a)
	if err != nil || iou[0] != 1 || math.Abs(corr[0]-1) > 1e-12 {
		t.Fatalf("identical maps: IoU %v corr %v err %v; want 1, 1", iou, corr, err)
	}
	// The same square shifted by one pixel diagonally: the 2-pixel-thick
	// borders half overlap; shifted by three they barely touch.
	iou1, corr1, err := Agreement(a, edges(square(16, 5, 11)))
	if err != nil || !(iou1[0] > 0.2 && iou1[0] < 0.8) || !(corr1[0] > 0.2 && corr1[0] < 0.9) {
		t.Fatalf("square shifted by 1: IoU %v corr %v err %v; want IoU in (0.2, 0.8), corr in (0.2, 0.9)", iou1, corr1, err)
	}
	iou3, corr3, _ := Agreement(a, edges(square(16, 7, 13)))
	if !(iou3[0] < iou1[0] && corr3[0] < corr1[0]) {
		t.Fatalf("square shifted by 3: IoU %v corr %v, want below the 1-pixel shift's %v, %v", iou3, corr3, iou1, corr1)
	}
	// Soft maps are binarized at m ≥ 0.5: a map at m = 0.6 everywhere on
	// the left half against one on the right half share nothing.
	l, r := tensor.New(1, 1, 4, 4), tensor.New(1, 1, 4, 4)
	for i := range l.Data() {
		l.Data()[i], r.Data()[i] = -1, -1
		if i%4 < 2 {
			l.Data()[i] = 0.2
		} else {
			r.Data()[i] = 0.2
		}
	}
	iou, corr, _ = Agreement(l, r)
	if iou[0] != 0 || math.Abs(corr[0]+1) > 1e-9 {
		t.Fatalf("disjoint halves: IoU %v corr %v, want 0 and -1", iou, corr)
	}
	black := tensor.New(1, 1, 16, 16)
	tensor.CPU.Fill(black, -1)
	iou, corr, _ = Agreement(black, black)
	if iou[0] != 1 || corr[0] != 0 {
		t.Fatalf("two blank images: IoU %v corr %v, want 1 and 0", iou, corr)
	}
	if _, _, err := Agreement(a, tensor.New(1, 1, 15, 16)); err == nil {
		t.Fatal("different shapes accepted")
	}
	if p := Pearson([]float32{1, 2, 3}, []float32{3, 2, 1}); math.Abs(p+1) > 1e-12 {
		t.Fatalf("Pearson of reversed ramps = %g, want -1", p)
	}
	m, se := MeanSE([]float64{1, 2, 3, 4})
	if m != 2.5 || math.Abs(se-math.Sqrt(5.0/3)/2) > 1e-12 {
		t.Fatalf("MeanSE(1..4) = %g ± %g, want 2.5 ± %g", m, se, math.Sqrt(5.0/3)/2)
	}
}
