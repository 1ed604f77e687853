package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/data"
	"github.com/diffuse-go/diffuse/eval"
	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/internal/assets"
	"github.com/diffuse-go/diffuse/model/classifier"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

func runEval(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "train-classifier" {
		return runTrainClassifier(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	modelPath := fs.String("model", "", "model to sample from (default: the embedded MNIST model)")
	images := fs.String("images", "", "score the PNG/JPEG images in this folder instead of sampling")
	clsPath := fs.String("classifier", "", "classifier file (default: the embedded one)")
	n := fs.Int("n", 1000, "number of samples to generate and score")
	seed := fs.Uint64("seed", 0, "sampling seed")
	batch := fs.Int("batch", 100, "images per forward pass")
	grid := fs.String("grid", "", "also write the first 100 samples as a PNG grid here")
	sm := samplerFlags(fs)
	cf := conditionFlags(fs)
	cg := classifierGuidanceFlags(fs, sm)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: diffuse eval [flags]
       diffuse eval train-classifier [flags]

Scores MNIST-like samples with the project's MNIST classifier: the histogram
of predicted digits, the mean max-probability (how confident the classifier
is: blurry or ambiguous digits score low), and classifier-FID, the Fréchet
distance between the classifier's penultimate features on the samples and on
the MNIST test set. classifier-FID is not comparable with published FIDs
(those use Inception features); lower is better, and the MNIST training set
itself scores close to 0.

Examples:
  diffuse eval                                   # embedded model, 1000 samples, 50 DDIM steps
  diffuse eval --sampler ddpm --steps 1000 -n 1000
  diffuse eval --model runs/mnist/checkpoint.safetensors --steps 20 --eta 1
  diffuse eval --images out/                     # score PNGs made elsewhere
  diffuse eval train-classifier --out classifier.safetensors
  diffuse eval --classifier-guidance 5 --label all -n 300 --eta 1   # prints label_accuracy
  diffuse eval train-classifier --noisy --out noisy.safetensors     # the guidance classifier
  diffuse eval --model runs/mnist-text/model.safetensors --prompt "zero|one|two|three|four|five|six|seven|eight|nine" -n 200
                                                 # text prompts (label_accuracy: the digit each names)

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("eval: unexpected argument %q (did you mean 'diffuse eval train-classifier'?)", fs.Arg(0))
	}
	cls, err := loadClassifier(*clsPath)
	if err != nil {
		return err
	}
	test, err := data.LoadMNIST("", "test")
	if err != nil {
		return err
	}
	ref, err := eval.ReferenceStats(cls, test)
	if err != nil {
		return err
	}
	var samples *tensor.Tensor
	var labels []int
	what := ""
	t0 := time.Now()
	if *images != "" {
		ds, err := data.LoadFolder(*images, 28, 1)
		if err != nil {
			return err
		}
		samples, what = ds.Images, fmt.Sprintf("%d images from %s", ds.Len(), *images)
	} else {
		net, cfg, name, err := loadModel(*modelPath, true)
		if err != nil {
			return err
		}
		if cfg.Model.Channels != 1 || cfg.Model.Size != 28 {
			return fmt.Errorf("eval scores 1×28×28 MNIST-like images; %s makes %d×%d×%d", name, cfg.Model.Channels, cfg.Model.Size, cfg.Model.Size)
		}
		if net, labels, err = cf.wrap(net, *n); err != nil {
			return err
		}
		if net, err = cg.wrap(net, cfg, *n); err != nil {
			return err
		}
		name += cg.describe()
		if labels != nil && cfg.Model.Classes > 0 {
			name += fmt.Sprintf(" (cfg %s)", cf.cfg)
		}
		samples, err = generate(net, cfg, sm, pipeline.Options{N: *n, Batch: *batch, Seed: *seed, Progress: stderr})
		if err != nil {
			return err
		}
		what = fmt.Sprintf("%d samples from %s, %s %d steps", *n, name, sm.Name, sm.Steps)
		switch {
		case sm.Name == "ddim":
			what += fmt.Sprintf(" eta %g", sm.Eta)
		case sm.Name == "ddpm":
			what += " " + sm.Variance
		case sm.Name == "langevin":
			what += fmt.Sprintf(" (noise levels) × %d, ε %s", sm.Langevin.StepsPerLevel, map[bool]string{true: "auto", false: fmt.Sprint(sm.Langevin.Eps)}[sm.Langevin.Eps == 0])
		default:
			what += " " + sm.Schedule
		}
	}
	gen := time.Since(t0)
	if *grid != "" {
		k := min(100, samples.Dim(0))
		sub := tensor.FromSlice(samples.Data()[:k*samples.Numel()/samples.Dim(0)], append([]int{k}, samples.Shape()[1:]...)...)
		if err := imageio.SavePNG(*grid, imageio.Grid(sub, 10, 2, 2)); err != nil {
			return err
		}
	}
	r, err := eval.Score(cls, samples, ref)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "scored %s (generated in %.1fs)\n", what, gen.Seconds())
	var parts []string
	ok := true
	for d, f := range r.Fractions {
		parts = append(parts, fmt.Sprintf("%d:%.1f%%", d, 100*f))
		if f < 0.05 || f > 0.15 {
			ok = false
		}
	}
	fmt.Fprintf(stdout, "class_histogram %s\n", strings.Join(parts, " "))
	fmt.Fprintf(stdout, "classes_within_5_15pct %v\n", ok)
	fmt.Fprintf(stdout, "mean_max_prob %.4f\n", r.MeanMaxProb)
	fmt.Fprintf(stdout, "classifier_fid %.3f\n", r.ClassifierFID)
	if labels != nil {
		acc, err := eval.LabelAccuracy(r.Predicted, labels)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "label_accuracy %.4f\n", acc)
	}
	return nil
}

func loadClassifier(path string) (*classifier.Net, error) {
	var f *safetensors.File
	var err error
	name := path
	if path == "" {
		name = "embedded " + assets.Classifier
		f, err = assets.Open(assets.Classifier)
	} else {
		f, err = safetensors.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	return eval.LoadClassifier(f, name)
}

func runTrainClassifier(args []string, stdout, stderr io.Writer) error {
	if noisyRequested(args) {
		return runTrainNoisyClassifier(args, stdout, stderr)
	}
	fs := flag.NewFlagSet("eval train-classifier", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Bool("noisy", false, "train the time-conditioned classifier for classifier guidance instead (see --noisy --help)")
	out := fs.String("out", "classifier.safetensors", "where to write the classifier (FP16 weights)")
	epochs := fs.Int("epochs", 3, "passes over the 60,000 MNIST training images")
	batch := fs.Int("batch", 128, "batch size")
	lr := fs.Float64("lr", 2e-3, "peak AdamW learning rate (cosine decay)")
	seed := fs.Uint64("seed", 0, "seed")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: diffuse eval train-classifier [flags]

Trains the small convolutional MNIST classifier used by 'diffuse eval'
(random ±2 pixel shifts as augmentation), prints its test accuracy, and
writes it to --out.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	trainDS, err := data.LoadMNIST("", "train")
	if err != nil {
		return err
	}
	test, err := data.LoadMNIST("", "test")
	if err != nil {
		return err
	}
	t0 := time.Now()
	net, acc, err := eval.TrainClassifier(trainDS, test, eval.TrainOptions{Epochs: *epochs, Batch: *batch, LR: float32(*lr), Seed: *seed, Shift: 2, Progress: stderr})
	if err != nil {
		return err
	}
	if err := eval.SaveClassifier(*out, net, acc, true); err != nil {
		return err
	}
	// Check the saved (FP16) weights, which are what eval will use.
	f, err := safetensors.ReadFile(*out)
	if err != nil {
		return err
	}
	saved, err := eval.LoadClassifier(f, *out)
	if err != nil {
		return err
	}
	acc16, err := eval.Accuracy(saved, test)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "test_accuracy %.4f\ntest_accuracy_fp16 %.4f\ntrain_seconds %.0f\nwrote %s\n", acc, acc16, time.Since(t0).Seconds(), *out)
	return nil
}
