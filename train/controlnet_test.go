package train

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/model/cond"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// baseFile writes a random UNet-S export (the frozen base of the tests).
func baseFile(t *testing.T, dir string, seed uint64) string {
	t.Helper()
	c := tinyConfig()
	c.Seed = seed
	st, err := NewState(c)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "base.safetensors")
	if err := Export(p, st, false); err != nil {
		t.Fatal(err)
	}
	return p
}

func tinyControlNetConfig(base string) ControlNetConfig {
	c := DefaultControlNetConfig()
	c.Base, c.Batch, c.Steps, c.Warmup = base, 4, 6, 2
	return c
}

func controlNetWeights(st *ControlNetState) [][]float32 {
	var out [][]float32
	for _, p := range nn.Parameters(st.Net) {
		out = append(out, p.Var.Value.ToHost())
	}
	for i, s := range st.EMA.Shadow {
		out = append(out, s.ToHost(), st.Opt.M[i].ToHost(), st.Opt.V[i].ToHost())
	}
	return out
}

// A ControlNet run resumed from its checkpoint continues bit for bit; the
// base's weights never move; the loss log has each step once.
func TestControlNetResumeIsExactAndBaseFrozen(t *testing.T) {
	dir := t.TempDir()
	cfg := tinyControlNetConfig(baseFile(t, dir, 7))
	ds := data(10)
	a, err := NewControlNetState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	baseBefore := BaseDigest(a.Base)
	netBefore := controlNetWeights(a)
	if err := RunControlNet(a, ds, ControlNetOptions{}); err != nil {
		t.Fatal(err)
	}
	if BaseDigest(a.Base) != baseBefore || a.Config.BaseDigest != baseBefore {
		t.Fatal("training changed the frozen base (or the recorded digest is not the base's)")
	}
	moved := false
	for i, w := range controlNetWeights(a)[:len(nn.Parameters(a.Net))] {
		for j := range w {
			moved = moved || w[j] != netBefore[i][j]
		}
	}
	if !moved {
		t.Fatal("training did not change the ControlNet")
	}

	ckpt, logp := filepath.Join(dir, "cn.safetensors"), filepath.Join(dir, "loss.csv")
	b, err := NewControlNetState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := RunControlNet(b, ds, ControlNetOptions{Checkpoint: ckpt, LossCSV: logp, StopAfter: 3}); err != nil {
		t.Fatal(err)
	}
	c, err := LoadControlNetCheckpoint(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	if c.Step != 3 || c.Config != b.Config || c.BaseConfig.Timesteps != b.BaseConfig.Timesteps {
		t.Fatalf("checkpoint restored step %d config %+v; want step 3 and %+v", c.Step, c.Config, b.Config)
	}
	if err := RunControlNet(c, ds, ControlNetOptions{Checkpoint: ckpt, LossCSV: logp}); err != nil {
		t.Fatal(err)
	}
	wa, wc := controlNetWeights(a), controlNetWeights(c)
	for i := range wa {
		for j := range wa[i] {
			if wa[i][j] != wc[i][j] {
				t.Fatalf("resumed run differs from the straight one (tensor %d, element %d)", i, j)
			}
		}
	}
	if a.LastLoss != c.LastLoss {
		t.Fatalf("last loss %g vs %g", a.LastLoss, c.LastLoss)
	}
	log, _ := os.ReadFile(logp)
	if rows := strings.Count(string(log), "\n"); rows != 1+cfg.Steps {
		t.Fatalf("loss log has %d lines, want header + %d steps:\n%s", rows, cfg.Steps, log)
	}

	// The export loads (F16 EMA weights) and the checkpoint refuses a base
	// that changed since.
	exp := filepath.Join(dir, "cn-export.safetensors")
	if err := ExportControlNet(exp, c, true); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.ReadFile(exp)
	if err != nil {
		t.Fatal(err)
	}
	net, got, err := LoadControlNet(f, exp, c.Base)
	if err != nil || got.Control != cfg.Control || got.Base != cfg.Base {
		t.Fatalf("LoadControlNet: config %+v, err %v", got, err)
	}
	ema := c.EMA.Shadow
	for i, p := range nn.Parameters(net) {
		for j, v := range p.Var.Value.Data() {
			if d := v - ema[i].Data()[j]; d > 1e-3 || d < -1e-3 {
				t.Fatalf("exported %s[%d] = %g, EMA %g", p.Name, j, v, ema[i].Data()[j])
			}
		}
	}
	if _, err := LoadControlNetCheckpoint(exp); err == nil || !strings.Contains(err.Error(), "only full checkpoints resume") {
		t.Fatalf("resuming an export: error %v", err)
	}
	baseFile(t, dir, 8) // overwrite the base with other weights
	if _, err := LoadControlNetCheckpoint(ckpt); err == nil || !strings.Contains(err.Error(), "changed since") {
		t.Fatalf("changed base: error %v, want one saying it changed", err)
	}
	ff, _ := safetensors.ReadFile(filepath.Join(dir, "base.safetensors"))
	if _, _, err := ReadControlNetConfig(ff, "base.safetensors"); err == nil || !strings.Contains(err.Error(), "--model") {
		t.Fatalf("a base model passed as ControlNet: error %v", err)
	}
}

// Training lowers the loss on a fixed batch (fixed t and ε): the
// ControlNet learns to use the control.
func TestControlNetLearns(t *testing.T) {
	dir := t.TempDir()
	cfg := tinyControlNetConfig(baseFile(t, dir, 7))
	cfg.Steps, cfg.Batch, cfg.LR, cfg.Warmup = 25, 8, 1e-3, 0
	ds := data(8)
	st, err := NewControlNetState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	x0, ctrl, eps, xt := tensor.New(8, 1, 28, 28), tensor.New(8, 1, 28, 28), tensor.New(8, 1, 28, 28), tensor.New(8, 1, 28, 28)
	ds.Batch([]int{0, 1, 2, 3, 4, 5, 6, 7}, x0)
	if err := cfg.Control.Apply(ctrl, x0); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for i := range eps.Data() {
		eps.Data()[i] = float32(r.NormFloat64())
	}
	ts := []int{50, 150, 250, 350, 450, 550, 650, 750}
	tf := []float32{50, 150, 250, 350, 450, 550, 650, 750}
	sched, _ := st.BaseConfig.NoiseSchedule()
	if err := sched.AddNoise(xt, x0, eps, ts); err != nil {
		t.Fatal(err)
	}
	loss := func() float64 {
		g := autograd.NoGrad(tensor.CPU)
		res := st.Net.Forward(g, autograd.Const(xt), tf, autograd.Const(ctrl))
		return float64(g.MSE(st.Base.ForwardCond(g, autograd.Const(xt), tf, &cond.Cond{Residuals: res}), autograd.Const(eps)).Value.Item())
	}
	before := loss()
	if err := RunControlNet(st, ds, ControlNetOptions{}); err != nil {
		t.Fatal(err)
	}
	after := loss()
	if !(after < 0.9*before) {
		t.Fatalf("loss on a fixed batch went from %g to %g after %d steps; want a 10%% drop", before, after, cfg.Steps)
	}
}

func TestControlNetConfigErrors(t *testing.T) {
	c := DefaultControlNetConfig()
	c.Control.Kind = "depth"
	if _, err := NewControlNetState(c); err == nil || !strings.Contains(err.Error(), "control kind") {
		t.Fatalf("unknown control kind: error %v", err)
	}
	c = DefaultControlNetConfig()
	c.Base = filepath.Join(t.TempDir(), "missing.safetensors")
	if _, err := NewControlNetState(c); err == nil || !strings.Contains(err.Error(), "controlnet base") {
		t.Fatalf("missing base: error %v", err)
	}
	// The embedded model is a valid base.
	u, bc, _, err := LoadBase(EmbeddedPrefix + "mnist.safetensors")
	if err != nil || u == nil || bc.Prediction != "epsilon" {
		t.Fatalf("embedded base: %v (config %+v)", err, bc)
	}
}
