package guidance

import (
	"math"
	"testing"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/model/cond"
	"github.com/diffuse-go/diffuse/tensor"
)

// labelNet predicts out = 0.5·x + c(label), c(y) = y+1 and c(null) = 0;
// it records the batch size of every call.
type labelNet struct{ calls []int }

func (n *labelNet) Visit(string, func(string, *autograd.Var)) {}
func (n *labelNet) Classes() int                              { return 10 }
func (n *labelNet) Forward(g *autograd.Graph, x *autograd.Var, t []float32) *autograd.Var {
	return n.ForwardCond(g, x, t, nil)
}
func (n *labelNet) ForwardCond(g *autograd.Graph, x *autograd.Var, t []float32, c *model.Cond) *autograd.Var {
	b := x.Shape()[0]
	n.calls = append(n.calls, b)
	ids := c.ClassIDs(b, 10)
	out := tensor.New(x.Shape()...)
	xd, od := x.Value.ToHost(), out.Data()
	per := len(od) / b
	for i := range b {
		v := float32(0)
		if ids[i] < 10 {
			v = float32(ids[i] + 1)
		}
		for j := range per {
			od[i*per+j] = 0.5*xd[i*per+j] + v
		}
	}
	return autograd.Const(out)
}

func TestCFG(t *testing.T) {
	const n, per = 5, 4
	labels := []int{0, 1, 2, 3, 4}
	neg := []int{cond.Null, cond.Null, 9, cond.Null, 9}
	scales := []float64{0, 1, 3, 3, 5}
	net := &labelNet{}
	c, err := NewCFG(net, &model.Cond{Labels: labels}, &model.Cond{Labels: neg}, scales, n)
	if err != nil {
		t.Fatal(err)
	}
	g := autograd.NoGrad(tensor.CPU)
	// Two batches: images [0,2) and [2,5).
	var got []float32
	for _, bt := range [][2]int{{0, 2}, {2, 3}} {
		c.SetBatch(bt[0], bt[1])
		x := tensor.New(bt[1], 1, 2, 2)
		for i := range x.Data() {
			x.Data()[i] = float32(bt[0]*per + i)
		}
		got = append(got, c.Forward(g, autograd.Const(x), make([]float32, bt[1])).Value.ToHost()...)
	}
	for i := range n {
		cv := float64(labels[i] + 1)
		nv := 0.0
		if neg[i] != cond.Null {
			nv = float64(neg[i] + 1)
		}
		for j := range per {
			x := float64(i*per + j)
			want := 0.5*x + nv + scales[i]*(cv-nv)
			if math.Abs(float64(got[i*per+j])-want) > 1e-5 {
				t.Fatalf("image %d (w=%g): got %g, want %g", i, scales[i], got[i*per+j], want)
			}
		}
	}
	// One forward of 2B per batch: the conditional and negative passes share it.
	if len(net.calls) != 2 || net.calls[0] != 4 || net.calls[1] != 6 {
		t.Fatalf("forward batch sizes %v, want [4 6]", net.calls)
	}
	// w = 1 everywhere needs only the conditional pass.
	net.calls = nil
	one, _ := NewCFG(net, &model.Cond{Labels: labels}, nil, []float64{1}, n)
	one.SetBatch(0, n)
	one.Forward(g, autograd.Const(tensor.New(n, 1, 2, 2)), make([]float32, n))
	if len(net.calls) != 1 || net.calls[0] != n {
		t.Fatalf("w=1: forward batch sizes %v, want [%d]", net.calls, n)
	}
}

func TestCFGErrors(t *testing.T) {
	net := &labelNet{}
	if _, err := NewCFG(net, &model.Cond{Labels: []int{1, 2}}, nil, []float64{3}, 3); err == nil {
		t.Error("2 labels for 3 images: no error")
	}
	if _, err := NewCFG(net, &model.Cond{Labels: []int{1, 2, 3}}, nil, []float64{3, 3}, 3); err == nil {
		t.Error("2 scales for 3 images: no error")
	}
	c, _ := NewCFG(net, &model.Cond{Labels: []int{1, 2, 3}}, nil, []float64{3}, 3)
	c.SetBatch(2, 2)
	err := autograd.Catch(func() {
		c.Forward(autograd.NoGrad(tensor.CPU), autograd.Const(tensor.New(2, 1, 2, 2)), make([]float32, 2))
	})
	if err == nil {
		t.Error("batch past the run's end: no error")
	}
}
