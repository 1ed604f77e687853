package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/data"
	"github.com/diffuse-go/diffuse/guidance"
	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/internal/assets"
	"github.com/diffuse-go/diffuse/internal/progress"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/train"
)

func runTrain(args []string, stdout, stderr io.Writer) error {
	def := train.DefaultConfig()
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "JSON config file (the config.json of a run); flags given explicitly override it")
	out := fs.String("out", "runs/mnist", "run directory: checkpoint.safetensors, loss.csv, loss.png, samples/, config.json")
	resume := fs.Bool("resume", false, "continue the run in --out from its checkpoint (bit-exact)")
	dataFlag := fs.String("data", def.Data, "'mnist' or a folder of PNG/JPEG images")
	size := fs.Int("size", def.Model.Size, "image size for a folder (images are resized and centre-cropped)")
	channels := fs.Int("channels", def.Model.Channels, "1 (grayscale) or 3 (RGB) for a folder")
	arch := fs.String("arch", def.Model.Arch, "network architecture (unet-s)")
	steps := fs.Int("steps", def.Steps, "total training steps")
	batch := fs.Int("batch", def.Batch, "batch size")
	lr := fs.Float64("lr", shortest(def.LR), "AdamW learning rate")
	wd := fs.Float64("weight-decay", shortest(def.WeightDecay), "AdamW weight decay")
	warmup := fs.Int("warmup", def.Warmup, "linear learning-rate warm-up steps")
	clip := fs.Float64("clip", def.ClipNorm, "clip gradients to this global L2 norm (0: off)")
	ema := fs.Float64("ema", shortest(def.EMADecay), "EMA decay of the weights used for sampling")
	pred := fs.String("prediction", def.Prediction, "what the network predicts: epsilon, sample (x0) or v_prediction")
	weighting := fs.String("weighting", def.Weighting, "loss weighting: simple (L_simple) or min-snr")
	gamma := fs.Float64("min-snr-gamma", def.MinSNRGamma, "γ of min-SNR-γ weighting")
	sched := fs.String("schedule", def.Schedule, "β schedule: linear, cosine, scaled_linear, sigmoid")
	zeroSNR := fs.Bool("zero-snr", false, "rescale betas to zero terminal SNR")
	seed := fs.Uint64("seed", def.Seed, "seed of weights, batches and noise")
	ckptEvery := fs.Int("ckpt-every", 500, "write the checkpoint every N steps (and at the end)")
	sampleEvery := fs.Int("sample-every", 1000, "write a 64-image sample grid (DDIM, 50 steps, EMA weights) every N steps (0: off)")
	classes := fs.Int("classes", 0, "train a class-conditional model on this many labels (MNIST: 10); 0: unconditional")
	condDrop := fs.Float64("cond-dropout", 0.1, "with --classes: probability of training on the null label (needed for classifier-free guidance)")
	maxMin := fs.Float64("max-minutes", 0, "stop after the step that ends past this many minutes of training, with a checkpoint (and --export); 0: no limit")
	textCond := fs.Bool("text", false, "train a text-conditional model on MNIST captions (transformer text encoder + cross-attention; sample with --prompt); --cond-dropout is then the empty-prompt rate")
	initFrom := fs.String("init-from", "", "initialize from this checkpoint/export's weights (fine-tune; e.g. a class-conditional model from the embedded unconditional one: --init-from embedded)")
	objective := fs.String("objective", "ddpm", "training objective: ddpm, or ncsn (denoising score matching on a σ ladder; sample it with --sampler langevin, any k-diffusion sampler, ddim or ddpm)")
	sigmaMin := fs.Float64("sigma-min", train.DefaultSigmaMin, "ncsn: smallest noise level σ_L (data units; images are in [-1, 1])")
	sigmaMax := fs.Float64("sigma-max", train.DefaultSigmaMax, "ncsn: largest noise level σ_1 (≈ the largest distance between two training images: 35 suits MNIST)")
	numScales := fs.Int("num-scales", train.DefaultNumScales, "ncsn: number of geometric noise levels L")
	export := fs.String("export", "", "at the end, also write a sampling-only FP16 model file here (EMA weights + config)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: diffuse train [flags]

Trains a diffusion model (DDPM objective, or NCSN with --objective ncsn)
and writes into --out:
  checkpoint.safetensors  weights, EMA, optimizer and RNG state, step, config
                          (written atomically; --resume continues bit-exactly)
  loss.csv, loss.png      the loss per step, and a plot of it
  samples/step_NNNNNN.png sample grids while training
  config.json             the full config (reusable with --config)

Examples:
  diffuse train --steps 6000                        # MNIST, UNet-S, ε-prediction
  diffuse train --prediction v_prediction --weighting min-snr --schedule cosine
  diffuse train --data ./my-faces --size 28 --channels 1 --out runs/faces
  diffuse train --out runs/mnist --resume --steps 10000   # continue and extend
  diffuse train --out runs/mnist --resume --steps 12000 --lr 2e-4   # ... at a lower learning rate
  diffuse train --objective ncsn --steps 3000 --out runs/ncsn --export ncsn.safetensors
                                                    # NCSN score model (σ 35 → 0.01, 100 levels)
  diffuse train --text --init-from embedded --steps 1000 --out runs/mnist-text --export runs/mnist-text/model.safetensors
                                                    # text-conditional on MNIST captions (for --prompt)
  diffuse train --classes 10 --init-from embedded --steps 2000 --out runs/mnist-class
                                                    # class-conditional (for --label and --cfg)

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	ckpt := filepath.Join(*out, "checkpoint.safetensors")

	var st *train.State
	var err error
	if *resume {
		st, err = train.LoadCheckpoint(ckpt)
		if err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
		if set["steps"] {
			st.Config.Steps = *steps
		}
		if set["lr"] {
			// A lower learning rate for the rest of a run (fine-tuning);
			// recorded in the config so the checkpoint says what was used last.
			st.Config.LR = float32(*lr)
		}
		for _, name := range []string{"objective", "sigma-min", "sigma-max", "num-scales", "classes", "text", "init-from", "cond-dropout", "data", "arch", "batch", "prediction", "schedule", "seed", "size", "channels", "weighting", "zero-snr"} {
			if set[name] {
				return fmt.Errorf("--%s cannot change when resuming (the run's config fixes it); only --steps and --lr can", name)
			}
		}
		fmt.Fprintf(stderr, "resuming %s at step %d of %d\n", ckpt, st.Step, st.Config.Steps)
	} else {
		cfg := def
		if *configPath != "" {
			b, err := os.ReadFile(*configPath)
			if err != nil {
				return fmt.Errorf("--config: %w", err)
			}
			dec := json.NewDecoder(strings.NewReader(string(b)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&cfg); err != nil {
				return fmt.Errorf("--config %s: %w", *configPath, err)
			}
		}
		apply := map[string]func(){
			"data": func() { cfg.Data = *dataFlag }, "size": func() { cfg.Model.Size = *size }, "channels": func() { cfg.Model.Channels = *channels },
			"arch": func() { cfg.Model.Arch = *arch }, "steps": func() { cfg.Steps = *steps }, "batch": func() { cfg.Batch = *batch },
			"lr": func() { cfg.LR = float32(*lr) }, "weight-decay": func() { cfg.WeightDecay = float32(*wd) }, "warmup": func() { cfg.Warmup = *warmup },
			"clip": func() { cfg.ClipNorm = *clip }, "prediction": func() { cfg.Prediction = *pred },
			"weighting": func() { cfg.Weighting = *weighting }, "min-snr-gamma": func() { cfg.MinSNRGamma = *gamma },
			"schedule": func() { cfg.Schedule = *sched }, "zero-snr": func() { cfg.ZeroSNR = *zeroSNR }, "seed": func() { cfg.Seed = *seed },
			"classes": func() { cfg.Model.Classes = *classes }, "init-from": func() { cfg.InitFrom = *initFrom },
			"text": func() { cfg.Model.Text = textSpec(*textCond) }, "ema": func() { cfg.EMADecay = float32(*ema) },
			"objective": func() { cfg.Objective = *objective }, "sigma-min": func() { cfg.SigmaMin = *sigmaMin },
			"sigma-max": func() { cfg.SigmaMax = *sigmaMax }, "num-scales": func() { cfg.NumScales = *numScales },
		}
		for name, f := range apply {
			if set[name] {
				f()
			}
		}
		if cfg.IsNCSN() {
			cfg.SetNCSNDefaults()
		}
		if (cfg.Model.Classes > 0 || cfg.Model.Text != nil) && !set["config"] || set["cond-dropout"] {
			cfg.CondDropout = *condDrop
		}
		if cfg.InitFrom == "embedded" {
			cfg.InitFrom = train.EmbeddedPrefix + assets.MNISTModel
		}
		if _, err := os.Stat(ckpt); err == nil {
			return fmt.Errorf("%s already holds a checkpoint: pass --resume to continue it, or choose another --out", *out)
		}
		st, err = train.NewState(cfg)
		if err != nil {
			return err
		}
	}
	cfg := st.Config
	if err := os.MkdirAll(filepath.Join(*out, "samples"), 0o755); err != nil {
		return fmt.Errorf("create run directory: %w (choose a writable --out)", err)
	}
	cj, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(filepath.Join(*out, "config.json"), append(cj, '\n'), 0o644); err != nil {
		return fmt.Errorf("write config.json: %w (choose a writable --out)", err)
	}
	ds, err := loadTrainData(cfg)
	if err != nil {
		return err
	}
	trainData, err := textTrainData(st, ds, filepath.Join(*out, "config.json"))
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "training %s on %s (%d images) for %d steps at batch %d → %s\n", cfg.Model.Arch, cfg.Data, ds.Len(), cfg.Steps, cfg.Batch, *out)
	bar := progress.New(stderr, cfg.Steps, "train")
	bar.Resume(st.Step)
	lossCSV := filepath.Join(*out, "loss.csv")
	opts := train.Options{
		Checkpoint: ckpt, CheckpointEvery: *ckptEvery, LossCSV: lossCSV,
		OnStep:      func(step int, loss float64) { bar.Set(step, progress.Float("loss", loss)) },
		SampleEvery: *sampleEvery,
		OnSample: func(step int, st *train.State) error {
			if err := plotLoss(lossCSV, filepath.Join(*out, "loss.png")); err != nil {
				return err
			}
			return sampleGrid(st, filepath.Join(*out, "samples", fmt.Sprintf("step_%06d.png", step)))
		},
	}
	if *maxMin > 0 {
		opts.Deadline = time.Now().Add(time.Duration(*maxMin * float64(time.Minute)))
	}
	runErr := train.Run(st, trainData, opts)
	bar.Finish()
	if err := plotLoss(lossCSV, filepath.Join(*out, "loss.png")); err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		return runErr
	}
	if *export != "" {
		if err := train.Export(*export, st, true); err != nil {
			return fmt.Errorf("--export: %w", err)
		}
		fmt.Fprintf(stdout, "exported %s\n", *export)
	}
	fmt.Fprintf(stdout, "trained %d steps, last loss %.4f; checkpoint %s\n", st.Step, st.LastLoss, ckpt)
	return nil
}

func loadTrainData(cfg train.Config) (*data.Dataset, error) {
	if cfg.Data == "mnist" {
		if cfg.Model.Channels != 1 || cfg.Model.Size != 28 {
			return nil, fmt.Errorf("mnist images are 1×28×28; --channels %d --size %d do not fit", cfg.Model.Channels, cfg.Model.Size)
		}
		return data.LoadMNIST("", "train")
	}
	return data.LoadFolder(cfg.Data, cfg.Model.Size, cfg.Model.Channels)
}

func sampleGrid(st *train.State, path string) error {
	// Sample with the EMA weights, then restore the training weights.
	saved := make([][]float32, 0)
	for _, p := range st.Opt.Params {
		saved = append(saved, p.Var.Value.ToHost())
	}
	st.EMA.CopyTo()
	defer func() {
		for i, p := range st.Opt.Params {
			p.Var.Value.Backend().CopyFromHost(p.Var.Value, saved[i])
		}
	}()
	s, err := pipeline.NewScheduler(st.Config, pipeline.Sampler{Name: "ddim", Steps: 50})
	if err != nil {
		return err
	}
	var net model.Network = st.Net
	n, cols := 64, 8
	if c, ok := st.Net.(model.Conditional); ok && c.Classes() > 0 {
		// Class-conditional: one column per label, CFG w = 3.
		n, cols = 8*c.Classes(), c.Classes()
		labels := make([]int, n)
		for i := range labels {
			labels[i] = i % c.Classes()
		}
		if net, err = guidance.NewCFG(c, &model.Cond{Labels: labels}, nil, []float64{3}, n); err != nil {
			return err
		}
	}
	if net, _, err = pipeline.EpsNetwork(net, st.Config); err != nil { // NCSN: the score network as an ε-network
		return err
	}
	imgs, err := pipeline.Generate(net, st.Config.Model, s, pipeline.Options{N: n, Seed: 0})
	if err != nil {
		return err
	}
	return imageio.SavePNG(path, imageio.Grid(imgs, cols, 2, 2))
}

func plotLoss(csvPath, pngPath string) error {
	b, err := os.ReadFile(csvPath)
	if err != nil {
		return nil // nothing logged yet
	}
	var xs, ys []float64
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if i == 0 {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) < 2 {
			continue
		}
		x, e1 := strconv.ParseFloat(f[0], 64)
		y, e2 := strconv.ParseFloat(f[1], 64)
		if e1 == nil && e2 == nil {
			xs, ys = append(xs, x), append(ys, y)
		}
	}
	if len(xs) < 2 {
		return nil
	}
	return imageio.LossPlot(pngPath, []imageio.Series{{Name: "train loss", X: xs, Y: ys}}, "training loss")
}
