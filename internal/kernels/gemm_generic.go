package kernels

import "unsafe"

// sgemmKernelGeneric is the portable micro-kernel (see microKernel). It
// walks the 6×16 tile in 2×4 sub-blocks whose 8 accumulators the compiler
// keeps in registers.
func sgemmKernelGeneric(k int, a *float32, rsa, csa int, b *float32, rsb int, c *float32, ldc int, alpha, beta float32, pf *float32) {
	ap, bp, cp := unsafe.Pointer(a), unsafe.Pointer(b), unsafe.Pointer(c)
	for i0 := 0; i0 < gemmMR; i0 += 2 {
		for j0 := 0; j0 < gemmNR; j0 += 4 {
			var c00, c01, c02, c03, c10, c11, c12, c13 float32
			ao, bo := i0*rsa, j0*4
			for p := 0; p < k; p++ {
				a0 := *(*float32)(unsafe.Add(ap, ao))
				a1 := *(*float32)(unsafe.Add(ap, ao+rsa))
				bb := (*[4]float32)(unsafe.Add(bp, bo))
				b0, b1, b2, b3 := bb[0], bb[1], bb[2], bb[3]
				c00 += a0 * b0
				c01 += a0 * b1
				c02 += a0 * b2
				c03 += a0 * b3
				c10 += a1 * b0
				c11 += a1 * b1
				c12 += a1 * b2
				c13 += a1 * b3
				ao += csa
				bo += rsb
			}
			r0 := (*[4]float32)(unsafe.Add(cp, (i0*ldc+j0)*4))
			r1 := (*[4]float32)(unsafe.Add(cp, ((i0+1)*ldc+j0)*4))
			if beta == 0 {
				*r0 = [4]float32{alpha * c00, alpha * c01, alpha * c02, alpha * c03}
				*r1 = [4]float32{alpha * c10, alpha * c11, alpha * c12, alpha * c13}
			} else {
				*r0 = [4]float32{alpha*c00 + beta*r0[0], alpha*c01 + beta*r0[1], alpha*c02 + beta*r0[2], alpha*c03 + beta*r0[3]}
				*r1 = [4]float32{alpha*c10 + beta*r1[0], alpha*c11 + beta*r1[1], alpha*c12 + beta*r1[2], alpha*c13 + beta*r1[3]}
			}
		}
	}
}
