package train

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/optim"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// Checkpoint layout (one safetensors file):
//
//	model.<param>   F32 weights
//	ema.<param>     F32 exponential moving average of the weights
//	adam.m.<param>  F32 Adam first moments
//	adam.v.<param>  F32 Adam second moments
//
// metadata: diffuse.format = FormatV1, diffuse.config = the Config as JSON,
// diffuse.step = steps done, diffuse.adam_step, diffuse.rng = the PCG state
// (base64), diffuse.loss = last loss. A sampling-only export (Export) holds
// ema.* (possibly F16) and the config, with no optimizer state.
const FormatV1 = "diffuse-checkpoint-v1"

// State is everything a checkpoint restores.
type State struct {
	Config   Config
	Step     int
	Net      model.Network
	EMA      *optim.EMA
	Opt      *optim.Adam
	RNG      *rand.PCG
	LastLoss float64
}

func prefixed(m nn.Module, prefix string) []safetensors.Tensor { return nn.StateTensors(m, prefix) }

type tensorsModule struct {
	names []string
	ts    []*tensor.Tensor
}

func (t tensorsModule) Visit(prefix string, fn func(string, *autograd.Var)) {
	for i, n := range t.names {
		fn(nn.Join(prefix, n), autograd.Const(t.ts[i]))
	}
}

// SaveCheckpoint writes st to path atomically: a temp file in the same
// directory is written, fsynced and renamed over path, so a crash or a full
// disk never leaves a half-written checkpoint in its place.
func SaveCheckpoint(path string, st *State) error {
	cfg, err := json.Marshal(st.Config)
	if err != nil {
		return fmt.Errorf("checkpoint: encode config: %w", err)
	}
	rng, err := st.RNG.MarshalBinary()
	if err != nil {
		return fmt.Errorf("checkpoint: encode RNG state: %w", err)
	}
	var ts []safetensors.Tensor
	ts = append(ts, prefixed(st.Net, "model")...)
	ts = append(ts, prefixed(st.EMA.Module(), "ema")...)
	names := make([]string, len(st.Opt.Params))
	for i, p := range st.Opt.Params {
		names[i] = p.Name
	}
	ts = append(ts, prefixed(tensorsModule{names, st.Opt.M}, "adam.m")...)
	ts = append(ts, prefixed(tensorsModule{names, st.Opt.V}, "adam.v")...)
	meta := map[string]string{
		"diffuse.format":    FormatV1,
		"diffuse.config":    string(cfg),
		"diffuse.step":      strconv.Itoa(st.Step),
		"diffuse.adam_step": strconv.Itoa(st.Opt.Step),
		"diffuse.rng":       base64.StdEncoding.EncodeToString(rng),
		"diffuse.loss":      strconv.FormatFloat(st.LastLoss, 'g', -1, 64),
	}
	if err := safetensors.WriteFile(path, ts, meta); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// ReadConfig returns the training config stored in a checkpoint file.
func ReadConfig(f *safetensors.File, path string) (Config, error) {
	var cfg Config
	if f.Metadata["diffuse.format"] != FormatV1 {
		return cfg, fmt.Errorf("%s is not a diffuse checkpoint (metadata diffuse.format is %q, want %q): pass a file written by 'diffuse train'", path, f.Metadata["diffuse.format"], FormatV1)
	}
	if err := json.Unmarshal([]byte(f.Metadata["diffuse.config"]), &cfg); err != nil {
		return cfg, fmt.Errorf("%s: bad diffuse.config metadata: %w", path, err)
	}
	return cfg, nil
}

// LoadCheckpoint restores the full training state from path, rebuilding
// the network from the stored config. A truncated or corrupt file, or one
// whose tensors do not fit the stored architecture, gives an error naming
// the file.
func LoadCheckpoint(path string) (*State, error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", err)
	}
	cfg, err := ReadConfig(f, path)
	if err != nil {
		return nil, err
	}
	net, err := model.Build(cfg.Model, rand.New(rand.NewPCG(0, 0)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := nn.LoadFrom(f, net, "model"); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	params := nn.Parameters(net)
	ema := optim.NewEMA(params, cfg.EMADecay)
	if err := nn.LoadFrom(f, ema.Module(), "ema"); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	opt := newOptimizer(cfg, params)
	names := make([]string, len(params))
	for i, p := range params {
		names[i] = p.Name
	}
	if err := nn.LoadFrom(f, tensorsModule{names, opt.M}, "adam.m"); err != nil {
		return nil, fmt.Errorf("%s: optimizer state: %w", path, err)
	}
	if err := nn.LoadFrom(f, tensorsModule{names, opt.V}, "adam.v"); err != nil {
		return nil, fmt.Errorf("%s: optimizer state: %w", path, err)
	}
	st := &State{Config: cfg, Net: net, EMA: ema, Opt: opt}
	if st.Step, err = strconv.Atoi(f.Metadata["diffuse.step"]); err != nil {
		return nil, fmt.Errorf("%s: bad diffuse.step metadata: %w", path, err)
	}
	if opt.Step, err = strconv.Atoi(f.Metadata["diffuse.adam_step"]); err != nil {
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

// LoadForSampling returns the network of a checkpoint or an export with its
// averaged (EMA) weights when present (model weights otherwise), and its
// config. useEMA=false picks the raw weights of a full checkpoint.
func LoadForSampling(f *safetensors.File, path string, useEMA bool) (model.Network, Config, error) {
	cfg, err := ReadConfig(f, path)
	if err != nil {
		return nil, cfg, err
	}
	net, err := model.Build(cfg.Model, rand.New(rand.NewPCG(0, 0)))
	if err != nil {
		return nil, cfg, fmt.Errorf("%s: %w", path, err)
	}
	prefix := "ema"
	if _, ok := f.Get(nn.Join("ema", nn.Parameters(net)[0].Name)); !ok || !useEMA {
		prefix = "model"
	}
	if err := nn.LoadFrom(f, net, prefix); err != nil {
		return nil, cfg, fmt.Errorf("%s: %w", path, err)
	}
	return net, cfg, nil
}

// Export writes a sampling-only file: the EMA weights (as F16 when half is
// set, halving the size) and the config, atomically.
func Export(path string, st *State, half bool) error {
	cfg, err := json.Marshal(st.Config)
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
	meta := map[string]string{"diffuse.format": FormatV1, "diffuse.config": string(cfg), "diffuse.step": strconv.Itoa(st.Step)}
	return safetensors.WriteFile(path, ts, meta)
}
