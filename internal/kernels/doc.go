// Package kernels holds the CPU compute kernels of diffuse: plain float32
// slices in, float32 slices out, no graph logic and no allocation in steady
// state (scratch comes from sync.Pools that are reused across calls).
//
// Layout conventions: matrices are row-major; images are NCHW. Every kernel
// documents the lengths it expects of its slices; callers (package tensor)
// check shapes before calling, so kernels may panic on a length mismatch.
//
// Large kernels split work with internal/parallel. On amd64 the GEMM
// micro-kernels and the GroupNorm/SiLU row kernels are written in Go
// assembly (AVX2+FMA), chosen at run time from the CPU's features (the
// dispatch has a slot for AVX-512 kernels, not written yet: no machine here
// has AVX-512 to test them on). The portable pure-Go path is used
// elsewhere, when the CPU lacks the features, or when forced with the build
// tag `noasm` or the environment variable DIFFUSE_NOASM=1.
package kernels
