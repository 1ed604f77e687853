//go:build amd64 && !noasm

#include "textflag.h"

// AVX2+FMA kernels for GroupNorm and SiLU: each handles one row of n
// float32 elements, 8 per step, with a masked step for the last n%8.

// EXPNEG sets e = exp(-clamp(u)), where -u is clamped to [expLo, expHi] as
// clampExp does (NaN comes out as some finite value: every caller multiplies
// or divides u by the result, so NaN still propagates). Cephes expf: n =
// round(t*log2e), r = t - n*ln2 (ln2 in two parts), e**r by a degree-7
// polynomial, then 2**n added to the exponent bits; about 1 ulp. Clobbers
// t and n. u is kept.
#define EXPNEG(u, e, t, n) \
	VXORPS       normc_signbit<>(SB), u, t \
	VMAXPS       normc_explo<>(SB), t, t   \
	VMINPS       normc_exphi<>(SB), t, t   \
	VMULPS       normc_log2e<>(SB), t, e   \
	VCVTPS2DQ    e, n                      \
	VCVTDQ2PS    n, e                      \
	VFNMADD231PS normc_expc1<>(SB), e, t   \
	VFNMADD231PS normc_expc2<>(SB), e, t   \
	VMOVUPS      normc_expp0<>(SB), e      \
	VFMADD213PS  normc_expp1<>(SB), t, e   \
	VFMADD213PS  normc_expp2<>(SB), t, e   \
	VFMADD213PS  normc_expp3<>(SB), t, e   \
	VFMADD213PS  normc_expp4<>(SB), t, e   \
	VFMADD213PS  normc_expp5<>(SB), t, e   \
	VFMADD213PS  normc_one<>(SB), t, e     \
	VFMADD213PS  normc_one<>(SB), t, e     \
	VPSLLD       $23, n, n                 \
	VPADDD       n, e, e

// TAILMASK sets CX = n - AX (1..7 remaining elements) and mask = the
// matching lane mask, for VMASKMOVPS.
#define TAILMASK(mask) \
	MOVQ    $8, R9                  \
	ADDQ    AX, R9                  \
	SUBQ    CX, R9                  \
	LEAQ    normc_mask<>(SB), R10   \
	VMOVUPS (R10)(R9*4), mask

// ACC adds the 8 float32 of yv (xv is its low half) to the float64
// accumulators lo and hi; clobbers yv and yt.
#define ACC(yv, xv, lo, hi, yt, xt) \
	VCVTPS2PD    xv, yt     \
	VADDPD       yt, lo, lo \
	VEXTRACTF128 $1, yv, xt \
	VCVTPS2PD    xt, yt     \
	VADDPD       yt, hi, hi

// HSUM sets xa's low double to the sum of the 4 doubles of ya; clobbers xt.
#define HSUM(ya, xa, xt) \
	VEXTRACTF128 $1, ya, xt \
	VADDPD       xt, xa, xa \
	VUNPCKHPD    xa, xa, xt \
	VADDSD       xt, xa, xa

// func gnStatsAVX2(x *float32, n int) (s, q float64)
TEXT ·gnStatsAVX2(SB), NOSPLIT, $0-32
	MOVQ   x+0(FP), SI
	MOVQ   n+8(FP), CX
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	VXORPD Y2, Y2, Y2
	VXORPD Y3, Y3, Y3
	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7
	XORQ   AX, AX
	MOVQ   CX, BX
	ANDQ   $-16, BX

stloop16:
	CMPQ        AX, BX
	JGE         st8
	VCVTPS2PD   (SI)(AX*4), Y8
	VCVTPS2PD   16(SI)(AX*4), Y9
	VCVTPS2PD   32(SI)(AX*4), Y10
	VCVTPS2PD   48(SI)(AX*4), Y11
	VADDPD      Y8, Y0, Y0
	VADDPD      Y9, Y1, Y1
	VADDPD      Y10, Y2, Y2
	VADDPD      Y11, Y3, Y3
	VFMADD231PD Y8, Y8, Y4
	VFMADD231PD Y9, Y9, Y5
	VFMADD231PD Y10, Y10, Y6
	VFMADD231PD Y11, Y11, Y7
	ADDQ        $16, AX
	JMP         stloop16

st8:
	MOVQ        CX, BX
	ANDQ        $-8, BX
	CMPQ        AX, BX
	JGE         sttail
	VCVTPS2PD   (SI)(AX*4), Y8
	VCVTPS2PD   16(SI)(AX*4), Y9
	VADDPD      Y8, Y0, Y0
	VADDPD      Y9, Y1, Y1
	VFMADD231PD Y8, Y8, Y4
	VFMADD231PD Y9, Y9, Y5
	ADDQ        $8, AX

sttail:
	CMPQ         AX, CX
	JGE          stdone
	TAILMASK(Y12)
	VMASKMOVPS   (SI)(AX*4), Y12, Y13
	VCVTPS2PD    X13, Y8
	VEXTRACTF128 $1, Y13, X13
	VCVTPS2PD    X13, Y9
	VADDPD       Y8, Y2, Y2
	VADDPD       Y9, Y3, Y3
	VFMADD231PD  Y8, Y8, Y6
	VFMADD231PD  Y9, Y9, Y7

stdone:
	VADDPD Y1, Y0, Y0
	VADDPD Y3, Y2, Y2
	VADDPD Y2, Y0, Y0
	VADDPD Y5, Y4, Y4
	VADDPD Y7, Y6, Y6
	VADDPD Y6, Y4, Y4
	HSUM(Y0, X0, X1)
	HSUM(Y4, X4, X5)
	VMOVSD X0, s+16(FP)
	VMOVSD X4, q+24(FP)
	VZEROUPPER
	RET

// AFFINE: Y0 = (Y0 - m)*scale + shift (Y15, Y14, Y13), rounded as in Go.
#define AFFINE \
	VSUBPS Y15, Y0, Y0 \
	VMULPS Y14, Y0, Y0 \
	VADDPS Y13, Y0, Y0

// SILU0: Y0 = Y0 / (1 + exp(-Y0)); Y11 = 1.
#define SILU0 \
	EXPNEG(Y0, Y1, Y2, Y3) \
	VADDPS Y11, Y1, Y1     \
	VDIVPS Y1, Y0, Y0

// func gnAffineAVX2(y, x *float32, n int, m, scale, shift float32)
TEXT ·gnAffineAVX2(SB), NOSPLIT, $0-36
	MOVQ         y+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS m+24(FP), Y15
	VBROADCASTSS scale+28(FP), Y14
	VBROADCASTSS shift+32(FP), Y13
	XORQ         AX, AX
	MOVQ         CX, BX
	ANDQ         $-8, BX

afloop:
	CMPQ    AX, BX
	JGE     aftail
	VMOVUPS (SI)(AX*4), Y0
	AFFINE
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ    $8, AX
	JMP     afloop

aftail:
	CMPQ       AX, CX
	JGE        afdone
	TAILMASK(Y12)
	VMASKMOVPS (SI)(AX*4), Y12, Y0
	AFFINE
	VMASKMOVPS Y0, Y12, (DI)(AX*4)

afdone:
	VZEROUPPER
	RET

// func gnAffineSiLUAVX2(y, x *float32, n int, m, scale, shift float32)
TEXT ·gnAffineSiLUAVX2(SB), NOSPLIT, $0-36
	MOVQ         y+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS m+24(FP), Y15
	VBROADCASTSS scale+28(FP), Y14
	VBROADCASTSS shift+32(FP), Y13
	VMOVUPS      normc_one<>(SB), Y11
	XORQ         AX, AX
	MOVQ         CX, BX
	ANDQ         $-8, BX

asloop:
	CMPQ    AX, BX
	JGE     astail
	VMOVUPS (SI)(AX*4), Y0
	AFFINE
	SILU0
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ    $8, AX
	JMP     asloop

astail:
	CMPQ       AX, CX
	JGE        asdone
	TAILMASK(Y12)
	VMASKMOVPS (SI)(AX*4), Y12, Y0
	AFFINE
	SILU0
	VMASKMOVPS Y0, Y12, (DI)(AX*4)

asdone:
	VZEROUPPER
	RET

// func siluAVX2(y, x *float32, n int)
TEXT ·siluAVX2(SB), NOSPLIT, $0-24
	MOVQ    y+0(FP), DI
	MOVQ    x+8(FP), SI
	MOVQ    n+16(FP), CX
	VMOVUPS normc_one<>(SB), Y11
	XORQ    AX, AX
	MOVQ    CX, BX
	ANDQ    $-8, BX

siloop:
	CMPQ    AX, BX
	JGE     sitail
	VMOVUPS (SI)(AX*4), Y0
	SILU0
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ    $8, AX
	JMP     siloop

sitail:
	CMPQ       AX, CX
	JGE        sidone
	TAILMASK(Y12)
	VMASKMOVPS (SI)(AX*4), Y12, Y0
	SILU0
	VMASKMOVPS Y0, Y12, (DI)(AX*4)

sidone:
	VZEROUPPER
	RET

// DSILU: Y2 = Y5 * silu'(Y1) = dy * s*(1 + u*(1-s)), s = 1/(1+exp(-u));
// Y11 = 1; clobbers Y3, Y4.
#define DSILU \
	EXPNEG(Y1, Y2, Y3, Y4)  \
	VADDPS      Y11, Y2, Y2 \
	VDIVPS      Y2, Y11, Y2 \
	VSUBPS      Y2, Y11, Y3 \
	VFMADD213PS Y11, Y1, Y3 \
	VMULPS      Y3, Y2, Y2  \
	VMULPS      Y5, Y2, Y2

// func siluBackAVX2(dx, dy, x *float32, n int)
TEXT ·siluBackAVX2(SB), NOSPLIT, $0-32
	MOVQ    dx+0(FP), DI
	MOVQ    dy+8(FP), DX
	MOVQ    x+16(FP), SI
	MOVQ    n+24(FP), CX
	VMOVUPS normc_one<>(SB), Y11
	XORQ    AX, AX
	MOVQ    CX, BX
	ANDQ    $-8, BX

sbloop:
	CMPQ    AX, BX
	JGE     sbtail
	VMOVUPS (SI)(AX*4), Y1
	VMOVUPS (DX)(AX*4), Y5
	DSILU
	VMOVUPS Y2, (DI)(AX*4)
	ADDQ    $8, AX
	JMP     sbloop

sbtail:
	CMPQ       AX, CX
	JGE        sbdone
	TAILMASK(Y12)
	VMASKMOVPS (SI)(AX*4), Y12, Y1
	VMASKMOVPS (DX)(AX*4), Y12, Y5
	DSILU
	VMASKMOVPS Y2, Y12, (DI)(AX*4)

sbdone:
	VZEROUPPER
	RET

// GNBWD1: from Y0 = x and Y5 = dy, with Y15 = m, Y14 = scale, Y13 = shift,
// Y12 = rstd: Y2 = g = dy*silu'((x-m)*scale + shift) and Y0 = g*(x-m)*rstd.
#define GNBWD1 \
	VSUBPS Y15, Y0, Y0 \
	VMULPS Y14, Y0, Y1 \
	VADDPS Y13, Y1, Y1 \
	DSILU              \
	VMULPS Y12, Y0, Y0 \
	VMULPS Y2, Y0, Y0

// func gnBwdSiLURowAVX2(dx, dy, x *float32, n int, m, r, scale, shift float32) (sg, sgx float64)
TEXT ·gnBwdSiLURowAVX2(SB), NOSPLIT, $0-64
	MOVQ         dx+0(FP), DI
	MOVQ         dy+8(FP), DX
	MOVQ         x+16(FP), SI
	MOVQ         n+24(FP), CX
	VBROADCASTSS m+32(FP), Y15
	VBROADCASTSS r+36(FP), Y12
	VBROADCASTSS scale+40(FP), Y14
	VBROADCASTSS shift+44(FP), Y13
	VMOVUPS      normc_one<>(SB), Y11
	VXORPD       Y6, Y6, Y6
	VXORPD       Y7, Y7, Y7
	VXORPD       Y8, Y8, Y8
	VXORPD       Y9, Y9, Y9
	XORQ         AX, AX
	MOVQ         CX, BX
	ANDQ         $-8, BX

b1loop:
	CMPQ    AX, BX
	JGE     b1tail
	VMOVUPS (SI)(AX*4), Y0
	VMOVUPS (DX)(AX*4), Y5
	GNBWD1
	VMOVUPS Y2, (DI)(AX*4)
	ACC(Y2, X2, Y6, Y7, Y3, X3)
	ACC(Y0, X0, Y8, Y9, Y3, X3)
	ADDQ    $8, AX
	JMP     b1loop

b1tail:
	CMPQ       AX, CX
	JGE        b1done
	TAILMASK(Y10)
	VMASKMOVPS (SI)(AX*4), Y10, Y0
	VMASKMOVPS (DX)(AX*4), Y10, Y5
	GNBWD1
	VANDPS     Y10, Y2, Y2
	VANDPS     Y10, Y0, Y0
	VMASKMOVPS Y2, Y10, (DI)(AX*4)
	ACC(Y2, X2, Y6, Y7, Y3, X3)
	ACC(Y0, X0, Y8, Y9, Y3, X3)

b1done:
	VADDPD Y7, Y6, Y6
	VADDPD Y9, Y8, Y8
	HSUM(Y6, X6, X7)
	HSUM(Y8, X8, X9)
	VMOVSD X6, sg+48(FP)
	VMOVSD X8, sgx+56(FP)
	VZEROUPPER
	RET

// func gnBwdRowAVX2(dx, dy, x *float32, n int, m, r float32) (sg, sgx float64)
TEXT ·gnBwdRowAVX2(SB), NOSPLIT, $0-56
	MOVQ         dx+0(FP), DI
	MOVQ         dy+8(FP), DX
	MOVQ         x+16(FP), SI
	MOVQ         n+24(FP), CX
	VBROADCASTSS m+32(FP), Y15
	VBROADCASTSS r+36(FP), Y12
	VXORPD       Y6, Y6, Y6
	VXORPD       Y7, Y7, Y7
	VXORPD       Y8, Y8, Y8
	VXORPD       Y9, Y9, Y9
	XORQ         AX, AX
	MOVQ         CX, BX
	ANDQ         $-8, BX

b0loop:
	CMPQ    AX, BX
	JGE     b0tail
	VMOVUPS (SI)(AX*4), Y0
	VMOVUPS (DX)(AX*4), Y2
	VSUBPS  Y15, Y0, Y0
	VMULPS  Y12, Y0, Y0
	VMULPS  Y2, Y0, Y0
	VMOVUPS Y2, (DI)(AX*4)
	ACC(Y2, X2, Y6, Y7, Y3, X3)
	ACC(Y0, X0, Y8, Y9, Y3, X3)
	ADDQ    $8, AX
	JMP     b0loop

b0tail:
	CMPQ       AX, CX
	JGE        b0done
	TAILMASK(Y10)
	VMASKMOVPS (SI)(AX*4), Y10, Y0
	VMASKMOVPS (DX)(AX*4), Y10, Y2
	VSUBPS     Y15, Y0, Y0
	VMULPS     Y12, Y0, Y0
	VMULPS     Y2, Y0, Y0
	VANDPS     Y10, Y0, Y0
	VMASKMOVPS Y2, Y10, (DI)(AX*4)
	ACC(Y2, X2, Y6, Y7, Y3, X3)
	ACC(Y0, X0, Y8, Y9, Y3, X3)

b0done:
	VADDPD Y7, Y6, Y6
	VADDPD Y9, Y8, Y8
	HSUM(Y6, X6, X7)
	HSUM(Y8, X8, X9)
	VMOVSD X6, sg+40(FP)
	VMOVSD X8, sgx+48(FP)
	VZEROUPPER
	RET

// BWD2: Y0 = ca*Y0 + cb*(Y1 - m) + cc (Y14, Y13, Y12, Y15), rounded as in Go.
#define BWD2 \
	VMULPS Y14, Y0, Y0 \
	VSUBPS Y15, Y1, Y1 \
	VMULPS Y13, Y1, Y1 \
	VADDPS Y1, Y0, Y0  \
	VADDPS Y12, Y0, Y0

// func gnBwdApplyAVX2(dx, x *float32, n int, m, ca, cb, cc float32)
TEXT ·gnBwdApplyAVX2(SB), NOSPLIT, $0-40
	MOVQ         dx+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS m+24(FP), Y15
	VBROADCASTSS ca+28(FP), Y14
	VBROADCASTSS cb+32(FP), Y13
	VBROADCASTSS cc+36(FP), Y12
	XORQ         AX, AX
	MOVQ         CX, BX
	ANDQ         $-8, BX

b2loop:
	CMPQ    AX, BX
	JGE     b2tail
	VMOVUPS (DI)(AX*4), Y0
	VMOVUPS (SI)(AX*4), Y1
	BWD2
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ    $8, AX
	JMP     b2loop

b2tail:
	CMPQ       AX, CX
	JGE        b2done
	TAILMASK(Y10)
	VMASKMOVPS (DI)(AX*4), Y10, Y0
	VMASKMOVPS (SI)(AX*4), Y10, Y1
	BWD2
	VMASKMOVPS Y0, Y10, (DI)(AX*4)

b2done:
	VZEROUPPER
	RET

DATA normc_signbit<>+0(SB)/8, $0x8000000080000000
DATA normc_signbit<>+8(SB)/8, $0x8000000080000000
DATA normc_signbit<>+16(SB)/8, $0x8000000080000000
DATA normc_signbit<>+24(SB)/8, $0x8000000080000000
GLOBL normc_signbit<>(SB), RODATA|NOPTR, $32

DATA normc_explo<>+0(SB)/8, $0xc2ad0000c2ad0000
DATA normc_explo<>+8(SB)/8, $0xc2ad0000c2ad0000
DATA normc_explo<>+16(SB)/8, $0xc2ad0000c2ad0000
DATA normc_explo<>+24(SB)/8, $0xc2ad0000c2ad0000
GLOBL normc_explo<>(SB), RODATA|NOPTR, $32

DATA normc_exphi<>+0(SB)/8, $0x42b1666642b16666
DATA normc_exphi<>+8(SB)/8, $0x42b1666642b16666
DATA normc_exphi<>+16(SB)/8, $0x42b1666642b16666
DATA normc_exphi<>+24(SB)/8, $0x42b1666642b16666
GLOBL normc_exphi<>(SB), RODATA|NOPTR, $32

DATA normc_log2e<>+0(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA normc_log2e<>+8(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA normc_log2e<>+16(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA normc_log2e<>+24(SB)/8, $0x3fb8aa3b3fb8aa3b
GLOBL normc_log2e<>(SB), RODATA|NOPTR, $32

DATA normc_expc1<>+0(SB)/8, $0x3f3180003f318000
DATA normc_expc1<>+8(SB)/8, $0x3f3180003f318000
DATA normc_expc1<>+16(SB)/8, $0x3f3180003f318000
DATA normc_expc1<>+24(SB)/8, $0x3f3180003f318000
GLOBL normc_expc1<>(SB), RODATA|NOPTR, $32

DATA normc_expc2<>+0(SB)/8, $0xb95e8083b95e8083
DATA normc_expc2<>+8(SB)/8, $0xb95e8083b95e8083
DATA normc_expc2<>+16(SB)/8, $0xb95e8083b95e8083
DATA normc_expc2<>+24(SB)/8, $0xb95e8083b95e8083
GLOBL normc_expc2<>(SB), RODATA|NOPTR, $32

DATA normc_expp0<>+0(SB)/8, $0x3950696739506967
DATA normc_expp0<>+8(SB)/8, $0x3950696739506967
DATA normc_expp0<>+16(SB)/8, $0x3950696739506967
DATA normc_expp0<>+24(SB)/8, $0x3950696739506967
GLOBL normc_expp0<>(SB), RODATA|NOPTR, $32

DATA normc_expp1<>+0(SB)/8, $0x3ab743ce3ab743ce
DATA normc_expp1<>+8(SB)/8, $0x3ab743ce3ab743ce
DATA normc_expp1<>+16(SB)/8, $0x3ab743ce3ab743ce
DATA normc_expp1<>+24(SB)/8, $0x3ab743ce3ab743ce
GLOBL normc_expp1<>(SB), RODATA|NOPTR, $32

DATA normc_expp2<>+0(SB)/8, $0x3c0889083c088908
DATA normc_expp2<>+8(SB)/8, $0x3c0889083c088908
DATA normc_expp2<>+16(SB)/8, $0x3c0889083c088908
DATA normc_expp2<>+24(SB)/8, $0x3c0889083c088908
GLOBL normc_expp2<>(SB), RODATA|NOPTR, $32

DATA normc_expp3<>+0(SB)/8, $0x3d2aa9c13d2aa9c1
DATA normc_expp3<>+8(SB)/8, $0x3d2aa9c13d2aa9c1
DATA normc_expp3<>+16(SB)/8, $0x3d2aa9c13d2aa9c1
DATA normc_expp3<>+24(SB)/8, $0x3d2aa9c13d2aa9c1
GLOBL normc_expp3<>(SB), RODATA|NOPTR, $32

DATA normc_expp4<>+0(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA normc_expp4<>+8(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA normc_expp4<>+16(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA normc_expp4<>+24(SB)/8, $0x3e2aaaaa3e2aaaaa
GLOBL normc_expp4<>(SB), RODATA|NOPTR, $32

DATA normc_expp5<>+0(SB)/8, $0x3f0000003f000000
DATA normc_expp5<>+8(SB)/8, $0x3f0000003f000000
DATA normc_expp5<>+16(SB)/8, $0x3f0000003f000000
DATA normc_expp5<>+24(SB)/8, $0x3f0000003f000000
GLOBL normc_expp5<>(SB), RODATA|NOPTR, $32

DATA normc_one<>+0(SB)/8, $0x3f8000003f800000
DATA normc_one<>+8(SB)/8, $0x3f8000003f800000
DATA normc_one<>+16(SB)/8, $0x3f8000003f800000
DATA normc_one<>+24(SB)/8, $0x3f8000003f800000
GLOBL normc_one<>(SB), RODATA|NOPTR, $32

DATA normc_mask<>+0(SB)/8, $0xffffffffffffffff
DATA normc_mask<>+8(SB)/8, $0xffffffffffffffff
DATA normc_mask<>+16(SB)/8, $0xffffffffffffffff
DATA normc_mask<>+24(SB)/8, $0xffffffffffffffff
DATA normc_mask<>+32(SB)/8, $0x0000000000000000
DATA normc_mask<>+40(SB)/8, $0x0000000000000000
DATA normc_mask<>+48(SB)/8, $0x0000000000000000
DATA normc_mask<>+56(SB)/8, $0x0000000000000000
GLOBL normc_mask<>(SB), RODATA|NOPTR, $64
