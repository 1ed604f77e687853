//go:build !amd64 || noasm

package kernels

// archKernel reports no assembly kernel: the generic one is used.
func archKernel() (microKernel, string, func(int)) { return nil, "", nil }

// gemmAsmBuild reports whether this build has assembly kernels.
const gemmAsmBuild = false
