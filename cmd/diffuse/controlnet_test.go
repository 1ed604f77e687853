package main

import (
	"errors"
	"flag"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/data"
	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/tensor"
)

// The ControlNet commands teach through --help, refuse bad input with
// errors that say what to do, and run end to end: train two steps, resume
// one more, sample from a digit image and from a folder of controls.
func TestControlNetCLI(t *testing.T) {
	for _, cmd := range []string{"train-controlnet", "eval-controlnet"} {
		_, stderr, err := runCLI(cmd, "--help")
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr, "Examples:") {
			t.Errorf("%s --help: err %v, output lacks examples:\n%s", cmd, err, stderr)
		}
	}
	if _, stderr, _ := runCLI("sample", "--help"); !strings.Contains(stderr, "--control-from") {
		t.Errorf("sample --help does not mention --control-from")
	}
	dir := t.TempDir()
	run := filepath.Join(dir, "cn")
	digit := filepath.Join(dir, "digit.png")
	img := tensor.New(1, 1, 28, 28)
	tensor.CPU.Fill(img, -1)
	for y := 6; y < 22; y++ {
		for x := 12; x < 16; x++ {
			img.Data()[y*28+x] = 1 // a "1"
		}
	}
	if err := imageio.SavePNG(digit, imageio.ToImage(img, 0)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"train-controlnet", "--control", "depth", "--out", run}, "depth"},
		{[]string{"train-controlnet", "--out", run, "--resume"}, "--resume"},
		{[]string{"sample", "--control", digit}, "--controlnet"},
		{[]string{"sample", "--controlnet", filepath.Join(dir, "missing.safetensors"), "--control", digit}, "missing.safetensors"},
		{[]string{"eval-controlnet", "-n", "0"}, "-n"},
	} {
		_, _, err := runCLI(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: want an error mentioning %q, got %v", c.args, c.want, err)
		}
	}
	if _, err := data.LoadMNIST("", "train"); err != nil {
		t.Fatalf("MNIST is needed for this test (it comes with the module's dependencies: go mod download): %v", err)
	}
	if _, _, err := runCLI("train-controlnet", "--steps", "2", "--batch", "2", "--sample-every", "0", "--out", run); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI("train-controlnet", "--steps", "3", "--sample-every", "0", "--out", run, "--resume")
	if err != nil || !strings.Contains(out, "step 3 of 3") {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	if _, _, err := runCLI("train-controlnet", "--steps", "3", "--out", run, "--resume", "--lr", "1"); err == nil || !strings.Contains(err.Error(), "--lr") {
		t.Fatalf("resume with --lr: error %v", err)
	}
	cn := filepath.Join(run, "controlnet.safetensors")
	if _, _, err := runCLI("sample", "--controlnet", filepath.Join(run, "checkpoint.safetensors")); err == nil || !strings.Contains(err.Error(), "--control") {
		t.Fatalf("--controlnet without a control: error %v", err)
	}
	if _, _, err := runCLI("sample", "--controlnet", digit, "--control", digit); err == nil {
		t.Fatal("a PNG accepted as a ControlNet file")
	}
	grid := filepath.Join(dir, "pairs.png")
	if _, _, err := runCLI("sample", "--controlnet", cn, "--control-from", digit, "-n", "2", "--steps", "2", "--with-control", "-o", grid); err != nil {
		t.Fatal(err)
	}
	// 2 samples → one row of 2 pairs: 4 tiles of 28·2 pixels, padding 2.
	f, err := os.Open(grid)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil || cfg.Width != 4*56+5*2 {
		t.Fatalf("pairs grid: %v, width %d, want %d", err, cfg.Width, 4*56+5*2)
	}
	// A folder of 3 controls makes 3 images when -n is not given.
	ctrls := filepath.Join(dir, "controls")
	os.Mkdir(ctrls, 0o755)
	for _, name := range []string{"a.png", "b.png", "c.png"} {
		if err := imageio.SavePNG(filepath.Join(ctrls, name), imageio.ToImage(img, 0)); err != nil {
			t.Fatal(err)
		}
	}
	out, _, err = runCLI("sample", "--controlnet", cn, "--control", ctrls, "--steps", "2", "-o", filepath.Join(dir, "three.png"))
	if err != nil || !strings.Contains(out, "3 images") {
		t.Fatalf("folder of 3 controls: %v\n%s", err, out)
	}
}
