package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFlagConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newFS := func() (*flag.FlagSet, *int, *float64, *string, *bool) {
		fs := flag.NewFlagSet("sample", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		return fs, fs.Int("steps", 50, ""), fs.Float64("eta", 0, ""), fs.String("cfg", "1", ""), fs.Bool("raw-weights", false, "")
	}
	good := write("good.json", `{"steps": 20, "eta": 0.5, "cfg": [1, 3, 5], "raw-weights": true}`)
	fs, steps, eta, cfg, raw := newFS()
	if err := parseFlags(fs, []string{"--config", good, "--steps", "7"}); err != nil {
		t.Fatal(err)
	}
	if *steps != 7 || *eta != 0.5 || *cfg != "1,3,5" || !*raw {
		t.Errorf("got steps %d eta %g cfg %q raw %v; want 7 (command line wins), 0.5, 1,3,5, true", *steps, *eta, *cfg, *raw)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if !given["eta"] {
		t.Error("settings from the file should count as given")
	}
	for _, c := range []struct{ body, want string }{
		{`{"stepz": 3}`, `"stepz" is not a flag`},
		{`{"steps": "many"}`, `"steps"`},
		{`{"steps": {"a": 1}}`, "want a string, number"},
		{`[1, 2]`, "JSON object"},
		{`{"config": "x.json"}`, `"config" is not a flag`},
	} {
		fs, _, _, _, _ := newFS()
		err := parseFlags(fs, []string{"--config", write("bad.json", c.body)})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: want an error mentioning %q, got %v", c.body, c.want, err)
		}
	}
	fs, _, _, _, _ = newFS()
	if err := parseFlags(fs, []string{"--config", filepath.Join(dir, "missing.json")}); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: got %v", err)
	}
}
