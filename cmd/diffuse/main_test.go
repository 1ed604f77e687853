package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := run(args, &out, &errb)
	return out.String(), errb.String(), err
}

// Bad input gets a clear error, never a panic.
func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.safetensors")
	os.WriteFile(junk, []byte("not a safetensors file"), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"sample", "--model", filepath.Join(dir, "missing.safetensors")}, "missing.safetensors"},
		{[]string{"sample", "--model", junk}, "junk.safetensors"},
		{[]string{"sample", "-o", "x.jpg"}, "PNG"},
		{[]string{"bench"}, "unet-s"},
		{[]string{"bench", "unet-s", "--check", filepath.Join(dir, "nope")}, "nope"},
		{[]string{"train", "--data", filepath.Join(dir, "no-such-folder"), "--out", filepath.Join(dir, "run")}, "no-such-folder"},
		{[]string{"train", "--prediction", "banana", "--out", filepath.Join(dir, "run2")}, "banana"},
		{[]string{"eval", "extra-arg"}, "train-classifier"},
		{[]string{"sample", "--clip", "sometimes"}, "on, eps or off"},
	}
	for _, c := range cases {
		_, _, err := runCLI(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: want an error mentioning %q, got %v", c.args, c.want, err)
		}
	}
}

func TestHelpTeaches(t *testing.T) {
	out, _, err := runCLI("help")
	if err != nil || !strings.Contains(out, "sample") || !strings.Contains(out, "train") {
		t.Fatalf("help: %v\n%s", err, out)
	}
	for _, cmd := range []string{"train", "sample", "eval"} {
		_, stderr, err := runCLI(cmd, "--help")
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr, "Examples:") {
			t.Errorf("%s --help: err %v, output lacks examples:\n%s", cmd, err, stderr)
		}
	}
}

func TestBenchCheckPasses(t *testing.T) {
	ref := os.Getenv("DIFFUSE_UNETS_REF")
	if ref == "" {
		ref = "../../../shared/bench/ref/unet_s.safetensors"
	}
	out, _, err := runCLI("bench", "unet-s", "--check", ref)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, k := range []string{"check_out_maxrel", "check_loss_rel", "check_grad_relmax", "check PASS"} {
		if !strings.Contains(out, k) {
			t.Errorf("output lacks %q:\n%s", k, out)
		}
	}
}
