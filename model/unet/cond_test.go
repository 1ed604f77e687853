package unet

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/model/cond"
	"github.com/diffuse-go/diffuse/tensor"
)

func randInput(b int, seed uint64) (*tensor.Tensor, []float32) {
	r := rand.New(rand.NewPCG(seed, 1))
	x := tensor.New(b, 1, 28, 28)
	for i := range x.Data() {
		x.Data()[i] = float32(r.NormFloat64())
	}
	t := make([]float32, b)
	for i := range t {
		t[i] = float32(r.IntN(1000))
	}
	return x, t
}

func maxDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}

// A class-conditional UNet-S starts (zero label embedding) as exactly the
// unconditional network built from the same seed; once the embedding is
// trained, labels change the output, the null label is its own row, and a
// label outside the range is an error, not a panic.
func TestClassUNetS(t *testing.T) {
	base := NewUNetS(rand.New(rand.NewPCG(3, 3)))
	cu := NewClassUNetS(rand.New(rand.NewPCG(3, 3)), 10)
	if cu.Classes() != 10 || base.Classes() != 0 {
		t.Fatalf("Classes() = %d, %d; want 10, 0", cu.Classes(), base.Classes())
	}
	x, ts := randInput(3, 9)
	g := autograd.NoGrad(tensor.CPU)
	want := base.Forward(g, autograd.Const(x), ts).Value.ToHost()
	got := cu.ForwardCond(g, autograd.Const(x), ts, &cond.Cond{Labels: []int{1, cond.Null, 7}}).Value.ToHost()
	if d := maxDiff(want, got); d != 0 {
		t.Fatalf("zero-initialized label embedding changed the output by %g", d)
	}
	r := rand.New(rand.NewPCG(4, 4))
	for i := range cu.Class.W.Value.Data() {
		cu.Class.W.Value.Data()[i] = float32(r.NormFloat64())
	}
	out := func(labels []int) []float32 {
		return cu.ForwardCond(g, autograd.Const(x), ts, &cond.Cond{Labels: labels}).Value.ToHost()
	}
	a, b := out([]int{1, 1, 1}), out([]int{2, 2, 2})
	if maxDiff(a, b) < 1e-4 {
		t.Fatal("labels 1 and 2 give the same output")
	}
	null := out([]int{cond.Null, cond.Null, cond.Null})
	if d := maxDiff(null, cu.Forward(g, autograd.Const(x), ts).Value.ToHost()); d != 0 {
		t.Fatalf("Forward differs from the null label by %g", d)
	}
	// Per-image labels: image 0 of [1,2,...] equals image 0 of [1,1,...].
	mixed := out([]int{1, 2, cond.Null})
	per := 784
	if maxDiff(mixed[:per], a[:per]) > 1e-5 || maxDiff(mixed[per:2*per], b[per:2*per]) > 1e-5 || maxDiff(mixed[2*per:], null[2*per:]) > 1e-5 {
		t.Fatal("labels are not applied per image")
	}
	err := autograd.Catch(func() { out([]int{1, 10, 2}) })
	if err == nil || !strings.Contains(err.Error(), "label 10") {
		t.Fatalf("label 10 of 10 classes: err = %v, want an error naming it", err)
	}
	err = autograd.Catch(func() {
		base.ForwardCond(g, autograd.Const(x), ts, &cond.Cond{Tokens: [][]int{{1}, {2}, {3}}})
	})
	if err == nil || !strings.Contains(err.Error(), "text") {
		t.Fatalf("prompt to a model without text encoder: err = %v", err)
	}
}
