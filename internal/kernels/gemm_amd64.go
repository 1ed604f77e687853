//go:build amd64 && !noasm

package kernels

import "golang.org/x/sys/cpu"

// gemmAsmBuild reports whether this build has assembly kernels.
const gemmAsmBuild = true

// archKernel picks the best assembly micro-kernel the CPU supports. An
// AVX-512 kernel (16 or 32 columns per tile) would be tested first here.
func archKernel() (microKernel, string, func(int)) {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		return sgemmKernelAVX2, "avx2-fma", peakFMAAVX2
	}
	return nil, "", nil
}

// sgemmKernelAVX2 is the 6×16 AVX2+FMA micro-kernel (see microKernel).
//
//go:noescape
func sgemmKernelAVX2(k int, a *float32, rsa, csa int, b *float32, rsb int, c *float32, ldc int, alpha, beta float32, pf *float32)

// peakFMAAVX2 runs n iterations of 12 independent VFMADD231PS on ymm
// registers (192 flops per iteration).
//
//go:noescape
func peakFMAAVX2(n int)
