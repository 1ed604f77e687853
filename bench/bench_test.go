package bench

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestLossFalls(t *testing.T) {
	if testing.Short() {
		t.Skip("trains UNet-S for 12 steps at batch 16; run without -short")
	}
	tr := NewTrainer(16, 0)
	data := StructuredImages(16, rand.New(rand.NewPCG(1, 1)))
	var first, last float32
	for i := 0; i < 12; i++ {
		l, err := tr.Step(data)
		if err != nil {
			t.Fatal(err)
		}
		if i < 3 {
			first += l / 3
		}
		if i >= 9 {
			last += l / 3
		}
	}
	if !(last < first) {
		t.Errorf("loss did not fall: mean of first 3 steps %.4f, last 3 %.4f", first, last)
	}
}

func TestRunUNetSPrintsKeys(t *testing.T) {
	var sb strings.Builder
	if err := RunUNetS(Options{Batch: 2, Steps: 1, LossSteps: 2, Out: &sb}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"params 583713", "train_step_ms_median", "fwd_b2_ms_median", "fwd_b1_ms_median", "peak_rss_mb", "loss_first"} {
		if !strings.Contains(sb.String(), k) {
			t.Errorf("output lacks %q:\n%s", k, sb.String())
		}
	}
}

func BenchmarkTrainStepB64(b *testing.B) {
	tr := NewTrainer(64, 0)
	x0 := StructuredImages(64, rand.New(rand.NewPCG(1, 1)))
	tr.Step(x0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tr.Step(x0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(3*FwdFLOPs()*64*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
