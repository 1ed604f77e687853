package sde

import (
	"errors"
	"fmt"
	"math"
)

// ODEFunc is the right-hand side of dy/dt = F(t, y): it writes F(t, y) into
// dydt (len(y)) and must not modify y or keep either slice.
type ODEFunc func(t float64, y, dydt []float64) error

// RK45Options control SolveRK45. The zero value means rtol = atol = 1e-5
// (score_sde's defaults), a scipy-style automatic first step, no maximum
// step and at most 100000 evaluations.
type RK45Options struct {
	// RTol and ATol are the relative and absolute tolerances: a step is
	// accepted when the RMS over components of err_i/(ATol + RTol·max(|y_i|,
	// |y_new,i|)) is ≤ 1, err being the difference of the embedded 5th- and
	// 4th-order solutions. 0 means 1e-5.
	RTol, ATol float64
	// FirstStep is the initial |h| (0: chosen as scipy's select_initial_step).
	FirstStep float64
	// MaxStep bounds |h| (0: unbounded).
	MaxStep float64
	// MaxNFE stops the solver with an error after this many evaluations of
	// F (0: 100000).
	MaxNFE int
	// OnStep, when non-nil, is called after every accepted step with the
	// new time and state (which it must not modify or keep).
	OnStep func(t float64, y []float64)
}

// RK45Result is the outcome of SolveRK45.
type RK45Result struct {
	// Y is the state at t1.
	Y []float64
	// NFE is the number of evaluations of F (as scipy's nfev: the initial
	// one, the first-step probe and 6 per attempted step, thanks to FSAL).
	NFE int
	// Accepted and Rejected count the steps.
	Accepted, Rejected int
}

// Dormand–Prince 5(4) tableau (Dormand & Prince 1980), as in scipy's RK45.
var (
	dpC = [7]float64{0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1, 1}
	dpA = [7][6]float64{
		{},
		{1.0 / 5},
		{3.0 / 40, 9.0 / 40},
		{44.0 / 45, -56.0 / 15, 32.0 / 9},
		{19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729},
		{9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656},
		{35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84}, // the 5th-order weights (FSAL)
	}
	// dpE is the 4th-order minus the 5th-order weights.
	dpE = [7]float64{-71.0 / 57600, 0, 71.0 / 16695, -71.0 / 1920, 17253.0 / 339200, -22.0 / 525, 1.0 / 40}
)

const (
	rkSafety    = 0.9
	rkMinFactor = 0.2
	rkMaxFactor = 10
)

func rms(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s / float64(len(v)))
}

// SolveRK45 integrates dy/dt = F(t, y) from (t0, y0) to t1 (t1 < t0
// integrates backwards) with the adaptive explicit Runge–Kutta method of
// Dormand and Prince, order 5 with an embedded order-4 error estimate,
// local extrapolation and FSAL, and scipy's step-size control
// (h ← h·min(10, 0.9·err^(−1/5)) after an accepted step, never growing
// right after a rejection, h ← h·max(0.2, 0.9·err^(−1/5)) after a rejected
// one). y0 is not modified.
func SolveRK45(f ODEFunc, t0, t1 float64, y0 []float64, o RK45Options) (*RK45Result, error) {
	if o.RTol <= 0 {
		o.RTol = 1e-5
	}
	if o.ATol <= 0 {
		o.ATol = 1e-5
	}
	if o.MaxNFE <= 0 {
		o.MaxNFE = 100000
	}
	if o.MaxStep <= 0 {
		o.MaxStep = math.Inf(1)
	}
	n := len(y0)
	res := &RK45Result{Y: append([]float64(nil), y0...)}
	if n == 0 || t0 == t1 {
		return res, nil
	}
	dir := 1.0
	if t1 < t0 {
		dir = -1
	}
	eval := func(t float64, y, dy []float64) error {
		if res.NFE >= o.MaxNFE {
			return fmt.Errorf("sde: RK45: more than %d function evaluations (t = %g)", o.MaxNFE, t)
		}
		res.NFE++
		if err := f(t, y, dy); err != nil {
			return err
		}
		for _, v := range dy {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("sde: RK45: non-finite derivative at t = %g", t)
			}
		}
		return nil
	}
	y := res.Y
	k := make([][]float64, 7)
	for i := range k {
		k[i] = make([]float64, n)
	}
	if err := eval(t0, y, k[0]); err != nil {
		return nil, err
	}
	ynew := make([]float64, n)
	tmp := make([]float64, n)

	h := o.FirstStep
	if h <= 0 {
		// scipy's select_initial_step (Hairer, Nørsett & Wanner, II.4).
		for i := range tmp {
			tmp[i] = y[i] / (o.ATol + math.Abs(y[i])*o.RTol)
		}
		d0 := rms(tmp)
		for i := range tmp {
			tmp[i] = k[0][i] / (o.ATol + math.Abs(y[i])*o.RTol)
		}
		d1 := rms(tmp)
		h0 := 1e-6
		if d0 >= 1e-5 && d1 >= 1e-5 {
			h0 = 0.01 * d0 / d1
		}
		h0 = math.Min(h0, math.Abs(t1-t0))
		for i := range ynew {
			ynew[i] = y[i] + h0*dir*k[0][i]
		}
		if err := eval(t0+h0*dir, ynew, k[1]); err != nil {
			return nil, err
		}
		for i := range tmp {
			tmp[i] = (k[1][i] - k[0][i]) / (o.ATol + math.Abs(y[i])*o.RTol)
		}
		d2 := rms(tmp) / h0
		var h1 float64
		if d1 <= 1e-15 && d2 <= 1e-15 {
			h1 = math.Max(1e-6, h0*1e-3)
		} else {
			h1 = math.Pow(0.01/math.Max(d1, d2), 1.0/5)
		}
		h = math.Min(100*h0, h1)
	}
	h = math.Min(h, o.MaxStep)

	t := t0
	errv := make([]float64, n)
	for dir*(t1-t) > 0 {
		minStep := 10 * math.Abs(math.Nextafter(t, dir*math.Inf(1))-t)
		h = math.Max(h, minStep)
		rejected := false
		for {
			if h > o.MaxStep {
				h = o.MaxStep
			}
			if h < minStep {
				return nil, fmt.Errorf("sde: RK45: step size %g too small at t = %g", h, t)
			}
			hs := h * dir
			tn := t + hs
			if dir*(tn-t1) > 0 {
				tn = t1
			}
			hs = tn - t
			habs := math.Abs(hs)
			for s := 1; s < 7; s++ {
				for i := range tmp {
					var acc float64
					for j := 0; j < s; j++ {
						acc += dpA[s][j] * k[j][i]
					}
					tmp[i] = y[i] + hs*acc
				}
				if s == 6 {
					copy(ynew, tmp)
				}
				if err := eval(t+dpC[s]*hs, tmp, k[s]); err != nil {
					return nil, err
				}
			}
			for i := range errv {
				var e float64
				for j := 0; j < 7; j++ {
					e += dpE[j] * k[j][i]
				}
				scale := o.ATol + math.Max(math.Abs(y[i]), math.Abs(ynew[i]))*o.RTol
				errv[i] = hs * e / scale
			}
			en := rms(errv)
			if en < 1 {
				factor := float64(rkMaxFactor)
				if en > 0 {
					factor = math.Min(rkMaxFactor, rkSafety*math.Pow(en, -1.0/5))
				}
				if rejected {
					factor = math.Min(1, factor)
				}
				h = habs * factor
				t = tn
				copy(y, ynew)
				k[0], k[6] = k[6], k[0] // FSAL: F(t_new, y_new) is the last stage
				res.Accepted++
				if o.OnStep != nil {
					o.OnStep(t, y)
				}
				break
			}
			if math.IsNaN(en) {
				return nil, errors.New("sde: RK45: NaN error estimate")
			}
			h = habs * math.Max(rkMinFactor, rkSafety*math.Pow(en, -1.0/5))
			rejected = true
			res.Rejected++
		}
	}
	return res, nil
}
