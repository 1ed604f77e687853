// Command diffuse trains, samples and benchmarks diffusion models.
//
//	diffuse bench unet-s [--batch 64] [--steps 10] [--check FILE]
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
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
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
