package guidance

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/data"
	"github.com/diffuse-go/diffuse/eval"
	"github.com/diffuse-go/diffuse/internal/progress"
	"github.com/diffuse-go/diffuse/model/classifier"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/optim"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// NoisyClassifierFormat marks noisy-classifier files in their metadata.
const NoisyClassifierFormat = "diffuse-noisy-classifier-v1"

// TrainOptions configure TrainNoisyClassifier.
type TrainOptions struct {
	// Steps is the number of optimizer steps (default: 2 epochs' worth).
	Steps int
	// Batch is the batch size (default 32: on 2 cores small batches train
	// this small network furthest per second).
	Batch int
	// LR is the AdamW peak learning rate (default 2e-3), warmed up over the
	// first 2% of steps and cosine-decayed to 0 (see MaxDuration).
	LR float32
	// Seed drives initialization, batches, timesteps and noise.
	Seed uint64
	// Shift is the random-translation augmentation in pixels (default 0;
	// negative values are treated as 0).
	Shift int
	// Widths are the conv widths (default classifier.DefaultNoisyWidths).
	Widths [4]int
	// MaxDuration is a wall-clock budget (0: none). With it the learning
	// rate schedule follows whichever is further along, steps or time, and
	// training stops when either runs out, so a run cut short by the clock
	// still ends its cosine decay at 0. Such runs depend on the machine's
	// speed and are not bit-reproducible; leave it 0 for those.
	MaxDuration time.Duration
	// Progress is where the progress bar goes (nil: none).
	Progress io.Writer
}

// TrainNoisyClassifier trains a NoisyNet on noised images of train:
// x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε with t uniform over sched's timesteps [0, T)
// and ε ~ N(0, I), cross-entropy on train.Labels. It returns the network
// and the number of steps it ran.
func TrainNoisyClassifier(train *data.Dataset, sched *schedule.Schedule, o TrainOptions) (*classifier.NoisyNet, int, error) {
	if train == nil || train.Labels == nil || train.Len() == 0 {
		return nil, 0, fmt.Errorf("train noisy classifier: the training set needs images and labels")
	}
	if sched == nil {
		return nil, 0, fmt.Errorf("train noisy classifier: no noise schedule")
	}
	if o.Batch <= 0 {
		o.Batch = 32
	}
	if o.Batch > train.Len() {
		o.Batch = train.Len()
	}
	if o.Steps <= 0 {
		o.Steps = 2 * (train.Len() / o.Batch)
	}
	if o.LR <= 0 {
		o.LR = 2e-3
	}
	if o.Shift < 0 {
		o.Shift = 0
	}
	if o.Widths == ([4]int{}) {
		o.Widths = classifier.DefaultNoisyWidths
	}
	classes := 0
	for _, l := range train.Labels {
		classes = max(classes, l+1)
	}
	sh := train.Shape()
	rng := rand.New(rand.NewPCG(o.Seed, 0x9e1d))
	net, err := classifier.NewNoisy(rng, sh[0], o.Widths, max(classes, 2))
	if err != nil {
		return nil, 0, err
	}
	params := nn.Parameters(net)
	opt := optim.NewAdamW(params, o.LR, 1e-4)
	g := autograd.New(tensor.CPU)
	B, n, T := o.Batch, train.Len(), sched.T()
	x0 := tensor.New(B, sh[0], sh[1], sh[2])
	aug := tensor.New(B, sh[0], sh[1], sh[2])
	eps := tensor.New(B, sh[0], sh[1], sh[2])
	labels := make([]int, B)
	ts := make([]int, B)
	tf := make([]float32, B)
	warm := max(1, o.Steps/50)
	bar := progress.New(o.Progress, o.Steps, "noisy classifier")
	start := time.Now()
	var perm []int
	pos := n
	step := 0
	for ; step < o.Steps; step++ {
		frac := float64(step) / float64(o.Steps)
		if o.MaxDuration > 0 {
			frac = max(frac, float64(time.Since(start))/float64(o.MaxDuration))
		}
		if frac >= 1 {
			break
		}
		if pos+B > n {
			perm, pos = rng.Perm(n), 0
		}
		idx := perm[pos : pos+B]
		pos += B
		train.Batch(idx, x0)
		train.BatchLabels(idx, labels)
		eval.Shift(aug, x0, o.Shift, rng)
		for i := range ts {
			ts[i] = rng.IntN(T)
			tf[i] = float32(ts[i])
		}
		ed := eps.Data()
		for i := range ed {
			ed[i] = float32(rng.NormFloat64())
		}
		if err := sched.AddNoise(aug, aug, eps, ts); err != nil {
			return nil, step, err
		}
		lr := float64(o.LR) * 0.5 * (1 + math.Cos(math.Pi*frac))
		if step < warm {
			lr *= float64(step+1) / float64(warm)
		}
		opt.LR = float32(lr)
		var loss float32
		err := autograd.Catch(func() {
			logits, _ := net.Forward(g, autograd.Const(aug), tf)
			l := g.CrossEntropy(logits, labels)
			loss = l.Value.Item()
			optim.ZeroGrad(params)
			if err := g.Backward(l); err != nil {
				panic(&tensor.ShapeError{Op: "Backward", Msg: err.Error()})
			}
		})
		g.Reset()
		if err != nil {
			return nil, step, err
		}
		if math.IsNaN(float64(loss)) {
			return nil, step, fmt.Errorf("train noisy classifier: loss is NaN at step %d; lower the learning rate", step+1)
		}
		opt.Update()
		bar.Set(step+1, progress.Float("loss", float64(loss)))
	}
	bar.Finish()
	return net, step, nil
}

// NoisyAccuracy is the fraction of ds that net labels correctly when every
// image is noised to timestep t of sched with noise drawn from seed (the
// same seed gives the same noise).
func NoisyAccuracy(net *classifier.NoisyNet, sched *schedule.Schedule, ds *data.Dataset, t int, seed uint64) (float64, error) {
	if ds == nil || ds.Labels == nil || ds.Len() == 0 {
		return 0, fmt.Errorf("noisy accuracy: the data set needs images and labels")
	}
	if t < 0 || t >= sched.T() {
		return 0, fmt.Errorf("noisy accuracy: timestep %d outside [0, %d)", t, sched.T())
	}
	const B = 250
	sh := ds.Shape()
	per := sh[0] * sh[1] * sh[2]
	rng := rand.New(rand.NewPCG(seed, uint64(t)))
	g := autograd.NoGrad(tensor.CPU)
	ok := 0
	n := ds.Len()
	for s := 0; s < n; s += B {
		b := min(B, n-s)
		x := tensor.New(b, sh[0], sh[1], sh[2])
		copy(x.Data(), ds.Images.Data()[s*per:(s+b)*per])
		eps := tensor.New(b, sh[0], sh[1], sh[2])
		for i := range eps.Data() {
			eps.Data()[i] = float32(rng.NormFloat64())
		}
		if err := sched.AddNoise(x, x, eps, []int{t}); err != nil {
			return 0, err
		}
		tf := make([]float32, b)
		for i := range tf {
			tf[i] = float32(t)
		}
		err := autograd.Catch(func() {
			logits, _ := net.Forward(g, autograd.Const(x), tf)
			ld := logits.Value.Data()
			k := net.Classes
			for i := 0; i < b; i++ {
				best := 0
				for j := 1; j < k; j++ {
					if ld[i*k+j] > ld[i*k+best] {
						best = j
					}
				}
				if best == ds.Labels[s+i] {
					ok++
				}
			}
		})
		g.Reset()
		if err != nil {
			return 0, err
		}
	}
	return float64(ok) / float64(n), nil
}

// SaveNoisyClassifier writes net (F16 weights when half) atomically, with
// its widths, class count, the noise schedule it was trained on, and any
// extra metadata (e.g. accuracies).
func SaveNoisyClassifier(path string, net *classifier.NoisyNet, sc schedule.Config, half bool, extra map[string]string) error {
	ts := nn.StateTensors(net, "")
	if half {
		for i := range ts {
			v, _ := ts[i].Float32()
			ts[i].DType, ts[i].Data = safetensors.F16, safetensors.Float32ToF16(v)
		}
	}
	w := net.Widths
	meta := map[string]string{
		"diffuse.format":              NoisyClassifierFormat,
		"diffuse.classes":             strconv.Itoa(net.Classes),
		"diffuse.in_channels":         strconv.Itoa(net.C[0].W.Value.Dim(1)),
		"diffuse.widths":              fmt.Sprintf("%d,%d,%d,%d", w[0], w[1], w[2], w[3]),
		"diffuse.beta_schedule":       sc.BetaSchedule,
		"diffuse.num_train_timesteps": strconv.Itoa(sc.NumTrainTimesteps),
		"diffuse.beta_start":          strconv.FormatFloat(sc.BetaStart, 'g', -1, 64),
		"diffuse.beta_end":            strconv.FormatFloat(sc.BetaEnd, 'g', -1, 64),
		"diffuse.rescale_zero_snr":    strconv.FormatBool(sc.RescaleBetasZeroSNR),
	}
	for k, v := range extra {
		meta[k] = v
	}
	if err := safetensors.WriteFile(path, ts, meta); err != nil {
		return fmt.Errorf("save noisy classifier: %w", err)
	}
	return nil
}

// LoadNoisyClassifier reads a file written by SaveNoisyClassifier (path
// names it in errors) and returns the network and the noise schedule it was
// trained on (PredictionType left empty).
func LoadNoisyClassifier(f *safetensors.File, path string) (*classifier.NoisyNet, schedule.Config, error) {
	m := f.Metadata
	if m["diffuse.format"] != NoisyClassifierFormat {
		return nil, schedule.Config{}, fmt.Errorf("%s is not a noisy classifier (diffuse.format %q): train one with 'diffuse eval train-classifier --noisy'", path, m["diffuse.format"])
	}
	bad := func(key string, err error) error {
		return fmt.Errorf("%s: metadata %s = %q: %v (rewrite the file with 'diffuse eval train-classifier --noisy')", path, key, m[key], err)
	}
	var widths [4]int
	parts := strings.Split(m["diffuse.widths"], ",")
	if len(parts) != 4 {
		return nil, schedule.Config{}, bad("diffuse.widths", fmt.Errorf("want 4 comma-separated widths"))
	}
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, schedule.Config{}, bad("diffuse.widths", err)
		}
		widths[i] = v
	}
	ints := map[string]int{}
	for _, k := range []string{"diffuse.classes", "diffuse.in_channels", "diffuse.num_train_timesteps"} {
		v, err := strconv.Atoi(m[k])
		if err != nil {
			return nil, schedule.Config{}, bad(k, err)
		}
		ints[k] = v
	}
	var sc schedule.Config
	var err error
	sc.BetaSchedule = m["diffuse.beta_schedule"]
	sc.NumTrainTimesteps = ints["diffuse.num_train_timesteps"]
	if sc.BetaStart, err = strconv.ParseFloat(m["diffuse.beta_start"], 64); err != nil {
		return nil, sc, bad("diffuse.beta_start", err)
	}
	if sc.BetaEnd, err = strconv.ParseFloat(m["diffuse.beta_end"], 64); err != nil {
		return nil, sc, bad("diffuse.beta_end", err)
	}
	if sc.RescaleBetasZeroSNR, err = strconv.ParseBool(m["diffuse.rescale_zero_snr"]); err != nil {
		return nil, sc, bad("diffuse.rescale_zero_snr", err)
	}
	net, err := classifier.NewNoisy(rand.New(rand.NewPCG(0, 0)), ints["diffuse.in_channels"], widths, ints["diffuse.classes"])
	if err != nil {
		return nil, sc, fmt.Errorf("%s: %w", path, err)
	}
	if err := nn.LoadFrom(f, net, ""); err != nil {
		return nil, sc, fmt.Errorf("%s: %w", path, err)
	}
	return net, sc, nil
}
