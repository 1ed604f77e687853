package classifier

import (
	"math/rand/v2"
	"testing"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

func TestNoisyNet(t *testing.T) {
	if _, err := NewNoisy(rand.New(rand.NewPCG(0, 0)), 1, [4]int{8, 12, 16, 16}, 10); err == nil {
		t.Error("width 12 (not a multiple of 8): want an error")
	}
	n, err := NewNoisy(rand.New(rand.NewPCG(1, 1)), 1, [4]int{8, 16, 16, 24}, 10)
	if err != nil {
		t.Fatal(err)
	}
	x := tensor.New(2, 1, 28, 28)
	for i := range x.Data() {
		x.Data()[i] = float32(i%7) / 7
	}
	g := autograd.New(tensor.CPU)
	xin := autograd.Input(x)
	logits, feats := n.Forward(g, xin, []float32{10, 10})
	if s := logits.Shape(); s[0] != 2 || s[1] != 10 {
		t.Fatalf("logits %v, want [2 10]", s)
	}
	if s := feats.Shape(); s[0] != 2 || s[1] != 24 {
		t.Fatalf("features %v, want [2 24]", s)
	}
	// The timestep changes the logits.
	other, _ := n.Forward(g, autograd.Const(x), []float32{10, 900})
	a, b := logits.Value.ToHost(), other.Value.ToHost()
	for j := 0; j < 10; j++ {
		if a[j] != b[j] {
			t.Fatalf("image 0 (same t): logit %d differs", j)
		}
	}
	differ := false
	for j := 10; j < 20; j++ {
		differ = differ || a[j] != b[j]
	}
	if !differ {
		t.Error("image 1 at t=10 and t=900 has the same logits: the timestep is ignored")
	}
	// Names: 4 convs, 4 norms, 4 time projections, emb, head.
	if got := len(nn.Parameters(n)); got != 2*(4+4+4+1+1) {
		t.Errorf("%d parameters, want 28", got)
	}
	// Frozen shares the weights, gives the same logits, and only x gets a
	// gradient.
	f := n.Frozen()
	fl, _ := f.Forward(g, xin, []float32{10, 10})
	for j, v := range fl.Value.ToHost() {
		if v != a[j] {
			t.Fatalf("frozen logit %d: %v, want %v", j, v, a[j])
		}
	}
	if err := g.Backward(g.Sum(fl)); err != nil {
		t.Fatal(err)
	}
	if !xin.HasGrad() {
		t.Error("input got no gradient")
	}
	for _, p := range nn.Parameters(n) {
		if p.Var.HasGrad() {
			t.Errorf("parameter %s got a gradient through the frozen view", p.Name)
		}
	}
	if err := autograd.Catch(func() { n.Forward(g, autograd.Const(x), []float32{1}) }); err == nil {
		t.Error("1 timestep for 2 images: want an error")
	}
}
