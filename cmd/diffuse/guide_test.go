package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNoisyRequested(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"--noisy"}, true},
		{[]string{"--out", "x", "-noisy"}, true},
		{[]string{"--noisy=true"}, true},
		{[]string{"--noisy=false"}, false},
		{[]string{"--out", "noisy"}, false},
		{[]string{"--", "--noisy"}, false},
		{nil, false},
	} {
		if got := noisyRequested(c.args); got != c.want {
			t.Errorf("%v: %v, want %v", c.args, got, c.want)
		}
	}
}

// Bad classifier-guidance flags get clear errors before any sampling.
func TestClassifierGuidanceErrors(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "x.png")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sample", "-o", out, "--classifier-guidance", "5"}, "--label"},
		{[]string{"sample", "-o", out, "--classifier-guidance", "-1", "--label", "3"}, "≥ 0"},
		{[]string{"sample", "-o", out, "--classifier-guidance", "2", "--label", "3", "--guidance-classifier", filepath.Join(dir, "missing.safetensors")}, "missing.safetensors"},
		{[]string{"sample", "-o", out, "--classifier-guidance", "2", "--label", "3", "--guidance-temperature", "0"}, "temperature"},
		{[]string{"eval", "train-classifier", "--noisy", "--widths", "8,16"}, "--widths"},
	} {
		_, _, err := runCLI(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: want an error mentioning %q, got %v", c.args, c.want, err)
		}
	}
	_, stderr, err := runCLI("eval", "train-classifier", "--noisy", "--help")
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr, "Examples:") || !strings.Contains(stderr, "-max-minutes") {
		t.Errorf("train-classifier --noisy --help: %v\n%s", err, stderr)
	}
}

// A guided run with the embedded noisy classifier writes its grid and says
// what it did.
func TestClassifierGuidanceSample(t *testing.T) {
	out := filepath.Join(t.TempDir(), "g.png")
	stdout, _, err := runCLI("sample", "-n", "2", "--steps", "2", "--classifier-guidance", "3", "--label", "7", "-o", out)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(out); err != nil || st.Size() == 0 || !strings.Contains(stdout, "wrote") {
		t.Fatalf("no grid written: %v\n%s", err, stdout)
	}
}
