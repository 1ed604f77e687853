package train

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/data/captions"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/text"
)

// captionedData captions memData's images with the MNIST grammar (digit
// i%10, levels from i) and counts the captions drawn.
type captionedData struct {
	*memData
	drawn int
}

func (c *captionedData) Caption(i int, rng *rand.Rand) string {
	c.drawn++
	return captions.Caption(captions.Attributes{Digit: i % 10, Thickness: captions.Level(i % 3), Size: captions.Level(i / 3 % 3)}, rng)
}

func textConfig() Config {
	c := tinyConfig()
	tc := text.DefaultConfig(append(append([]string{}, text.Specials...), captions.Vocabulary()...))
	c.Model.Text = &tc
	c.CondDropout = 0.25
	return c
}

// A text model initialized from an unconditional export predicts exactly
// what the export does, whatever the prompt; it trains on captioned data
// (prompts dropped at the configured rate), refuses uncaptioned data, and
// its cross-attention output projections leave zero.
func TestTextConditionalTraining(t *testing.T) {
	dir := t.TempDir()
	st, err := NewState(tinyConfig())
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
	st.EMA.CopyTo()
	cfg := textConfig()
	cfg.InitFrom = exp
	ts, err := NewState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok := model.Tokenizer(ts.Net)
	if tok == nil {
		t.Fatal("the text config built a network without a tokenizer")
	}
	ids, err := tok.Encode("a thin slanted seven")
	if err != nil {
		t.Fatal(err)
	}
	x, tt := tensor.New(2, 1, 28, 28), []float32{10, 900}
	for i := range x.Data() {
		x.Data()[i] = float32(i%5) * 0.2
	}
	g := autograd.NoGrad(tensor.CPU)
	want := st.Net.Forward(g, autograd.Const(x), tt).Value.ToHost()
	got := ts.Net.(model.Conditional).ForwardCond(g, autograd.Const(x), tt, &model.Cond{Tokens: [][]int{ids, nil}}).Value.ToHost()
	for i := range want {
		if want[i] != got[i] {
			t.Fatalf("init_from: output %d is %g, the base model's is %g", i, got[i], want[i])
		}
	}
	if err := Run(ts, data(16), Options{}); err == nil || !strings.Contains(err.Error(), "captioned data") {
		t.Fatalf("text training on uncaptioned data: err = %v", err)
	}
	cd := &captionedData{memData: data(16)}
	if err := Run(ts, cd, Options{}); err != nil {
		t.Fatal(err)
	}
	images := cfg.Steps * cfg.Batch
	if cd.drawn == images || cd.drawn < images/2 {
		t.Fatalf("%d captions drawn for %d images at prompt dropout %g", cd.drawn, images, cfg.CondDropout)
	}
	for _, name := range []string{"xattn_res2.proj.weight", "xattn_mid.proj.weight", "xattn_ures2.proj.weight", "text_pool.weight"} {
		nz := false
		for _, v := range findParam(t, ts, name) {
			nz = nz || v != 0
		}
		if !nz {
			t.Errorf("%s is still zero after training", name)
		}
	}
}

// A text run resumed from its checkpoint continues bit for bit (captions
// come from a generator seeded by the step), and a deadline in the past
// stops a run after one step.
func TestTextResumeAndDeadline(t *testing.T) {
	cfg := textConfig()
	cfg.Steps = 4
	ck := filepath.Join(t.TempDir(), "ck.safetensors")
	a, err := NewState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := Run(a, &captionedData{memData: data(10)}, Options{}); err != nil {
		t.Fatal(err)
	}
	b, _ := NewState(cfg)
	if err := Run(b, &captionedData{memData: data(10)}, Options{Checkpoint: ck, Deadline: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if b.Step != 1 {
		t.Fatalf("a past deadline stopped at step %d, want 1", b.Step)
	}
	c, err := LoadCheckpoint(ck)
	if err != nil {
		t.Fatal(err)
	}
	if c.Config.Model.Text == nil || len(c.Config.Model.Text.Vocab) != len(cfg.Model.Text.Vocab) {
		t.Fatal("the checkpoint lost the text config")
	}
	if err := Run(c, &captionedData{memData: data(10)}, Options{}); err != nil {
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
}
