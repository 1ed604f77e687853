package guidance_test

import (
	"testing"

	"github.com/diffuse-go/diffuse/eval"
	"github.com/diffuse-go/diffuse/guidance"
	"github.com/diffuse-go/diffuse/internal/assets"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/train"
)

// guidedScale is the guidance scale the test samples at.
const guidedScale = 20.0

// On the embedded MNIST model with the embedded noisy classifier, guided
// DDIM sampling produces the requested digits (as the separate evaluation
// classifier reads them) far more often than unguided sampling does.
func TestEmbeddedGuidanceHitsLabels(t *testing.T) {
	f, err := assets.Open(assets.MNISTModel)
	if err != nil {
		t.Fatal(err)
	}
	net, cfg, err := train.LoadForSampling(f, "embedded model", true)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := assets.Open(assets.NoisyClassifier)
	if err != nil {
		t.Fatal(err)
	}
	cls, sc, err := guidance.LoadNoisyClassifier(cf, "embedded noisy classifier")
	if err != nil {
		t.Fatal(err)
	}
	if sc.NumTrainTimesteps != cfg.Timesteps || sc.BetaStart != cfg.BetaStart || sc.BetaEnd != cfg.BetaEnd || sc.BetaSchedule != cfg.Schedule {
		t.Fatalf("the embedded classifier's schedule %+v is not the embedded model's", sc)
	}
	ef, err := assets.Open(assets.Classifier)
	if err != nil {
		t.Fatal(err)
	}
	judge, err := eval.LoadClassifier(ef, "embedded classifier")
	if err != nil {
		t.Fatal(err)
	}
	sched, err := cfg.NoiseSchedule()
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	labels := make([]int, n)
	for i := range labels {
		labels[i] = i % 10
	}
	accuracy := func(scale float64) float64 {
		cg, err := guidance.NewClassifierGuided(net, cls, sched, schedule.Epsilon,
			guidance.ClassifierOptions{Scale: scale, Labels: labels, ClipDenoised: 1})
		if err != nil {
			t.Fatal(err)
		}
		s, err := pipeline.NewScheduler(cfg, pipeline.Sampler{Name: "ddim", Steps: 10, Eta: 1}) // clamping on: Generate suspends it for the guided network
		if err != nil {
			t.Fatal(err)
		}
		imgs, err := pipeline.Generate(cg, cfg.Model, s, pipeline.Options{N: n, Batch: 10, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		probs, _, err := eval.Predict(judge, imgs)
		if err != nil {
			t.Fatal(err)
		}
		pred := make([]int, n)
		for i, p := range probs {
			for k := range p {
				if p[k] > p[pred[i]] {
					pred[i] = k
				}
			}
		}
		acc, err := eval.LabelAccuracy(pred, labels)
		if err != nil {
			t.Fatal(err)
		}
		return acc
	}
	plain, guided := accuracy(0), accuracy(guidedScale)
	t.Logf("label accuracy: unguided %.2f, s=%g %.2f", plain, guidedScale, guided)
	if guided < 0.8 || guided < plain+0.4 {
		t.Fatalf("label accuracy at s=%g: %.2f (unguided %.2f); want ≥ 0.8 and 0.4 above unguided", guidedScale, guided, plain)
	}
}
