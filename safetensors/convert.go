package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Float32 converts the tensor's elements to a freshly allocated []float32
// of length len(t.Data)/t.DType.Size(), in row-major order. Floating-point
// types (F32, F16, BF16, F64, F8_E5M2, F8_E4M3) are converted exactly where
// representable (F64 rounds to nearest; out-of-range values become ±Inf;
// F16/BF16/F8 subnormals, infinities and NaNs are preserved). Integer types
// are converted to the nearest float32 and BOOL gives 0 or 1.
func (t *Tensor) Float32() ([]float32, error) {
	size := t.DType.Size()
	if size == 0 {
		return nil, fmt.Errorf("safetensors: tensor %q: cannot convert unknown dtype %q to float32", t.Name, t.DType)
	}
	if len(t.Data)%size != 0 {
		return nil, fmt.Errorf("safetensors: tensor %q: data is %d bytes, not a multiple of the %d-byte %s element size", t.Name, len(t.Data), size, t.DType)
	}
	n := len(t.Data) / size
	out := make([]float32, n)
	b := t.Data
	le := binary.LittleEndian
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = F16ToFloat32(le.Uint16(b[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(le.Uint16(b[2*i:])) << 16)
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(le.Uint64(b[8*i:])))
		}
	case F8E5M2:
		for i := range out {
			out[i] = F16ToFloat32(uint16(b[i]) << 8)
		}
	case F8E4M3:
		for i := range out {
			out[i] = f8e4m3ToFloat32(b[i])
		}
	case BOOL:
		for i := range out {
			if b[i] != 0 {
				out[i] = 1
			}
		}
	case U8:
		for i := range out {
			out[i] = float32(b[i])
		}
	case I8:
		for i := range out {
			out[i] = float32(int8(b[i]))
		}
	case I16:
		for i := range out {
			out[i] = float32(int16(le.Uint16(b[2*i:])))
		}
	case U16:
		for i := range out {
			out[i] = float32(le.Uint16(b[2*i:]))
		}
	case I32:
		for i := range out {
			out[i] = float32(int32(le.Uint32(b[4*i:])))
		}
	case U32:
		for i := range out {
			out[i] = float32(le.Uint32(b[4*i:]))
		}
	case I64:
		for i := range out {
			out[i] = float32(int64(le.Uint64(b[8*i:])))
		}
	case U64:
		for i := range out {
			out[i] = float32(le.Uint64(b[8*i:]))
		}
	default:
		return nil, fmt.Errorf("safetensors: tensor %q: no float32 conversion for dtype %s", t.Name, t.DType)
	}
	return out, nil
}

// F16ToFloat32 converts the bits of an IEEE 754 binary16 value to float32.
// The conversion is exact: subnormals, signed zeros and infinities map to
// the same values, and NaNs stay NaN with their payload shifted up.
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal: rebias 15 -> 127
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0: // signed zero
		return math.Float32frombits(sign)
	}
	// Subnormal: mant * 2^-24, which is a normal float32. Normalise by
	// shifting the leading 1 into the implicit-bit position.
	e := uint32(127 - 15 + 1)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
}

// Float32ToF16Bits converts a float32 to IEEE 754 binary16 bits, rounding
// to nearest with ties to even. Values too large for binary16 (above
// 65504 after rounding) become ±Inf, values too small become ±0 or a
// subnormal, and NaNs stay (quiet) NaN.
func Float32ToF16Bits(f float32) uint16 {
	bits := math.Float32bits(f)
	sign := uint16(bits>>16) & 0x8000
	exp := int(bits>>23) & 0xff
	mant := bits & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13) // quiet NaN, keep payload top bits
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15 // binary16 biased exponent
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal or zero in binary16: value = m24 * 2^(e-14) in units
		// of 2^-24, where m24 includes the implicit bit.
		if exp == 0 {
			return sign // float32 zero or subnormal (< 2^-126): rounds to 0
		}
		shift := uint(14 - e)
		if shift > 24 {
			return sign
		}
		m := mant | 0x800000
		q := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && q&1 == 1) {
			q++ // may carry into the smallest normal, which is correct
		}
		return sign | uint16(q)
	}
	q := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && q&1 == 1) {
		q++ // may carry into the exponent, up to Inf (0x7c00): correct
	}
	return sign | uint16(q)
}

// Float32ToF16 encodes v as little-endian IEEE 754 binary16 bytes
// (2 bytes per element), suitable as Data of an F16 tensor. Rounding is to
// nearest, ties to even; overflow gives ±Inf.
func Float32ToF16(v []float32) []byte {
	out := make([]byte, 2*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint16(out[2*i:], Float32ToF16Bits(f))
	}
	return out
}

// Float32ToBF16 encodes v as little-endian bfloat16 bytes (2 bytes per
// element), suitable as Data of a BF16 tensor. Rounding is to nearest,
// ties to even; NaNs stay (quiet) NaN.
func Float32ToBF16(v []float32) []byte {
	out := make([]byte, 2*len(v))
	for i, f := range v {
		bits := math.Float32bits(f)
		var h uint16
		if bits&0x7fffffff > 0x7f800000 {
			h = uint16(bits>>16) | 0x40
		} else {
			h = uint16((bits + 0x7fff + (bits>>16)&1) >> 16)
		}
		binary.LittleEndian.PutUint16(out[2*i:], h)
	}
	return out
}

// Float32Bytes encodes v as little-endian IEEE 754 binary32 bytes
// (4 bytes per element), suitable as Data of an F32 tensor.
func Float32Bytes(v []float32) []byte {
	out := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(f))
	}
	return out
}

// f8e4m3ToFloat32 decodes the OCP "E4M3FN" 8-bit float: bias 7, no
// infinities, S.1111.111 is NaN.
func f8e4m3ToFloat32(b byte) float32 {
	sign := float32(1)
	if b&0x80 != 0 {
		sign = -1
	}
	exp := int(b>>3) & 0xf
	mant := int(b & 7)
	if exp == 0xf && mant == 7 {
		return float32(math.NaN())
	}
	if exp == 0 {
		return sign * float32(math.Ldexp(float64(mant), -9))
	}
	return sign * float32(math.Ldexp(float64(8+mant), exp-7-3))
}
