//go:build amd64 && !noasm

#include "textflag.h"

// One k step of the 6x16 micro-kernel: the 16 floats of B at b0 and b1
// (b1 = b0+32), the six A values at (SI), (SI)+rsa, ..., (SI)+5*rsa (R9 = rsa,
// R10 = 3*rsa, R11 = 5*rsa); then SI advances by csa (R12).
#define STEP(b0, b1) \
	VMOVUPS      b0, Y12            \
	VMOVUPS      b1, Y13            \
	VBROADCASTSS (SI), Y14          \
	VBROADCASTSS (SI)(R9*1), Y15    \
	VFMADD231PS  Y12, Y14, Y0       \
	VFMADD231PS  Y13, Y14, Y1       \
	VFMADD231PS  Y12, Y15, Y2       \
	VFMADD231PS  Y13, Y15, Y3       \
	VBROADCASTSS (SI)(R9*2), Y14    \
	VBROADCASTSS (SI)(R10*1), Y15   \
	VFMADD231PS  Y12, Y14, Y4       \
	VFMADD231PS  Y13, Y14, Y5       \
	VFMADD231PS  Y12, Y15, Y6       \
	VFMADD231PS  Y13, Y15, Y7       \
	VBROADCASTSS (SI)(R9*4), Y14    \
	VBROADCASTSS (SI)(R11*1), Y15   \
	VFMADD231PS  Y12, Y14, Y8       \
	VFMADD231PS  Y13, Y14, Y9       \
	VFMADD231PS  Y12, Y15, Y10      \
	VFMADD231PS  Y13, Y15, Y11      \
	ADDQ         R12, SI

// C row update with beta: Cr = Ya + beta*Cr (Y15 = beta), then next row.
#define STOREBETA(ya, yb) \
	VFMADD231PS (DI), Y15, ya   \
	VFMADD231PS 32(DI), Y15, yb \
	VMOVUPS     ya, (DI)        \
	VMOVUPS     yb, 32(DI)      \
	ADDQ        R13, DI

#define STORE(ya, yb) \
	VMOVUPS ya, (DI)     \
	VMOVUPS yb, 32(DI)   \
	ADDQ    R13, DI

// func sgemmKernelAVX2(k int, a *float32, rsa, csa int, b *float32, rsb int, c *float32, ldc int, alpha, beta float32, pf *float32)
TEXT ·sgemmKernelAVX2(SB), NOSPLIT, $0-80
	MOVQ a+8(FP), SI
	MOVQ rsa+16(FP), R9
	MOVQ csa+24(FP), R12
	MOVQ b+32(FP), BX
	MOVQ rsb+40(FP), DX
	MOVQ c+48(FP), DI
	MOVQ ldc+56(FP), R13
	SHLQ $2, R13
	MOVQ pf+72(FP), R8
	LEAQ (R9)(R9*2), R10
	LEAQ (R9)(R9*4), R11
	LEAQ (DX)(DX*2), AX
	LEAQ (DX*4), R14

	// Prefetch the C tile (6 rows of 64 bytes, maybe unaligned).
	MOVQ       DI, R15
	PREFETCHT0 (R15)
	PREFETCHT0 60(R15)
	ADDQ       R13, R15
	PREFETCHT0 (R15)
	PREFETCHT0 60(R15)
	ADDQ       R13, R15
	PREFETCHT0 (R15)
	PREFETCHT0 60(R15)
	ADDQ       R13, R15
	PREFETCHT0 (R15)
	PREFETCHT0 60(R15)
	ADDQ       R13, R15
	PREFETCHT0 (R15)
	PREFETCHT0 60(R15)
	ADDQ       R13, R15
	PREFETCHT0 (R15)
	PREFETCHT0 60(R15)

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

	MOVQ k+0(FP), CX
	SHRQ $2, CX
	JZ   tail

loop4:
	PREFETCHT0 (R8)
	ADDQ       $64, R8
	STEP((BX), 32(BX))
	STEP((BX)(DX*1), 32(BX)(DX*1))
	STEP((BX)(DX*2), 32(BX)(DX*2))
	STEP((BX)(AX*1), 32(BX)(AX*1))
	ADDQ       R14, BX
	DECQ       CX
	JNZ        loop4

tail:
	MOVQ k+0(FP), CX
	ANDQ $3, CX
	JZ   done

loop1:
	STEP((BX), 32(BX))
	ADDQ DX, BX
	DECQ CX
	JNZ  loop1

done:
	VBROADCASTSS alpha+64(FP), Y14
	VMULPS       Y14, Y0, Y0
	VMULPS       Y14, Y1, Y1
	VMULPS       Y14, Y2, Y2
	VMULPS       Y14, Y3, Y3
	VMULPS       Y14, Y4, Y4
	VMULPS       Y14, Y5, Y5
	VMULPS       Y14, Y6, Y6
	VMULPS       Y14, Y7, Y7
	VMULPS       Y14, Y8, Y8
	VMULPS       Y14, Y9, Y9
	VMULPS       Y14, Y10, Y10
	VMULPS       Y14, Y11, Y11

	MOVL  beta+68(FP), AX
	TESTL $0x7fffffff, AX
	JZ    nobeta

	VBROADCASTSS beta+68(FP), Y15
	STOREBETA(Y0, Y1)
	STOREBETA(Y2, Y3)
	STOREBETA(Y4, Y5)
	STOREBETA(Y6, Y7)
	STOREBETA(Y8, Y9)
	STOREBETA(Y10, Y11)
	VZEROUPPER
	RET

nobeta:
	STORE(Y0, Y1)
	STORE(Y2, Y3)
	STORE(Y4, Y5)
	STORE(Y6, Y7)
	STORE(Y8, Y9)
	STORE(Y10, Y11)
	VZEROUPPER
	RET

// One k step of the 4-row kernel (see STEP).
#define STEP4(b0, b1) \
	VMOVUPS      b0, Y12            \
	VMOVUPS      b1, Y13            \
	VBROADCASTSS (SI), Y14          \
	VBROADCASTSS (SI)(R9*1), Y15    \
	VFMADD231PS  Y12, Y14, Y0       \
	VFMADD231PS  Y13, Y14, Y1       \
	VFMADD231PS  Y12, Y15, Y2       \
	VFMADD231PS  Y13, Y15, Y3       \
	VBROADCASTSS (SI)(R9*2), Y14    \
	VBROADCASTSS (SI)(R10*1), Y15   \
	VFMADD231PS  Y12, Y14, Y4       \
	VFMADD231PS  Y13, Y14, Y5       \
	VFMADD231PS  Y12, Y15, Y6       \
	VFMADD231PS  Y13, Y15, Y7       \
	ADDQ         R12, SI

// func sgemmKernel4AVX2(k int, a *float32, rsa, csa int, b *float32, rsb int, c *float32, ldc int, alpha, beta float32, pf *float32)
//
// Like sgemmKernelAVX2 for the first 4 rows only (rows 4 and 5 of the tile are
// neither read nor written): for the last row panel when M%6 is 1..4.
TEXT ·sgemmKernel4AVX2(SB), NOSPLIT, $0-80
	MOVQ a+8(FP), SI
	MOVQ rsa+16(FP), R9
	MOVQ csa+24(FP), R12
	MOVQ b+32(FP), BX
	MOVQ rsb+40(FP), DX
	MOVQ c+48(FP), DI
	MOVQ ldc+56(FP), R13
	SHLQ $2, R13
	MOVQ pf+72(FP), R8
	LEAQ (R9)(R9*2), R10
	LEAQ (R9)(R9*4), R11
	LEAQ (DX)(DX*2), AX
	LEAQ (DX*4), R14

	// Prefetch the C tile (6 rows of 64 bytes, maybe unaligned).
	MOVQ       DI, R15
	PREFETCHT0 (R15)
	PREFETCHT0 60(R15)
	ADDQ       R13, R15
	PREFETCHT0 (R15)
	PREFETCHT0 60(R15)
	ADDQ       R13, R15
	PREFETCHT0 (R15)
	PREFETCHT0 60(R15)
	ADDQ       R13, R15
	PREFETCHT0 (R15)
	PREFETCHT0 60(R15)

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

	MOVQ k+0(FP), CX
	SHRQ $2, CX
	JZ   k4tail

k4loop:
	PREFETCHT0 (R8)
	ADDQ       $64, R8
	STEP4((BX), 32(BX))
	STEP4((BX)(DX*1), 32(BX)(DX*1))
	STEP4((BX)(DX*2), 32(BX)(DX*2))
	STEP4((BX)(AX*1), 32(BX)(AX*1))
	ADDQ       R14, BX
	DECQ       CX
	JNZ        k4loop

k4tail:
	MOVQ k+0(FP), CX
	ANDQ $3, CX
	JZ   k4done

k4loop1:
	STEP4((BX), 32(BX))
	ADDQ DX, BX
	DECQ CX
	JNZ  k4loop1

k4done:
	VBROADCASTSS alpha+64(FP), Y14
	VMULPS       Y14, Y0, Y0
	VMULPS       Y14, Y1, Y1
	VMULPS       Y14, Y2, Y2
	VMULPS       Y14, Y3, Y3
	VMULPS       Y14, Y4, Y4
	VMULPS       Y14, Y5, Y5
	VMULPS       Y14, Y6, Y6
	VMULPS       Y14, Y7, Y7

	MOVL  beta+68(FP), AX
	TESTL $0x7fffffff, AX
	JZ    k4nobeta

	VBROADCASTSS beta+68(FP), Y15
	STOREBETA(Y0, Y1)
	STOREBETA(Y2, Y3)
	STOREBETA(Y4, Y5)
	STOREBETA(Y6, Y7)
	VZEROUPPER
	RET

k4nobeta:
	STORE(Y0, Y1)
	STORE(Y2, Y3)
	STORE(Y4, Y5)
	STORE(Y6, Y7)
	VZEROUPPER
	RET

// func peakFMAAVX2(n int)
TEXT ·peakFMAAVX2(SB), NOSPLIT, $0-8
	MOVQ   n+0(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	TESTQ  CX, CX
	JZ     peakdone

peakloop:
	VFMADD231PS Y12, Y13, Y0
	VFMADD231PS Y12, Y13, Y1
	VFMADD231PS Y12, Y13, Y2
	VFMADD231PS Y12, Y13, Y3
	VFMADD231PS Y12, Y13, Y4
	VFMADD231PS Y12, Y13, Y5
	VFMADD231PS Y12, Y13, Y6
	VFMADD231PS Y12, Y13, Y7
	VFMADD231PS Y12, Y13, Y8
	VFMADD231PS Y12, Y13, Y9
	VFMADD231PS Y12, Y13, Y10
	VFMADD231PS Y12, Y13, Y11
	DECQ        CX
	JNZ         peakloop

peakdone:
	VZEROUPPER
	RET

// func transpose8AVX2(dst *float32, dstride int, src *float32, sstride int, rows int, nblk int)
//
// For each of nblk blocks of 8 columns: loads rows (6 or 8) rows of 8 floats
// from src (row stride sstride bytes; missing rows read as zero), transposes
// the 8x8 block and stores column c (8 floats: rows 0..7) at dst + c*dstride.
// Columns are stored in ascending order, so with dstride < 32 a column's
// trailing floats are overwritten by the next one; the last store writes
// 32 bytes at dst + (8*nblk-1)*dstride. src then advances 32 bytes and dst
// 8*dstride bytes per block.
TEXT ·transpose8AVX2(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ dstride+8(FP), DX
	MOVQ src+16(FP), SI
	MOVQ sstride+24(FP), BX
	MOVQ rows+32(FP), R8
	MOVQ nblk+40(FP), CX
	TESTQ CX, CX
	JZ    trdone
	LEAQ (BX)(BX*2), R9   // 3*sstride
	LEAQ (BX)(BX*4), R10  // 5*sstride
	LEAQ (DX)(DX*2), R11  // 3*dstride
	LEAQ (DX)(DX*4), R12  // 5*dstride
	LEAQ (R11)(DX*4), R13 // 7*dstride
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

trloop:
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(BX*1), Y1
	VMOVUPS (SI)(BX*2), Y2
	VMOVUPS (SI)(R9*1), Y3
	VMOVUPS (SI)(BX*4), Y4
	VMOVUPS (SI)(R10*1), Y5
	CMPQ    R8, $8
	JNE     trsix
	LEAQ    (SI)(R9*2), R14  // src + 6*sstride
	VMOVUPS (R14), Y6
	VMOVUPS (R14)(BX*1), Y7

trsix:
	VUNPCKLPS Y1, Y0, Y8   // a0 b0 a1 b1 | a4 b4 a5 b5
	VUNPCKHPS Y1, Y0, Y9   // a2 b2 a3 b3 | a6 b6 a7 b7
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15
	VSHUFPS   $0x44, Y10, Y8, Y0  // a0 b0 c0 d0 | a4 b4 c4 d4
	VSHUFPS   $0xEE, Y10, Y8, Y1  // a1 b1 c1 d1 | a5 ...
	VSHUFPS   $0x44, Y11, Y9, Y2  // a2 ... | a6 ...
	VSHUFPS   $0xEE, Y11, Y9, Y3  // a3 ... | a7 ...
	VSHUFPS   $0x44, Y14, Y12, Y4 // e0 f0 g0 h0 | e4 ...
	VSHUFPS   $0xEE, Y14, Y12, Y5
	VSHUFPS   $0x44, Y15, Y13, Y8
	VSHUFPS   $0xEE, Y15, Y13, Y9
	VPERM2F128 $0x20, Y4, Y0, Y10 // column 0
	VPERM2F128 $0x20, Y5, Y1, Y11 // column 1
	VPERM2F128 $0x20, Y8, Y2, Y12 // column 2
	VPERM2F128 $0x20, Y9, Y3, Y13 // column 3
	VPERM2F128 $0x31, Y4, Y0, Y14 // column 4
	VPERM2F128 $0x31, Y5, Y1, Y15 // column 5
	VPERM2F128 $0x31, Y8, Y2, Y0  // column 6
	VPERM2F128 $0x31, Y9, Y3, Y1  // column 7
	VMOVUPS   Y10, (DI)
	VMOVUPS   Y11, (DI)(DX*1)
	VMOVUPS   Y12, (DI)(DX*2)
	VMOVUPS   Y13, (DI)(R11*1)
	VMOVUPS   Y14, (DI)(DX*4)
	VMOVUPS   Y15, (DI)(R12*1)
	LEAQ      (DI)(R11*2), R14   // dst + 6*dstride
	VMOVUPS   Y0, (R14)
	VMOVUPS   Y1, (DI)(R13*1)
	ADDQ      $32, SI
	LEAQ      (DI)(DX*8), DI
	DECQ      CX
	JNZ       trloop

trdone:
	VZEROUPPER
	RET

// func copy16AVX2(dst *float32, src *float32, sstride int, n int)
//
// Copies n rows of 16 floats from src (row stride sstride bytes) to
// consecutive 64-byte rows at dst.
TEXT ·copy16AVX2(SB), NOSPLIT, $0-32
	MOVQ  dst+0(FP), DI
	MOVQ  src+8(FP), SI
	MOVQ  sstride+16(FP), BX
	MOVQ  n+24(FP), CX
	TESTQ CX, CX
	JZ    cpdone

cploop:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ    BX, SI
	ADDQ    $64, DI
	DECQ    CX
	JNZ     cploop

cpdone:
	VZEROUPPER
	RET

// Reduces the four accumulators of one C row of the dot kernel to
// X(x0) = alpha*[sum(y0), sum(y1), sum(y2), sum(y3)] (X14 = alpha),
// adds beta*C row when beta != 0 (X15 = beta, AX != 0), stores it at (DI) and
// advances DI by R13.
#define DOTROW(y0, y1, y2, y3, x0, x2) \
	VHADDPS      y1, y0, y0        \
	VHADDPS      y3, y2, y2        \
	VHADDPS      y2, y0, y0        \
	VEXTRACTF128 $1, y0, x2        \
	VADDPS       x2, x0, x0        \
	VMULPS       X14, x0, x0       \
	TESTQ        AX, AX            \
	JZ           2(PC)             \
	VFMADD231PS  (DI), X15, x0     \
	VMOVUPS      x0, (DI)          \
	ADDQ         R13, DI

// func sgemmDotAVX2(k8 int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)
//
// 3x4 tile of C = alpha*A*B^T + beta*C where A's 3 rows (byte stride lda)
// and B's 4 rows (byte stride ldb) are contiguous along k; k = 8*k8 ≥ 8.
TEXT ·sgemmDotAVX2(SB), NOSPLIT, $0-64
	MOVQ k8+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R9
	MOVQ b+24(FP), BX
	MOVQ ldb+32(FP), DX
	MOVQ c+40(FP), DI
	MOVQ ldc+48(FP), R13
	SHLQ $2, R13
	LEAQ (DX)(DX*2), R10

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

dotloop:
	VMOVUPS     (SI), Y12
	VMOVUPS     (SI)(R9*1), Y13
	VMOVUPS     (SI)(R9*2), Y14
	VMOVUPS     (BX), Y15
	VFMADD231PS Y12, Y15, Y0
	VFMADD231PS Y13, Y15, Y1
	VFMADD231PS Y14, Y15, Y2
	VMOVUPS     (BX)(DX*1), Y15
	VFMADD231PS Y12, Y15, Y3
	VFMADD231PS Y13, Y15, Y4
	VFMADD231PS Y14, Y15, Y5
	VMOVUPS     (BX)(DX*2), Y15
	VFMADD231PS Y12, Y15, Y6
	VFMADD231PS Y13, Y15, Y7
	VFMADD231PS Y14, Y15, Y8
	VMOVUPS     (BX)(R10*1), Y15
	VFMADD231PS Y12, Y15, Y9
	VFMADD231PS Y13, Y15, Y10
	VFMADD231PS Y14, Y15, Y11
	ADDQ        $32, SI
	ADDQ        $32, BX
	DECQ        CX
	JNZ         dotloop

	VBROADCASTSS alpha+56(FP), X14
	VBROADCASTSS beta+60(FP), X15
	MOVL         beta+60(FP), AX
	ANDL         $0x7fffffff, AX

	// Row i: accumulators Y(i), Y(i+3), Y(i+6), Y(i+9).
	DOTROW(Y0, Y3, Y6, Y9, X0, X12)
	DOTROW(Y1, Y4, Y7, Y10, X1, X12)
	DOTROW(Y2, Y5, Y8, Y11, X2, X12)
	VZEROUPPER
	RET
