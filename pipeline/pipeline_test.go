package pipeline

import (
	"testing"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/train"
)

// shrink predicts ε = 0.5·x: a fixed, cheap "network" for pipeline tests.
type shrink struct{}

func (shrink) Visit(string, func(string, *autograd.Var)) {}
func (shrink) Forward(g *autograd.Graph, x *autograd.Var, t []float32) *autograd.Var {
	return g.Scale(x, 0.5)
}

func TestGenerateDeterministicAndSeeded(t *testing.T) {
	cfg := train.DefaultConfig()
	spec := model.Spec{Arch: "test", Channels: 1, Size: 4}
	for _, sm := range []Sampler{{Name: "ddim", Steps: 10, Eta: 1}, {Name: "ddpm", Steps: 20, Variance: "fixed_large"}} {
		run := func(seed uint64, batch int) []float32 {
			s, err := NewScheduler(cfg, sm)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Generate(shrink{}, spec, s, Options{N: 6, Batch: batch, Seed: seed})
			if err != nil {
				t.Fatal(err)
			}
			return out.Data()
		}
		a, b, c := run(1, 3), run(1, 3), run(2, 3)
		same, diff := true, false
		for i := range a {
			same = same && a[i] == b[i]
			diff = diff || a[i] != c[i]
		}
		if !same {
			t.Errorf("%s: the same seed gave different samples", sm.Name)
		}
		if !diff {
			t.Errorf("%s: different seeds gave identical samples", sm.Name)
		}
	}
}

func TestNewSchedulerErrors(t *testing.T) {
	cfg := train.DefaultConfig()
	for _, sm := range []Sampler{{Name: "euler", Steps: 10}, {Name: "ddim", Steps: 0}, {Name: "ddim", Steps: 10, Eta: 2}, {Name: "ddpm", Steps: 10, Variance: "bogus"}} {
		if _, err := NewScheduler(cfg, sm); err == nil {
			t.Errorf("%+v: want an error", sm)
		}
	}
	if _, err := Generate(shrink{}, model.Spec{Channels: 1, Size: 4}, nil, Options{N: 0}); err == nil {
		t.Error("N=0: want an error")
	}
}

func TestGenerateKDeterministic(t *testing.T) {
	cfg := train.DefaultConfig()
	cfg.Model = model.Spec{Arch: "test", Channels: 1, Size: 4}
	run := func(name string, seed uint64) []float32 {
		out, err := GenerateK(shrink{}, cfg, KSampler{Name: name, Schedule: "karras", Steps: 5, Eta: 1}, Options{N: 3, Batch: 2, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		return out.Data()
	}
	for _, name := range []string{"euler", "euler_ancestral", "dpmpp_2m"} {
		a, b := run(name, 4), run(name, 4)
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("%s: same seed, different samples", name)
			}
		}
	}
	if _, err := GenerateK(shrink{}, cfg, KSampler{Name: "nope", Schedule: "karras", Steps: 5}, Options{N: 1}); err == nil {
		t.Error("unknown sampler: want an error")
	}
}

// TestClipModes: DDIM's three x̂0 treatments (clamp with the model's ε,
// clamp and recompute ε, no clamp) are distinct runs, and recomputing ε
// the clamped modes end inside [-1, 1] where the unclamped run leaves it.
func TestClipModes(t *testing.T) {
	cfg := train.DefaultConfig()
	spec := model.Spec{Arch: "test", Channels: 1, Size: 4}
	run := func(sm Sampler) []float32 {
		s, err := NewScheduler(cfg, sm)
		if err != nil {
			t.Fatal(err)
		}
		out, err := Generate(shrink{}, spec, s, Options{N: 4, Batch: 4, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		return out.Data()
	}
	base := Sampler{Name: "ddim", Steps: 10}
	on := run(base)
	eps := base
	eps.ClipEps = true
	recomputed := run(eps)
	off := base
	off.NoClip = true
	free := run(off)
	differ := func(a, b []float32) bool {
		for i := range a {
			if a[i] != b[i] {
				return true
			}
		}
		return false
	}
	if !differ(on, recomputed) || !differ(on, free) || !differ(recomputed, free) {
		t.Fatal("clip modes on/eps/off should give three different runs")
	}
	outside := func(xs []float32) bool {
		for _, v := range xs {
			if v < -1-1e-5 || v > 1+1e-5 {
				return true
			}
		}
		return false
	}
	if outside(recomputed) || outside(on) {
		t.Error("clamped modes ended outside [-1, 1]")
	}
	if !outside(free) {
		t.Error("off: this network's samples should leave [-1, 1] unclamped")
	}
}

// guidedShrink is shrink marked as a guided prediction (model.Guided).
type guidedShrink struct {
	shrink
	on bool
}

func (g guidedShrink) Guided() bool { return g.on }

// TestGenerateUnclampsGuided: a guided network runs as if the scheduler
// did not clamp x̂0 (the clamp-with-guided-ε̂ mismatch inverts guidance),
// an unguided one keeps the clamping, and the scheduler is restored after.
func TestGenerateUnclampsGuided(t *testing.T) {
	cfg := train.DefaultConfig()
	spec := model.Spec{Arch: "test", Channels: 1, Size: 4}
	for _, name := range []string{"ddim", "ddpm"} {
		run := func(net model.Network, noClip bool) ([]float32, scheduler.Scheduler) {
			s, err := NewScheduler(cfg, Sampler{Name: name, Steps: 10, NoClip: noClip})
			if err != nil {
				t.Fatal(err)
			}
			out, err := Generate(net, spec, s, Options{N: 4, Batch: 4, Seed: 5})
			if err != nil {
				t.Fatal(err)
			}
			return out.Data(), s
		}
		free, _ := run(shrink{}, true)
		clamped, _ := run(shrink{}, false)
		guided, s := run(guidedShrink{on: true}, false)
		unguided, _ := run(guidedShrink{on: false}, false)
		same := func(a, b []float32) bool {
			for i := range a {
				if a[i] != b[i] {
					return false
				}
			}
			return true
		}
		if same(free, clamped) {
			t.Fatalf("%s: clamping should change this network's samples", name)
		}
		if !same(guided, free) {
			t.Errorf("%s: a guided network should sample unclamped", name)
		}
		if !same(unguided, clamped) {
			t.Errorf("%s: Guided() false should keep the clamping", name)
		}
		if c, ok := s.(scheduler.Clipper); !ok || !c.Clips() {
			t.Errorf("%s: the scheduler's clamping should be restored after Generate", name)
		}
	}
}
