package main

import (
	"errors"
	"flag"
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// One image through the probability-flow ODE with loose tolerances (the
// embedded model, ~50 evaluations): the report has its lines, a finite
// bits/dim between 0 and 8 (8 is a uniform model over the 256 values; the
// embedded model measures ≈1.3 on this image at rtol = 1e-2 and at 1e-5),
// and a positive evaluation count.
func TestLikelihoodCLI(t *testing.T) {
	out, _, err := runCLI("likelihood", "-n", "1", "--batch", "1", "--rtol", "1e-2", "--atol", "1e-2", "--seed", "3")
	if err != nil {
		t.Fatalf("likelihood: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^bits_per_dim (\S+) ± (\S+) \(mean ± standard error over 1 images\)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no bits_per_dim line:\n%s", out)
	}
	bpd, err1 := strconv.ParseFloat(m[1], 64)
	se, err2 := strconv.ParseFloat(m[2], 64)
	if err1 != nil || err2 != nil || math.IsNaN(bpd) || math.IsInf(bpd, 0) || !(bpd > 0 && bpd < 8) || se != 0 {
		t.Errorf("bits/dim %q ± %q: want a finite value in (0, 8) and standard error 0 for one image", m[1], m[2])
	}
	n := regexp.MustCompile(`(?m)^nfe (\d+) \(1 batches`).FindStringSubmatch(out)
	if n == nil {
		t.Fatalf("no nfe line:\n%s", out)
	}
	if v, _ := strconv.Atoi(n[1]); v < 8 {
		t.Errorf("nfe %d: an adaptive RK45 solve takes at least 8 evaluations", v)
	}
	for _, want := range []string{"probability-flow ODE", "rtol 0.01", "rademacher", "seed 3", "\nseconds "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestLikelihoodCLIErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-model.safetensors")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--model", missing, "-n", "1"}, "no-model.safetensors"},
		{[]string{"-n", "0"}, "-n 0"},
		{[]string{"--estimator", "cauchy"}, "rademacher"},
		{[]string{"--rtol", "0"}, "tolerances"},
		{[]string{"--batch", "0"}, "--batch"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		_, _, err := runCLI(append([]string{"likelihood"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("likelihood %v: want an error mentioning %q, got %v", c.args, c.want, err)
		}
	}
	_, stderr, err := runCLI("likelihood", "--help")
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, want := range []string{"Examples:", "bits/dim", "3.75", "8 bits/dim", "Hutchinson", "dequantized"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}
