package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/train"
)

// tinyTextModel writes an untrained text-conditional UNet-S export (the
// --text config) and returns its path.
func tinyTextModel(t *testing.T, dir string) string {
	t.Helper()
	cfg := train.DefaultConfig()
	cfg.Model.Text = textSpec(true)
	cfg.CondDropout = 0.1
	st, err := train.NewState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "text.safetensors")
	if err := train.Export(p, st, true); err != nil {
		t.Fatal(err)
	}
	return p
}

// --prompt works on a text model (the vocabulary comes from the model
// file), names unknown words with the vocabulary, and is refused by models
// without text; eval-text reports every part and writes its grid.
func TestTextCLI(t *testing.T) {
	dir := t.TempDir()
	m := tinyTextModel(t, dir)
	grid := filepath.Join(dir, "p.png")
	out, _, err := runCLI("sample", "--model", m, "--prompt", "a thin seven|the digit 3, bold strokes", "-n", "2", "--steps", "2", "--cfg", "2", "-o", grid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(grid); err != nil || !strings.Contains(out, "2 images") {
		t.Fatalf("sample --prompt wrote no grid: %v\n%s", err, out)
	}
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"sample", "--model", m, "--prompt", "a purple seven", "-o", grid}, []string{`"purple"`, "knows", "slanted"}},
		{[]string{"sample", "--model", m, "--label", "3", "-o", grid}, []string{"--prompt"}},
		{[]string{"sample", "--model", m, "--negative-prompt", "a seven", "-o", grid}, []string{"need a --prompt"}},
		{[]string{"sample", "--prompt", "a seven", "-o", grid}, []string{"text-conditional"}},
		{[]string{"eval-text"}, []string{"--model"}},
		{[]string{"eval-text", "--model", m, "--skip", "colours"}, []string{"digits and attributes"}},
	}
	for _, c := range cases {
		_, _, err := runCLI(c.args...)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: want an error mentioning %s, got %v", c.args, w, err)
			}
		}
	}
	_, stderr, err := runCLI("eval-text", "--help")
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr, "Examples:") {
		t.Errorf("eval-text --help: %v\n%s", err, stderr)
	}
	g2 := filepath.Join(dir, "grid.png")
	out, _, err = runCLI("eval-text", "--model", m, "--n-digit", "1", "--n-attr", "2", "--steps", "2", "--grid", g2, "--grid-prompts", "seven|a thin three", "--grid-cols", "2")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"digit_accuracy ", "digit_accuracy_per_digit 0:", "thickness ink mass", "size bbox area", "slant shear", "wrote " + g2} {
		if !strings.Contains(out, w) {
			t.Errorf("eval-text output lacks %q:\n%s", w, out)
		}
	}
	if _, err := os.Stat(g2); err != nil {
		t.Fatal(err)
	}
}
