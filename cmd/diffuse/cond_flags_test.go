package main

import (
	"flag"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/guidance"
	"github.com/diffuse-go/diffuse/model"
)

// --label/--cfg wrap a class-conditional model in CFG with one label and
// scale per image, turn DDIM's x̂0 clamping off only when guided, and
// reject bad values and unconditional models with a message.
func TestConditionFlags(t *testing.T) {
	net, err := model.Build(model.Spec{Arch: "unet-s", Channels: 1, Size: 28, Classes: 10}, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	uncond, _ := model.Build(model.Spec{Arch: "unet-s", Channels: 1, Size: 28}, rand.New(rand.NewPCG(1, 1)))
	parse := func(args ...string) *condFlags {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cf := conditionFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return cf
	}
	cases := []struct {
		args   []string
		labels []int
		scales []float64
		guided bool
		err    string
	}{
		{args: nil, labels: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1}, scales: []float64{3}, guided: true},
		{args: []string{"--label", "7", "--cfg", "1"}, labels: []int{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}, scales: []float64{1}},
		{args: []string{"--label", "1,2", "--cfg", "0,3"}, labels: []int{1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2}, scales: []float64{0, 3, 0, 3, 0, 3, 0, 3, 0, 3, 0, 3}, guided: true},
		{args: []string{"--label", "10"}, err: "0..9"},
		{args: []string{"--cfg", "x"}, err: "guidance scales"},
		{args: []string{"--negative-label", "a"}, err: "negative-label"},
	}
	for _, c := range cases {
		cf := parse(c.args...)
		got, labels, err := cf.wrap(net, 12)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: err = %v, want one mentioning %q", c.args, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		g, ok := got.(*guidance.CFG)
		if !ok {
			t.Fatalf("%v: wrapped network is %T, want *guidance.CFG", c.args, got)
		}
		if !slices.Equal(labels, c.labels) || !slices.Equal(g.Cond.Labels, c.labels) {
			t.Errorf("%v: labels %v, want %v", c.args, labels, c.labels)
		}
		if len(g.Scales) != len(c.scales) {
			t.Fatalf("%v: scales %v, want %v", c.args, g.Scales, c.scales)
		}
		for i := range c.scales {
			if g.Scales[i] != c.scales[i] {
				t.Errorf("%v: scales %v, want %v", c.args, g.Scales, c.scales)
			}
		}
		if g.Guided() != c.guided {
			t.Errorf("%v: Guided() = %v, want %v", c.args, g.Guided(), c.guided)
		}
	}
	cf := parse("--cfg", "3")
	if _, _, err := cf.wrap(uncond, 4); err == nil || !strings.Contains(err.Error(), "class-conditional") {
		t.Errorf("--cfg on an unconditional model: err = %v", err)
	}
	cf = parse("--label", "3")
	if got, labels, err := cf.wrap(uncond, 4); err != nil || got != uncond || !slices.Equal(labels, []int{3, 3, 3, 3}) {
		t.Errorf("--label on an unconditional model (for classifier guidance): %T %v %v", got, labels, err)
	}
}
