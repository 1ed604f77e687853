//go:build amd64 && !noasm

package kernels

import "golang.org/x/sys/cpu"

// vecArch reports whether the CPU runs the AVX2+FMA element-wise kernels of
// norm_amd64.s (GroupNorm rows, SiLU).
func vecArch() bool { return cpu.X86.HasAVX2 && cpu.X86.HasFMA }

// The kernels below each process one row of n >= 0 float32 elements; see
// the pure-Go row functions in norm.go and act.go for the arithmetic. The
// exponential is a Cephes-style polynomial (about 1 ulp), so results with
// SiLU differ from the pure-Go path in the last bits.

// gnStatsAVX2 returns the float64 sum and sum of squares of x[:n].
//
//go:noescape
func gnStatsAVX2(x *float32, n int) (s, q float64)

// gnAffineAVX2 sets y[j] = (x[j]-m)*scale + shift for j < n.
//
//go:noescape
func gnAffineAVX2(y, x *float32, n int, m, scale, shift float32)

// gnAffineSiLUAVX2 sets y[j] = silu((x[j]-m)*scale + shift) for j < n.
//
//go:noescape
func gnAffineSiLUAVX2(y, x *float32, n int, m, scale, shift float32)

// gnBwdSiLURowAVX2 sets dx[j] = g = dy[j]*silu'((x[j]-m)*scale + shift) and
// returns the float64 sums of g and of g*((x[j]-m)*r).
//
//go:noescape
func gnBwdSiLURowAVX2(dx, dy, x *float32, n int, m, r, scale, shift float32) (sg, sgx float64)

// gnBwdRowAVX2 sets dx[j] = g = dy[j] and returns the float64 sums of g and
// of g*((x[j]-m)*r).
//
//go:noescape
func gnBwdRowAVX2(dx, dy, x *float32, n int, m, r float32) (sg, sgx float64)

// gnBwdApplyAVX2 sets dx[j] = ca*dx[j] + cb*(x[j]-m) + cc for j < n.
//
//go:noescape
func gnBwdApplyAVX2(dx, x *float32, n int, m, ca, cb, cc float32)

// siluAVX2 sets y[j] = x[j] / (1 + exp(-x[j])) for j < n.
//
//go:noescape
func siluAVX2(y, x *float32, n int)

// siluBackAVX2 sets dx[j] = dy[j] * silu'(x[j]) for j < n.
//
//go:noescape
func siluBackAVX2(dx, dy, x *float32, n int)
