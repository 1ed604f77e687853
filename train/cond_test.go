package train

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/model/cond"
	"github.com/diffuse-go/diffuse/tensor"
)

// labeledData adds labels (i % 10) to memData and records every batch's
// labels as the training loop passed them.
type labeledData struct {
	*memData
}

func (l labeledData) BatchLabels(idx, dst []int) bool {
	for j, i := range idx {
		dst[j] = i % 10
	}
	return true
}

// A class-conditional model initialized from an unconditional checkpoint
// (init_from) predicts exactly what that checkpoint does before training,
// trains on labeled data, and refuses unlabeled data with a clear error.
func TestClassConditionalTraining(t *testing.T) {
	dir := t.TempDir()
	base := tinyConfig()
	st, err := NewState(base)
	if err != nil {
		t.Fatal(err)
	}
	if err := Run(st, data(16), Options{}); err != nil {
		t.Fatal(err)
	}
	exp := filepath.Join(dir, "base.safetensors")
	if err := Export(exp, st, false); err != nil {
		t.Fatal(err)
	}
	st.EMA.CopyTo() // the export holds the EMA weights
	cc := tinyConfig()
	cc.Model.Classes, cc.CondDropout, cc.InitFrom = 10, 0.5, exp
	cst, err := NewState(cc)
	if err != nil {
		t.Fatal(err)
	}
	x, ts := tensor.New(2, 1, 28, 28), []float32{10, 900}
	for i := range x.Data() {
		x.Data()[i] = float32(i%7) * 0.1
	}
	g := autograd.NoGrad(tensor.CPU)
	want := st.Net.Forward(g, autograd.Const(x), ts).Value.ToHost()
	got := cst.Net.(model.Conditional).ForwardCond(g, autograd.Const(x), ts, &model.Cond{Labels: []int{3, cond.Null}}).Value.ToHost()
	for i := range want {
		if want[i] != got[i] {
			t.Fatalf("init_from: output %d is %g, the base model's is %g", i, got[i], want[i])
		}
	}
	if err := Run(cst, data(16), Options{}); err == nil || !strings.Contains(err.Error(), "labeled data") {
		t.Fatalf("class-conditional training on unlabeled data: err = %v", err)
	}
	if err := Run(cst, labeledData{data(16)}, Options{}); err != nil {
		t.Fatal(err)
	}
	if cst.Step != cc.Steps {
		t.Fatalf("trained %d steps, want %d", cst.Step, cc.Steps)
	}
	var changed bool
	emb := findParam(t, cst, "class_emb.weight")
	for _, v := range emb {
		changed = changed || v != 0
	}
	if !changed {
		t.Fatal("the label embedding did not train")
	}
	cc.InitFrom = filepath.Join(dir, "missing.safetensors")
	if _, err := NewState(cc); err == nil || !strings.Contains(err.Error(), "init_from") {
		t.Fatalf("missing init_from file: err = %v", err)
	}
}

func findParam(t *testing.T, st *State, name string) []float32 {
	t.Helper()
	for _, p := range st.Opt.Params {
		if p.Name == name {
			return p.Var.Value.ToHost()
		}
	}
	t.Fatalf("no parameter %s", name)
	return nil
}
