// Package safetensors reads and writes the safetensors tensor file format.
//
// A safetensors file is laid out as
//
//	[8 bytes]  N, the header length in bytes, a little-endian uint64
//	[N bytes]  a UTF-8 JSON object (the header), possibly padded with trailing spaces
//	[rest]     the data buffer: the raw bytes of every tensor, little-endian
//
// The header maps each tensor name to an object
//
//	{"dtype": "F32", "shape": [32, 32, 3, 3], "data_offsets": [begin, end]}
//
// where begin and end are byte offsets relative to the start of the data
// buffer (the byte right after the header), and an optional "__metadata__"
// key maps to an object of string keys and string values.
//
// The reader treats its input as hostile: every length and offset is
// checked before it is used, and malformed input yields an error whose
// message starts with "safetensors: ", never a panic. Like the reference
// implementation, it requires the tensors' byte ranges to tile the data
// buffer exactly: no overlaps, no holes and no trailing bytes. Duplicate
// names in the header are rejected.
package safetensors

import (
	"fmt"
	"slices"
	"strings"
)

// MaxHeaderSize is the largest JSON header length, in bytes, that Read,
// Parse and ReadFile accept (100 MB, the reference implementation's limit).
const MaxHeaderSize = 100 << 20

// metadataKey is the reserved header key holding the file's string metadata.
const metadataKey = "__metadata__"

// DType names a tensor element type, spelled as in the safetensors header
// (for example "F32").
type DType string

// Element types. Data of every type is stored little-endian.
const (
	BOOL   DType = "BOOL"    // boolean, 1 byte per element (0 or 1)
	U8     DType = "U8"      // unsigned 8-bit integer
	I8     DType = "I8"      // signed 8-bit integer
	F8E5M2 DType = "F8_E5M2" // 8-bit float, 5 exponent and 2 mantissa bits (IEEE-like, has inf and NaN)
	F8E4M3 DType = "F8_E4M3" // 8-bit float, 4 exponent and 3 mantissa bits ("FN" variant: no inf, NaN is S.1111.111)
	I16    DType = "I16"     // signed 16-bit integer
	U16    DType = "U16"     // unsigned 16-bit integer
	F16    DType = "F16"     // IEEE 754 binary16 (half precision)
	BF16   DType = "BF16"    // bfloat16: the top 16 bits of an IEEE binary32
	I32    DType = "I32"     // signed 32-bit integer
	U32    DType = "U32"     // unsigned 32-bit integer
	F32    DType = "F32"     // IEEE 754 binary32 (single precision)
	I64    DType = "I64"     // signed 64-bit integer
	U64    DType = "U64"     // unsigned 64-bit integer
	F64    DType = "F64"     // IEEE 754 binary64 (double precision)
)

var dtypeSizes = map[DType]int{
	BOOL: 1, U8: 1, I8: 1, F8E5M2: 1, F8E4M3: 1,
	I16: 2, U16: 2, F16: 2, BF16: 2,
	I32: 4, U32: 4, F32: 4,
	I64: 8, U64: 8, F64: 8,
}

// Size returns the size of one element of type d in bytes, or 0 if d is not
// a supported element type.
func (d DType) Size() int { return dtypeSizes[d] }

// Valid reports whether d is a supported element type.
func (d DType) Valid() bool { return d.Size() > 0 }

// supportedDTypes lists the supported dtypes, sorted, for error messages.
func supportedDTypes() string {
	names := make([]string, 0, len(dtypeSizes))
	for d := range dtypeSizes {
		names = append(names, string(d))
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// Tensor is one named tensor: its element type, its shape and its raw data.
type Tensor struct {
	// Name is the tensor's key in the header; non-empty and unique in a file.
	Name string
	// DType is the element type.
	DType DType
	// Shape lists the dimensions, outermost first (row-major, "C" order).
	// An empty Shape is a scalar holding one element; a shape with a zero
	// dimension holds no elements.
	Shape []int
	// Data holds the raw element bytes, little-endian, row-major;
	// len(Data) == NumElements() * DType.Size(). For a File returned by
	// Parse it aliases the parsed buffer (capacity-limited, so appending
	// copies rather than overwriting a neighbour).
	Data []byte
}

// NumElements returns the number of elements implied by t.Shape (1 for a
// scalar), or -1 if a dimension is negative or the product overflows int.
func (t *Tensor) NumElements() int {
	n, ok := numElements(t.Shape)
	if !ok {
		return -1
	}
	return n
}

// numElements multiplies the dims left to right, failing on a negative dim
// or an overflow of int (checked at each step, like the reference).
func numElements(shape []int) (int, bool) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d != 0 && n > maxInt/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}

const maxInt = int(^uint(0) >> 1)

// File is the decoded content of a safetensors file.
type File struct {
	// Metadata holds the header's "__metadata__" object; nil when the
	// header has none.
	Metadata map[string]string
	// Tensors lists the tensors in file order: sorted by their offset in the
	// data buffer (ties between zero-size tensors broken by name).
	Tensors []Tensor
}

// Get returns the tensor called name, and whether it exists.
func (f *File) Get(name string) (*Tensor, bool) {
	for i := range f.Tensors {
		if f.Tensors[i].Name == name {
			return &f.Tensors[i], true
		}
	}
	return nil, false
}

// Names returns the tensor names in the order of f.Tensors.
func (f *File) Names() []string {
	names := make([]string, len(f.Tensors))
	for i := range f.Tensors {
		names[i] = f.Tensors[i].Name
	}
	return names
}

// FormatError reports a malformed safetensors file or an invalid tensor
// given to Write. Its message starts with "safetensors: ".
type FormatError struct {
	// Path is the file's path, when known (ReadFile, WriteFile).
	Path string
	// Msg describes the problem, naming the tensor where relevant.
	Msg string
}

// Error returns "safetensors: ", the path if known, and the message.
func (e *FormatError) Error() string {
	if e.Path != "" {
		return "safetensors: " + e.Path + ": " + e.Msg
	}
	return "safetensors: " + e.Msg
}

func formatErr(format string, args ...any) error {
	return &FormatError{Msg: fmt.Sprintf(format, args...)}
}

// withPath returns err with path attached when it is a *FormatError.
func withPath(err error, path string) error {
	if fe, ok := err.(*FormatError); ok && fe.Path == "" {
		return &FormatError{Path: path, Msg: fe.Msg}
	}
	return err
}
