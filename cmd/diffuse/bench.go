package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/diffuse-go/diffuse/bench"
	"github.com/diffuse-go/diffuse/model/unet"
)

func runBench(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	batch := fs.Int("batch", 64, "batch size of the training step and the batched forward pass")
	steps := fs.Int("steps", 10, "timed repetitions (the median and minimum are printed)")
	lossSteps := fs.Int("loss-steps", 30, "training steps on fresh weights whose losses are printed (0 skips)")
	trainOnly := fs.Bool("train-only", false, "time only the training step (for /usr/bin/time -v)")
	ddim := fs.Int("ddim", 0, "also time an N-step DDIM-like sampling loop at --batch")
	check := fs.String("check", "", "instead of timing, check parity with a PyTorch export of unet_s.py (weights, check.* inputs, grad.*)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: diffuse bench unet-s [flags]

Benchmarks UNet-S (the project's benchmark U-Net, ../shared/bench/UNET_S.md)
with the protocol of the PyTorch reference unet_s.py, printing 'key value'
lines: params, train_step_ms_median, fwd_b64_ms_median, fwd_b1_ms_median,
peak_rss_mb, the losses of the first training steps, and more.

With --check FILE it loads the reference weights and check input of FILE,
runs forward, the MSE loss and backward, prints check_out_maxrel,
check_loss_rel and check_grad_relmax, and exits non-zero unless
out ≤ 1e-4, loss ≤ 1e-5 and every gradient ≤ 1e-3.

Examples:
  diffuse bench unet-s --batch 64 --steps 10
  diffuse bench unet-s --check ../shared/bench/ref/unet_s.safetensors
  ../shared/bench/compare.sh        # side by side with PyTorch

Flags:
`)
		fs.PrintDefaults()
	}
	if len(args) == 0 || args[0] != "unet-s" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fs.Usage()
			return flag.ErrHelp
		}
		fs.Usage()
		return fmt.Errorf("bench: name the network to benchmark: 'diffuse bench unet-s' (the only one so far)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	if *check != "" {
		r, err := unet.CheckReference(*check)
		if err != nil {
			return fmt.Errorf("bench unet-s --check: %w", err)
		}
		fmt.Fprintf(stdout, "check_file %s\n", *check)
		fmt.Fprintf(stdout, "check_loss %.9e\n", r.Loss)
		fmt.Fprintf(stdout, "check_out_maxrel %.3e\n", r.OutMaxRel)
		fmt.Fprintf(stdout, "check_loss_rel %.3e\n", r.LossRel)
		fmt.Fprintf(stdout, "check_grad_relmax %.3e\n", r.GradRelMax)
		fmt.Fprintf(stdout, "check_grad_worst %s\n", r.WorstGrad)
		fmt.Fprintf(stdout, "check_grad_tensors %d\n", r.GradTensors)
		if !r.Passes() {
			fmt.Fprintln(stdout, "check FAIL")
			return fmt.Errorf("parity check failed: limits are out ≤ 1e-4, loss ≤ 1e-5, gradients ≤ 1e-3")
		}
		fmt.Fprintln(stdout, "check PASS")
		return nil
	}
	return bench.RunUNetS(bench.Options{Batch: *batch, Steps: *steps, LossSteps: *lossSteps, TrainOnly: *trainOnly, DDIMSteps: *ddim, Out: stdout, Progress: stderr})
}
