// Command diffuse trains, samples and benchmarks diffusion models.
//
//	diffuse sample -n 64 -o digits.png     # the embedded MNIST model
//	diffuse train --steps 6000             # train on MNIST
//	diffuse eval --model runs/mnist/checkpoint.safetensors
//	diffuse bench unet-s [--check FILE]
//
// Run `diffuse help` or `diffuse COMMAND --help` for details.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) error
}

var commands []command

func init() {
	commands = []command{
		{"train", "train a diffusion model on MNIST or a folder of images", runTrain},
		{"sample", "generate images with a trained (or the embedded) model", runSample},
		{"eval", "score samples with the MNIST classifier (class histogram, classifier-FID)", runEval},
		{"eval-text", "how a text-conditional model follows prompts (digit accuracy, thickness/size/slant)", runEvalText},
		{"likelihood", "bits/dim of a model on MNIST test images (probability-flow ODE)", runLikelihood},
		{"train-controlnet", "train a ControlNet (edges or silhouette control) for a frozen base model", runTrainControlNet},
		{"eval-controlnet", "measure how well ControlNet samples follow their controls (edge IoU, correlation)", runEvalControlNet},
		{"bench", "measure the engine: `diffuse bench unet-s` (speed, memory, parity with PyTorch)", runBench},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `diffuse — diffusion models in pure Go: train, sample, benchmark.

Usage:
  diffuse COMMAND [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
Run 'diffuse COMMAND --help' for a command's flags and examples.
`)
}

// errUsage marks errors already explained by printed usage.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return nil
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "diffuse:", err)
		}
		os.Exit(1)
	}
}
