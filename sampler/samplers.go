package sampler

import (
	"math"

	"github.com/diffuse-go/diffuse/tensor"
)

// churn applies Karras et al.'s churn at step i of sigmas: it returns σ̂ and,
// when σ̂ > σ_i, adds noise raising x from σ_i to σ̂.
func (r *run) churn(x []float64, sigmas []float64, i int) (float64, error) {
	s := sigmas[i]
	gamma := 0.0
	if r.o.STMin <= s && s <= r.o.STMax {
		gamma = math.Min(r.o.SChurn/float64(len(sigmas)-1), math.Sqrt2-1)
	}
	hat := s * (gamma + 1)
	if gamma > 0 {
		if err := r.addNoise(x, s, hat, r.o.SNoise*math.Sqrt(hat*hat-s*s)); err != nil {
			return 0, err
		}
	}
	return hat, nil
}

// eulerUpdate sets x += (x − denoised)/σ · dt, the Euler step of the
// probability-flow ODE dx/dσ = (x − D(x, σ))/σ.
func eulerUpdate(x, denoised []float64, sigma, dt float64) {
	for j := range x {
		x[j] += (x[j] - denoised[j]) / sigma * dt
	}
}

// Euler is k-diffusion's sample_euler (Karras et al. 2022, Algorithm 2 with
// Euler steps): one denoiser call per step. Options: SChurn, STMin, STMax,
// SNoise (churn), Callback. Shapes and units as in Func.
func Euler(d Denoiser, x *tensor.Tensor, sigmas []float64, o Options) (*tensor.Tensor, error) {
	r, xs, err := begin("euler", d, x, sigmas, o)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(sigmas); i++ {
		hat, err := r.churn(xs, sigmas, i)
		if err != nil {
			return nil, err
		}
		den, err := r.denoise(xs, hat)
		if err != nil {
			return nil, err
		}
		if err := r.report(i, sigmas[i], hat, xs, den); err != nil {
			return nil, err
		}
		eulerUpdate(xs, den, hat, sigmas[i+1]-hat)
	}
	return r.toTensor(xs), nil
}

// EulerAncestral is k-diffusion's sample_euler_ancestral: an Euler step down
// to σ_down, then fresh noise of standard deviation SNoise·σ_up (one draw
// (σ_i, σ_{i+1}) per step that does not end at 0). Options: Eta, SNoise,
// Noise, Callback. Shapes and units as in Func.
func EulerAncestral(d Denoiser, x *tensor.Tensor, sigmas []float64, o Options) (*tensor.Tensor, error) {
	r, xs, err := begin("euler_ancestral", d, x, sigmas, o)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(sigmas); i++ {
		den, err := r.denoise(xs, sigmas[i])
		if err != nil {
			return nil, err
		}
		down, up := ancestralStep(sigmas[i], sigmas[i+1], r.o.Eta)
		if err := r.report(i, sigmas[i], sigmas[i], xs, den); err != nil {
			return nil, err
		}
		eulerUpdate(xs, den, sigmas[i], down-sigmas[i])
		if sigmas[i+1] > 0 {
			if err := r.addNoise(xs, sigmas[i], sigmas[i+1], r.o.SNoise*up); err != nil {
				return nil, err
			}
		}
	}
	return r.toTensor(xs), nil
}

// Heun is k-diffusion's sample_heun (Karras et al. 2022, Algorithm 2): Heun's
// second-order method, two denoiser calls per step except an Euler step into
// σ = 0. Options: SChurn, STMin, STMax, SNoise (churn), Callback. Shapes and
// units as in Func.
func Heun(d Denoiser, x *tensor.Tensor, sigmas []float64, o Options) (*tensor.Tensor, error) {
	r, xs, err := begin("heun", d, x, sigmas, o)
	if err != nil {
		return nil, err
	}
	x2 := make([]float64, len(xs))
	for i := 0; i+1 < len(sigmas); i++ {
		hat, err := r.churn(xs, sigmas, i)
		if err != nil {
			return nil, err
		}
		den, err := r.denoise(xs, hat)
		if err != nil {
			return nil, err
		}
		if err := r.report(i, sigmas[i], hat, xs, den); err != nil {
			return nil, err
		}
		next := sigmas[i+1]
		dt := next - hat
		if next == 0 {
			eulerUpdate(xs, den, hat, dt)
			continue
		}
		for j := range xs {
			x2[j] = xs[j] + (xs[j]-den[j])/hat*dt
		}
		den2, err := r.denoise(x2, next)
		if err != nil {
			return nil, err
		}
		for j := range xs {
			d1 := (xs[j] - den[j]) / hat
			d2 := (x2[j] - den2[j]) / next
			xs[j] += (d1 + d2) / 2 * dt
		}
	}
	return r.toTensor(xs), nil
}

// logMid is exp(lerp(log a, log b, 1/2)), the geometric midpoint of two
// noise levels computed as torch's lerp does.
func logMid(a, b float64) float64 {
	la, lb := math.Log(a), math.Log(b)
	return math.Exp(la + 0.5*(lb-la))
}

// dpm2Update runs DPM-Solver-2's midpoint step from x at level s (denoised
// den) to level to, through the geometric midpoint; it costs one call.
func (r *run) dpm2Update(xs, den, x2 []float64, s, to float64) error {
	mid := logMid(s, to)
	dt1, dt2 := mid-s, to-s
	for j := range xs {
		x2[j] = xs[j] + (xs[j]-den[j])/s*dt1
	}
	den2, err := r.denoise(x2, mid)
	if err != nil {
		return err
	}
	for j := range xs {
		xs[j] += (x2[j] - den2[j]) / mid * dt2
	}
	return nil
}

// DPM2 is k-diffusion's sample_dpm_2: DPM-Solver-2 steps (the derivative at
// the geometric midpoint of σ̂ and σ_{i+1}) with Karras et al.'s churn; two
// denoiser calls per step except an Euler step into σ = 0. Options: SChurn,
// STMin, STMax, SNoise (churn), Callback. Shapes and units as in Func.
func DPM2(d Denoiser, x *tensor.Tensor, sigmas []float64, o Options) (*tensor.Tensor, error) {
	r, xs, err := begin("dpm_2", d, x, sigmas, o)
	if err != nil {
		return nil, err
	}
	x2 := make([]float64, len(xs))
	for i := 0; i+1 < len(sigmas); i++ {
		hat, err := r.churn(xs, sigmas, i)
		if err != nil {
			return nil, err
		}
		den, err := r.denoise(xs, hat)
		if err != nil {
			return nil, err
		}
		if err := r.report(i, sigmas[i], hat, xs, den); err != nil {
			return nil, err
		}
		if sigmas[i+1] == 0 {
			eulerUpdate(xs, den, hat, sigmas[i+1]-hat)
			continue
		}
		if err := r.dpm2Update(xs, den, x2, hat, sigmas[i+1]); err != nil {
			return nil, err
		}
	}
	return r.toTensor(xs), nil
}

// DPM2Ancestral is k-diffusion's sample_dpm_2_ancestral: a DPM-Solver-2 step
// down to σ_down, then noise SNoise·σ_up (one draw (σ_i, σ_{i+1}) per step
// with σ_down > 0); an Euler step when σ_down = 0. Options: Eta, SNoise,
// Noise, Callback. Shapes and units as in Func.
func DPM2Ancestral(d Denoiser, x *tensor.Tensor, sigmas []float64, o Options) (*tensor.Tensor, error) {
	r, xs, err := begin("dpm_2_ancestral", d, x, sigmas, o)
	if err != nil {
		return nil, err
	}
	x2 := make([]float64, len(xs))
	for i := 0; i+1 < len(sigmas); i++ {
		den, err := r.denoise(xs, sigmas[i])
		if err != nil {
			return nil, err
		}
		down, up := ancestralStep(sigmas[i], sigmas[i+1], r.o.Eta)
		if err := r.report(i, sigmas[i], sigmas[i], xs, den); err != nil {
			return nil, err
		}
		if down == 0 {
			eulerUpdate(xs, den, sigmas[i], down-sigmas[i])
			continue
		}
		if err := r.dpm2Update(xs, den, x2, sigmas[i], down); err != nil {
			return nil, err
		}
		if err := r.addNoise(xs, sigmas[i], sigmas[i+1], r.o.SNoise*up); err != nil {
			return nil, err
		}
	}
	return r.toTensor(xs), nil
}

// LMS is k-diffusion's sample_lms: the linear multistep method of order
// Options.Order (default 4) on the probability-flow ODE, one denoiser call
// per step; the first steps use the orders available. Its coefficients
// integrate the Lagrange basis over each step exactly (see LMSCoefficient).
// Options: Order, Callback. Shapes and units as in Func.
func LMS(d Denoiser, x *tensor.Tensor, sigmas []float64, o Options) (*tensor.Tensor, error) {
	r, xs, err := begin("lms", d, x, sigmas, o)
	if err != nil {
		return nil, err
	}
	order := r.o.Order
	var ds [][]float64 // past derivatives, oldest first, at most order
	for i := 0; i+1 < len(sigmas); i++ {
		den, err := r.denoise(xs, sigmas[i])
		if err != nil {
			return nil, err
		}
		dv := make([]float64, len(xs))
		for j := range xs {
			dv[j] = (xs[j] - den[j]) / sigmas[i]
		}
		ds = append(ds, dv)
		if len(ds) > order {
			ds = ds[1:]
		}
		if err := r.report(i, sigmas[i], sigmas[i], xs, den); err != nil {
			return nil, err
		}
		cur := min(i+1, order)
		for k := 0; k < cur; k++ {
			c, err := LMSCoefficient(cur, sigmas, i, k)
			if err != nil {
				return nil, err
			}
			dk := ds[len(ds)-1-k]
			for j := range xs {
				xs[j] += c * dk[j]
			}
		}
	}
	return r.toTensor(xs), nil
}

// DPMPP2SAncestral is k-diffusion's sample_dpmpp_2s_ancestral: a
// DPM-Solver++(2S) step (two denoiser calls, intermediate point halfway in
// log σ) down to σ_down, then noise SNoise·σ_up (one draw (σ_i, σ_{i+1})
// per step with σ_{i+1} > 0); an Euler step when σ_down = 0. Options: Eta,
// SNoise, Noise, Callback. Shapes and units as in Func.
func DPMPP2SAncestral(d Denoiser, x *tensor.Tensor, sigmas []float64, o Options) (*tensor.Tensor, error) {
	r, xs, err := begin("dpmpp_2s_ancestral", d, x, sigmas, o)
	if err != nil {
		return nil, err
	}
	x2 := make([]float64, len(xs))
	for i := 0; i+1 < len(sigmas); i++ {
		den, err := r.denoise(xs, sigmas[i])
		if err != nil {
			return nil, err
		}
		down, up := ancestralStep(sigmas[i], sigmas[i+1], r.o.Eta)
		if err := r.report(i, sigmas[i], sigmas[i], xs, den); err != nil {
			return nil, err
		}
		if down == 0 {
			eulerUpdate(xs, den, sigmas[i], down-sigmas[i])
		} else {
			t, tNext := tOf(sigmas[i]), tOf(down)
			h := tNext - t
			s := t + 0.5*h
			a := sigmaOf(s) / sigmaOf(t)
			b := math.Expm1(-h * 0.5)
			for j := range xs {
				x2[j] = a*xs[j] - b*den[j]
			}
			den2, err := r.denoise(x2, sigmaOf(s))
			if err != nil {
				return nil, err
			}
			a = sigmaOf(tNext) / sigmaOf(t)
			b = math.Expm1(-h)
			for j := range xs {
				xs[j] = a*xs[j] - b*den2[j]
			}
		}
		if sigmas[i+1] > 0 {
			if err := r.addNoise(xs, sigmas[i], sigmas[i+1], r.o.SNoise*up); err != nil {
				return nil, err
			}
		}
	}
	return r.toTensor(xs), nil
}

// tOf is DPM-Solver's time t = −log σ; sigmaOf its inverse.
func tOf(sigma float64) float64 { return -math.Log(sigma) }

func sigmaOf(t float64) float64 { return math.Exp(-t) }

// DPMPPSDE is k-diffusion's sample_dpmpp_sde: stochastic DPM-Solver++ with an
// intermediate point at fraction R of the step in log σ; two denoiser calls
// and two noise draws per step — (σ_i, σ_s) then (σ_i, σ_{i+1}), with σ
// recomputed as exp(−t) as k-diffusion does — except an Euler step into
// σ = 0. k-diffusion's default noise here is a Brownian tree; this function
// uses Options.Noise, so pass a Brownian-tree source to reproduce that
// behavior, or replay recorded draws. Options: Eta, SNoise, R, Noise,
// Callback. Shapes and units as in Func.
func DPMPPSDE(d Denoiser, x *tensor.Tensor, sigmas []float64, o Options) (*tensor.Tensor, error) {
	r, xs, err := begin("dpmpp_sde", d, x, sigmas, o)
	if err != nil {
		return nil, err
	}
	x2 := make([]float64, len(xs))
	ratio := r.o.R
	fac := 1 / (2 * ratio)
	for i := 0; i+1 < len(sigmas); i++ {
		den, err := r.denoise(xs, sigmas[i])
		if err != nil {
			return nil, err
		}
		if err := r.report(i, sigmas[i], sigmas[i], xs, den); err != nil {
			return nil, err
		}
		if sigmas[i+1] == 0 {
			eulerUpdate(xs, den, sigmas[i], sigmas[i+1]-sigmas[i])
			continue
		}
		t, tNext := tOf(sigmas[i]), tOf(sigmas[i+1])
		h := tNext - t
		s := t + h*ratio

		// Step 1: to the intermediate level σ(s).
		sd, su := ancestralStep(sigmaOf(t), sigmaOf(s), r.o.Eta)
		sDown := tOf(sd)
		a := sigmaOf(sDown) / sigmaOf(t)
		b := math.Expm1(t - sDown)
		for j := range xs {
			x2[j] = a*xs[j] - b*den[j]
		}
		if err := r.addNoise(x2, sigmaOf(t), sigmaOf(s), r.o.SNoise*su); err != nil {
			return nil, err
		}
		den2, err := r.denoise(x2, sigmaOf(s))
		if err != nil {
			return nil, err
		}

		// Step 2: to σ_{i+1} with the blended denoised estimate.
		sd, su = ancestralStep(sigmaOf(t), sigmaOf(tNext), r.o.Eta)
		tn := tOf(sd)
		a = sigmaOf(tn) / sigmaOf(t)
		b = math.Expm1(t - tn)
		for j := range xs {
			dd := (1-fac)*den[j] + fac*den2[j]
			xs[j] = a*xs[j] - b*dd
		}
		if err := r.addNoise(xs, sigmaOf(t), sigmaOf(tNext), r.o.SNoise*su); err != nil {
			return nil, err
		}
	}
	return r.toTensor(xs), nil
}

// DPMPP2M is k-diffusion's sample_dpmpp_2m: the deterministic multistep
// DPM-Solver++(2M), one denoiser call per step; the first step and the step
// into σ = 0 are first order. Options: Callback. Shapes and units as in Func.
func DPMPP2M(d Denoiser, x *tensor.Tensor, sigmas []float64, o Options) (*tensor.Tensor, error) {
	r, xs, err := begin("dpmpp_2m", d, x, sigmas, o)
	if err != nil {
		return nil, err
	}
	var old []float64
	for i := 0; i+1 < len(sigmas); i++ {
		den, err := r.denoise(xs, sigmas[i])
		if err != nil {
			return nil, err
		}
		if err := r.report(i, sigmas[i], sigmas[i], xs, den); err != nil {
			return nil, err
		}
		t, tNext := tOf(sigmas[i]), tOf(sigmas[i+1])
		h := tNext - t
		a := sigmaOf(tNext) / sigmaOf(t)
		b := math.Expm1(-h)
		if old == nil || sigmas[i+1] == 0 {
			for j := range xs {
				xs[j] = a*xs[j] - b*den[j]
			}
		} else {
			hLast := t - tOf(sigmas[i-1])
			q := 1 / (2 * (hLast / h))
			for j := range xs {
				dd := (1+q)*den[j] - q*old[j]
				xs[j] = a*xs[j] - b*dd
			}
		}
		old = den
	}
	return r.toTensor(xs), nil
}

// DPMPP2MSDE is k-diffusion's sample_dpmpp_2m_sde: the stochastic
// DPM-Solver++(2M) with SolverType "midpoint" or "heun" for the second-order
// correction, one denoiser call per step; the step into σ = 0 returns the
// denoised estimate. With Eta > 0 each step that does not end at 0 adds
// noise, one draw (σ_i, σ_{i+1}). Options: Eta, SNoise, SolverType, Noise,
// Callback. Shapes and units as in Func.
func DPMPP2MSDE(d Denoiser, x *tensor.Tensor, sigmas []float64, o Options) (*tensor.Tensor, error) {
	r, xs, err := begin("dpmpp_2m_sde", d, x, sigmas, o)
	if err != nil {
		return nil, err
	}
	heun := r.o.SolverType == "heun"
	var old []float64
	var h, hLast float64
	for i := 0; i+1 < len(sigmas); i++ {
		den, err := r.denoise(xs, sigmas[i])
		if err != nil {
			return nil, err
		}
		if err := r.report(i, sigmas[i], sigmas[i], xs, den); err != nil {
			return nil, err
		}
		if sigmas[i+1] == 0 {
			copy(xs, den)
		} else {
			t, s := -math.Log(sigmas[i]), -math.Log(sigmas[i+1])
			h = s - t
			etaH := r.o.Eta * h
			a := sigmas[i+1] / sigmas[i] * math.Exp(-etaH)
			b := -math.Expm1(-h - etaH)
			for j := range xs {
				xs[j] = a*xs[j] + b*den[j]
			}
			if old != nil {
				inv := h / hLast // 1/r with r = h_last/h
				var c float64
				if heun {
					c = (b/(-h-etaH) + 1) * inv
				} else {
					c = 0.5 * b * inv
				}
				for j := range xs {
					xs[j] += c * (den[j] - old[j])
				}
			}
			if r.o.Eta != 0 {
				scale := sigmas[i+1] * math.Sqrt(-math.Expm1(-2*etaH)) * r.o.SNoise
				if err := r.addNoise(xs, sigmas[i], sigmas[i+1], scale); err != nil {
					return nil, err
				}
			}
		}
		old = den
		hLast = h
	}
	return r.toTensor(xs), nil
}

// DPMPP3MSDE is k-diffusion's sample_dpmpp_3m_sde: the stochastic
// third-order multistep DPM-Solver++(3M), one denoiser call per step (first
// and second steps of lower order); the step into σ = 0 returns the denoised
// estimate. With Eta > 0 each step that does not end at 0 adds noise, one
// draw (σ_i, σ_{i+1}). Options: Eta, SNoise, Noise, Callback. Shapes and
// units as in Func.
func DPMPP3MSDE(d Denoiser, x *tensor.Tensor, sigmas []float64, o Options) (*tensor.Tensor, error) {
	r, xs, err := begin("dpmpp_3m_sde", d, x, sigmas, o)
	if err != nil {
		return nil, err
	}
	var den1, den2 []float64 // the last two denoised estimates
	var h, h1, h2 float64
	have1, have2 := false, false // whether h1, h2 are set
	eta := r.o.Eta
	for i := 0; i+1 < len(sigmas); i++ {
		den, err := r.denoise(xs, sigmas[i])
		if err != nil {
			return nil, err
		}
		if err := r.report(i, sigmas[i], sigmas[i], xs, den); err != nil {
			return nil, err
		}
		if sigmas[i+1] == 0 {
			copy(xs, den)
		} else {
			t, s := -math.Log(sigmas[i]), -math.Log(sigmas[i+1])
			h = s - t
			hEta := h * (eta + 1)
			a := math.Exp(-hEta)
			b := -math.Expm1(-hEta)
			for j := range xs {
				xs[j] = a*xs[j] + b*den[j]
			}
			phi2 := math.Expm1(-hEta)/hEta + 1
			switch {
			case have2:
				r0, r1 := h1/h, h2/h
				phi3 := phi2/hEta - 0.5
				for j := range xs {
					d10 := (den[j] - den1[j]) / r0
					d11 := (den1[j] - den2[j]) / r1
					dd1 := d10 + (d10-d11)*r0/(r0+r1)
					dd2 := (d10 - d11) / (r0 + r1)
					xs[j] += phi2*dd1 - phi3*dd2
				}
			case have1:
				q := h1 / h
				for j := range xs {
					xs[j] += phi2 * (den[j] - den1[j]) / q
				}
			}
			if eta != 0 {
				scale := sigmas[i+1] * math.Sqrt(-math.Expm1(-2*h*eta)) * r.o.SNoise
				if err := r.addNoise(xs, sigmas[i], sigmas[i+1], scale); err != nil {
					return nil, err
				}
			}
		}
		den1, den2 = den, den1
		h1, h2 = h, h1
		have1, have2 = true, have1
	}
	return r.toTensor(xs), nil
}
