package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/train"
)

// An NCSN run end to end: train two steps with --objective ncsn, then
// sample the export with annealed Langevin (the default for NCSN models),
// a k-diffusion sampler and the DDIM/DDPM schedulers.
func TestCLINCSN(t *testing.T) {
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	export := filepath.Join(dir, "ncsn.safetensors")
	out, _, err := runCLI("train", "--objective", "ncsn", "--sigma-max", "30", "--num-scales", "40", "--steps", "2", "--batch", "2",
		"--sample-every", "0", "--out", run, "--export", export)
	if err != nil {
		t.Fatalf("train: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(run, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg train.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if !cfg.IsNCSN() || cfg.SigmaMax != 30 || cfg.NumScales != 40 || cfg.SigmaMin != train.DefaultSigmaMin {
		t.Errorf("config.json: objective %q, σ %v…%v, %d levels", cfg.Objective, cfg.SigmaMin, cfg.SigmaMax, cfg.NumScales)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "langevin 2 steps"},
		{[]string{"--sampler", "euler_ancestral"}, "euler_ancestral"},
		{[]string{"--sampler", "ddim"}, "ddim"},
		{[]string{"--sampler", "ddpm"}, "ddpm"},
	} {
		args := append([]string{"sample", "--model", export, "-n", "1", "--steps", "2", "--langevin-steps", "1",
			"-o", filepath.Join(dir, "s.png")}, c.args...)
		out, _, err := runCLI(args...)
		if err != nil || !strings.Contains(out, c.want) {
			t.Errorf("%v: %v\n%s", c.args, err, out)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"train", "--out", run, "--resume", "--objective", "ddpm"}, "--objective cannot change"},
		{[]string{"train", "--objective", "ncsn", "--prediction", "v_prediction", "--out", filepath.Join(dir, "r2")}, "prediction_type must be epsilon"},
		{[]string{"train", "--sigma-max", "20", "--out", filepath.Join(dir, "r3")}, "objective ncsn only"},
		{[]string{"train", "--objective", "ncsn", "--sigma-min", "5", "--sigma-max", "1", "--out", filepath.Join(dir, "r4")}, "sigma_max"},
		{[]string{"sample", "--model", export, "--sampler", "langevin", "--steps", "1", "-o", filepath.Join(dir, "x.png")}, "at least 2 noise levels"},
	} {
		_, _, err := runCLI(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: want an error mentioning %q, got %v", c.args, c.want, err)
		}
	}
}
