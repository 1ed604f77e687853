package train

import (
	"encoding/csv"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/optim"
	"github.com/diffuse-go/diffuse/tensor"
)

// epochOrder draws a run's batch indices: sample k of the run is element
// k%n of epoch k/n's permutation, seeded by (seed, epoch), so a resumed run
// sees the same batches as a straight one.
type epochOrder struct {
	seed  uint64
	n     int
	perm  []int
	epoch int
}

func newEpochOrder(seed uint64, n int) *epochOrder { return &epochOrder{seed: seed, n: n, epoch: -1} }

// fill writes the indices of batch step (len(idx) samples per batch).
func (o *epochOrder) fill(idx []int, step int) {
	for i := range idx {
		k := step*len(idx) + i
		if e := k / o.n; e != o.epoch {
			o.perm = rand.New(rand.NewPCG(o.seed, uint64(e)+1)).Perm(o.n)
			o.epoch = e
		}
		idx[i] = o.perm[k%o.n]
	}
}

// optimizer is what one training step updates: the parameters' AdamW, their
// EMA and the schedule of the learning rate (linear warm-up to lr, then
// constant), with gradient-norm clipping (clip ≤ 0: off).
type optimizer struct {
	opt    *optim.Adam
	ema    *optim.EMA
	lr     float32
	warmup int
	clip   float64
}

// stepResult is what one optimizer step reports for the loss log.
type stepResult struct {
	loss, gradNorm float64
	lr             float32
}

// step runs one optimization step at (0-based) step number step: loss
// builds the scalar loss on g, whose backward pass fills the gradients;
// then the gradient norm is checked and clipped, the warmed-up learning
// rate set, AdamW and the EMA updated. A NaN or infinite loss or gradient
// norm returns nanError naming step+1 and ckpt (the last good checkpoint)
// before any weight changes; who prefixes other errors. g is reset.
func (o optimizer) step(g *autograd.Graph, step int, ckpt, who string, loss func() *autograd.Var) (stepResult, error) {
	var r stepResult
	params := o.opt.Params
	err := autograd.Catch(func() {
		l := loss()
		r.loss = float64(l.Value.Item())
		if math.IsNaN(r.loss) || math.IsInf(r.loss, 0) {
			return
		}
		optim.ZeroGrad(params)
		if err := g.Backward(l); err != nil {
			panic(&tensor.ShapeError{Op: "Backward", Msg: err.Error()})
		}
	})
	g.Reset()
	if err != nil {
		return r, fmt.Errorf("%s step %d: %w", who, step+1, err)
	}
	if math.IsNaN(r.loss) || math.IsInf(r.loss, 0) {
		return r, nanError(step+1, r.loss, ckpt)
	}
	r.gradNorm = optim.GradNorm(params)
	if math.IsNaN(r.gradNorm) || math.IsInf(r.gradNorm, 0) {
		return r, nanError(step+1, r.gradNorm, ckpt)
	}
	if o.clip > 0 {
		optim.ClipGradNorm(params, o.clip)
	}
	r.lr = o.lr
	if o.warmup > 0 && step < o.warmup {
		r.lr = o.lr * float32(step+1) / float32(o.warmup)
	}
	o.opt.LR = r.lr
	o.opt.Update()
	o.ema.UpdateAt(step)
	return r, nil
}

// logStep appends the loss-log row of step (1-based, after the update):
// step, loss, lr, grad_norm, seconds since start. A nil w logs nothing.
func logStep(w *csv.Writer, step int, r stepResult, start time.Time) {
	if w == nil {
		return
	}
	w.Write([]string{strconv.Itoa(step), strconv.FormatFloat(r.loss, 'g', 6, 64),
		strconv.FormatFloat(float64(r.lr), 'g', 4, 64), strconv.FormatFloat(r.gradNorm, 'g', 4, 64),
		strconv.FormatFloat(time.Since(start).Seconds(), 'f', 2, 64)})
}
