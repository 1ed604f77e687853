// Package train trains diffusion denoisers: ε-, x0- or v-prediction with
// L_simple or min-SNR-γ weighting, AdamW with linear warm-up, gradient
// clipping and an EMA of the weights, atomic checkpoints that resume
// bit-exactly, a CSV loss log, and hooks for progress and sample grids.
package train

import (
	"encoding/csv"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/data/captions"
	"github.com/diffuse-go/diffuse/internal/assets"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/model/cond"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/optim"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// Config is a complete, JSON-serializable description of a training run.
// It is stored in every checkpoint, so a checkpoint alone rebuilds its model
// and resumes its run.
type Config struct {
	Model       model.Spec `json:"model"`
	Data        string     `json:"data"` // "mnist" or a folder of images
	Schedule    string     `json:"beta_schedule"`
	Timesteps   int        `json:"num_train_timesteps"`
	BetaStart   float64    `json:"beta_start"`
	BetaEnd     float64    `json:"beta_end"`
	ZeroSNR     bool       `json:"rescale_betas_zero_snr"`
	Prediction  string     `json:"prediction_type"` // epsilon | sample | v_prediction
	Weighting   string     `json:"loss_weighting"`  // simple | min-snr
	MinSNRGamma float64    `json:"min_snr_gamma"`
	Steps       int        `json:"steps"`
	Batch       int        `json:"batch"`
	LR          float32    `json:"lr"`
	WeightDecay float32    `json:"weight_decay"`
	Warmup      int        `json:"warmup_steps"`
	ClipNorm    float64    `json:"clip_grad_norm"` // 0: no clipping
	EMADecay    float32    `json:"ema_decay"`
	Seed        uint64     `json:"seed"`
	// CondDropout is the probability that a class-conditional model sees
	// the null label for an image during training (classifier-free
	// guidance needs the unconditional branch trained too).
	CondDropout float64 `json:"cond_dropout,omitempty"`
	// InitFrom names a checkpoint or export whose (EMA) weights initialize
	// the network's matching parameters (fine-tuning: e.g. a
	// class-conditional U-Net from an unconditional one); "" starts from
	// random weights.
	InitFrom string `json:"init_from,omitempty"`
	// Captions holds the per-digit tercile thresholds that bin MNIST
	// images' thickness, size and slant for the captions of a
	// text-conditional run (Model.Text set); fitted on the training set
	// when the run starts. CondDropout is then the probability of the
	// empty prompt.
	Captions *captions.Thresholds `json:"captions,omitempty"`

	// Objective is "ddpm" (the default; "" in configs written before it
	// existed) or "ncsn": denoising score matching over the geometric noise
	// ladder SigmaMax > … > SigmaMin of NumScales levels (see Run and
	// NCSNLadder; σ in data units). An NCSN run needs Prediction epsilon
	// and Weighting simple; its β schedule fields still matter: they are the
	// schedule the DDPM/DDIM samplers use through the denoiser.ScoreEps
	// adapter.
	Objective string  `json:"objective,omitempty"`
	SigmaMin  float64 `json:"sigma_min,omitempty"`
	SigmaMax  float64 `json:"sigma_max,omitempty"`
	NumScales int     `json:"num_scales,omitempty"`
}

// Training objectives (Config.Objective).
const (
	ObjectiveDDPM = "ddpm"
	ObjectiveNCSN = "ncsn"
)

// NCSN defaults for MNIST-like data in [−1, 1] (SetNCSNDefaults):
//
//   - σ_max = 35: NCSNv2's rule (Song & Ermon 2020, technique 1) is σ_1 ≈
//     the largest Euclidean distance between two training images, so that
//     at σ_1 Langevin dynamics can move between any two modes. For MNIST
//     in [−1, 1] the largest distance over a random 10,000-image subset
//     of the training set is 32.9 (1×28×28 = 784 dims); 35 rounds it up.
//   - σ_min = 0.01: about one grey level (2/255 ≈ 0.008 in [−1, 1] is one
//     8-bit step), so the last level is visually noise-free; it also
//     equals σ_0 of the default linear DDPM schedule.
//   - L = 100: technique 2 asks for adjacent levels whose Gaussian shells
//     overlap, Φ(√(2D)(γ−1)+3γ) − Φ(√(2D)(γ−1)−3γ) ≈ 0.5, which for
//     D = 784 gives γ ≈ 1.082 and L ≈ 1 + ln(3500)/ln γ ≈ 105; 100 levels
//     (γ ≈ 1.086) is the round number next to it.
const (
	DefaultSigmaMin  = 0.01
	DefaultSigmaMax  = 35
	DefaultNumScales = 100
)

// IsNCSN reports whether the config trains a score network (objective ncsn).
func (c Config) IsNCSN() bool { return c.Objective == ObjectiveNCSN }

// SetNCSNDefaults fills the NCSN fields left at zero with DefaultSigmaMin,
// DefaultSigmaMax and DefaultNumScales.
func (c *Config) SetNCSNDefaults() {
	if c.SigmaMin == 0 {
		c.SigmaMin = DefaultSigmaMin
	}
	if c.SigmaMax == 0 {
		c.SigmaMax = DefaultSigmaMax
	}
	if c.NumScales == 0 {
		c.NumScales = DefaultNumScales
	}
}

// NCSNLadder returns the noise ladder of an NCSN config (an error for other
// objectives or bad σ fields).
func (c Config) NCSNLadder() (schedule.Ladder, error) {
	if !c.IsNCSN() {
		return schedule.Ladder{}, fmt.Errorf("objective %q has no noise ladder (only ncsn models do)", c.Objective)
	}
	return schedule.NewLadder(c.SigmaMin, c.SigmaMax, c.NumScales)
}

// DefaultConfig is a sensible MNIST run with UNet-S.
func DefaultConfig() Config {
	return Config{
		Model: model.Spec{Arch: "unet-s", Channels: 1, Size: 28}, Data: "mnist",
		Schedule: "linear", Timesteps: 1000, BetaStart: 1e-4, BetaEnd: 0.02,
		Prediction: "epsilon", Weighting: "simple", MinSNRGamma: 5,
		Steps: 6000, Batch: 64, LR: 1e-3, WeightDecay: 0, Warmup: 200, ClipNorm: 1, EMADecay: 0.999, Seed: 1,
	}
}

// Validate reports the first bad field, naming it and its valid range.
func (c Config) Validate() error {
	switch {
	case c.Steps < 1:
		return fmt.Errorf("steps must be ≥ 1 (got %d)", c.Steps)
	case c.Batch < 1:
		return fmt.Errorf("batch must be ≥ 1 (got %d)", c.Batch)
	case !(c.LR > 0):
		return fmt.Errorf("lr must be > 0 (got %g)", c.LR)
	case c.EMADecay < 0 || c.EMADecay >= 1:
		return fmt.Errorf("ema_decay must be in [0, 1) (got %g)", c.EMADecay)
	case c.CondDropout < 0 || c.CondDropout >= 1:
		return fmt.Errorf("cond_dropout must be in [0, 1) (got %g)", c.CondDropout)
	case c.Weighting != "simple" && c.Weighting != "min-snr":
		return fmt.Errorf("loss_weighting must be simple or min-snr (got %q)", c.Weighting)
	case c.Objective != "" && c.Objective != ObjectiveDDPM && c.Objective != ObjectiveNCSN:
		return fmt.Errorf("objective must be ddpm or ncsn (got %q)", c.Objective)
	}
	if c.IsNCSN() {
		if _, err := c.NCSNLadder(); err != nil {
			return err
		}
		if c.Prediction != string(schedule.Epsilon) {
			return fmt.Errorf("objective ncsn trains a noise (ε) predictor, s(x,σ) = −net/σ; prediction_type must be epsilon (got %q)", c.Prediction)
		}
		if c.Weighting != "simple" {
			return fmt.Errorf("objective ncsn has its own weighting λ(σ) = σ²; loss_weighting must be simple (got %q)", c.Weighting)
		}
	} else if c.SigmaMin != 0 || c.SigmaMax != 0 || c.NumScales != 0 {
		return fmt.Errorf("sigma_min, sigma_max and num_scales apply to objective ncsn only (objective is %q)", c.Objective)
	}
	if err := schedule.PredictionType(c.Prediction).Validate(); err != nil {
		return err
	}
	if _, err := c.NoiseSchedule(); err != nil {
		return err
	}
	return nil
}

// NoiseSchedule builds the config's β schedule.
func (c Config) NoiseSchedule() (*schedule.Schedule, error) {
	return schedule.New(c.Schedule, c.Timesteps, c.BetaStart, c.BetaEnd, c.ZeroSNR)
}

func newOptimizer(c Config, params []nn.Named) *optim.Adam {
	return optim.NewAdamW(params, c.LR, c.WeightDecay)
}

// Dataset is what training reads: images [N, C, H, W] in [-1, 1].
type Dataset interface {
	Len() int
	Batch(idx []int, dst *tensor.Tensor)
}

// Labeled is a Dataset with a class per image; class-conditional training
// needs one.
type Labeled interface {
	Dataset
	// BatchLabels writes the class of each image idx[i] into dst[i]; it
	// reports false when the data set has no labels.
	BatchLabels(idx, dst []int) bool
}

// Captioned is a Dataset whose images can be described in words;
// text-conditional training needs one (captions.Dataset).
type Captioned interface {
	Dataset
	// Caption draws a caption of image i with rng.
	Caption(i int, rng *rand.Rand) string
}

// captionStream salts the per-step caption generator's seed.
const captionStream = 0xca9710

// Options are the side channels of a run.
type Options struct {
	// Checkpoint is the checkpoint path (written every CheckpointEvery steps
	// and at the end); empty disables checkpoints.
	Checkpoint      string
	CheckpointEvery int
	// LossCSV, when set, receives step,loss,lr,grad_norm,seconds rows
	// (appended on resume).
	LossCSV string
	// OnStep is called after every step (progress bars).
	OnStep func(step int, loss float64)
	// OnSample is called every SampleEvery steps with the EMA network
	// loaded (sample grids); errors stop training.
	SampleEvery int
	OnSample    func(step int, st *State) error
	// StopAfter stops after this many steps of this call (0: run to
	// Config.Steps) — for tests of resuming.
	StopAfter int
	// Deadline, when set, stops the run after the first step that ends
	// past it (a wall-clock budget); the checkpoint is written there.
	Deadline time.Time
}

// NewState starts a run from scratch.
func NewState(cfg Config) (*State, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("train config: %w", err)
	}
	net, err := model.Build(cfg.Model, rand.New(rand.NewPCG(cfg.Seed, 0x5eed)))
	if err != nil {
		return nil, err
	}
	if cfg.InitFrom != "" {
		if err := initFrom(net, cfg.InitFrom); err != nil {
			return nil, err
		}
	}
	params := nn.Parameters(net)
	return &State{Config: cfg, Net: net, EMA: optim.NewEMA(params, cfg.EMADecay), Opt: newOptimizer(cfg, params), RNG: rand.NewPCG(cfg.Seed, 0xda7a)}, nil
}

// ErrNaN is wrapped by the error Run returns when the loss is not finite.
var ErrNaN = errors.New("loss is not finite")

// Run trains st on ds until st.Config.Steps. Batches come from a
// per-epoch permutation derived from the seed, and t and ε from st.RNG, so
// a run resumed from a checkpoint continues exactly as if uninterrupted.
//
// The DDPM objective draws t uniformly from the schedule's timesteps and
// regresses the configured target (ε, x0 or v) of x_t. The NCSN objective
// (Song & Ermon 2019) draws a level i uniformly from the config's ladder
// per image, perturbs x̃ = x + σ_i·z, and minimizes denoising score
// matching with λ(σ) = σ²: with the score parameterized as
// s(x̃, σ) = −net(x̃, c(σ))/σ (c is schedule.Ladder.Label),
//
//	λ(σ)·½‖s(x̃, σ) + z/σ‖² = ½‖net(x̃, c(σ)) − z‖²,
//
// so the loss is the mean squared error between the network's output and z
// (averaged over pixels, like the DDPM loss).
// A non-finite loss stops training with an error naming the step; the
// checkpoint on disk is left as it was (the last good one).
func Run(st *State, ds Dataset, o Options) error {
	cfg := st.Config
	sched, err := cfg.NoiseSchedule()
	if err != nil {
		return err
	}
	pred := schedule.PredictionType(cfg.Prediction)
	if ds.Len() < 1 {
		return errors.New("train: the dataset is empty: point --data at MNIST or a folder with PNG/JPEG images")
	}
	logw, closeLog, err := openLossLog(o.LossCSV, st.Step, "train")
	if err != nil {
		return err
	}
	defer closeLog()
	s := cfg.Model
	B := cfg.Batch
	x0 := tensor.New(B, s.Channels, s.Size, s.Size)
	eps := tensor.New(x0.Shape()...)
	xt := tensor.New(x0.Shape()...)
	target := tensor.New(x0.Shape()...)
	idx := make([]int, B)
	ts := make([]int, B)
	tf := make([]float32, B)
	w := make([]float32, B)
	// ts indexes levels: the schedule's T timesteps (network input t) for
	// DDPM, the ladder's L noise levels σ_i (network input c(σ_i)) for NCSN.
	ncsn := cfg.IsNCSN()
	var levels []float64
	var noiseLabels []float32
	if ncsn {
		ladder, err := cfg.NCSNLadder()
		if err != nil {
			return err
		}
		levels = ladder.Sigmas()
		for _, s := range levels {
			noiseLabels = append(noiseLabels, ladder.Label(s))
		}
	} else {
		levels = sched.Sigmas()
		for t := range levels {
			noiseLabels = append(noiseLabels, float32(t))
		}
	}
	rng := rand.New(st.RNG)
	var labels []int
	var cnet model.Conditional
	if c, ok := st.Net.(model.Conditional); ok && c.Classes() > 0 {
		lds, ok := ds.(Labeled)
		if !ok || !lds.BatchLabels(idx[:0], nil) {
			return fmt.Errorf("train: a class-conditional model needs labeled data (MNIST has labels; an image folder has none)")
		}
		cnet, labels = c, make([]int, B)
	}
	// A text-conditional model reads a caption per image, drawn afresh at
	// every step from a generator seeded by (seed, step) — so resumed runs
	// see the same captions — or, with probability CondDropout, the empty
	// prompt (the null condition of classifier-free guidance).
	var tokens [][]int
	var capDS Captioned
	tok := model.Tokenizer(st.Net)
	if tok != nil {
		c, ok := ds.(Captioned)
		if !ok {
			return fmt.Errorf("train: a text-conditional model needs captioned data (MNIST with --text; see package data/captions)")
		}
		capDS, tokens = c, make([][]int, B)
		cnet = st.Net.(model.Conditional)
	}
	g := autograd.New(tensor.CPU)
	order := newEpochOrder(cfg.Seed, ds.Len())
	opt := optimizer{opt: st.Opt, ema: st.EMA, lr: cfg.LR, warmup: cfg.Warmup, clip: cfg.ClipNorm}
	start := time.Now()
	done := 0
	for st.Step < cfg.Steps {
		if o.StopAfter > 0 && done >= o.StopAfter || done > 0 && pastDeadline(o.Deadline) {
			break
		}
		order.fill(idx, st.Step)
		ds.Batch(idx, x0)
		if labels != nil {
			ds.(Labeled).BatchLabels(idx, labels)
			for i := range labels {
				if rng.Float64() < cfg.CondDropout {
					labels[i] = cond.Null
				}
			}
		}
		if tokens != nil {
			crng := rand.New(rand.NewPCG(cfg.Seed^captionStream, uint64(st.Step)))
			for i := range tokens {
				if crng.Float64() < cfg.CondDropout {
					tokens[i] = nil
					continue
				}
				capt := capDS.Caption(idx[i], crng)
				ids, err := tok.Encode(capt)
				if err != nil {
					return fmt.Errorf("train step %d: caption %q: %w", st.Step+1, capt, err)
				}
				tokens[i] = ids
			}
		}
		for i := range ts {
			ts[i] = rng.IntN(len(levels))
			tf[i] = noiseLabels[ts[i]]
		}
		ed := eps.Data()
		for i := range ed {
			ed[i] = float32(rng.NormFloat64())
		}
		if ncsn {
			// x̃ = x + σ_i·z with target z: the σ²-weighted DSM loss of
			// the score s = −net/σ (see Run).
			perturb(xt, x0, eps, ts, levels)
			copy(target.Data(), ed)
		} else {
			if err := sched.AddNoise(xt, x0, eps, ts); err != nil {
				return err
			}
			if err := sched.Target(pred, target, x0, eps, xt, ts); err != nil {
				return err
			}
		}
		for i := range w {
			w[i] = 1
			if cfg.Weighting == "min-snr" {
				w[i] = float32(sched.MinSNRWeight(pred, ts[i], cfg.MinSNRGamma))
			}
		}
		r, err := opt.step(g, st.Step, o.Checkpoint, "train", func() *autograd.Var {
			var out *autograd.Var
			if cnet != nil {
				out = cnet.ForwardCond(g, autograd.Const(xt), tf, &model.Cond{Labels: labels, Tokens: tokens})
			} else {
				out = st.Net.Forward(g, autograd.Const(xt), tf)
			}
			return g.WeightedMSE(out, autograd.Const(target), w)
		})
		if err != nil {
			return err
		}
		loss := r.loss
		st.Step++
		done++
		st.LastLoss = loss
		logStep(logw, st.Step, r, start)
		if o.OnStep != nil {
			o.OnStep(st.Step, loss)
		}
		last := st.Step == cfg.Steps || (o.StopAfter > 0 && done == o.StopAfter) || pastDeadline(o.Deadline)
		if o.Checkpoint != "" && (last || (o.CheckpointEvery > 0 && st.Step%o.CheckpointEvery == 0)) {
			if logw != nil {
				logw.Flush()
			}
			if err := SaveCheckpoint(o.Checkpoint, st); err != nil {
				return fmt.Errorf("train step %d: %w", st.Step, err)
			}
		}
		if o.OnSample != nil && o.SampleEvery > 0 && (st.Step%o.SampleEvery == 0 || last) {
			if err := o.OnSample(st.Step, st); err != nil {
				return fmt.Errorf("train step %d: sample grid: %w", st.Step, err)
			}
		}
	}
	return nil
}

func pastDeadline(d time.Time) bool { return !d.IsZero() && time.Now().After(d) }

// EmbeddedPrefix marks an InitFrom naming a model embedded in the binary
// (package internal/assets), e.g. "embedded:mnist.safetensors".
const EmbeddedPrefix = "embedded:"

// initFrom loads the (EMA, else raw) weights of the checkpoint or export
// at path into the parameters of net that it holds.
func initFrom(net model.Network, path string) error {
	var f *safetensors.File
	var err error
	if name, ok := strings.CutPrefix(path, EmbeddedPrefix); ok {
		f, err = assets.Open(name)
	} else {
		f, err = safetensors.ReadFile(path)
	}
	if err != nil {
		return fmt.Errorf("init_from: %w", err)
	}
	prefix := "ema"
	if _, ok := f.Get(nn.Join("ema", nn.Parameters(net)[0].Name)); !ok {
		prefix = "model"
	}
	if _, err := nn.LoadPartial(f, net, prefix); err != nil {
		return fmt.Errorf("init_from %s: %w", path, err)
	}
	return nil
}

// perturb sets xt[b] = x0[b] + σ_{lv[b]}·eps[b] for every sample b.
func perturb(xt, x0, eps *tensor.Tensor, lv []int, sigmas []float64) {
	b := xt.Dim(0)
	per := xt.Numel() / b
	xd, x0d, ed := xt.Data(), x0.Data(), eps.Data()
	for i := 0; i < b; i++ {
		s := float32(sigmas[lv[i]])
		for j := i * per; j < (i+1)*per; j++ {
			xd[j] = x0d[j] + s*ed[j]
		}
	}
}

func nanError(step int, v float64, ckpt string) error {
	msg := fmt.Sprintf("training stopped at step %d: %v (value %v); lower --lr or enable --clip", step, ErrNaN, v)
	if ckpt != "" {
		if _, err := os.Stat(ckpt); err == nil {
			msg += fmt.Sprintf("; the last good checkpoint is kept at %s (resume with --resume)", ckpt)
		} else {
			msg += "; no checkpoint had been written yet"
		}
	}
	return fmt.Errorf("%s: %w", msg, ErrNaN)
}

// openLossLog opens the CSV loss log at path for appending after rows up
// to step (later rows, from a run resumed at step, are dropped first) and
// writes the header into a new file. It returns a nil writer and a no-op
// close for path "". who names the command in errors.
func openLossLog(path string, step int, who string) (*csv.Writer, func(), error) {
	if path == "" {
		return nil, func() {}, nil
	}
	if err := trimLog(path, step); err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: open loss log: %w (choose a writable --out directory)", who, err)
	}
	if fi, _ := f.Stat(); fi != nil && fi.Size() == 0 {
		f.WriteString("step,loss,lr,grad_norm,seconds\n")
	}
	w := csv.NewWriter(f)
	return w, func() { w.Flush(); f.Close() }, nil
}

// trimLog drops rows past step (and any partial last line) from a loss log,
// so a run resumed from a checkpoint does not log those steps twice.
func trimLog(path string, step int) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("train: read loss log: %w", err)
	}
	lines := strings.Split(string(b), "\n")
	keep := make([]string, 0, len(lines))
	for i, l := range lines {
		if i == len(lines)-1 { // text after the last newline is a partial row
			break
		}
		f := strings.SplitN(l, ",", 2)
		if n, err := strconv.Atoi(f[0]); err == nil && n > step {
			continue
		}
		keep = append(keep, l+"\n")
	}
	out := strings.Join(keep, "")
	if out == string(b) {
		return nil
	}
	return os.WriteFile(path, []byte(out), 0o644)
}
