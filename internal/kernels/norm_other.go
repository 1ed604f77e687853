//go:build !amd64 || noasm

package kernels

// vecArch reports no assembly element-wise kernels: vecAsm is false and the
// functions below are never called.
func vecArch() bool { return false }

func gnStatsAVX2(x *float32, n int) (s, q float64)                   { panic("unreachable") }
func gnAffineAVX2(y, x *float32, n int, m, scale, shift float32)     { panic("unreachable") }
func gnAffineSiLUAVX2(y, x *float32, n int, m, scale, shift float32) { panic("unreachable") }
func gnBwdSiLURowAVX2(dx, dy, x *float32, n int, m, r, scale, shift float32) (sg, sgx float64) {
	panic("unreachable")
}
func gnBwdRowAVX2(dx, dy, x *float32, n int, m, r float32) (sg, sgx float64) { panic("unreachable") }
func gnBwdApplyAVX2(dx, x *float32, n int, m, ca, cb, cc float32)            { panic("unreachable") }
func siluAVX2(y, x *float32, n int)                                          { panic("unreachable") }
func siluBackAVX2(dx, dy, x *float32, n int)                                 { panic("unreachable") }
