package unet

import (
	"math/rand/v2"
	"os"
	"testing"

	"github.com/diffuse-go/diffuse/nn"
)

// refPath is the UNet-S reference export: DIFFUSE_UNETS_REF, else the shared file.
func refPath() string {
	if p := os.Getenv("DIFFUSE_UNETS_REF"); p != "" {
		return p
	}
	return "../../../shared/bench/ref/unet_s.safetensors"
}

func TestUNetSParity(t *testing.T) {
	p := refPath()
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("reference file %s: %v (set DIFFUSE_UNETS_REF to an export of unet_s.py --export)", p, err)
	}
	r, err := CheckReference(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("out_maxrel %.3g loss_rel %.3g grad_relmax %.3g (%s) over %d tensors", r.OutMaxRel, r.LossRel, r.GradRelMax, r.WorstGrad, r.GradTensors)
	if want := len(nn.Parameters(NewUNetS(rand.New(rand.NewPCG(1, 1))))); r.GradTensors != want {
		t.Errorf("compared %d gradient tensors, want one per parameter (%d)", r.GradTensors, want)
	}
	if !r.Passes() {
		t.Errorf("parity fails: out %.3g (≤1e-4), loss %.3g (≤1e-5), grad %.3g at %s (≤1e-3)", r.OutMaxRel, r.LossRel, r.GradRelMax, r.WorstGrad)
	}
}
