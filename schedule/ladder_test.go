package schedule

import (
	"math"
	"testing"
)

func TestLadder(t *testing.T) {
	l, err := NewLadder(0.01, 35, 100)
	if err != nil {
		t.Fatal(err)
	}
	s := l.Sigmas()
	if len(s) != 100 || s[0] != 35 || s[99] != 0.01 {
		t.Fatalf("ends %v … %v (len %d), want 35 … 0.01", s[0], s[len(s)-1], len(s))
	}
	g := l.Ratio()
	if math.Abs(g-math.Pow(3500, 1/99.0)) > 1e-12 {
		t.Errorf("ratio %v", g)
	}
	for i := 1; i < len(s); i++ {
		if r := s[i-1] / s[i]; math.Abs(r-g) > 1e-9 {
			t.Fatalf("σ_%d/σ_%d = %v, want the constant ratio %v", i-1, i, r, g)
		}
	}
	if l.Label(0.01) != 0 || l.Label(35) != MaxLabel {
		t.Errorf("labels of the ends: %v, %v", l.Label(0.01), l.Label(35))
	}
	// Affine in log σ: the geometric mean sits at the middle label.
	if c := l.Label(math.Sqrt(0.01 * 35)); math.Abs(float64(c)-MaxLabel/2.0) > 1e-3 {
		t.Errorf("label of the geometric mean %v, want 499.5", c)
	}
	for i := 1; i < len(s); i++ {
		if !(l.Label(s[i]) < l.Label(s[i-1])) {
			t.Fatalf("labels not decreasing along the ladder at %d", i)
		}
	}
	for _, sg := range []float64{0.01, 0.3, 7, 35} {
		if back := l.SigmaOfLabel(float64(l.Label(sg))); math.Abs(back-sg) > 1e-5*sg {
			t.Errorf("SigmaOfLabel(Label(%v)) = %v", sg, back)
		}
	}
	for i, sg := range s {
		for _, f := range []float64{1, 1.03, 1 / 1.03} { // within √γ ≈ 1.043 of level i
			if got, want := l.LevelLabel(sg*f), l.Label(sg); math.Abs(float64(got-want)) > 1e-3 {
				t.Fatalf("LevelLabel(σ_%d·%v) = %v, want level %d's label %v", i, f, got, i, want)
			}
		}
	}
	if l.LevelLabel(1e-6) != 0 || l.LevelLabel(1e6) != MaxLabel {
		t.Error("LevelLabel outside the ladder is not clamped")
	}
	if l.Label(1e-5) != 0 || l.Label(1e5) != MaxLabel {
		t.Error("labels outside the ladder are not clamped")
	}
	for _, bad := range []Ladder{{0, 1, 10}, {1, 1, 10}, {0.1, math.Inf(1), 10}, {0.1, 1, 1}, {math.NaN(), 1, 10}} {
		if bad.Validate() == nil {
			t.Errorf("%+v: want an error", bad)
		}
	}
}
