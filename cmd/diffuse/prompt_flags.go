package main

// Text prompts in 'sample' and 'eval': --prompt / --negative-prompt with
// classifier-free guidance for text-conditional models.

import (
	"fmt"
	"strings"

	"github.com/diffuse-go/diffuse/data/captions"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/text"
)

// splitPrompts cuts a --prompt value at '|' (commas belong to prompts).
func splitPrompts(s string) []string {
	parts := strings.Split(s, "|")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// encodePrompts tokenizes the prompts of s and cycles them over n images.
// An unknown word is an error listing the model's vocabulary.
func encodePrompts(flagName, s string, tok *text.Tokenizer, n int) ([][]int, []string, error) {
	parts := splitPrompts(s)
	ids := make([][]int, len(parts))
	for i, p := range parts {
		var err error
		if ids[i], err = tok.Encode(p); err != nil {
			return nil, nil, fmt.Errorf("--%s: %w", flagName, err)
		}
	}
	out := make([][]int, n)
	per := make([]string, n)
	for i := range out {
		out[i], per[i] = ids[i%len(ids)], parts[i%len(parts)]
	}
	return out, per, nil
}

// wrapText applies classifier-free guidance with prompts to a
// text-conditional network. It returns the labels the prompts name (for
// eval's label_accuracy) when every prompt names one digit, else nil.
func (c *condFlags) wrapText(net model.Conditional, tok *text.Tokenizer, n int) (model.Network, []int, error) {
	if c.label != "" || c.neg != "" {
		return nil, nil, fmt.Errorf("this model is text-conditional: describe the digit with --prompt (e.g. --prompt \"a thick seven\") instead of --label")
	}
	if c.prompt == "" {
		if c.set("cfg") || c.negPrompt != "" {
			return nil, nil, fmt.Errorf("--cfg and --negative-prompt need a --prompt to guide towards")
		}
		return net, nil, nil // no prompt: unconditional samples
	}
	tokens, prompts, err := encodePrompts("prompt", c.prompt, tok, n)
	if err != nil {
		return nil, nil, err
	}
	var neg *model.Cond
	if c.negPrompt != "" {
		nt, _, err := encodePrompts("negative-prompt", c.negPrompt, tok, n)
		if err != nil {
			return nil, nil, err
		}
		neg = &model.Cond{Tokens: nt}
	}
	g, err := c.newCFG(net, &model.Cond{Tokens: tokens}, neg, n)
	if err != nil {
		return nil, nil, err
	}
	labels := make([]int, n)
	for i, p := range prompts {
		d, ok := captions.DigitOf(p)
		if !ok {
			return g, nil, nil
		}
		labels[i] = d
	}
	c.resolved = labels
	return g, labels, nil
}
