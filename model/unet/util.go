package unet

import "math"

func sqrtf(d int) float32 { return float32(math.Sqrt(float64(d))) }
