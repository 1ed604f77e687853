package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/control"
	"github.com/diffuse-go/diffuse/data"
	"github.com/diffuse-go/diffuse/eval"
	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/internal/assets"
	"github.com/diffuse-go/diffuse/internal/progress"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/train"
)

// baseRef turns --base (embedded or a path) into a train.ControlNetConfig
// base reference.
func baseRef(s string) string {
	if s == "embedded" || s == "" {
		return train.EmbeddedPrefix + assets.MNISTModel
	}
	return s
}

func runTrainControlNet(args []string, stdout, stderr io.Writer) error {
	def := train.DefaultControlNetConfig()
	fs := flag.NewFlagSet("train-controlnet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("base", "embedded", "the frozen base model: 'embedded' (the MNIST model in this binary) or a checkpoint/export file")
	kind := fs.String("control", def.Control.Kind, "control computed from each training image: edges (Sobel magnitude) or silhouette (coarse 7×7 ink mask)")
	thr := fs.Float64("threshold", 0, "control threshold: edges binarized at this magnitude in [0, 1] (0: soft magnitudes); silhouette cell ink fraction (0: 0.2)")
	out := fs.String("out", "runs/controlnet-edges", "run directory: checkpoint.safetensors, controlnet.safetensors (FP16 export), loss.csv, loss.png, samples/, config.json")
	resume := fs.Bool("resume", false, "continue the run in --out from its checkpoint (bit-exact; --steps and --max-time may change)")
	steps := fs.Int("steps", def.Steps, "total training steps")
	batch := fs.Int("batch", def.Batch, "batch size")
	lr := fs.Float64("lr", shortest(def.LR), "AdamW learning rate")
	wd := fs.Float64("weight-decay", shortest(def.WeightDecay), "AdamW weight decay")
	warmup := fs.Int("warmup", def.Warmup, "linear learning-rate warm-up steps")
	clip := fs.Float64("clip", def.ClipNorm, "clip gradients to this global L2 norm (0: off)")
	ema := fs.Float64("ema", shortest(def.EMADecay), "EMA decay of the weights used for sampling")
	seed := fs.Uint64("seed", def.Seed, "seed of the hint encoder's weights, batches and noise")
	maxTime := fs.Duration("max-time", 0, "wall-clock budget (e.g. 20m): stop after the step that passes it, checkpoint and export (0: none); --resume continues")
	ckptEvery := fs.Int("ckpt-every", 100, "write the checkpoint every N steps (and at the end)")
	sampleEvery := fs.Int("sample-every", 500, "write a grid of control | sample pairs for 16 MNIST test digits (DDIM, 50 steps, EMA) every N steps (0: off)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: diffuse train-controlnet [flags]

Trains a ControlNet (Zhang et al. 2023) that steers a frozen base model with
a control image computed from each MNIST training digit: a trainable copy of
the base's encoder, a small hint encoder for the control, and zero-
initialized convolutions, so training starts exactly at the base model.
Only the ControlNet's parameters are trained (AdamW, EMA); the loss is the
base's own objective (ε-MSE on its noise schedule). Writes into --out:
  checkpoint.safetensors  ControlNet weights, EMA, optimizer and RNG state
                          (atomic; --resume continues bit-exactly); the base
                          is referenced, not copied
  controlnet.safetensors  FP16 EMA weights for 'diffuse sample --controlnet'
  loss.csv, loss.png      the loss per step, and a plot of it
  samples/step_NNNNNN.png control | sample pairs while training
  config.json             the run's config

Examples:
  diffuse train-controlnet --base embedded --control edges --steps 1000 --out runs/controlnet-edges
  diffuse train-controlnet --control silhouette --max-time 20m --out runs/controlnet-sil
  diffuse train-controlnet --out runs/controlnet-edges --resume --steps 2000

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("train-controlnet: unexpected argument %q (see --help)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	ckpt := filepath.Join(*out, "checkpoint.safetensors")
	var st *train.ControlNetState
	var err error
	if *resume {
		for _, name := range []string{"base", "control", "threshold", "batch", "lr", "weight-decay", "warmup", "clip", "ema", "seed"} {
			if set[name] {
				return fmt.Errorf("--%s cannot change when resuming (the run's config fixes it); only --steps and --max-time can", name)
			}
		}
		if st, err = train.LoadControlNetCheckpoint(ckpt); err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
		if set["steps"] {
			st.Config.Steps = *steps
		}
		fmt.Fprintf(stderr, "resuming %s at step %d of %d\n", ckpt, st.Step, st.Config.Steps)
	} else {
		k, err := control.ParseKind(*kind)
		if err != nil {
			return fmt.Errorf("--control: %w", err)
		}
		cfg := def
		cfg.Base, cfg.Control = baseRef(*base), control.Spec{Kind: k, Threshold: *thr}
		cfg.Steps, cfg.Batch, cfg.LR, cfg.WeightDecay, cfg.Warmup = *steps, *batch, float32(*lr), float32(*wd), *warmup
		cfg.ClipNorm, cfg.EMADecay, cfg.Seed = *clip, float32(*ema), *seed
		if _, err := os.Stat(ckpt); err == nil {
			return fmt.Errorf("%s already holds a checkpoint: pass --resume to continue it, or choose another --out", *out)
		}
		if st, err = train.NewControlNetState(cfg); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(*out, "samples"), 0o755); err != nil {
		return fmt.Errorf("create run directory: %w (choose a writable --out)", err)
	}
	cj, _ := json.MarshalIndent(struct {
		ControlNet train.ControlNetConfig `json:"controlnet"`
		Base       train.Config           `json:"base_config"`
	}{st.Config, st.BaseConfig}, "", "  ")
	if err := os.WriteFile(filepath.Join(*out, "config.json"), append(cj, '\n'), 0o644); err != nil {
		return fmt.Errorf("write config.json: %w (choose a writable --out)", err)
	}
	ds, err := data.LoadMNIST("", "train")
	if err != nil {
		return err
	}
	test, err := data.LoadMNIST("", "test")
	if err != nil {
		return err
	}
	preview := firstImages(test.Images, 16)
	cfg := st.Config
	fmt.Fprintf(stderr, "training a %s ControlNet (%d parameters) on %s, base %s frozen, for %d steps at batch %d → %s\n",
		cfg.Control, controlNetParams(st.Net), cfg.Data, cfg.Base, cfg.Steps, cfg.Batch, *out)
	bar := progress.New(stderr, cfg.Steps, "train-controlnet")
	bar.Resume(st.Step)
	lossCSV := filepath.Join(*out, "loss.csv")
	opts := train.ControlNetOptions{
		Checkpoint: ckpt, CheckpointEvery: *ckptEvery, LossCSV: lossCSV,
		OnStep:      func(step int, loss float64) { bar.Set(step, progress.Float("loss", loss)) },
		SampleEvery: *sampleEvery,
		OnSample: func(step int, st *train.ControlNetState) error {
			if err := plotLoss(lossCSV, filepath.Join(*out, "loss.png")); err != nil {
				return err
			}
			return controlGrid(st, preview, filepath.Join(*out, "samples", fmt.Sprintf("step_%06d.png", step)))
		},
	}
	if *maxTime > 0 {
		opts.Deadline = time.Now().Add(*maxTime)
	}
	t0 := time.Now()
	startStep := st.Step
	runErr := train.RunControlNet(st, ds, opts)
	bar.Finish()
	el := time.Since(t0)
	if err := plotLoss(lossCSV, filepath.Join(*out, "loss.png")); err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		return runErr
	}
	exp := filepath.Join(*out, "controlnet.safetensors")
	if err := train.ExportControlNet(exp, st, true); err != nil {
		return err
	}
	rate := 0.0
	if st.Step > startStep {
		rate = el.Seconds() / float64(st.Step-startStep)
	}
	fmt.Fprintf(stdout, "trained to step %d of %d (%d steps in %.0fs, %.2f s/step), last loss %.4f; checkpoint %s, export %s\n",
		st.Step, cfg.Steps, st.Step-startStep, el.Seconds(), rate, st.LastLoss, ckpt, exp)
	return nil
}

func controlNetParams(n *controlnet.ControlNet) int {
	c := 0
	n.Visit("", func(_ string, p *autograd.Var) { c += p.Value.Numel() })
	return c
}

// firstImages returns the first k images of x [N, ...] (a view).
func firstImages(x *tensor.Tensor, k int) *tensor.Tensor {
	k = min(k, x.Dim(0))
	per := x.Numel() / x.Dim(0)
	return tensor.FromSlice(x.Data()[:k*per], append([]int{k}, x.Shape()[1:]...)...)
}

// interleave returns [a0, b0, a1, b1, ...] of two [N, C, H, W] tensors.
func interleave(a, b *tensor.Tensor) *tensor.Tensor {
	n := a.Dim(0)
	per := a.Numel() / n
	out := tensor.New(append([]int{2 * n}, a.Shape()[1:]...)...)
	for i := 0; i < n; i++ {
		copy(out.Data()[2*i*per:], a.Data()[i*per:(i+1)*per])
		copy(out.Data()[(2*i+1)*per:], b.Data()[i*per:(i+1)*per])
	}
	return out
}

// controlGrid samples one image per control of digits (the run's control
// kind) and writes control | sample pairs, 4 pairs a row.
func controlGrid(st *train.ControlNetState, digits *tensor.Tensor, path string) error {
	ctrl, err := st.Config.Control.Compute(digits)
	if err != nil {
		return err
	}
	n := ctrl.Dim(0)
	w, err := controlnet.NewControlled(st.Base, st.Net, ctrl, n, 1)
	if err != nil {
		return err
	}
	s, err := pipeline.NewScheduler(st.BaseConfig, pipeline.Sampler{Name: "ddim", Steps: 50})
	if err != nil {
		return err
	}
	imgs, err := pipeline.Generate(w, st.BaseConfig.Model, s, pipeline.Options{N: n, Seed: 0})
	if err != nil {
		return err
	}
	return imageio.SavePNG(path, imageio.Grid(interleave(ctrl, imgs), 8, 2, 2))
}

// controlFlags are sample's ControlNet flags.
type controlFlags struct {
	path, control, from string
	scale               float64
	withControl         bool
	ctrl                *tensor.Tensor // the controls used, [n, 1, 28, 28] (set by wrap)
}

func controlNetFlags(fs *flag.FlagSet) *controlFlags {
	c := &controlFlags{}
	fs.StringVar(&c.path, "controlnet", "", "ControlNet file (from 'diffuse train-controlnet'); needs --control or --control-from. Its base model is used unless --model is given")
	fs.StringVar(&c.control, "control", "", "with --controlnet: the control image, a PNG/JPEG (28×28 grayscale, or larger and resized; white edges on black), or a folder of them (image i gets control i mod count; -n defaults to the count)")
	fs.StringVar(&c.from, "control-from", "", "with --controlnet: compute the control (the ControlNet's kind: edges or silhouette) from this digit image or folder of images (white digit on black, like MNIST)")
	fs.Float64Var(&c.scale, "control-scale", 1, "with --controlnet: strength of the control (residuals × scale): 1 as trained, 0 the base alone")
	fs.BoolVar(&c.withControl, "with-control", false, "with --controlnet: the grid shows control | sample pairs")
	return c
}

// loadImages reads one image file or a folder of them as [k, 1, 28, 28].
func loadImages(flagName, path string) (*tensor.Tensor, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flagName, err)
	}
	if fi.IsDir() {
		ds, err := data.LoadFolder(path, controlnet.Size, 1)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flagName, err)
		}
		return ds.Images, nil
	}
	t, err := data.LoadImage(path, controlnet.Size, 1)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flagName, err)
	}
	return t, nil
}

// wrap replaces net (loaded from --model, or the embedded model) by the
// ControlNet-steered base when --controlnet is given. It returns the
// network, its base's config and name, and the number of images (the
// count of a folder of controls when -n was not given).
func (c *controlFlags) wrap(net model.Network, cfg train.Config, name, modelPath string, n int, nSet bool, stderr io.Writer) (model.Network, train.Config, string, int, error) {
	if c.path == "" {
		if c.control != "" || c.from != "" || c.withControl {
			return nil, cfg, name, n, errors.New("--control, --control-from and --with-control need --controlnet FILE (train one with 'diffuse train-controlnet')")
		}
		return net, cfg, name, n, nil
	}
	if (c.control == "") == (c.from == "") {
		return nil, cfg, name, n, errors.New("--controlnet needs exactly one of --control (a control image or folder) and --control-from (a digit image or folder to compute it from)")
	}
	f, err := safetensors.ReadFile(c.path)
	if err != nil {
		return nil, cfg, name, n, fmt.Errorf("--controlnet: %w", err)
	}
	ccfg, _, err := train.ReadControlNetConfig(f, c.path)
	if err != nil {
		return nil, cfg, name, n, err
	}
	if modelPath == "" && ccfg.Base != train.EmbeddedPrefix+assets.MNISTModel {
		var b *unet.UNetS
		if b, cfg, name, err = train.LoadBase(ccfg.Base); err != nil {
			return nil, cfg, name, n, fmt.Errorf("--controlnet %s: its base: %w (pass the base with --model)", c.path, err)
		}
		net = b
	}
	base, ok := net.(*unet.UNetS)
	if !ok {
		return nil, cfg, name, n, fmt.Errorf("--controlnet: the base %s is not a UNet-S", name)
	}
	if d := train.BaseDigest(base); d != ccfg.BaseDigest {
		fmt.Fprintf(stderr, "warning: %s was trained on base %s (weights digest %s); %s differs (digest %s): the control may work poorly\n", c.path, ccfg.Base, ccfg.BaseDigest, name, d)
	}
	cn, _, err := train.LoadControlNet(f, c.path, base)
	if err != nil {
		return nil, cfg, name, n, err
	}
	var ctrl *tensor.Tensor
	if c.control != "" {
		if ctrl, err = loadImages("control", c.control); err != nil {
			return nil, cfg, name, n, err
		}
	} else {
		digits, err := loadImages("control-from", c.from)
		if err != nil {
			return nil, cfg, name, n, err
		}
		if ctrl, err = ccfg.Control.Compute(digits); err != nil {
			return nil, cfg, name, n, err
		}
	}
	k := ctrl.Dim(0)
	if k > 1 && !nSet {
		n = k
	}
	full := tensor.New(n, 1, controlnet.Size, controlnet.Size)
	per := controlnet.Size * controlnet.Size
	for i := 0; i < n; i++ {
		copy(full.Data()[i*per:(i+1)*per], ctrl.Data()[(i%k)*per:(i%k+1)*per])
	}
	c.ctrl = full
	w, err := controlnet.NewControlled(base, cn, full, n, float32(c.scale))
	if err != nil {
		return nil, cfg, name, n, err
	}
	return w, cfg, fmt.Sprintf("%s + ControlNet %s (%s, scale %g)", name, c.path, ccfg.Control, c.scale), n, nil
}

// grid returns what the output grid shows and its column count: the
// samples, or control | sample pairs with --with-control.
func (c *controlFlags) grid(imgs *tensor.Tensor, cols int) (*tensor.Tensor, int) {
	if !c.withControl || c.ctrl == nil {
		return imgs, cols
	}
	if cols == 0 { // pairs per row: a square layout of the samples
		for cols*cols < imgs.Dim(0) {
			cols++
		}
	}
	return interleave(c.ctrl, imgs), 2 * cols
}

func runEvalControlNet(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eval-controlnet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cnPath := fs.String("controlnet", "runs/controlnet-edges/controlnet.safetensors", "ControlNet file to evaluate")
	modelPath := fs.String("model", "", "base model (default: the one the ControlNet was trained on)")
	n := fs.Int("n", 500, "number of MNIST test digits (the first n of the test split, never seen in training)")
	steps := fs.Int("steps", 50, "DDIM steps")
	seed := fs.Uint64("seed", 0, "sampling seed (the same for the ControlNet and the base)")
	batch := fs.Int("batch", 100, "images per forward pass")
	scale := fs.Float64("control-scale", 1, "ControlNet strength")
	grid := fs.String("grid", "", "also write control | sample pairs of the first --grid-n digits as a PNG grid here")
	gridN := fs.Int("grid-n", 40, "pairs in the --grid image (5 a row)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: diffuse eval-controlnet [flags]

Measures how well a ControlNet follows its control. For each of the first
-n MNIST test digits it computes the control (the ControlNet's kind), samples
one image with the ControlNet (DDIM, η = 0) and one with the base model
alone from the same seed, computes the samples' controls, and scores their
agreement with the digit's control:
  iou    IoU of the binarized maps (soft edges: magnitude ≥ 0.5 of a full step)
  corr   Pearson correlation of the maps (soft edges: of the edge magnitudes)
  label  fraction of samples the MNIST classifier labels as the source digit
Means ± standard errors over the digits, and the paired difference
ControlNet − base.

Examples:
  diffuse eval-controlnet --controlnet runs/controlnet-edges/controlnet.safetensors
  diffuse eval-controlnet -n 100 --steps 20 --grid pairs.png

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("eval-controlnet: unexpected argument %q (see --help)", fs.Arg(0))
	}
	test, err := data.LoadMNIST("", "test")
	if err != nil {
		return err
	}
	if *n < 1 || *n > test.Len() {
		return fmt.Errorf("-n must be in [1, %d] (got %d)", test.Len(), *n)
	}
	digits := firstImages(test.Images, *n)
	f, err := safetensors.ReadFile(*cnPath)
	if err != nil {
		return fmt.Errorf("--controlnet: %w (train one with 'diffuse train-controlnet')", err)
	}
	ccfg, _, err := train.ReadControlNetConfig(f, *cnPath)
	if err != nil {
		return err
	}
	var base *unet.UNetS
	var bcfg train.Config
	var name string
	if *modelPath != "" {
		base, bcfg, name, err = train.LoadBase(*modelPath)
	} else {
		base, bcfg, name, err = train.LoadBase(ccfg.Base)
	}
	if err != nil {
		return err
	}
	if d := train.BaseDigest(base); d != ccfg.BaseDigest {
		fmt.Fprintf(stderr, "warning: %s was trained on another base (digest %s, %s has %s)\n", *cnPath, ccfg.BaseDigest, name, d)
	}
	cn, _, err := train.LoadControlNet(f, *cnPath, base)
	if err != nil {
		return err
	}
	ctrl, err := ccfg.Control.Compute(digits)
	if err != nil {
		return err
	}
	w, err := controlnet.NewControlled(base, cn, ctrl, *n, float32(*scale))
	if err != nil {
		return err
	}
	sm := &samplerChoice{Sampler: pipeline.Sampler{Name: "ddim", Steps: *steps}}
	opts := pipeline.Options{N: *n, Batch: *batch, Seed: *seed, Progress: stderr}
	t0 := time.Now()
	withCN, err := generate(w, bcfg, sm, opts)
	if err != nil {
		return err
	}
	tCN := time.Since(t0)
	t1 := time.Now()
	plain, err := generate(base, bcfg, sm, opts)
	if err != nil {
		return err
	}
	tBase := time.Since(t1)
	cls, err := loadClassifier("")
	if err != nil {
		return err
	}
	type result struct{ iou, corr, label []float64 }
	score := func(samples *tensor.Tensor) (result, error) {
		sc, err := ccfg.Control.Compute(samples)
		if err != nil {
			return result{}, err
		}
		iou, corr, err := control.Agreement(sc, ctrl)
		if err != nil {
			return result{}, err
		}
		probs, _, err := eval.Predict(cls, samples)
		if err != nil {
			return result{}, err
		}
		label := make([]float64, len(probs))
		for i, p := range probs {
			best := 0
			for k := range p {
				if p[k] > p[best] {
					best = k
				}
			}
			if best == test.Labels[i] {
				label[i] = 1
			}
		}
		return result{iou, corr, label}, nil
	}
	rc, err := score(withCN)
	if err != nil {
		return err
	}
	rb, err := score(plain)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ControlNet %s (%s) on %s: %d MNIST test digits, DDIM %d steps, seed %d\n", *cnPath, ccfg.Control, name, *n, *steps, *seed)
	fmt.Fprintf(stdout, "sampling time: ControlNet %.1fs, base %.1fs\n", tCN.Seconds(), tBase.Seconds())
	fmt.Fprintf(stdout, "%-6s %-18s %-18s %-18s\n", "metric", "controlnet", "base", "difference")
	for _, m := range []struct {
		name string
		c, b []float64
	}{{"iou", rc.iou, rb.iou}, {"corr", rc.corr, rb.corr}, {"label", rc.label, rb.label}} {
		d := make([]float64, len(m.c))
		for i := range d {
			d[i] = m.c[i] - m.b[i]
		}
		mc, sc := control.MeanSE(m.c)
		mb, sb := control.MeanSE(m.b)
		md, sd := control.MeanSE(d)
		fmt.Fprintf(stdout, "%-6s %.4f ± %.4f    %.4f ± %.4f    %+.4f ± %.4f\n", m.name, mc, sc, mb, sb, md, sd)
	}
	if *grid != "" {
		k := min(*gridN, *n)
		if err := imageio.SavePNG(*grid, imageio.Grid(interleave(firstImages(ctrl, k), firstImages(withCN, k)), 10, 2, 2)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s (%d control | sample pairs)\n", *grid, k)
	}
	return nil
}
