package optim

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

type adamCase struct {
	Name                  string
	Decoupled             bool
	LR, Beta1, Beta2, Eps float32
	WeightDecay           float32 `json:"weight_decay"`
	P0                    []float32
	Grads                 [][]float32
	PFinal                []float32 `json:"p_final"`
}

func TestAdamMatchesTorch(t *testing.T) {
	b, err := os.ReadFile("testdata/adam_torch.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Cases []adamCase }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) {
			p := autograd.Param(tensor.FromSlice(append([]float32(nil), c.P0...), len(c.P0)))
			ps := []nn.Named{{Name: "p", Var: p}}
			opt := NewAdam(ps, c.LR)
			opt.Beta1, opt.Beta2, opt.Eps, opt.WeightDecay, opt.Decoupled = c.Beta1, c.Beta2, c.Eps, c.WeightDecay, c.Decoupled
			for _, g := range c.Grads {
				p.SetGrad(tensor.FromSlice(g, len(g)))
				opt.Update()
			}
			for i, want := range c.PFinal {
				got := p.Value.Data()[i]
				if math.Abs(float64(got-want)) > 1e-6*math.Max(1, math.Abs(float64(want))) {
					t.Errorf("p[%d] = %.9g, torch %.9g", i, got, want)
				}
			}
		})
	}
}

func TestClipGradNorm(t *testing.T) {
	p := autograd.Param(tensor.FromSlice([]float32{3, 4}, 2))
	g := autograd.New(tensor.CPU)
	if err := g.Backward(g.Sum(g.Mul(p, p))); err != nil { // grad = 2p = (6, 8), norm 10
		t.Fatal(err)
	}
	ps := []nn.Named{{Name: "p", Var: p}}
	n, err := ClipGradNorm(ps, 5)
	if err != nil || math.Abs(n-10) > 1e-5 {
		t.Fatalf("norm %v err %v, want 10", n, err)
	}
	if got := GradNorm(ps); math.Abs(got-5) > 1e-4 {
		t.Errorf("norm after clipping %v, want 5", got)
	}
	p.Grad.Data()[0] = float32(math.NaN())
	if _, err := ClipGradNorm(ps, 5); err == nil {
		t.Error("NaN gradient: want an error")
	}
}

func TestEMA(t *testing.T) {
	p := autograd.Param(tensor.FromSlice([]float32{0}, 1))
	ps := []nn.Named{{Name: "w", Var: p}}
	e := NewEMA(ps, 0.9)
	p.Value.Data()[0] = 1
	e.Update()
	e.Update()
	// shadow = 0.9·(0.9·0 + 0.1) + 0.1 = 0.19
	if got := e.Shadow[0].Data()[0]; math.Abs(float64(got)-0.19) > 1e-6 {
		t.Errorf("EMA = %v, want 0.19", got)
	}
	names := nn.Parameters(e.Module())
	if len(names) != 1 || names[0].Name != "w" {
		t.Errorf("EMA module names %v", names)
	}
}

func TestEMAWarmup(t *testing.T) {
	p := autograd.Param(tensor.FromSlice([]float32{0}, 1))
	e := NewEMA([]nn.Named{{Name: "w", Var: p}}, 0.999)
	p.Value.Data()[0] = 1
	e.UpdateAt(0) // decay min(0.999, 1/10) = 0.1: shadow = 0.9
	if got := e.Shadow[0].Data()[0]; math.Abs(float64(got)-0.9) > 1e-6 {
		t.Errorf("warm-up EMA = %v, want 0.9", got)
	}
}
