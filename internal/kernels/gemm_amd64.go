//go:build amd64 && !noasm

package kernels

import "golang.org/x/sys/cpu"

// gemmAsmBuild reports whether this build has assembly kernels.
const gemmAsmBuild = true

// archKernel picks the best assembly kernels the CPU supports, or returns nil.
// An AVX-512 implementation would be tested for first here.
func archKernel() *gemmImpl {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		return &gemmImpl{name: "avx2-fma", kernel: sgemmKernelAVX2, kernel4: sgemmKernel4AVX2, peak: peakFMAAVX2, transpose8: transpose8AVX2, copy16: copy16AVX2, dot: sgemmDotAVX2}
	}
	return nil
}

// sgemmKernelAVX2 is the 6×16 AVX2+FMA micro-kernel (see microKernel).
//
//go:noescape
func sgemmKernelAVX2(k int, a *float32, rsa, csa int, b *float32, rsb int, c *float32, ldc int, alpha, beta float32, pf *float32)

// sgemmKernel4AVX2 is sgemmKernelAVX2 for the first 4 rows of the tile only.
//
//go:noescape
func sgemmKernel4AVX2(k int, a *float32, rsa, csa int, b *float32, rsb int, c *float32, ldc int, alpha, beta float32, pf *float32)

// peakFMAAVX2 runs n iterations of 12 independent VFMADD231PS on ymm
// registers (192 flops per iteration).
//
//go:noescape
func peakFMAAVX2(n int)

// transpose8AVX2 transposes nblk 8-column blocks of rows (6 or 8) rows; see
// gemm_amd64.s.
//
//go:noescape
func transpose8AVX2(dst *float32, dstride int, src *float32, sstride int, rows int, nblk int)

// copy16AVX2 copies n rows of 16 floats (source row stride sstride bytes)
// to consecutive rows at dst.
//
//go:noescape
func copy16AVX2(dst *float32, src *float32, sstride int, n int)

// sgemmDotAVX2 computes a 3×4 tile of C = alpha*A*B^T + beta*C from rows
// contiguous along k (k = 8*k8); see gemm_amd64.s.
//
//go:noescape
func sgemmDotAVX2(k8 int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)
