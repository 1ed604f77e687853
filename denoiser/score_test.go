package denoiser

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/internal/gmm"
	"github.com/diffuse-go/diffuse/schedule"
	"github.com/diffuse-go/diffuse/tensor"
)

var mix = gmm.Mixture{W: []float64{0.3, 0.7}, Mu: [][]float64{{-0.5, 0.2}, {0.5, -0.1}}, S: []float64{0.1, 0.2}}

// points returns b 2-D points [b, 2, 1, 1] spread around the mixture at
// noise level up to spread.
func points(b int, spread float64, seed uint64) *tensor.Tensor {
	rng := rand.New(rand.NewPCG(seed, 9))
	x := tensor.New(b, 2, 1, 1)
	for i := range x.Data() {
		x.Data()[i] = float32(rng.NormFloat64() * spread)
	}
	return x
}

func row(x *tensor.Tensor, i int) []float64 {
	return []float64{float64(x.Data()[2*i]), float64(x.Data()[2*i+1])}
}

func close(a, b, tol float64) bool { return math.Abs(a-b) <= tol*(1+math.Abs(b)) }

// A score network (the exact NCSN solution of a Gaussian mixture) through
// VE gives the mixture's score and denoiser at every σ of its range,
// several σ in one batch.
func TestVEMatchesAnalyticScore(t *testing.T) {
	l, _ := schedule.NewLadder(0.01, 5, 50)
	d, err := NewVE(gmm.ScoreNet{M: mix, L: l}, l)
	if err != nil {
		t.Fatal(err)
	}
	d.ContinuousLabels = true // the analytic network is exact at every σ
	sig := []float64{0.01, 0.05, 0.5, 2, 5}
	x := points(len(sig), 1, 1)
	for i, s := range sig { // put each point at its own noise scale
		x.Data()[2*i] *= float32(1 + s)
		x.Data()[2*i+1] *= float32(1 + s)
	}
	sc, err := d.Score(x, sig)
	if err != nil {
		t.Fatal(err)
	}
	den, err := d.Denoise(x, sig)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range sig {
		want := mix.Score(row(x, i), s)
		for j := range want {
			if got := float64(sc.Data()[2*i+j]); !close(got, want[j], 1e-4) {
				t.Errorf("σ=%v: score[%d] = %v, want %v", s, j, got, want[j])
			}
			wantD := row(x, i)[j] + s*s*want[j]
			if got := float64(den.Data()[2*i+j]); !close(got, wantD, 1e-4) {
				t.Errorf("σ=%v: D[%d] = %v, want x + σ²·score = %v", s, j, got, wantD)
			}
		}
	}
	if _, err := d.Score(x, sig[:2]); err == nil {
		t.Error("2 sigmas for a batch of 5: want an error")
	}
	if _, err := d.Denoise(x, []float64{1, 1, 0, 1, 1}); err == nil {
		t.Error("σ = 0: want an error")
	}
}

// Above σ_max the VE adapter holds the denoised estimate at σ_max:
// D(x, σ) = D(r·x, σ_max). That is exact for data at a single point, so the
// score there equals the analytic one far beyond the trained range.
func TestVEAboveSigmaMax(t *testing.T) {
	l, _ := schedule.NewLadder(0.01, 3, 20)
	point := gmm.Mixture{W: []float64{1}, Mu: [][]float64{{-0.6, 0.4}}, S: []float64{0}}
	d, _ := NewVE(gmm.ScoreNet{M: point, L: l}, l)
	d.ContinuousLabels = true
	for _, s := range []float64{3, 10, 157} {
		x := points(3, s, 2)
		sc, err := d.Score(x, []float64{s, s, s})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			want := point.Score(row(x, i), s)
			for j := range want {
				if got := float64(sc.Data()[2*i+j]); !close(got, want[j], 1e-4) {
					t.Errorf("point mass, σ=%v > σ_max: score %v, want %v", s, got, want[j])
				}
			}
		}
	}
	// For a mixture it is the hold rule, checked against its definition.
	dm, _ := NewVE(gmm.ScoreNet{M: mix, L: l}, l)
	dm.ContinuousLabels = true
	x := points(2, 40, 3)
	got, _ := dm.Denoise(x, []float64{40, 40})
	r := 3.0 / 40
	xr := tensor.New(x.Shape()...)
	for i, v := range x.Data() {
		xr.Data()[i] = float32(float64(v) * r)
	}
	want, _ := dm.Denoise(xr, []float64{3, 3})
	for i := range want.Data() {
		if !close(float64(got.Data()[i]), float64(want.Data()[i]), 1e-4) {
			t.Errorf("D(x, 40) = %v, want D(r·x, σ_max) = %v", got.Data(), want.Data())
			break
		}
	}
}

// The score network wrapped as a DDPM ε-network equals the analytic DDPM ε
// of the mixture, computed independently in variance-preserving
// coordinates (ε* = −√(1−ᾱ_t)·∇ log q_t), at integer and fractional
// timesteps.
func TestScoreEpsEqualsAnalyticEps(t *testing.T) {
	sched, _ := schedule.New("linear", 1000, 1e-4, 0.02, false)
	l, _ := schedule.NewLadder(0.01, 200, 100) // covers σ_t up to σ_999 ≈ 157
	w, err := NewScoreEps(gmm.ScoreNet{M: mix, L: l}, l, sched)
	if err != nil {
		t.Fatal(err)
	}
	w.VE.ContinuousLabels = true
	oracle := gmm.EpsNet{M: mix, S: sched}
	g := autograd.NoGrad(tensor.CPU)
	ts := []float32{0, 1, 10, 250.5, 600, 998.25, 999}
	x := points(len(ts), 1, 4)
	got := w.Forward(g, autograd.Const(x), ts).Value.ToHost()
	want := oracle.Forward(g, autograd.Const(x), ts).Value.ToHost()
	for i := range got {
		if !close(float64(got[i]), float64(want[i]), 2e-4) {
			t.Errorf("t=%v: ε̂ = %v, analytic ε = %v", ts[i/2], got[i], want[i])
		}
	}
	// σ_t beyond a small σ_max: exact for single-point data (hold rule).
	l3, _ := schedule.NewLadder(0.01, 3, 20)
	point := gmm.Mixture{W: []float64{1}, Mu: [][]float64{{-0.6, 0.4}}, S: []float64{0}}
	wp, _ := NewScoreEps(gmm.ScoreNet{M: point, L: l3}, l3, sched)
	wp.VE.ContinuousLabels = true
	got = wp.Forward(g, autograd.Const(x), ts).Value.ToHost()
	want = gmm.EpsNet{M: point, S: sched}.Forward(g, autograd.Const(x), ts).Value.ToHost()
	for i := range got {
		if !close(float64(got[i]), float64(want[i]), 2e-4) {
			t.Errorf("point mass, t=%v: ε̂ = %v, analytic ε = %v", ts[i/2], got[i], want[i])
		}
	}
	// A zero-terminal-SNR last step (σ = ∞, x_t pure noise): ε̂ = x_t.
	z, _ := schedule.New("linear", 1000, 1e-4, 0.02, true)
	wz, _ := NewScoreEps(gmm.ScoreNet{M: mix, L: l}, l, z)
	last := wz.Forward(g, autograd.Const(x), []float32{999, 999, 999, 999, 999, 999, 999}).Value.ToHost()
	for i, v := range last {
		if math.Abs(float64(v-x.Data()[i])) > 1e-6 {
			t.Fatalf("zero-SNR t=999: ε̂ = %v, want x_t = %v", last, x.Data())
		}
	}
	g.Reset()
}

// The other direction: a DDPM-trained ε-network (the mixture's exact DDPM
// ε on the linear schedule) through denoiser.Discrete is the mixture's
// score at every σ of the schedule's range, as a score model would be.
func TestDDPMTrainedAsScore(t *testing.T) {
	sched, _ := schedule.New("linear", 1000, 1e-4, 0.02, false)
	d, err := NewDiscrete(gmm.EpsNet{M: mix, S: sched}, sched, schedule.Epsilon)
	if err != nil {
		t.Fatal(err)
	}
	sig := []float64{d.SigmaMin(), 0.03, 0.2, 1, sched.Sigma(700), 42, d.SigmaMax()}
	x := points(len(sig), 1, 5)
	for i, s := range sig {
		x.Data()[2*i] *= float32(1 + s)
		x.Data()[2*i+1] *= float32(1 + s)
	}
	sc, err := d.Score(x, sig)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range sig {
		want := mix.Score(row(x, i), s)
		for j := range want {
			if got := float64(sc.Data()[2*i+j]); !close(got, want[j], 2e-3) {
				t.Errorf("σ=%.4g: score[%d] = %v, analytic %v", s, j, got, want[j])
			}
		}
	}
}

// labelNet records the labels it is given and returns zeros.
type labelNet struct{ got []float32 }

func (n *labelNet) Visit(string, func(string, *autograd.Var)) {}
func (n *labelNet) Forward(g *autograd.Graph, x *autograd.Var, t []float32) *autograd.Var {
	n.got = append(n.got[:0], t...)
	return autograd.Const(tensor.New(x.Shape()...))
}

// By default the network sees only its ladder's labels: σ between two
// levels is given the nearer level's label (outside the ladder, the end's).
func TestVESnapsLabels(t *testing.T) {
	l, _ := schedule.NewLadder(0.01, 10, 4) // levels 10, 1, 0.1, 0.01
	net := &labelNet{}
	d, _ := NewVE(net, l)
	sig := []float64{10, 2, 0.5, 0.2, 0.012, 0.001, 50}
	want := []float32{999, 666, 666, 333, 0, 0, 999}
	if _, err := d.Denoise(points(len(sig), 1, 6), sig); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if math.Abs(float64(net.got[i]-want[i])) > 1e-3 {
			t.Fatalf("labels for σ %v: %v, want %v", sig, net.got, want)
		}
	}
	d.ContinuousLabels = true
	d.Denoise(points(len(sig), 1, 6), sig)
	if c := net.got[1]; math.Abs(float64(c)-999*(math.Log(2)-math.Log(0.01))/math.Log(1000)) > 1e-3 {
		t.Errorf("continuous label of σ=2: %v", c)
	}
}
