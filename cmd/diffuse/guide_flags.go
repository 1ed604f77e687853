package main

// Classifier guidance in the CLI: the --classifier-guidance flags of
// 'sample' and 'eval', and 'eval train-classifier --noisy'.

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/data"
	"github.com/diffuse-go/diffuse/guidance"
	"github.com/diffuse-go/diffuse/internal/assets"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/model/classifier"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/train"
)

// cgFlags are the classifier-guidance flags of a command. The labels to
// steer towards come from --label (requestedLabels, cond_flags.go).
type cgFlags struct {
	scale, temperature float64
	classifier         string
	sm                 *samplerChoice // the command's sampler (wrap turns its x̂0 clipping off)
}

// classifierGuidanceFlags registers --classifier-guidance,
// --guidance-classifier and --guidance-temperature on fs, for a command
// sampling with sm.
func classifierGuidanceFlags(fs *flag.FlagSet, sm *samplerChoice) *cgFlags {
	c := &cgFlags{sm: sm}
	fs.Float64Var(&c.scale, "classifier-guidance", 0, "classifier guidance scale s (0: off) towards the --label classes, e.g. --classifier-guidance 5 --label all")
	fs.StringVar(&c.classifier, "guidance-classifier", "", "noisy classifier for --classifier-guidance (default: the embedded one; make one with 'diffuse eval train-classifier --noisy')")
	fs.Float64Var(&c.temperature, "guidance-temperature", 1, "softmax temperature τ of the guidance classifier (log p = log_softmax(logits/τ))")
	return c
}

// describe names the guidance for output lines ("" when off).
func (c *cgFlags) describe() string {
	if c.scale == 0 {
		return ""
	}
	cls := c.classifier
	if cls == "" {
		cls = "embedded noisy classifier"
	}
	return fmt.Sprintf(" + classifier guidance s=%g τ=%g (%s)", c.scale, c.temperature, cls)
}

// wrap returns net with classifier guidance for n images when
// --classifier-guidance is nonzero, else net itself.
func (c *cgFlags) wrap(net model.Network, cfg train.Config, n int) (model.Network, error) {
	if c.scale == 0 {
		return net, nil
	}
	if c.scale < 0 {
		return nil, fmt.Errorf("--classifier-guidance %g: the scale must be ≥ 0", c.scale)
	}
	if !(c.temperature > 0) {
		return nil, fmt.Errorf("--guidance-temperature %g: the temperature must be > 0 (1 is the plain softmax)", c.temperature)
	}
	labels := requestedLabels(n)
	if labels == nil {
		return nil, fmt.Errorf("--classifier-guidance needs the classes to steer towards: add --label 3, --label 0,1,2 or --label all")
	}
	cls, sc, name, err := loadNoisyClassifier(c.classifier)
	if err != nil {
		return nil, err
	}
	if got := cls.C[0].W.Value.Dim(1); got != cfg.Model.Channels {
		return nil, fmt.Errorf("--guidance-classifier %s takes %d-channel images; the model makes %d channels", name, got, cfg.Model.Channels)
	}
	if sc.BetaSchedule != cfg.Schedule || sc.NumTrainTimesteps != cfg.Timesteps || sc.BetaStart != cfg.BetaStart ||
		sc.BetaEnd != cfg.BetaEnd || sc.RescaleBetasZeroSNR != cfg.ZeroSNR {
		return nil, fmt.Errorf("--guidance-classifier %s was trained on the %s schedule (T=%d, β %g…%g, zero-SNR %v) but the model uses %s (T=%d, β %g…%g, zero-SNR %v): train a classifier for this model with 'diffuse eval train-classifier --noisy --model ...'",
			name, sc.BetaSchedule, sc.NumTrainTimesteps, sc.BetaStart, sc.BetaEnd, sc.RescaleBetasZeroSNR,
			cfg.Schedule, cfg.Timesteps, cfg.BetaStart, cfg.BetaEnd, cfg.ZeroSNR)
	}
	sched, err := cfg.NoiseSchedule()
	if err != nil {
		return nil, err
	}
	o := guidance.ClassifierOptions{Scale: c.scale, Temperature: c.temperature, Labels: labels}
	if c.sm != nil && !pipeline.IsKSampler(c.sm.Name) {
		// DDPM/DDIM clamp x̂0 to [-1, 1], which pipeline.Generate suspends
		// for guided networks: clamp the base x̂0 inside the guide instead,
		// so the guided x̂0 is not clipped (see ClipDenoised).
		o.ClipDenoised = 1
	}
	return guidance.NewClassifierGuided(net, cls, sched, schedule.PredictionType(cfg.Prediction), o)
}

// loadNoisyClassifier opens path, or the embedded noisy classifier when
// path is "".
func loadNoisyClassifier(path string) (*classifier.NoisyNet, schedule.Config, string, error) {
	var f *safetensors.File
	var err error
	name := path
	if path == "" {
		name = "embedded " + assets.NoisyClassifier
		f, err = assets.Open(assets.NoisyClassifier)
	} else {
		f, err = safetensors.ReadFile(path)
	}
	if err != nil {
		return nil, schedule.Config{}, name, err
	}
	cls, sc, err := guidance.LoadNoisyClassifier(f, name)
	return cls, sc, name, err
}

// noisyRequested reports whether args ask for 'train-classifier --noisy'.
func noisyRequested(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "noisy" {
			continue
		}
		if !hasVal {
			return true
		}
		b, err := strconv.ParseBool(val)
		return err == nil && b
	}
	return false
}

// runTrainNoisyClassifier is 'diffuse eval train-classifier --noisy'.
func runTrainNoisyClassifier(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eval train-classifier --noisy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Bool("noisy", true, "train the time-conditioned classifier p(y | x_t, t) for classifier guidance")
	out := fs.String("out", "noisy_classifier.safetensors", "where to write the classifier (FP16 weights)")
	modelPath := fs.String("model", "", "diffusion model whose noise schedule to train on (default: the embedded MNIST model)")
	steps := fs.Int("steps", 6000, "optimizer steps (at most)")
	batch := fs.Int("batch", 32, "batch size")
	lr := fs.Float64("lr", 2e-3, "peak AdamW learning rate (2% warm-up, cosine decay)")
	seed := fs.Uint64("seed", 1, "seed")
	shift := fs.Int("shift", 1, "random translation augmentation, pixels")
	widths := fs.String("widths", "16,32,64,64", "channel widths of the four conv layers (multiples of 8)")
	maxMin := fs.Float64("max-minutes", 0, "wall-clock budget in minutes (0: none): training stops at --steps or at the budget, the learning rate decaying to 0 by whichever comes first (such runs are not bit-reproducible)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: diffuse eval train-classifier --noisy [flags]

Trains the noise-aware MNIST classifier p(y | x_t, t) that classifier
guidance ('diffuse sample --classifier-guidance S') differentiates: images
are noised to x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε at t uniform over the model's
training timesteps. Prints the test accuracy at t = 0, 250, 500, 750 of the
saved (FP16) weights.

Examples:
  diffuse eval train-classifier --noisy --out noisy.safetensors --max-minutes 9.5
  diffuse eval train-classifier --noisy --model runs/mnist/checkpoint.safetensors --steps 4000
  diffuse sample --classifier-guidance 5 --guidance-classifier noisy.safetensors --label all

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("eval train-classifier: unexpected argument %q", fs.Arg(0))
	}
	var w [4]int
	parts := strings.Split(*widths, ",")
	if len(parts) != 4 {
		return fmt.Errorf("--widths %q: want four comma-separated widths like 32,64,64,64", *widths)
	}
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return fmt.Errorf("--widths %q: %q is not a number", *widths, p)
		}
		w[i] = v
	}
	_, cfg, name, err := loadModel(*modelPath, true)
	if err != nil {
		return err
	}
	sched, err := cfg.NoiseSchedule()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	sc := schedule.Config{NumTrainTimesteps: cfg.Timesteps, BetaStart: cfg.BetaStart, BetaEnd: cfg.BetaEnd,
		BetaSchedule: cfg.Schedule, RescaleBetasZeroSNR: cfg.ZeroSNR}
	trainDS, err := data.LoadMNIST("", "train")
	if err != nil {
		return err
	}
	test, err := data.LoadMNIST("", "test")
	if err != nil {
		return err
	}
	t0 := time.Now()
	net, ran, err := guidance.TrainNoisyClassifier(trainDS, sched, guidance.TrainOptions{Steps: *steps, Batch: *batch,
		LR: float32(*lr), Seed: *seed, Shift: *shift, Widths: w, MaxDuration: time.Duration(*maxMin * float64(time.Minute)), Progress: stderr})
	if err != nil {
		return err
	}
	trainSec := time.Since(t0).Seconds()
	levels := []int{0, 250, 500, 750}
	meta := map[string]string{"diffuse.train_steps": strconv.Itoa(ran), "diffuse.train_seconds": fmt.Sprintf("%.0f", trainSec),
		"diffuse.schedule_from": name}
	if err := guidance.SaveNoisyClassifier(*out, net, sc, true, meta); err != nil {
		return err
	}
	// Report the saved (FP16) weights, which are what guidance uses.
	f, err := safetensors.ReadFile(*out)
	if err != nil {
		return err
	}
	saved, _, err := guidance.LoadNoisyClassifier(f, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "train_steps %d\ntrain_seconds %.0f\n", ran, trainSec)
	for _, t := range levels {
		if t >= sched.T() {
			continue
		}
		acc, err := guidance.NoisyAccuracy(saved, sched, test, t, 1)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "test_accuracy_t%d %.4f\n", t, acc)
	}
	fmt.Fprintf(stdout, "wrote %s\n", *out)
	return nil
}
