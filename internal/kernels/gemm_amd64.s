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
