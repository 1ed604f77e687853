package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/internal/assets"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/sampler"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/train"
)

// loadModel opens --model PATH, or the embedded MNIST model when path is "".
func loadModel(path string, useEMA bool) (model.Network, train.Config, string, error) {
	var f *safetensors.File
	var err error
	name := path
	if path == "" {
		name = "embedded " + assets.MNISTModel
		f, err = assets.Open(assets.MNISTModel)
	} else {
		f, err = safetensors.ReadFile(path)
	}
	if err != nil {
		return nil, train.Config{}, name, err
	}
	net, cfg, err := train.LoadForSampling(f, name, useEMA)
	return net, cfg, name, err
}

type samplerChoice struct {
	pipeline.Sampler
	Schedule string
	KEta     float64
	Langevin pipeline.Langevin // --sampler langevin (Levels comes from --steps)
}

func samplerFlags(fs *flag.FlagSet) *samplerChoice {
	s := &samplerChoice{}
	fs.StringVar(&s.Name, "sampler", "", "ddim, ddpm, langevin (annealed Langevin dynamics; --steps is its number of noise levels), or a k-diffusion sampler: "+strings.Join(sampler.Names(), ", ")+" (default: langevin for NCSN models, ddim otherwise)")
	fs.IntVar(&s.Langevin.StepsPerLevel, "langevin-steps", 5, "langevin: Langevin steps T per noise level")
	fs.Float64Var(&s.Langevin.Eps, "langevin-eps", 0, "langevin: step size ε = α at the smallest level (α_i = ε·σ_i²/σ_min²); 0 picks NCSNv2's rule for T and the level ratio")
	fs.BoolVar(&s.Langevin.Denoise, "langevin-denoise", true, "langevin: end with the denoising step x + σ_min²·score")
	fs.StringVar(&s.Schedule, "schedule", "karras", "σ schedule of k-diffusion samplers: "+strings.Join(sampler.ScheduleNames(), ", "))
	fs.Float64Var(&s.KEta, "noise-eta", 1, "noise scale η of ancestral/SDE k-diffusion samplers (0: ODE)")
	fs.IntVar(&s.Steps, "steps", 50, "denoising steps (DDPM: 1000 is the full chain)")
	fs.Float64Var(&s.Eta, "eta", 0, "DDIM η in [0, 1]: 0 deterministic, 1 DDPM-like noise")
	fs.StringVar(&s.Variance, "variance", "fixed_small", "DDPM variance: fixed_small (β̃_t) or fixed_large (β_t)")
	fs.StringVar(&s.Spacing, "spacing", "leading", "timestep spacing: leading, trailing or linspace")
	fs.Func("clip", "x̂0 clamping of ddim/ddpm: on (clamp x̂0 to [-1, 1], DDIM steps with the model's ε; diffusers' default), eps (clamp x̂0 and step DDIM with the ε recomputed from it; diffusers' use_clipped_model_output), off (default on; guided runs are always off)", func(v string) error {
		switch v {
		case "on":
			s.NoClip, s.ClipEps = false, false
		case "eps":
			s.NoClip, s.ClipEps = false, true
		case "off":
			s.NoClip, s.ClipEps = true, false
		default:
			return fmt.Errorf("want on, eps or off (got %q)", v)
		}
		return nil
	})
	return s
}

func runSample(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sample", flag.ContinueOnError)
	fs.SetOutput(stderr)
	modelPath := fs.String("model", "", "checkpoint or exported model (default: the MNIST model embedded in this binary)")
	n := fs.Int("n", 64, "number of images")
	out := fs.String("o", "samples.png", "output PNG grid")
	cols := fs.Int("cols", 0, "grid columns (0: square)")
	scale := fs.Int("scale", 2, "pixel upscaling of the grid")
	singles := fs.String("singles", "", "also write one PNG per image into this directory")
	seed := fs.Uint64("seed", 0, "seed of the initial noise and of stochastic steps")
	batch := fs.Int("batch", 64, "images per forward pass")
	raw := fs.Bool("raw-weights", false, "use the raw training weights of a checkpoint instead of the EMA")
	sm := samplerFlags(fs)
	cf := conditionFlags(fs)
	ctl := controlNetFlags(fs)
	cg := classifierGuidanceFlags(fs, sm)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: diffuse sample [flags]

Generates images with a trained model and writes a PNG grid.
With no --model it uses the MNIST model embedded in the binary.

Examples:
  diffuse sample -n 64 -o digits.png                       # 50 DDIM steps
  diffuse sample --sampler ddpm --steps 1000 -o ddpm.png   # the full DDPM chain
  diffuse sample --sampler ddim --steps 20 --eta 0.5 --seed 7
  diffuse sample --sampler dpmpp_2m --schedule karras --steps 20
  diffuse sample --model runs/mnist/checkpoint.safetensors --singles out/
  diffuse sample --config sample.json -o grid.png          # settings from {"sampler": "ddim", "steps": 20, "eta": 1}
  diffuse sample --model runs/ncsn/model.safetensors       # NCSN: annealed Langevin, 50 levels × 5 steps
  diffuse sample --model runs/ncsn/model.safetensors --sampler euler_ancestral   # ... or any other sampler
  diffuse sample --model runs/mnist-class/model.safetensors --label all --cfg 3 --cols 10
                                     # class-conditional, classifier-free guidance w=3
  diffuse sample --model runs/mnist-class/model.safetensors --label 7 --cfg 0,1,3,5 --cols 4
                                     # per-image guidance scales in one batch
  diffuse sample --model runs/mnist-class/model.safetensors --label 4 --negative-label 9
  diffuse sample --model runs/mnist-text/model.safetensors --prompt "a thin slanted seven" --cfg 3
                                     # text-conditional: the model file holds its vocabulary
  diffuse sample --model runs/mnist-text/model.safetensors --prompt "a thick three|a thin three" --cols 2
                                     # prompts separated by | are cycled over the images
  diffuse sample --model runs/mnist-text/model.safetensors --prompt "a seven" --negative-prompt "a thick seven"
  diffuse sample --classifier-guidance 5 --label all --cols 10 --eta 1
                                     # unconditional model + noisy-classifier guidance
  diffuse sample --controlnet runs/controlnet-edges/controlnet.safetensors --control edges.png -n 16
                                     # ControlNet: 16 digits following one edge map (28×28 PNG)
  diffuse sample --controlnet runs/controlnet-edges/controlnet.safetensors --control-from digit.png --with-control
                                     # edges computed from a digit image; grid of control | sample

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("sample: unexpected argument %q (flags go before nothing else; see --help)", fs.Arg(0))
	}
	if !strings.HasSuffix(strings.ToLower(*out), ".png") {
		return fmt.Errorf("-o %s: the grid is written as PNG; name it *.png", *out)
	}
	net, cfg, name, err := loadModel(*modelPath, !*raw)
	if err != nil {
		return err
	}
	if net, cfg, name, *n, err = ctl.wrap(net, cfg, name, *modelPath, *n, cf.set("n"), stderr); err != nil {
		return err
	}
	if net, _, err = cf.wrap(net, *n); err != nil {
		return err
	}
	if net, err = cg.wrap(net, cfg, *n); err != nil {
		return err
	}
	t0 := time.Now()
	imgs, err := generate(net, cfg, sm, pipeline.Options{N: *n, Batch: *batch, Seed: *seed, Progress: stderr})
	if err != nil {
		return err
	}
	el := time.Since(t0)
	if dir := filepath.Dir(*out); dir != "" {
		if _, err := os.Stat(dir); err != nil {
			return fmt.Errorf("-o %s: directory %s does not exist; create it or choose another path", *out, dir)
		}
	}
	gimgs, gcols := ctl.grid(imgs, *cols)
	if err := imageio.SavePNG(*out, imageio.Grid(gimgs, gcols, 2, *scale)); err != nil {
		return err
	}
	if *singles != "" {
		if _, err := imageio.SaveSingles(*singles, "sample", imgs); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "wrote %s: %d images from %s, %s %d steps, seed %d, %.1fs\n", *out, *n, name, sm.Name, sm.Steps, *seed, el.Seconds())
	return nil
}

// generate runs the DDPM/DDIM schedulers (NCSN models through the
// score-to-ε adapter), annealed Langevin dynamics or a k-diffusion sampler.
// An empty sampler name becomes the model's default: langevin for NCSN
// models, ddim otherwise.
func generate(net model.Network, cfg train.Config, sm *samplerChoice, o pipeline.Options) (*tensor.Tensor, error) {
	if sm.Name == "" {
		sm.Name = "ddim"
		if cfg.IsNCSN() {
			sm.Name = "langevin"
		}
	}
	if sm.Name == "langevin" {
		lv := sm.Langevin
		lv.Levels = sm.Steps
		return pipeline.GenerateLangevin(net, cfg, lv, o)
	}
	if pipeline.IsKSampler(sm.Name) {
		return pipeline.GenerateK(net, cfg, pipeline.KSampler{Name: sm.Name, Schedule: sm.Schedule, Steps: sm.Steps, Eta: sm.KEta}, o)
	}
	net, cfg, err := pipeline.EpsNetwork(net, cfg)
	if err != nil {
		return nil, err
	}
	s, err := pipeline.NewScheduler(cfg, sm.Sampler)
	if err != nil {
		return nil, err
	}
	return pipeline.Generate(net, cfg.Model, s, o)
}
