// Package bench measures diffuse's engine on the benchmark network UNet-S
// with the same protocol as the PyTorch reference (../shared/bench/unet_s.py):
// median and minimum wall time of a batch-64 training step and of forward
// passes, GFLOP/s from an analytic FLOP count, peak RSS, and the loss over
// the first training steps on synthetic structured images.
package bench

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/internal/kernels"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/optim"
	"github.com/diffuse-go/diffuse/tensor"
)

// Options configures a UNet-S benchmark run.
type Options struct {
	Batch     int  // training and forward batch (64 in the reference)
	Steps     int  // timed repetitions
	LossSteps int  // training steps on fresh weights to show the loss falling (0: skip)
	TrainOnly bool // time only the training step (for /usr/bin/time -v)
	DDIMSteps int  // also time an N-step DDIM-like sampling loop (0: skip)
	Out       io.Writer
	Progress  io.Writer // optional: progress lines while working
}

// TSteps is the number of diffusion timesteps of the benchmark schedule.
const TSteps = 1000

// Abar returns ᾱ_t for betas = linspace(1e-4, 0.02, 1000) in float64,
// cast to float32 after the cumulative product, as unet_s.py does.
func Abar() []float32 {
	out := make([]float32, TSteps)
	a := 1.0
	for i := 0; i < TSteps; i++ {
		beta := 1e-4 + (0.02-1e-4)*float64(i)/float64(TSteps-1)
		a *= 1 - beta
		out[i] = float32(a)
	}
	return out
}

// StructuredImages returns n synthetic 28×28 images in [-1, 1]: a Gaussian
// blob plus a horizontal or vertical bar (the reference's training data).
func StructuredImages(n int, rng *rand.Rand) *tensor.Tensor {
	t := tensor.New(n, 1, 28, 28)
	d := t.Data()
	for i := 0; i < n; i++ {
		cy, cx := rng.Float64()*16+6, rng.Float64()*16+6
		r := rng.Float64()*3 + 2
		img := d[i*784 : (i+1)*784]
		for y := 0; y < 28; y++ {
			for x := 0; x < 28; x++ {
				dy, dx := float64(y)-cy, float64(x)-cx
				img[y*28+x] = float32(math.Exp(-(dy*dy + dx*dx) / (2 * r * r)))
			}
		}
		pos := int(rng.Float64()*20 + 4)
		horiz := rng.Float64() < 0.5
		for a := pos - 1; a < pos+1; a++ {
			for b := 3; b < 25; b++ {
				if horiz {
					img[a*28+b] = 1
				} else {
					img[b*28+a] = 1
				}
			}
		}
		for j, v := range img {
			img[j] = min(max(v, 0), 1)*2 - 1
		}
	}
	return t
}

// Trainer runs UNet-S training steps with reused buffers.
type Trainer struct {
	Net    *unet.UNetS
	Params []nn.Named
	Opt    *optim.Adam
	G      *autograd.Graph
	abar   []float32
	rng    *rand.Rand
	xt     *tensor.Tensor
	eps    *tensor.Tensor
	t      []float32
}

// NewTrainer builds UNet-S (weights from seed) with Adam(lr 2e-4).
func NewTrainer(batch int, seed uint64) *Trainer {
	net := unet.NewUNetS(rand.New(rand.NewPCG(seed, 0)))
	ps := nn.Parameters(net)
	return &Trainer{
		Net: net, Params: ps, Opt: optim.NewAdam(ps, 2e-4), G: autograd.New(tensor.CPU),
		abar: Abar(), rng: rand.New(rand.NewPCG(seed, 1)),
		xt: tensor.New(batch, 1, 28, 28), eps: tensor.New(batch, 1, 28, 28), t: make([]float32, batch),
	}
}

// Step draws t and ε, forms x_t = sqrt(ᾱ)x0 + sqrt(1−ᾱ)ε, and takes one
// Adam step on mean((net(x_t, t) − ε)²). It returns the loss.
func (tr *Trainer) Step(x0 *tensor.Tensor) (float32, error) {
	b := x0.Dim(0)
	xs, es, x0s := tr.xt.Data(), tr.eps.Data(), x0.Data()
	n := len(xs) / b
	for i := 0; i < b; i++ {
		ti := tr.rng.IntN(TSteps)
		tr.t[i] = float32(ti)
		a := tr.abar[ti]
		sa, sb := float32(math.Sqrt(float64(a))), float32(math.Sqrt(float64(1-a)))
		for j := i * n; j < (i+1)*n; j++ {
			e := float32(tr.rng.NormFloat64())
			es[j] = e
			xs[j] = sa*x0s[j] + sb*e
		}
	}
	var loss float32
	err := autograd.Catch(func() {
		out := tr.Net.Forward(tr.G, autograd.Const(tr.xt), tr.t)
		l := tr.G.MSE(out, autograd.Const(tr.eps))
		loss = l.Value.Item()
		optim.ZeroGrad(tr.Params)
		if err := tr.G.Backward(l); err != nil {
			panic(&tensor.ShapeError{Op: "Backward", Msg: err.Error()})
		}
	})
	tr.G.Reset()
	if err != nil {
		return 0, err
	}
	tr.Opt.Update()
	return loss, nil
}

// FwdFLOPs is the analytic FLOP count (2 × multiply-adds of convolutions,
// linears and attention matmuls) of one UNet-S forward per sample, counted
// as unet_s.py's count_fwd_flops does.
func FwdFLOPs() float64 {
	conv := func(hw, cin, cout, k int) float64 { return float64(hw * cout * cin * k * k) }
	res := func(hw, cin, cout int) float64 {
		m := conv(hw, cin, cout, 3) + conv(hw, cout, cout, 3) + float64(cout*128)
		if cin != cout {
			m += conv(hw, cin, cout, 1)
		}
		return m
	}
	macs := float64(128*32+128*128) + conv(784, 1, 32, 3) + res(784, 32, 32) + conv(196, 32, 32, 3) +
		res(196, 32, 64) + conv(49, 64, 64, 3) + res(49, 64, 64) +
		conv(49, 64, 192, 1) + conv(49, 64, 64, 1) + 2*64*49*49 + res(49, 64, 64) +
		conv(196, 64, 64, 3) + res(196, 128, 64) + conv(784, 64, 64, 3) + res(784, 96, 32) + conv(784, 32, 1, 3)
	return 2 * macs
}

type noise struct {
	busy, mine int64
	t          time.Time
}

func readNoise() noise {
	var n noise
	n.t = time.Now()
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:]
		for i, v := range f {
			if i == 3 || i == 4 {
				continue
			}
			x, _ := strconv.ParseInt(v, 10, 64)
			n.busy += x
		}
	}
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			k, _ := strconv.ParseInt(f[12], 10, 64)
			n.mine = u + k
		}
	}
	return n
}

// otherPct is the CPU time other processes used between a and b, as a
// percentage of all cores (clock ticks are 100 Hz on Linux).
func otherPct(a, b noise) float64 {
	wall := b.t.Sub(a.t).Seconds()
	other := float64((b.busy - a.busy) - (b.mine - a.mine))
	return max(0, 100*other/100/(wall*float64(runtime.NumCPU())))
}

func timed(fn func() error, reps, warmup int) (med, mn, otherCPU float64, err error) {
	for i := 0; i < warmup; i++ {
		if err = fn(); err != nil {
			return
		}
	}
	ts := make([]float64, 0, reps)
	a := readNoise()
	for i := 0; i < reps; i++ {
		t0 := time.Now()
		if err = fn(); err != nil {
			return
		}
		ts = append(ts, float64(time.Since(t0).Microseconds())/1e3)
	}
	otherCPU = otherPct(a, readNoise())
	slices.Sort(ts)
	med = ts[len(ts)/2]
	if len(ts)%2 == 0 {
		med = (ts[len(ts)/2-1] + ts[len(ts)/2]) / 2
	}
	return med, ts[0], otherCPU, nil
}

// PeakRSSMB is the process's peak resident set (VmHWM) in MB.
func PeakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}

// RunUNetS runs the benchmark and prints `key value` lines to o.Out.
func RunUNetS(o Options) error {
	if o.Batch < 1 || o.Steps < 1 {
		return fmt.Errorf("bench unet-s: --batch and --steps must be ≥ 1 (got %d, %d)", o.Batch, o.Steps)
	}
	w := o.Out
	say := func(k string, format string, v ...any) { fmt.Fprintf(w, "%s "+format+"\n", append([]any{k}, v...)...) }
	prog := func(s string) {
		if o.Progress != nil {
			fmt.Fprintln(o.Progress, s)
		}
	}
	say("engine", "diffuse")
	say("gemm_kernel", "%s", kernels.Impl())
	say("threads", "%d", runtime.GOMAXPROCS(0))
	B := o.Batch
	tr := NewTrainer(B, 0)
	say("params", "%d", nn.CountParams(tr.Net))
	fl := FwdFLOPs()
	say("fwd_gflop_per_sample", "%.4f", fl/1e9)
	data := StructuredImages(max(512, B), rand.New(rand.NewPCG(1, 1)))
	x0 := tensor.FromSlice(data.Data()[:B*784], B, 1, 28, 28)

	prog("timing the training step...")
	med, mn, other, err := timed(func() error { _, e := tr.Step(x0); return e }, o.Steps, 2)
	if err != nil {
		return err
	}
	say("batch", "%d", B)
	say("train_step_ms_median", "%.1f", med)
	say("train_step_ms_min", "%.1f", mn)
	say("train_gflops_3x_fwd", "%.1f", 3*fl*float64(B)/med/1e6)
	say("train_other_cpu_pct", "%.1f", other)
	say("train_arena_mb", "%.1f", float64(tr.G.Bytes())/1e6)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gc0 := ms.NumGC
	if _, err := tr.Step(x0); err != nil {
		return err
	}
	runtime.ReadMemStats(&ms)
	say("train_gc_per_step", "%d", ms.NumGC-gc0)
	if o.TrainOnly {
		say("peak_rss_mb", "%.1f", PeakRSSMB())
		return nil
	}

	prog("timing forward passes...")
	g := autograd.NoGrad(tensor.CPU)
	rng := rand.New(rand.NewPCG(2, 2))
	xb := tensor.New(B, 1, 28, 28)
	for i := range xb.Data() {
		xb.Data()[i] = float32(rng.NormFloat64())
	}
	tb := make([]float32, B)
	for i := range tb {
		tb[i] = float32(rng.IntN(TSteps))
	}
	fwd := func(x *tensor.Tensor, t []float32) func() error {
		return func() error {
			err := autograd.Catch(func() { tr.Net.Forward(g, autograd.Const(x), t) })
			g.Reset()
			return err
		}
	}
	med, mn, other, err = timed(fwd(xb, tb), o.Steps, 2)
	if err != nil {
		return err
	}
	say(fmt.Sprintf("fwd_b%d_ms_median", B), "%.1f", med)
	say(fmt.Sprintf("fwd_b%d_ms_min", B), "%.1f", mn)
	say(fmt.Sprintf("fwd_b%d_gflops", B), "%.1f", fl*float64(B)/med/1e6)
	say(fmt.Sprintf("fwd_b%d_other_cpu_pct", B), "%.1f", other)
	x1 := tensor.FromSlice(xb.Data()[:784], 1, 1, 28, 28)
	med, mn, other, err = timed(fwd(x1, tb[:1]), max(50, o.Steps), 5)
	if err != nil {
		return err
	}
	say("fwd_b1_ms_median", "%.2f", med)
	say("fwd_b1_ms_min", "%.2f", mn)
	say("fwd_b1_other_cpu_pct", "%.1f", other)

	if o.DDIMSteps > 0 {
		prog("timing DDIM sampling...")
		abar := Abar()
		run := func(steps int) error {
			x := tensor.New(B, 1, 28, 28)
			for i := range x.Data() {
				x.Data()[i] = float32(rng.NormFloat64())
			}
			tt := make([]float32, B)
			for i := 0; i < steps; i++ {
				t := int(math.Round(float64(TSteps-1) * (1 - float64(i)/float64(max(steps-1, 1)))))
				a := float64(abar[t])
				ap := 1.0
				if i+1 < steps {
					ap = float64(abar[int(math.Round(float64(TSteps-1)*(1-float64(i+1)/float64(max(steps-1, 1)))))])
				}
				for j := range tt {
					tt[j] = float32(t)
				}
				err := autograd.Catch(func() {
					e := tr.Net.Forward(g, autograd.Const(x), tt).Value.Data()
					xd := x.Data()
					for j := range xd {
						x0 := (float64(xd[j]) - math.Sqrt(1-a)*float64(e[j])) / math.Sqrt(a)
						xd[j] = float32(math.Sqrt(ap)*x0 + math.Sqrt(1-ap)*float64(e[j]))
					}
				})
				g.Reset()
				if err != nil {
					return err
				}
			}
			return nil
		}
		if err := run(2); err != nil {
			return err
		}
		a := readNoise()
		t0 := time.Now()
		if err := run(o.DDIMSteps); err != nil {
			return err
		}
		dt := time.Since(t0).Seconds()
		say(fmt.Sprintf("ddim%d_b%d_s", o.DDIMSteps, B), "%.2f", dt)
		say("ddim_ms_per_step", "%.1f", dt*1e3/float64(o.DDIMSteps))
		say("ddim_other_cpu_pct", "%.1f", otherPct(a, readNoise()))
	}

	if o.LossSteps > 0 {
		prog(fmt.Sprintf("training %d steps on fresh weights...", o.LossSteps))
		tr2 := NewTrainer(B, 0)
		tr = nil
		debug.FreeOSMemory()
		sel := rand.New(rand.NewPCG(3, 3))
		batch := tensor.New(B, 1, 28, 28)
		losses := make([]float64, 0, o.LossSteps)
		for i := 0; i < o.LossSteps; i++ {
			for j := 0; j < B; j++ {
				k := sel.IntN(data.Dim(0))
				copy(batch.Data()[j*784:(j+1)*784], data.Data()[k*784:(k+1)*784])
			}
			l, err := tr2.Step(batch)
			if err != nil {
				return err
			}
			losses = append(losses, float64(l))
		}
		k := min(5, len(losses))
		mean := func(v []float64) float64 {
			s := 0.0
			for _, x := range v {
				s += x
			}
			return s / float64(len(v))
		}
		say("loss_first", "%.4f", losses[0])
		say("loss_last", "%.4f", losses[len(losses)-1])
		say(fmt.Sprintf("loss_mean_first%d", k), "%.4f", mean(losses[:k]))
		say(fmt.Sprintf("loss_mean_last%d", k), "%.4f", mean(losses[len(losses)-k:]))
		parts := make([]string, len(losses))
		for i, l := range losses {
			parts[i] = fmt.Sprintf("%.3f", l)
		}
		say("losses", "%s", strings.Join(parts, " "))
	}
	say("peak_rss_mb", "%.1f", PeakRSSMB())
	return nil
}
