package eval

import (
	"math/rand/v2"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

func TestLabelAccuracy(t *testing.T) {
	acc, err := LabelAccuracy([]int{3, 1, 4, 1}, []int{3, 1, 5, 9})
	if err != nil || acc != 0.5 {
		t.Fatalf("got %v, %v; want 0.5", acc, err)
	}
	if _, err := LabelAccuracy([]int{1, 2}, []int{1}); err == nil {
		t.Error("2 predictions, 1 label: want an error")
	}
	if _, err := LabelAccuracy(nil, nil); err == nil {
		t.Error("no samples: want an error")
	}
}

func TestShiftKeepsPixels(t *testing.T) {
	x := tensor.New(3, 1, 5, 5)
	for i := range x.Data() {
		x.Data()[i] = -1
	}
	for b := 0; b < 3; b++ {
		x.Data()[b*25+12] = 1 // the centre pixel
	}
	dst := tensor.New(3, 1, 5, 5)
	Shift(dst, x, 1, rand.New(rand.NewPCG(1, 1)))
	for b := 0; b < 3; b++ {
		on := 0
		for _, v := range dst.Data()[b*25 : (b+1)*25] {
			if v == 1 {
				on++
			}
		}
		if on != 1 || dst.Data()[b*25+0] != -1 || dst.Data()[b*25+24] != -1 {
			t.Fatalf("image %d: the centre pixel should move by at most 1 and stay single (%d lit)", b, on)
		}
	}
}
