package train

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/control"
	"github.com/diffuse-go/diffuse/internal/assets"
	"github.com/diffuse-go/diffuse/model/cond"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/optim"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

// FormatControlNet marks ControlNet checkpoints and exports (metadata
// diffuse.format). Their layout is the base checkpoints' (model.*, ema.*,
// adam.m.*, adam.v.* over the ControlNet's parameters, see
// controlnet.ControlNet) with diffuse.config holding a ControlNetConfig and
// diffuse.base_config the base model's Config.
const FormatControlNet = "diffuse-controlnet-v1"

// ControlNetConfig describes a ControlNet training run. The base model's
// noise schedule and prediction type (its Config) are the ones trained on.
type ControlNetConfig struct {
	// Base names the frozen base model: a checkpoint or export path, or
	// EmbeddedPrefix+name for a model embedded in the binary.
	Base string `json:"base"`
	// BaseDigest fingerprints the base weights (BaseDigest), so sampling
	// with another base can be flagged.
	BaseDigest string `json:"base_digest"`
	// Control is the control computed from each training image.
	Control control.Spec `json:"control"`
	Data    string       `json:"data"` // "mnist"
	Steps   int          `json:"steps"`
	Batch   int          `json:"batch"`
	LR      float32      `json:"lr"`
	// WeightDecay is AdamW's decoupled weight decay.
	WeightDecay float32 `json:"weight_decay"`
	Warmup      int     `json:"warmup_steps"`
	ClipNorm    float64 `json:"clip_grad_norm"` // 0: no clipping
	EMADecay    float32 `json:"ema_decay"`
	Seed        uint64  `json:"seed"`
}

// DefaultControlNetConfig is an MNIST edge ControlNet on the embedded
// model. Steps is sized for the project's 2-core machine (see
// BENCHMARKS.md); the EMA decay is short because runs are short.
func DefaultControlNetConfig() ControlNetConfig {
	return ControlNetConfig{
		Base: EmbeddedPrefix + assets.MNISTModel, Control: control.Spec{Kind: control.KindEdges}, Data: "mnist",
		Steps: 1000, Batch: 32, LR: 2e-4, Warmup: 50, ClipNorm: 1, EMADecay: 0.995, Seed: 1,
	}
}

// Validate reports the first bad field.
func (c ControlNetConfig) Validate() error {
	switch {
	case c.Base == "":
		return errors.New("controlnet: base must name a model (a file, or embedded)")
	case c.Steps < 1:
		return fmt.Errorf("steps must be ≥ 1 (got %d)", c.Steps)
	case c.Batch < 1:
		return fmt.Errorf("batch must be ≥ 1 (got %d)", c.Batch)
	case !(c.LR > 0):
		return fmt.Errorf("lr must be > 0 (got %g)", c.LR)
	case c.EMADecay < 0 || c.EMADecay >= 1:
		return fmt.Errorf("ema_decay must be in [0, 1) (got %g)", c.EMADecay)
	}
	return c.Control.Validate()
}

// ControlNetState is everything a ControlNet checkpoint restores, plus the
// frozen base it was trained on.
type ControlNetState struct {
	Config     ControlNetConfig
	BaseConfig Config
	Base       *unet.UNetS // frozen (controlnet.Freeze)
	Net        *controlnet.ControlNet
	Step       int
	EMA        *optim.EMA
	Opt        *optim.Adam
	RNG        *rand.PCG
	LastLoss   float64
}

// LoadBase loads a UNet-S base model (EMA weights) from ref: a checkpoint
// or export path, or EmbeddedPrefix+name. It returns the network, its
// training config and a display name.
func LoadBase(ref string) (*unet.UNetS, Config, string, error) {
	var f *safetensors.File
	var err error
	name := ref
	if n, ok := strings.CutPrefix(ref, EmbeddedPrefix); ok {
		name = "embedded " + n
		f, err = assets.Open(n)
	} else {
		f, err = safetensors.ReadFile(ref)
	}
	if err != nil {
		return nil, Config{}, name, fmt.Errorf("controlnet base: %w", err)
	}
	net, cfg, err := LoadForSampling(f, name, true)
	if err != nil {
		return nil, cfg, name, fmt.Errorf("controlnet base: %w", err)
	}
	u, ok := net.(*unet.UNetS)
	if !ok {
		return nil, cfg, name, fmt.Errorf("controlnet base %s is a %s; ControlNet controls UNet-S models", name, cfg.Model.Arch)
	}
	if cfg.IsNCSN() {
		return nil, cfg, name, fmt.Errorf("controlnet base %s is an NCSN score model; ControlNet training uses the DDPM objective of a DDPM base", name)
	}
	return u, cfg, name, nil
}

// BaseDigest is a fingerprint of a network's weights: FNV-64a over the
// float32 bits of its parameters in Visit order, in hex.
func BaseDigest(m nn.Module) string {
	h := fnv.New64a()
	var b [4]byte
	for _, p := range nn.Parameters(m) {
		h.Write([]byte(p.Name))
		for _, v := range p.Var.Value.ToHost() {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
			h.Write(b[:])
		}
	}
	return strconv.FormatUint(h.Sum64(), 16)
}

// NewControlNetState starts a ControlNet run: it loads and freezes the
// base, copies its encoder into a new ControlNet (hint encoder drawn from
// the seed) and sets up AdamW and the EMA over the ControlNet's
// parameters only.
func NewControlNetState(cfg ControlNetConfig) (*ControlNetState, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("controlnet config: %w", err)
	}
	base, bcfg, _, err := LoadBase(cfg.Base)
	if err != nil {
		return nil, err
	}
	cfg.BaseDigest = BaseDigest(base)
	controlnet.Freeze(base)
	net, err := controlnet.New(base, rand.New(rand.NewPCG(cfg.Seed, 0xc0de)))
	if err != nil {
		return nil, err
	}
	params := nn.Parameters(net)
	return &ControlNetState{
		Config: cfg, BaseConfig: bcfg, Base: base, Net: net,
		EMA: optim.NewEMA(params, cfg.EMADecay), Opt: optim.NewAdamW(params, cfg.LR, cfg.WeightDecay),
		RNG: rand.NewPCG(cfg.Seed, 0xda7a),
	}, nil
}

// ControlNetOptions are the side channels of RunControlNet (as Options).
type ControlNetOptions struct {
	Checkpoint      string // written every CheckpointEvery steps and at the end; "" disables
	CheckpointEvery int
	LossCSV         string // step,loss,lr,grad_norm,seconds rows (appended on resume)
	OnStep          func(step int, loss float64)
	// OnSample is called every SampleEvery steps and at the end with the
	// EMA weights loaded into st.Net (restored afterwards).
	SampleEvery int
	OnSample    func(step int, st *ControlNetState) error
	// StopAfter stops after this many steps of this call (0: run to
	// Config.Steps).
	StopAfter int
	// Deadline, when set, stops the run after the first step that ends
	// past it (a wall-clock budget); the checkpoint is written there.
	Deadline time.Time
}

// RunControlNet trains st.Net on ds with the base frozen: for each image
// x0 the control c = Config.Control(x0) is computed, t and ε are drawn as
// in Run, and the loss is the base config's target (ε for an ε-model)
// regressed by Base(x_t, t; residuals = Net(x_t, t, c)), weighted like the
// base (L_simple or min-SNR-γ). Batches, t and ε follow from the seed and
// st.RNG, so a run resumed from its checkpoint continues exactly.
func RunControlNet(st *ControlNetState, ds Dataset, o ControlNetOptions) error {
	cfg, bcfg := st.Config, st.BaseConfig
	sched, err := bcfg.NoiseSchedule()
	if err != nil {
		return err
	}
	pred := schedule.PredictionType(bcfg.Prediction)
	if ds.Len() < 1 {
		return errors.New("train-controlnet: the dataset is empty: it trains on MNIST; check the MNIST files (see diffuse train --help)")
	}
	logw, closeLog, err := openLossLog(o.LossCSV, st.Step, "train-controlnet")
	if err != nil {
		return err
	}
	defer closeLog()
	B := cfg.Batch
	s := bcfg.Model
	x0 := tensor.New(B, s.Channels, s.Size, s.Size)
	ctrl, eps, xt, target := tensor.New(x0.Shape()...), tensor.New(x0.Shape()...), tensor.New(x0.Shape()...), tensor.New(x0.Shape()...)
	idx, ts, tf, w := make([]int, B), make([]int, B), make([]float32, B), make([]float32, B)
	rng := rand.New(st.RNG)
	g := autograd.New(tensor.CPU)
	order := newEpochOrder(cfg.Seed, ds.Len())
	opt := optimizer{opt: st.Opt, ema: st.EMA, lr: cfg.LR, warmup: cfg.Warmup, clip: cfg.ClipNorm}
	start := time.Now()
	done := 0
	for st.Step < cfg.Steps {
		if o.StopAfter > 0 && done >= o.StopAfter {
			break
		}
		order.fill(idx, st.Step)
		ds.Batch(idx, x0)
		if err := cfg.Control.Apply(ctrl, x0); err != nil {
			return err
		}
		for i := range ts {
			ts[i] = rng.IntN(sched.T())
			tf[i] = float32(ts[i])
			w[i] = 1
			if bcfg.Weighting == "min-snr" {
				w[i] = float32(sched.MinSNRWeight(pred, ts[i], bcfg.MinSNRGamma))
			}
		}
		for i := range eps.Data() {
			eps.Data()[i] = float32(rng.NormFloat64())
		}
		if err := sched.AddNoise(xt, x0, eps, ts); err != nil {
			return err
		}
		if err := sched.Target(pred, target, x0, eps, xt, ts); err != nil {
			return err
		}
		r, err := opt.step(g, st.Step, o.Checkpoint, "train-controlnet", func() *autograd.Var {
			x := autograd.Const(xt)
			res := st.Net.Forward(g, x, tf, autograd.Const(ctrl))
			return g.WeightedMSE(st.Base.ForwardCond(g, x, tf, &cond.Cond{Residuals: res}), autograd.Const(target), w)
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
			if err := SaveControlNetCheckpoint(o.Checkpoint, st); err != nil {
				return fmt.Errorf("train-controlnet step %d: %w", st.Step, err)
			}
		}
		if o.OnSample != nil && o.SampleEvery > 0 && (st.Step%o.SampleEvery == 0 || last) {
			if err := st.WithEMA(func() error { return o.OnSample(st.Step, st) }); err != nil {
				return fmt.Errorf("train-controlnet step %d: sample grid: %w", st.Step, err)
			}
		}
		if last {
			break
		}
	}
	return nil
}

// WithEMA runs fn with the EMA weights loaded into st.Net and restores the
// training weights afterwards.
func (st *ControlNetState) WithEMA(fn func() error) error {
	saved := make([][]float32, len(st.Opt.Params))
	for i, p := range st.Opt.Params {
		saved[i] = p.Var.Value.ToHost()
	}
	st.EMA.CopyTo()
	defer func() {
		for i, p := range st.Opt.Params {
			p.Var.Value.Backend().CopyFromHost(p.Var.Value, saved[i])
		}
	}()
	return fn()
}

func controlNetMeta(st *ControlNetState) (map[string]string, error) {
	cfg, err := json.Marshal(st.Config)
	if err != nil {
		return nil, fmt.Errorf("controlnet checkpoint: encode config: %w", err)
	}
	bcfg, err := json.Marshal(st.BaseConfig)
	if err != nil {
		return nil, fmt.Errorf("controlnet checkpoint: encode base config: %w", err)
	}
	return map[string]string{
		"diffuse.format": FormatControlNet, "diffuse.config": string(cfg), "diffuse.base_config": string(bcfg),
		"diffuse.step": strconv.Itoa(st.Step),
	}, nil
}

// SaveControlNetCheckpoint writes st (ControlNet weights, EMA, AdamW
// moments, RNG, step, configs) to path atomically. The base is referenced
// by Config.Base, not stored.
func SaveControlNetCheckpoint(path string, st *ControlNetState) error {
	meta, err := controlNetMeta(st)
	if err != nil {
		return err
	}
	rng, err := st.RNG.MarshalBinary()
	if err != nil {
		return fmt.Errorf("controlnet checkpoint: encode RNG state: %w", err)
	}
	names := make([]string, len(st.Opt.Params))
	for i, p := range st.Opt.Params {
		names[i] = p.Name
	}
	var ts []safetensors.Tensor
	ts = append(ts, prefixed(st.Net, "model")...)
	ts = append(ts, prefixed(st.EMA.Module(), "ema")...)
	ts = append(ts, prefixed(tensorsModule{names, st.Opt.M}, "adam.m")...)
	ts = append(ts, prefixed(tensorsModule{names, st.Opt.V}, "adam.v")...)
	meta["diffuse.adam_step"] = strconv.Itoa(st.Opt.Step)
	meta["diffuse.rng"] = base64.StdEncoding.EncodeToString(rng)
	meta["diffuse.loss"] = strconv.FormatFloat(st.LastLoss, 'g', -1, 64)
	if err := safetensors.WriteFile(path, ts, meta); err != nil {
		return fmt.Errorf("controlnet checkpoint: %w", err)
	}
	return nil
}

// ExportControlNet writes a sampling-only ControlNet file: the EMA weights
// (F16 when half) and the configs, atomically.
func ExportControlNet(path string, st *ControlNetState, half bool) error {
	meta, err := controlNetMeta(st)
	if err != nil {
		return err
	}
	ts := prefixed(st.EMA.Module(), "ema")
	if half {
		for i := range ts {
			vals, err := ts[i].Float32()
			if err != nil {
				return err
			}
			ts[i].DType, ts[i].Data = safetensors.F16, safetensors.Float32ToF16(vals)
		}
	}
	if err := safetensors.WriteFile(path, ts, meta); err != nil {
		return fmt.Errorf("controlnet export: %w", err)
	}
	return nil
}

// ReadControlNetConfig returns the configs stored in a ControlNet file.
func ReadControlNetConfig(f *safetensors.File, path string) (ControlNetConfig, Config, error) {
	var cfg ControlNetConfig
	var bcfg Config
	if got := f.Metadata["diffuse.format"]; got != FormatControlNet {
		hint := "pass a file written by 'diffuse train-controlnet'"
		if got == FormatV1 {
			hint = "it is a base model: pass it as --model, and a ControlNet file as --controlnet"
		}
		return cfg, bcfg, fmt.Errorf("%s is not a ControlNet file (diffuse.format %q, want %q): %s", path, got, FormatControlNet, hint)
	}
	if err := json.Unmarshal([]byte(f.Metadata["diffuse.config"]), &cfg); err != nil {
		return cfg, bcfg, fmt.Errorf("%s: bad diffuse.config metadata: %w", path, err)
	}
	if err := json.Unmarshal([]byte(f.Metadata["diffuse.base_config"]), &bcfg); err != nil {
		return cfg, bcfg, fmt.Errorf("%s: bad diffuse.base_config metadata: %w", path, err)
	}
	return cfg, bcfg, nil
}

// LoadControlNet builds the ControlNet of a ControlNet file for base (EMA
// weights when present, else the raw ones) and returns it with its config.
func LoadControlNet(f *safetensors.File, path string, base *unet.UNetS) (*controlnet.ControlNet, ControlNetConfig, error) {
	cfg, _, err := ReadControlNetConfig(f, path)
	if err != nil {
		return nil, cfg, err
	}
	net, err := controlnet.New(base, rand.New(rand.NewPCG(0, 0)))
	if err != nil {
		return nil, cfg, err
	}
	prefix := "ema"
	if _, ok := f.Get(nn.Join("ema", nn.Parameters(net)[0].Name)); !ok {
		prefix = "model"
	}
	if err := nn.LoadFrom(f, net, prefix); err != nil {
		return nil, cfg, fmt.Errorf("%s: %w", path, err)
	}
	return net, cfg, nil
}

// LoadControlNetCheckpoint restores a ControlNet run from path, reloading
// its base from Config.Base; a base whose weights changed since (another
// digest) is an error.
func LoadControlNetCheckpoint(path string) (*ControlNetState, error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load controlnet checkpoint: %w", err)
	}
	cfg, _, err := ReadControlNetConfig(f, path)
	if err != nil {
		return nil, err
	}
	base, bcfg, name, err := LoadBase(cfg.Base)
	if err != nil {
		return nil, err
	}
	if d := BaseDigest(base); d != cfg.BaseDigest {
		return nil, fmt.Errorf("%s: the base %s changed since this run started (weights digest %s, the run recorded %s); resume with the original base file", path, name, d, cfg.BaseDigest)
	}
	controlnet.Freeze(base)
	net, err := controlnet.New(base, rand.New(rand.NewPCG(0, 0)))
	if err != nil {
		return nil, err
	}
	params := nn.Parameters(net)
	if _, ok := f.Get(nn.Join("model", params[0].Name)); !ok {
		return nil, fmt.Errorf("%s is an export (EMA weights only): only full checkpoints resume (the run directory's checkpoint.safetensors)", path)
	}
	if err := nn.LoadFrom(f, net, "model"); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	st := &ControlNetState{Config: cfg, BaseConfig: bcfg, Base: base, Net: net,
		EMA: optim.NewEMA(params, cfg.EMADecay), Opt: optim.NewAdamW(params, cfg.LR, cfg.WeightDecay)}
	if err := nn.LoadFrom(f, st.EMA.Module(), "ema"); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	names := make([]string, len(params))
	for i, p := range params {
		names[i] = p.Name
	}
	if err := nn.LoadFrom(f, tensorsModule{names, st.Opt.M}, "adam.m"); err != nil {
		return nil, fmt.Errorf("%s: optimizer state: %w (is it an export? only full checkpoints resume)", path, err)
	}
	if err := nn.LoadFrom(f, tensorsModule{names, st.Opt.V}, "adam.v"); err != nil {
		return nil, fmt.Errorf("%s: optimizer state: %w", path, err)
	}
	if st.Step, err = strconv.Atoi(f.Metadata["diffuse.step"]); err != nil {
		return nil, fmt.Errorf("%s: bad diffuse.step metadata: %w", path, err)
	}
	if st.Opt.Step, err = strconv.Atoi(f.Metadata["diffuse.adam_step"]); err != nil {
		return nil, fmt.Errorf("%s: bad diffuse.adam_step metadata: %w", path, err)
	}
	raw, err := base64.StdEncoding.DecodeString(f.Metadata["diffuse.rng"])
	if err != nil {
		return nil, fmt.Errorf("%s: bad diffuse.rng metadata: %w", path, err)
	}
	st.RNG = &rand.PCG{}
	if err := st.RNG.UnmarshalBinary(raw); err != nil {
		return nil, fmt.Errorf("%s: bad diffuse.rng metadata: %w", path, err)
	}
	st.LastLoss, _ = strconv.ParseFloat(f.Metadata["diffuse.loss"], 64)
	return st, nil
}
