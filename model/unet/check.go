package unet

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// CheckResult holds the errors of one parity check against a reference
// export of UNet-S (unet_s.py --export): relative errors as the benchmark
// defines them.
type CheckResult struct {
	OutMaxRel   float64 // max |out − ref| / max |ref|
	LossRel     float64 // |loss − ref| / |ref|
	GradRelMax  float64 // worst ‖g − ref‖₂ / ‖ref‖₂ over all grad.* tensors
	WorstGrad   string  // name of the parameter with the worst gradient
	Loss        float64
	GradTensors int
}

// Passes reports whether the result meets the parity limits: output 1e-4,
// loss 1e-5, every gradient 1e-3.
func (r CheckResult) Passes() bool {
	return r.OutMaxRel <= 1e-4 && r.LossRel <= 1e-5 && r.GradRelMax <= 1e-3
}

func get(f *safetensors.File, name string, shape ...int) (*tensor.Tensor, error) {
	t, ok := f.Get(name)
	if !ok {
		return nil, fmt.Errorf("reference file has no tensor %q: is it an export of unet_s.py --export?", name)
	}
	if shape != nil && !tensor.SameShape(t.Shape, shape) {
		return nil, fmt.Errorf("reference tensor %q has shape %v, want %v", name, t.Shape, shape)
	}
	v, err := t.Float32()
	if err != nil {
		return nil, fmt.Errorf("reference tensor %q: %w", name, err)
	}
	return tensor.FromSlice(v, t.Shape...), nil
}

// CheckReference loads a UNet-S reference file (weights, check.x, check.t,
// check.eps, check.out, check.loss, grad.*), runs forward, the MSE loss
// against check.eps and backward, and compares everything.
func CheckReference(path string) (CheckResult, error) {
	var res CheckResult
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return res, err
	}
	net := NewUNetS(rand.New(rand.NewPCG(0, 0)))
	if err := nn.LoadFrom(f, net, ""); err != nil {
		return res, fmt.Errorf("load weights from %s: %w", path, err)
	}
	x, err := get(f, "check.x")
	if err != nil {
		return res, err
	}
	b := x.Dim(0)
	tt, err := get(f, "check.t", b)
	if err != nil {
		return res, err
	}
	eps, err := get(f, "check.eps", x.Shape()...)
	if err != nil {
		return res, err
	}
	refOut, err := get(f, "check.out", x.Shape()...)
	if err != nil {
		return res, err
	}
	refLoss, err := get(f, "check.loss")
	if err != nil {
		return res, err
	}
	g := autograd.New(tensor.CPU)
	err = autograd.Catch(func() {
		out := net.Forward(g, autograd.Const(x), tt.Data())
		res.OutMaxRel = maxRel(out.Value.Data(), refOut.Data())
		loss := g.MSE(out, autograd.Const(eps))
		res.Loss = float64(loss.Value.Item())
		rl := float64(refLoss.Data()[0])
		res.LossRel = math.Abs(res.Loss-rl) / math.Abs(rl)
		if e := g.Backward(loss); e != nil {
			panic(&tensor.ShapeError{Op: "Backward", Msg: e.Error()})
		}
	})
	if err != nil {
		return res, err
	}
	for _, p := range nn.Parameters(net) {
		ref, err := get(f, "grad."+p.Name, p.Var.Value.Shape()...)
		if err != nil {
			return res, err
		}
		if !p.Var.HasGrad() {
			return res, fmt.Errorf("parameter %s received no gradient", p.Name)
		}
		r := l2Rel(p.Var.Grad.Data(), ref.Data())
		res.GradTensors++
		if r > res.GradRelMax || math.IsNaN(r) {
			res.GradRelMax, res.WorstGrad = r, p.Name
		}
	}
	return res, nil
}

func maxRel(got, ref []float32) float64 {
	var md, mr float64
	for i := range ref {
		md = math.Max(md, math.Abs(float64(got[i])-float64(ref[i])))
		mr = math.Max(mr, math.Abs(float64(ref[i])))
		if math.IsNaN(float64(got[i])) {
			return math.NaN()
		}
	}
	return md / mr
}

func l2Rel(got, ref []float32) float64 {
	var d, r float64
	for i := range ref {
		e := float64(got[i]) - float64(ref[i])
		d += e * e
		r += float64(ref[i]) * float64(ref[i])
	}
	if r == 0 {
		return math.Sqrt(d)
	}
	return math.Sqrt(d / r)
}
