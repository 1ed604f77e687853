package train

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/bench"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

type memData struct {
	x     *tensor.Tensor
	nanAt int // Batch call number (1-based) that returns NaN images; 0 never
	calls int
}

func (m *memData) Len() int { return m.x.Dim(0) }
func (m *memData) Batch(idx []int, dst *tensor.Tensor) {
	m.calls++
	d := dst.Data()
	for i, j := range idx {
		copy(d[i*784:(i+1)*784], m.x.Data()[j*784:(j+1)*784])
	}
	if m.calls == m.nanAt {
		d[0] = float32(math.NaN())
	}
}

func tinyConfig() Config {
	c := DefaultConfig()
	c.Batch, c.Steps, c.Warmup = 4, 6, 2
	return c
}

func data(n int) *memData {
	return &memData{x: bench.StructuredImages(n, rand.New(rand.NewPCG(5, 5)))}
}

func weights(t *testing.T, st *State) [][]float32 {
	t.Helper()
	var out [][]float32
	for _, p := range nn.Parameters(st.Net) {
		out = append(out, p.Var.Value.ToHost())
	}
	for _, s := range st.EMA.Shadow {
		out = append(out, s.ToHost())
	}
	for i := range st.Opt.M {
		out = append(out, st.Opt.M[i].ToHost(), st.Opt.V[i].ToHost())
	}
	return out
}

// Training 2N steps straight equals N steps, a checkpoint, a resume from
// it, and N more steps: weights, EMA and optimizer state bit for bit.
func TestResumeIsExact(t *testing.T) { testResume(t, tinyConfig()) }

// The same for the NCSN objective (noise levels drawn from the RNG state
// that the checkpoint restores).
func TestResumeIsExactNCSN(t *testing.T) {
	c := tinyConfig()
	c.Objective = ObjectiveNCSN
	c.SetNCSNDefaults()
	testResume(t, c)
}

func testResume(t *testing.T, cfg Config) {
	dir := t.TempDir()
	ds := data(10) // epochs turn over mid-run (batch 4 of 10 images)
	a, err := NewState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := Run(a, ds, Options{}); err != nil {
		t.Fatal(err)
	}
	ck := filepath.Join(dir, "ck.safetensors")
	b, _ := NewState(cfg)
	if err := Run(b, ds, Options{Checkpoint: ck, StopAfter: 3}); err != nil {
		t.Fatal(err)
	}
	if b.Step != 3 {
		t.Fatalf("stopped at step %d, want 3", b.Step)
	}
	c, err := LoadCheckpoint(ck)
	if err != nil {
		t.Fatal(err)
	}
	if c.Step != 3 {
		t.Fatalf("checkpoint step %d, want 3", c.Step)
	}
	if err := Run(c, ds, Options{Checkpoint: ck}); err != nil {
		t.Fatal(err)
	}
	wa, wc := weights(t, a), weights(t, c)
	for i := range wa {
		for j := range wa[i] {
			if math.Float32bits(wa[i][j]) != math.Float32bits(wc[i][j]) {
				t.Fatalf("tensor %d element %d: straight %v, resumed %v", i, j, wa[i][j], wc[i][j])
			}
		}
	}
	if a.LastLoss != c.LastLoss {
		t.Errorf("last loss %v vs %v", a.LastLoss, c.LastLoss)
	}
}

func TestNaNLossStopsAndKeepsCheckpoint(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "ck.safetensors")
	ds := data(8)
	ds.nanAt = 3
	st, _ := NewState(tinyConfig())
	err := Run(st, ds, Options{Checkpoint: ck, CheckpointEvery: 1})
	if !errors.Is(err, ErrNaN) || !strings.Contains(err.Error(), "step 3") || !strings.Contains(err.Error(), ck) {
		t.Fatalf("want a NaN error naming step 3 and the checkpoint, got %v", err)
	}
	good, err := LoadCheckpoint(ck)
	if err != nil {
		t.Fatalf("last good checkpoint unreadable: %v", err)
	}
	if good.Step != 2 {
		t.Errorf("checkpoint at step %d, want 2 (the last good one)", good.Step)
	}
	for _, p := range nn.Parameters(good.Net) {
		for _, v := range p.Var.Value.Data() {
			if math.IsNaN(float64(v)) {
				t.Fatalf("checkpoint holds NaN in %s", p.Name)
			}
		}
	}
}

func TestBadCheckpoints(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "ck.safetensors")
	st, _ := NewState(tinyConfig())
	if err := Run(st, data(8), Options{Checkpoint: ck, StopAfter: 1}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(ck)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("truncated", func(t *testing.T) {
		p := filepath.Join(dir, "trunc.safetensors")
		os.WriteFile(p, raw[:len(raw)/2], 0o644)
		_, err := LoadCheckpoint(p)
		if err == nil || !strings.Contains(err.Error(), "trunc.safetensors") {
			t.Fatalf("want an error naming the file, got %v", err)
		}
	})
	t.Run("not a diffuse checkpoint", func(t *testing.T) {
		p := filepath.Join(dir, "plain.safetensors")
		if err := nn.Save(p, st.Net, nil); err != nil {
			t.Fatal(err)
		}
		_, err := LoadCheckpoint(p)
		if err == nil || !strings.Contains(err.Error(), "not a diffuse checkpoint") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("another architecture", func(t *testing.T) {
		f, err := safetensors.ReadFile(ck)
		if err != nil {
			t.Fatal(err)
		}
		var ts []safetensors.Tensor
		for _, x := range f.Tensors {
			if x.Name == "model.res1.conv1.weight" {
				x.Shape = []int{16, 64, 3, 3} // same byte count, other layout
			}
			ts = append(ts, x)
		}
		p := filepath.Join(dir, "other.safetensors")
		if err := safetensors.WriteFile(p, ts, f.Metadata); err != nil {
			t.Fatal(err)
		}
		_, err = LoadCheckpoint(p)
		if err == nil || !strings.Contains(err.Error(), "res1.conv1.weight") || !strings.Contains(err.Error(), "another architecture") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unwritable output keeps the old checkpoint", func(t *testing.T) {
		blocker := filepath.Join(dir, "file")
		os.WriteFile(blocker, []byte("x"), 0o644)
		err := SaveCheckpoint(filepath.Join(blocker, "ck.safetensors"), st)
		if err == nil {
			t.Fatal("saving under a regular file: want an error")
		}
		// A failing run (its output path unwritable) leaves the checkpoint it resumed from intact.
		st2, err := LoadCheckpoint(ck)
		if err != nil {
			t.Fatal(err)
		}
		if err := Run(st2, data(8), Options{Checkpoint: filepath.Join(blocker, "out.safetensors"), StopAfter: 1}); err == nil {
			t.Fatal("want an error for the unwritable checkpoint path")
		}
		now, _ := os.ReadFile(ck)
		if string(now) != string(raw) {
			t.Fatal("the original checkpoint changed")
		}
	})
}

func TestTrimLog(t *testing.T) {
	p := filepath.Join(t.TempDir(), "loss.csv")
	os.WriteFile(p, []byte("step,loss\n1,0.5\n2,0.4\n3,0.3\n4,0.2"), 0o644)
	if err := trimLog(p, 2); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != "step,loss\n1,0.5\n2,0.4\n" {
		t.Fatalf("trimmed log %q", b)
	}
}

// NCSN fields: validated, omitted from DDPM configs' JSON, and absent from
// configs written before they existed (which stay DDPM runs).
func TestNCSNConfig(t *testing.T) {
	old := DefaultConfig()
	b, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"objective", "sigma_min", "sigma_max", "num_scales"} {
		if strings.Contains(string(b), k) {
			t.Errorf("DDPM config JSON mentions %q: %s", k, b)
		}
	}
	var back Config
	if err := json.Unmarshal(b, &back); err != nil || back.IsNCSN() || back.Validate() != nil {
		t.Fatalf("old-style config: err %v, ncsn %v, validate %v", err, back.IsNCSN(), back.Validate())
	}
	ok := tinyConfig()
	ok.Objective = ObjectiveNCSN
	ok.SetNCSNDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("default NCSN config: %v", err)
	}
	l, err := ok.NCSNLadder()
	if err != nil || l.SigmaMax != DefaultSigmaMax || l.SigmaMin != DefaultSigmaMin || l.Levels != DefaultNumScales {
		t.Fatalf("ladder %+v, %v", l, err)
	}
	bad := map[string]func(c *Config){
		"objective must be":   func(c *Config) { c.Objective = "sde" },
		"prediction_type":     func(c *Config) { c.Prediction = "v_prediction" },
		"loss_weighting":      func(c *Config) { c.Weighting = "min-snr" },
		"sigma_max":           func(c *Config) { c.SigmaMax = c.SigmaMin / 2 },
		"num_scales":          func(c *Config) { c.NumScales = 1 },
		"apply to objective":  func(c *Config) { c.Objective = "" },
		"sigma_min must be a": func(c *Config) { c.SigmaMin = -1 },
	}
	for want, f := range bad {
		c := ok
		f(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
}

// perturb adds σ of each sample's level times its noise: x̃ = x + σ_i·z.
func TestPerturb(t *testing.T) {
	x0 := tensor.FromSlice([]float32{1, 2, 3, 4}, 2, 2)
	eps := tensor.FromSlice([]float32{1, -1, 0.5, 2}, 2, 2)
	xt := tensor.New(2, 2)
	perturb(xt, x0, eps, []int{1, 0}, []float64{10, 0.5})
	want := []float32{1.5, 1.5, 8, 24}
	for i, v := range xt.Data() {
		if v != want[i] {
			t.Fatalf("perturb = %v, want %v", xt.Data(), want)
		}
	}
}
