package captions

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/data"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/text"
)

// canvas returns a blank 28×28 image (all −1) and a setter.
func canvas() ([]float32, func(r, c int)) {
	img := make([]float32, 28*28)
	for i := range img {
		img[i] = -1
	}
	return img, func(r, c int) {
		if r >= 0 && r < 28 && c >= 0 && c < 28 {
			img[r*28+c] = 1
		}
	}
}

// bar draws a vertical bar of the given width over rows [r0, r1) whose
// column shifts by shear columns per row upwards (shear > 0 leans right).
func bar(width, r0, r1 int, shear float64) []float32 {
	img, set := canvas()
	for r := r0; r < r1; r++ {
		up := float64(r1 - 1 - r) // rows above the bottom row
		c0 := 12 + int(math.Round(shear*up)) - width/2
		for c := c0; c < c0+width; c++ {
			set(r, c)
		}
	}
	return img
}

// Thick bars have more ink than thin ones, tall bars a larger box, and a
// bar leaning right a positive slant equal to its shear; upright is 0.
func TestMeasureSyntheticShapes(t *testing.T) {
	thin, thick := Measure(bar(1, 4, 24, 0), 28, 28), Measure(bar(4, 4, 24, 0), 28, 28)
	if thin.Ink != 20 || thick.Ink != 80 {
		t.Fatalf("ink of 1×20 and 4×20 bars: %g, %g; want 20, 80", thin.Ink, thick.Ink)
	}
	if thin.Height != 20 || thin.Area != 20 || thick.Area != 80 {
		t.Fatalf("boxes: thin %+v thick %+v; want height 20, areas 20 and 80", thin, thick)
	}
	if thin.Slant != 0 || thick.Slant != 0 {
		t.Fatalf("upright bars have slant %g, %g; want 0", thin.Slant, thick.Slant)
	}
	short := Measure(bar(2, 10, 18, 0), 28, 28)
	if short.Height != 8 || short.Area >= thick.Area {
		t.Fatalf("a 2×8 bar: %+v; want height 8 and a smaller box than the 4×20 bar", short)
	}
	// A line with one column of shift per 4 rows (shear 0.25).
	right := Measure(bar(2, 4, 24, 0.25), 28, 28)
	left := Measure(bar(2, 4, 24, -0.25), 28, 28)
	if math.Abs(right.Slant-0.25) > 0.02 || math.Abs(left.Slant+0.25) > 0.02 {
		t.Fatalf("slants of lines leaning right/left by 0.25: %g, %g", right.Slant, left.Slant)
	}
	// Grey ink counts by its value: a pixel at 0 (mid-grey) is half a pixel of ink
	// and, not being > 0, lies outside the box.
	img, set := canvas()
	set(5, 5)
	img[6*28+5] = 0
	m := Measure(img, 28, 28)
	if m.Ink != 1.5 || m.Area != 1 {
		t.Fatalf("one white and one grey pixel: ink %g area %g; want 1.5 and 1", m.Ink, m.Area)
	}
	if e := Measure(make([]float32, 0), 0, 0); e != (Measures{}) {
		t.Fatalf("empty image: %+v", e)
	}
}

func TestFitAndClassify(t *testing.T) {
	var ms []Measures
	var labels []int
	for d := range 10 {
		for k := range 9 {
			v := float64(k + 10*d)
			ms = append(ms, Measures{Ink: v, Area: 100 + v, Slant: v / 100})
			labels = append(labels, d)
		}
	}
	th, err := Fit(ms, labels)
	if err != nil {
		t.Fatal(err)
	}
	// Digit 4 has values 40..48: cuts at ranks 3 and 6 → 43 and 46.
	if th.Ink[4] != (Cuts{43, 46}) || th.Area[4] != (Cuts{143, 146}) {
		t.Fatalf("digit 4 cuts: ink %v area %v; want [43 46] and [143 146]", th.Ink[4], th.Area[4])
	}
	count := [3]int{}
	for i, m := range ms {
		if labels[i] == 4 {
			a := th.Classify(4, m)
			count[a.Thickness]++
			if a.Thickness != a.Size || a.Size != a.Slant || a.Digit != 4 {
				t.Fatalf("%+v: the three attributes rank alike here", a)
			}
		}
	}
	if count != [3]int{3, 3, 3} {
		t.Fatalf("terciles of 9 values hold %v; want 3 each", count)
	}
	if _, err := Fit(ms[:20], labels[:20]); err == nil || !strings.Contains(err.Error(), "digit 2") {
		t.Fatalf("too few images of digit 2: err = %v", err)
	}
	if _, err := Fit(ms[:2], []int{1, 12}); err == nil || !strings.Contains(err.Error(), "label 12") {
		t.Fatalf("label 12: err = %v", err)
	}
}

// Captions are deterministic for a seed, vary, always tokenize with the
// vocabulary within MaxWords, name the digit (or say "digit"), and use
// only words of the attribute levels they describe.
func TestCaptions(t *testing.T) {
	tok, err := text.NewTokenizer(Vocabulary(), MaxWords)
	if err != nil {
		t.Fatal(err)
	}
	a := Attributes{Digit: 7, Thickness: Low, Size: High, Slant: Low}
	c1 := Caption(a, rand.New(rand.NewPCG(1, 2)))
	if c2 := Caption(a, rand.New(rand.NewPCG(1, 2))); c1 != c2 {
		t.Fatalf("same seed, different captions: %q, %q", c1, c2)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	seen := map[string]bool{}
	longest := 0
	forbidden := []string{"thick", "bold", "heavy", "small", "little", "narrow", "right", "upright", "italic"}
	for i := range 5000 {
		a := Attributes{Digit: i % 10, Thickness: Level(i % 3), Size: Level(i / 3 % 3), Slant: Level(i / 9 % 3)}
		c := Caption(a, rng)
		seen[c] = true
		ids, err := tok.Encode(c)
		if err != nil {
			t.Fatalf("caption %q: %v", c, err)
		}
		longest = max(longest, len(ids))
		if d, ok := DigitOf(c); ok && d != a.Digit {
			t.Fatalf("caption %q of digit %d names %d", c, a.Digit, d)
		} else if !ok && !strings.Contains(c, "digit") {
			t.Fatalf("caption %q names no digit and does not say 'digit'", c)
		}
		if a.Thickness == Low && a.Size == High && a.Slant == Low {
			for _, w := range text.Split(c) {
				for _, f := range forbidden {
					if w == f {
						t.Fatalf("caption %q of a thin, large, left-slanted digit says %q", c, w)
					}
				}
			}
		}
	}
	if len(seen) < 2000 {
		t.Fatalf("only %d distinct captions of 5000", len(seen))
	}
	if longest < 10 {
		t.Fatalf("longest caption has %d tokens: the phrase forms never combined?", longest)
	}
	t.Logf("%d distinct captions, longest %d tokens, e.g. %q", len(seen), longest, c1)
}

func TestDigitOf(t *testing.T) {
	for p, want := range map[string]int{"seven": 7, "a thin slanted 7": 7, "the digit 0, thick strokes": 0, "ONE": 1, "number nine, tilted left": 9} {
		if d, ok := DigitOf(p); !ok || d != want {
			t.Errorf("DigitOf(%q) = %d, %v; want %d", p, d, ok, want)
		}
	}
	for _, p := range []string{"a thick digit", "a 3 or an 8", "17", ""} {
		if d, ok := DigitOf(p); ok {
			t.Errorf("DigitOf(%q) = %d; want none", p, d)
		}
	}
}

// NewDataset bins a labeled data set with fitted or given thresholds, and
// refuses unlabeled data.
func TestNewDataset(t *testing.T) {
	n := 30
	imgs := tensor.New(n, 1, 28, 28)
	labels := make([]int, n)
	for i := range n {
		labels[i] = i % 10
		copy(imgs.Data()[i*784:(i+1)*784], bar(1+i/10, 4, 24, 0)) // widths 1, 2, 3 per digit
	}
	ds, err := NewDataset(&data.Dataset{Images: imgs, Labels: labels}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range ds.Attrs {
		if want := Level(i / 10); a.Thickness != want || a.Digit != i%10 {
			t.Fatalf("image %d (bar width %d): %+v; want thickness level %d", i, 1+i/10, a, want)
		}
	}
	if c := ds.Caption(25, rand.New(rand.NewPCG(0, 0))); c == "" {
		t.Fatal("empty caption")
	}
	if _, err := NewDataset(&data.Dataset{Images: imgs}, nil); err == nil || !strings.Contains(err.Error(), "labels") {
		t.Fatalf("unlabeled data: err = %v", err)
	}
}
