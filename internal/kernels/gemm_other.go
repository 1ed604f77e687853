//go:build !amd64 || noasm

package kernels

// archKernel reports no assembly kernel: the generic one is used.
func archKernel() *gemmImpl { return nil }

// gemmAsmBuild reports whether this build has assembly kernels.
const gemmAsmBuild = false
