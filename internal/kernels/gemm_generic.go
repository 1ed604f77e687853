package kernels

import "unsafe"

// sgemmKernelGeneric is the portable micro-kernel (see microKernel).
func sgemmKernelGeneric(k int, a *float32, rsa, csa int, b *float32, rsb int, c *float32, ldc int, alpha, beta float32, pf *float32) {
	var acc [gemmMR][gemmNR]float32
	ap := unsafe.Pointer(a)
	bp := unsafe.Pointer(b)
	off := 0
	for p := 0; p < k; p++ {
		bb := (*[gemmNR]float32)(unsafe.Add(bp, p*rsb))
		for i := 0; i < gemmMR; i++ {
			av := *(*float32)(unsafe.Add(ap, off+i*rsa))
			r := &acc[i]
			for j := 0; j < gemmNR; j++ {
				r[j] += av * bb[j]
			}
		}
		off += csa
	}
	cp := unsafe.Pointer(c)
	for i := 0; i < gemmMR; i++ {
		row := (*[gemmNR]float32)(unsafe.Add(cp, i*ldc*4))
		r := &acc[i]
		if beta == 0 {
			for j := 0; j < gemmNR; j++ {
				row[j] = alpha * r[j]
			}
		} else {
			for j := 0; j < gemmNR; j++ {
				row[j] = alpha*r[j] + beta*row[j]
			}
		}
	}
}
