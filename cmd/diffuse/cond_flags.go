package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/diffuse-go/diffuse/guidance"
	"github.com/diffuse-go/diffuse/model"
)

// condFlags are the conditioning flags of sample and eval: class labels,
// classifier-free guidance scales and negative labels.
type condFlags struct {
	label, cfg, neg   string
	prompt, negPrompt string // text-conditional models (prompt_flags.go)
	set               func(name string) bool
	resolved          []int // the labels wrap chose (a class-conditional model's default is all)
}

// lastCond is the condFlags of the command being run (requestedLabels reads it).
var lastCond *condFlags

func conditionFlags(fs *flag.FlagSet) *condFlags {
	c := &condFlags{}
	fs.StringVar(&c.label, "label", "", "class label(s) to generate: a digit (3), a list cycled over the images (1,7), or all (image i gets i mod 10; the default for a class-conditional model)")
	fs.StringVar(&c.cfg, "cfg", "3", "classifier-free guidance scale w (labels and prompts): 0 unconditional, 1 conditional, >1 sharper; a list (1,3,5) gives image i the (i mod len)-th scale")
	fs.StringVar(&c.neg, "negative-label", "", "label(s) to steer away from (replaces the unconditional branch of CFG); same syntax as --label")
	fs.StringVar(&c.prompt, "prompt", "", "text prompt(s) of a text-conditional model, e.g. \"a thin slanted seven\"; several separated by | are cycled over the images")
	fs.StringVar(&c.negPrompt, "negative-prompt", "", "prompt(s) to steer away from (replaces the empty prompt of CFG); same syntax as --prompt")
	c.set = func(name string) bool {
		found := false
		fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
		return found
	}
	lastCond = c
	return c
}

// parseLabels expands a --label value to n labels in [0, classes).
func parseLabels(flagName, s string, n, classes int) ([]int, error) {
	if s == "all" {
		out := make([]int, n)
		for i := range out {
			out[i] = i % classes
		}
		return out, nil
	}
	var list []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 0 || v >= classes {
			return nil, fmt.Errorf("--%s %q: want labels in 0..%d separated by commas, or all", flagName, s, classes-1)
		}
		list = append(list, v)
	}
	out := make([]int, n)
	for i := range out {
		out[i] = list[i%len(list)]
	}
	return out, nil
}

// requestedLabels returns the label of each of n images asked for with
// --label (10 classes), or nil when no valid --label was given.
func requestedLabels(n int) []int {
	if lastCond != nil && len(lastCond.resolved) == n {
		return lastCond.resolved
	}
	if lastCond == nil || lastCond.label == "" {
		return nil
	}
	l, err := parseLabels("label", lastCond.label, n, 10)
	if err != nil {
		return nil
	}
	return l
}

func parseScales(s string, n int) ([]float64, error) {
	var list []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v < 0 || v > 100 {
			return nil, fmt.Errorf("--cfg %q: want guidance scales in [0, 100] separated by commas (e.g. 3 or 1,3,5)", s)
		}
		list = append(list, v)
	}
	if len(list) == 1 {
		return list, nil
	}
	out := make([]float64, n)
	for i := range out {
		out[i] = list[i%len(list)]
	}
	return out, nil
}

// labels returns the labels of the n images for a model with classes
// labels (nil for an unconditional model).
func (c *condFlags) labels(n, classes int) ([]int, error) {
	if classes == 0 {
		return nil, nil
	}
	s := c.label
	if s == "" {
		s = "all"
	}
	return parseLabels("label", s, n, classes)
}

// wrap applies classifier-free guidance to a class-conditional network
// and returns the network to sample n images with, and the labels asked
// for (nil when none). Unconditional networks pass through unchanged
// (--label may still drive classifier guidance).
func (c *condFlags) wrap(net model.Network, n int) (model.Network, []int, error) {
	if tok := model.Tokenizer(net); tok != nil {
		return c.wrapText(net.(model.Conditional), tok, n)
	}
	if c.prompt != "" || c.negPrompt != "" {
		return nil, nil, fmt.Errorf("--prompt and --negative-prompt need a text-conditional model (train one with 'diffuse train --text'); this one takes no text")
	}
	cn, ok := net.(model.Conditional)
	if !ok || cn.Classes() == 0 {
		if c.set("cfg") || c.set("negative-label") {
			return nil, nil, fmt.Errorf("--cfg and --negative-label need a class-conditional model (train one with 'diffuse train --classes 10'); this one is unconditional")
		}
		return net, requestedLabels(n), nil
	}
	labels, err := c.labels(n, cn.Classes())
	if err != nil {
		return nil, nil, err
	}
	var neg *model.Cond
	if c.neg != "" {
		nl, err := parseLabels("negative-label", c.neg, n, cn.Classes())
		if err != nil {
			return nil, nil, err
		}
		neg = &model.Cond{Labels: nl}
	}
	g, err := c.newCFG(cn, &model.Cond{Labels: labels}, neg, n)
	if err != nil {
		return nil, nil, err
	}
	c.resolved = labels
	return g, labels, nil
}

// newCFG wraps net in classifier-free guidance with the --cfg scales
// (pipeline.Generate runs it without the schedulers' x̂0 clamping: see
// model.Guided).
func (c *condFlags) newCFG(net model.Conditional, cond, neg *model.Cond, n int) (*guidance.CFG, error) {
	scales, err := parseScales(c.cfg, n)
	if err != nil {
		return nil, err
	}
	g, err := guidance.NewCFG(net, cond, neg, scales, n)
	if err != nil {
		return nil, err
	}
	return g, nil
}
