package guidance

import (
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/data"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// bars is a 2-class data set of 1×8×8 images: a bright vertical bar
// (class 0) or a horizontal one (class 1) at a random position, on -1.
func bars(n int, seed uint64) *data.Dataset {
	rng := rand.New(rand.NewPCG(seed, 0))
	x := tensor.New(n, 1, 8, 8)
	labels := make([]int, n)
	d := x.Data()
	for i := range d {
		d[i] = -1
	}
	for i := 0; i < n; i++ {
		labels[i] = i % 2
		p := 1 + rng.IntN(6)
		for k := 0; k < 8; k++ {
			if labels[i] == 0 {
				d[i*64+k*8+p] = 1
			} else {
				d[i*64+p*8+k] = 1
			}
		}
	}
	return &data.Dataset{Images: x, Labels: labels}
}

// Training learns the bars at low noise, gets worse with noise, and the
// file round-trips the weights and the schedule.
func TestTrainSaveLoad(t *testing.T) {
	sched, err := schedule.New(schedule.Linear, 100, 1e-3, 0.1, false)
	if err != nil {
		t.Fatal(err)
	}
	train, test := bars(256, 1), bars(200, 2)
	net, ran, err := TrainNoisyClassifier(train, sched, TrainOptions{Steps: 120, Batch: 32, LR: 5e-3, Seed: 3, Widths: [4]int{8, 8, 16, 16}})
	if err != nil {
		t.Fatal(err)
	}
	if ran != 120 {
		t.Fatalf("ran %d steps, want 120", ran)
	}
	acc0, err := NoisyAccuracy(net, sched, test, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	accEnd, err := NoisyAccuracy(net, sched, test, 99, 1)
	if err != nil {
		t.Fatal(err)
	}
	if acc0 < 0.95 || accEnd >= acc0 {
		t.Fatalf("accuracy at t=0 %.3f (want ≥ 0.95), at t=99 %.3f (want lower)", acc0, accEnd)
	}
	again, err := NoisyAccuracy(net, sched, test, 50, 1)
	if err != nil {
		t.Fatal(err)
	}
	if again2, _ := NoisyAccuracy(net, sched, test, 50, 1); again2 != again {
		t.Fatalf("NoisyAccuracy with the same seed: %v then %v", again, again2)
	}

	path := filepath.Join(t.TempDir(), "noisy.safetensors")
	sc := schedule.Config{NumTrainTimesteps: 100, BetaStart: 1e-3, BetaEnd: 0.1, BetaSchedule: schedule.Linear}
	if err := SaveNoisyClassifier(path, net, sc, false, map[string]string{"diffuse.note": "test"}); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	back, sc2, err := LoadNoisyClassifier(f, path)
	if err != nil {
		t.Fatal(err)
	}
	if sc2 != sc || back.Widths != net.Widths || back.Classes != 2 || f.Metadata["diffuse.note"] != "test" {
		t.Fatalf("round trip: schedule %+v widths %v classes %d", sc2, back.Widths, back.Classes)
	}
	g := autograd.NoGrad(tensor.CPU)
	x := test.Images
	ts := make([]float32, x.Dim(0))
	for i := range ts {
		ts[i] = float32(i % 100)
	}
	a, _ := net.Forward(g, autograd.Const(x), ts)
	b, _ := back.Forward(g, autograd.Const(x), ts)
	for i, v := range a.Value.ToHost() {
		if b.Value.ToHost()[i] != v {
			t.Fatalf("logit %d: %v after the FP32 round trip, %v before", i, b.Value.ToHost()[i], v)
		}
	}

	// Not a noisy classifier: a clear error naming the file.
	other := filepath.Join(t.TempDir(), "other.safetensors")
	if err := safetensors.WriteFile(other, nil, map[string]string{"diffuse.format": "something-else"}); err != nil {
		t.Fatal(err)
	}
	f2, err := safetensors.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadNoisyClassifier(f2, other); err == nil || !strings.Contains(err.Error(), "train-classifier --noisy") {
		t.Errorf("loading a non-classifier: %v", err)
	}
	if _, _, err := TrainNoisyClassifier(&data.Dataset{Images: test.Images}, sched, TrainOptions{}); err == nil {
		t.Error("training without labels: want an error")
	}
	if _, err := NoisyAccuracy(net, sched, test, 100, 0); err == nil {
		t.Error("accuracy at t = T: want an error")
	}
}
