package tensor

import (
	"strings"
	"testing"
)

func mustPanicShape(t *testing.T, want string, fn func()) {
	t.Helper()
	defer func() {
		r := recover()
		se, ok := r.(*ShapeError)
		if !ok {
			t.Fatalf("want *ShapeError panic containing %q, got %v", want, r)
		}
		if !strings.Contains(se.Error(), want) {
			t.Fatalf("error %q does not mention %q", se.Error(), want)
		}
	}()
	fn()
}

func TestReshapeIsAView(t *testing.T) {
	x := FromSlice([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	y := x.Reshape(3, -1)
	if !SameShape(y.Shape(), []int{3, 2}) {
		t.Fatalf("shape %v", y.Shape())
	}
	y.Data()[0] = 9
	if x.Data()[0] != 9 {
		t.Fatal("reshape copied the storage")
	}
	mustPanicShape(t, "has 4 elements", func() { x.Reshape(2, 2) })
	mustPanicShape(t, "more than one -1", func() { x.Reshape(-1, -1) })
	mustPanicShape(t, "cannot infer", func() { x.Reshape(4, -1) })
}

func TestConstructorsCheck(t *testing.T) {
	mustPanicShape(t, "do not fill", func() { FromSlice([]float32{1, 2, 3}, 2, 2) })
	mustPanicShape(t, "negative", func() { New(2, -1) })
	mustPanicShape(t, "want 1", func() { New(2).Item() })
	if err := CheckShape([]int{1 << 20, 1 << 20, 1 << 20}); err == nil {
		t.Error("huge shape accepted")
	}
	if v := Scalar(2.5).Item(); v != 2.5 {
		t.Errorf("Scalar item %v", v)
	}
	if n := New().Numel(); n != 1 {
		t.Errorf("scalar numel %d", n)
	}
}

func TestArena(t *testing.T) {
	a := NewArena(CPU)
	x := a.Get(4, 4)
	y := a.Get(16)
	if x.Storage() == y.Storage() {
		t.Fatal("two outstanding tensors share storage")
	}
	a.Release(x)
	z := a.Get(2, 8)
	if z.Storage() != x.Storage() {
		t.Error("released buffer not reused for the same size")
	}
	a.Reset()
	if b := a.Bytes(); b != 2*16*4 {
		t.Errorf("arena holds %d bytes, want %d", b, 2*16*4)
	}
	zero := a.Zeros(16)
	for _, v := range zero.Data() {
		if v != 0 {
			t.Fatal("Zeros not zero")
		}
	}
}

func TestConvParams(t *testing.T) {
	p := ConvParams{N: 1, C: 1, H: 28, W: 28, CO: 1, KH: 3, KW: 3, Stride: 2, Pad: 1}
	if p.OH() != 14 || p.OW() != 14 {
		t.Errorf("stride-2 output %dx%d, want 14x14", p.OH(), p.OW())
	}
}
