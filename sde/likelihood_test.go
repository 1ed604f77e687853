package sde

import (
	"math"
	"testing"
)

// likelihoodData are the Gaussian data sets of the likelihood tests (D = 4):
// isotropic N(mu, 0.7²I), whose flow Jacobian is a multiple of I (so the
// Rademacher estimate is exact and Gaussian-ε draws have variance), and a
// rotated anisotropic N(mu, Q·diag(0.3, 0.6, 1.2, 2)·Qᵀ), whose Jacobian has
// off-diagonal entries, so every Hutchinson draw has variance.
func likelihoodData() map[string]gauss {
	mu := []float64{0.5, -0.3, 0.2, 1}
	return map[string]gauss{
		"iso": isoGauss(mu, 0.7),
		"rot": rotGauss(mu, []float64{0.3, 0.6, 1.2, 2}, 11),
	}
}

// likelihoodCase is a batch of B = 8 data points with their exact data
// log-likelihood log p_0(x) and the exact output of the procedure
// (procedureLogP: log p_ε(x) with the prior standing in for p_T).
type likelihoodCase struct {
	x         []float64 // [B·4]
	exact     []float64 // log p_0(x)
	procedure []float64
}

func newLikelihoodCase(s SDE, data gauss) (likelihoodCase, [][]float64) {
	const b = 8
	xt := data.sample(b, 3)
	c := likelihoodCase{exact: make([]float64, b), procedure: make([]float64, b)}
	rows := make([][]float64, b)
	for i := range rows {
		rows[i] = make([]float64, 4)
		for j := range rows[i] {
			rows[i][j] = float64(xt.Data()[i*4+j])
		}
		c.exact[i] = data.logp(s, 0, rows[i])
		c.procedure[i] = data.procedureLogP(s, 1e-5, rows[i])
	}
	return c, rows
}

func meanOf(v []float64) float64 {
	var m float64
	for _, x := range v {
		m += x / float64(len(v))
	}
	return m
}

// The acceptance criterion: for Gaussian data, whose log-likelihood is
// known in closed form, the probability-flow ODE estimate with the exact
// score (a DiffScore of autograd ops, so the divergence goes through real
// vector–Jacobian products) is within 1% of the exact log p_0(x):
//
//   - with the exact trace (D = 4 VJPs per evaluation), for every sample;
//   - with 512 Rademacher draws per sample, for the batch mean (the bits/dim
//     of a data set; standard error 0.015 nats = 0.3% for the anisotropic
//     data), per-sample estimates being noisy for anisotropic data (the
//     Hutchinson error of a draw is Σ_{i≠j} ε_iε_j M_ij, M = ∫∂f̃/∂x dt,
//     ≈ 0.35 nats here).
//
// The remaining gap to log p_0 is the method's own: the prior N(0, I) (VE:
// N(0, σ_max²I)) stands in for p_T (VE: a z·mu/σ_max² ≈ 0.02-nat term) and
// the integration starts at ε = 1e-5. Against the procedure's exact output
// (procedureLogP, which includes both) the exact-trace estimate must agree
// to 1e-4 relative (rtol = atol = 1e-5, float32 network arithmetic), and
// the Hutchinson means must be within 4 standard errors (estimated from
// the draws) plus 1e-3 nats.
func TestLikelihoodGaussianWithin1Percent(t *testing.T) {
	for sname, s := range testSDEs() {
		for dname, data := range likelihoodData() {
			c, rows := newLikelihoodCase(s, data)
			x := data.sample(len(rows), 3)

			res, err := LogLikelihood(s, data.diff(s), x, LikelihoodOptions{Trace: ExactTrace})
			if err != nil {
				t.Fatalf("%s %s: %v", sname, dname, err)
			}
			var worst, worstProc float64
			for i := range rows {
				rel := math.Abs(res.LogP[i]-c.exact[i]) / math.Abs(c.exact[i])
				relProc := math.Abs(res.LogP[i]-c.procedure[i]) / math.Abs(c.procedure[i])
				worst, worstProc = math.Max(worst, rel), math.Max(worstProc, relProc)
				if rel > 0.01 {
					t.Errorf("%s %s exact trace: sample %d: log p %.5f, exact %.5f (rel. error %.2e > 1%%)", sname, dname, i, res.LogP[i], c.exact[i], rel)
				}
				if relProc > 1e-4 {
					t.Errorf("%s %s exact trace: sample %d: log p %.6f, procedure's exact %.6f (rel. %.2e)", sname, dname, i, res.LogP[i], c.procedure[i], relProc)
				}
			}
			t.Logf("%-5s %s exact trace: NFE %3d, worst rel. error vs log p_0 %.2e, vs procedure %.2e; mean log p %.5f (exact %.5f)",
				sname, dname, res.NFE, worst, worstProc, meanOf(res.LogP), meanOf(c.exact))

			const draws = 512
			res, err = LogLikelihood(s, data.diff(s), x, LikelihoodOptions{Trace: Rademacher, Draws: draws, Noise: SeededNoise(1)})
			if err != nil {
				t.Fatalf("%s %s: %v", sname, dname, err)
			}
			mean, exact, proc := meanOf(res.LogP), meanOf(c.exact), meanOf(c.procedure)
			se := hutchinsonSE(res.LogPDraws)
			rel := math.Abs(mean-exact) / math.Abs(exact)
			t.Logf("%-5s %s rademacher×%d: NFE %3d, mean log p %.5f (exact %.5f): rel. error %.2e; vs procedure %+.4f nats (s.e. %.4f)",
				sname, dname, draws, res.NFE, mean, exact, rel, mean-proc, se)
			if rel > 0.01 {
				t.Errorf("%s %s rademacher: mean log p %.5f, exact %.5f: rel. error %.3g > 1%%", sname, dname, mean, exact, rel)
			}
			if math.Abs(mean-proc) > 4*se+1e-3 {
				t.Errorf("%s %s rademacher: mean log p %.5f, procedure's exact %.5f, s.e. %.4f", sname, dname, mean, proc, se)
			}
			if dname == "iso" && se > 1e-6 {
				t.Errorf("%s iso: Rademacher draws differ (s.e. %g) though the Jacobian is diagonal", sname, se)
			}
			for i := range res.BPD {
				if want := -res.LogP[i]/(4*math.Ln2) + 7; math.Abs(res.BPD[i]-want) > 1e-12 {
					t.Errorf("bpd %g, want %g", res.BPD[i], want)
				}
			}
		}
	}
}

// hutchinsonSE is the standard error of the batch mean of the per-draw
// estimates: the spread of each sample's draws around its own mean,
// √(Σ_b s_b²/K)/B.
func hutchinsonSE(draws [][]float64) float64 {
	var v float64
	for _, d := range draws {
		m := meanOf(d)
		var s2 float64
		for _, x := range d {
			s2 += (x - m) * (x - m) / float64(len(d)-1)
		}
		v += s2 / float64(len(d))
	}
	return math.Sqrt(v) / float64(len(draws))
}

// Gaussian-ε Hutchinson estimates are unbiased too, with far more variance
// (for isotropic data the error of one draw is c·(‖ε‖² − D), c = the
// per-dim log-volume change ½·log(Var_T/Var_ε)); checked on VP within 4
// standard errors.
func TestLikelihoodGaussianHutchinsonUnbiased(t *testing.T) {
	s := DefaultVP()
	for dname, data := range likelihoodData() {
		c, rows := newLikelihoodCase(s, data)
		x := data.sample(len(rows), 3)
		res, err := LogLikelihood(s, data.diff(s), x, LikelihoodOptions{Trace: Gaussian, Draws: 64, Noise: SeededNoise(2)})
		if err != nil {
			t.Fatal(err)
		}
		mean, proc := meanOf(res.LogP), meanOf(c.procedure)
		se := hutchinsonSE(res.LogPDraws)
		t.Logf("vp %s gaussian×64: mean log p %.4f, procedure's exact %.4f (%.1f s.e. of %.4f)", dname, mean, proc, math.Abs(mean-proc)/se, se)
		if math.Abs(mean-proc) > 4*se+1e-3 {
			t.Errorf("%s: mean %.4f, exact %.4f, s.e. %.4f", dname, mean, proc, se)
		}
	}
}
