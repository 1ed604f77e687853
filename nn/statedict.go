package nn

import (
	"fmt"
	"sort"
	"strings"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

func panicShape(op, format string, args ...any) {
	panic(&tensor.ShapeError{Op: op, Msg: fmt.Sprintf(format, args...)})
}

// StateTensors returns m's parameters as F32 safetensors entries, in Visit
// order, each prefixed with prefix (may be "").
func StateTensors(m Module, prefix string) []safetensors.Tensor {
	var out []safetensors.Tensor
	for _, p := range Parameters(m) {
		out = append(out, safetensors.Tensor{
			Name:  Join(prefix, p.Name),
			DType: safetensors.F32,
			Shape: append([]int(nil), p.Var.Value.Shape()...),
			Data:  safetensors.Float32Bytes(p.Var.Value.ToHost()),
		})
	}
	return out
}

// Save writes m's state dict to path atomically (temp file, fsync, rename).
func Save(path string, m Module, metadata map[string]string) error {
	if err := safetensors.WriteFile(path, StateTensors(m, ""), metadata); err != nil {
		return fmt.Errorf("save state dict: %w", err)
	}
	return nil
}

// LoadFrom copies tensors named prefix+parameter-name from f into m's
// parameters, converting F16/BF16/F64 to float32. Every parameter must be
// present with its exact shape; the error lists missing names and shape
// mismatches (a checkpoint of another architecture fails here, with the
// first few differences named). Extra tensors in f are ignored.
func LoadFrom(f *safetensors.File, m Module, prefix string) error {
	var missing, wrong []string
	type job struct {
		v *autograd.Var
		t *safetensors.Tensor
	}
	var jobs []job
	for _, p := range Parameters(m) {
		name := Join(prefix, p.Name)
		t, ok := f.Get(name)
		if !ok {
			missing = append(missing, name)
			continue
		}
		if err := checkName(name, p.Var.Value.Shape(), t.Shape); err != nil {
			wrong = append(wrong, err.Error())
			continue
		}
		jobs = append(jobs, job{p.Var, t})
	}
	if len(missing)+len(wrong) > 0 {
		var sb strings.Builder
		sb.WriteString("state dict does not fit this model")
		if len(missing) > 0 {
			sort.Strings(missing)
			fmt.Fprintf(&sb, "; %d parameters missing (e.g. %s)", len(missing), strings.Join(missing[:min(3, len(missing))], ", "))
		}
		if len(wrong) > 0 {
			fmt.Fprintf(&sb, "; %d shape mismatches (e.g. %s)", len(wrong), strings.Join(wrong[:min(3, len(wrong))], "; "))
		}
		sb.WriteString(": is the file a checkpoint of another architecture or config?")
		return fmt.Errorf("%s", sb.String())
	}
	for _, j := range jobs {
		vals, err := j.t.Float32()
		if err != nil {
			return fmt.Errorf("parameter %q: %w", j.t.Name, err)
		}
		j.v.Value.Backend().CopyFromHost(j.v.Value, vals)
	}
	return nil
}

// Load reads a safetensors file and loads m's parameters from it.
func Load(path string, m Module) error {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return err
	}
	if err := LoadFrom(f, m, ""); err != nil {
		return fmt.Errorf("load %s: %w", path, err)
	}
	return nil
}

// LoadPartial copies into m the parameters that f holds under prefix (as
// LoadFrom does) and leaves the others as they are: it initializes a larger
// network from a smaller one's weights, e.g. a class-conditional U-Net from
// an unconditional one, whose extra layers keep their (zero) initialization.
// It returns the names it left untouched; a tensor present with the wrong
// shape is an error, and so is a file sharing no parameter with m.
func LoadPartial(f *safetensors.File, m Module, prefix string) (kept []string, err error) {
	loaded := 0
	for _, p := range Parameters(m) {
		name := Join(prefix, p.Name)
		t, ok := f.Get(name)
		if !ok {
			kept = append(kept, p.Name)
			continue
		}
		if err := checkName(name, p.Var.Value.Shape(), t.Shape); err != nil {
			return nil, err
		}
		vals, err := t.Float32()
		if err != nil {
			return nil, fmt.Errorf("parameter %q: %w", name, err)
		}
		p.Var.Value.Backend().CopyFromHost(p.Var.Value, vals)
		loaded++
	}
	if loaded == 0 {
		return nil, fmt.Errorf("no parameter of this model is in the file (under prefix %q): is it a checkpoint of another architecture?", prefix)
	}
	return kept, nil
}
