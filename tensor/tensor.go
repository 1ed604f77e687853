// Package tensor holds diffuse's float32 N-dimensional tensors and the
// operations on them.
//
// A Tensor is a shape plus contiguous row-major storage owned by a Backend
// (images are NCHW). Reshape returns a view sharing storage; every other op
// writes into a destination tensor the caller provides, so callers (package
// autograd) decide where memory comes from and can reuse it step after step.
//
// Ops check shapes and report mismatches as *ShapeError. The functions here
// panic with a *ShapeError (the graph layer recovers it into an error at the
// API boundary, see autograd.Catch); the Check* helpers return it instead.
//
// Storage and kernels sit behind the Backend interface. CPU is the only
// backend today; a CUDA backend implements the same interface, so model,
// autograd and sampler code never touch raw slices of a tensor they did not
// create.
package tensor

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Tensor is a float32 N-d array with contiguous row-major storage.
type Tensor struct {
	shape []int
	st    *Storage
}

// Storage is a backend-owned buffer of float32 values. For the CPU backend
// Host holds the values; other backends keep their own handle in Device.
type Storage struct {
	Host    []float32
	Device  any
	Backend Backend
	n       int
}

// Len is the number of float32 elements in the storage.
func (s *Storage) Len() int { return s.n }

// ShapeError describes operands whose shapes do not fit an op.
type ShapeError struct {
	Op  string
	Msg string
}

func (e *ShapeError) Error() string { return "tensor: " + e.Op + ": " + e.Msg }

func shapeErr(op, format string, args ...any) *ShapeError {
	return &ShapeError{Op: op, Msg: fmt.Sprintf(format, args...)}
}

// Numel returns the product of the dims of shape (1 for a scalar shape).
func Numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// CheckShape validates a shape: every dim must be ≥ 0 and the element count
// must fit in memory limits of an int.
func CheckShape(shape []int) error {
	n := 1
	for i, d := range shape {
		if d < 0 {
			return fmt.Errorf("tensor: shape %v: dim %d is negative", shape, i)
		}
		if d != 0 && n > math.MaxInt32*16/d {
			return fmt.Errorf("tensor: shape %v: too many elements", shape)
		}
		n *= d
	}
	return nil
}

// New returns a zero-filled CPU tensor of the given shape. It panics with a
// *ShapeError on a negative dim.
func New(shape ...int) *Tensor { return NewOn(CPU, shape...) }

// NewOn returns a zero-filled tensor of the given shape on backend be.
func NewOn(be Backend, shape ...int) *Tensor {
	t := Empty(be, shape...)
	be.Fill(t, 0)
	return t
}

// Empty returns a tensor on be whose contents are unspecified.
func Empty(be Backend, shape ...int) *Tensor {
	if err := CheckShape(shape); err != nil {
		panic(shapeErr("New", "%v", err))
	}
	return &Tensor{shape: append([]int(nil), shape...), st: be.Alloc(Numel(shape))}
}

// WithStorage returns a tensor of the given shape over existing storage
// (which must hold exactly Numel(shape) elements).
func WithStorage(st *Storage, shape ...int) *Tensor {
	if st.n != Numel(shape) {
		panic(shapeErr("WithStorage", "storage of %d elements does not fit shape %v", st.n, shape))
	}
	return &Tensor{shape: append([]int(nil), shape...), st: st}
}

// FromSlice wraps data (not copied) as a CPU tensor of the given shape.
// It panics with a *ShapeError if len(data) != Numel(shape).
func FromSlice(data []float32, shape ...int) *Tensor {
	if err := CheckShape(shape); err != nil {
		panic(shapeErr("FromSlice", "%v", err))
	}
	if len(data) != Numel(shape) {
		panic(shapeErr("FromSlice", "%d values do not fill shape %v (%d elements)", len(data), shape, Numel(shape)))
	}
	return &Tensor{shape: append([]int(nil), shape...), st: &Storage{Host: data, Backend: CPU, n: len(data)}}
}

// Scalar returns a CPU tensor of shape [] holding v.
func Scalar(v float32) *Tensor { return FromSlice([]float32{v}) }

// Shape returns the tensor's dims; the caller must not modify it.
func (t *Tensor) Shape() []int { return t.shape }

// Dim returns dim i of the shape; negative i counts from the end.
func (t *Tensor) Dim(i int) int {
	if i < 0 {
		i += len(t.shape)
	}
	return t.shape[i]
}

// Rank is the number of dims.
func (t *Tensor) Rank() int { return len(t.shape) }

// Numel is the number of elements.
func (t *Tensor) Numel() int { return t.st.n }

// Storage returns the storage, shared with every view of it.
func (t *Tensor) Storage() *Storage { return t.st }

// Backend returns the backend that owns the storage.
func (t *Tensor) Backend() Backend { return t.st.Backend }

// Data returns the host values of a CPU tensor (shared, not copied). It
// panics for tensors of other backends: use ToHost there.
func (t *Tensor) Data() []float32 {
	if t.st.Host == nil && t.st.n > 0 {
		panic(shapeErr("Data", "tensor lives on backend %s; copy it with ToHost", t.st.Backend.Name()))
	}
	return t.st.Host[:t.st.n]
}

// ToHost returns a fresh copy of the values in host memory.
func (t *Tensor) ToHost() []float32 {
	out := make([]float32, t.st.n)
	t.st.Backend.CopyToHost(out, t)
	return out
}

// Item returns the single value of a one-element tensor.
func (t *Tensor) Item() float32 {
	if t.st.n != 1 {
		panic(shapeErr("Item", "tensor of shape %v has %d elements, want 1", t.shape, t.st.n))
	}
	return t.ToHost()[0]
}

// Reshape returns a view with a new shape sharing the storage. One dim may be
// -1 and is inferred.
func (t *Tensor) Reshape(shape ...int) *Tensor {
	s := append([]int(nil), shape...)
	infer := -1
	n := 1
	for i, d := range s {
		if d == -1 {
			if infer >= 0 {
				panic(shapeErr("Reshape", "more than one -1 in %v", shape))
			}
			infer = i
			continue
		}
		if d < 0 {
			panic(shapeErr("Reshape", "negative dim in %v", shape))
		}
		n *= d
	}
	if infer >= 0 {
		if n == 0 || t.st.n%n != 0 {
			panic(shapeErr("Reshape", "cannot infer -1 in %v from %d elements", shape, t.st.n))
		}
		s[infer] = t.st.n / n
		n *= s[infer]
	}
	if n != t.st.n {
		panic(shapeErr("Reshape", "shape %v has %d elements, tensor %v has %d", shape, n, t.shape, t.st.n))
	}
	return &Tensor{shape: s, st: t.st}
}

// SameShape reports whether a and b have identical shapes.
func SameShape(a, b []int) bool { return slices.Equal(a, b) }

// String prints the shape and up to 8 leading values.
func (t *Tensor) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Tensor%v[", t.shape)
	v := t.ToHost()
	for i := 0; i < len(v) && i < 8; i++ {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%.4g", v[i])
	}
	if len(v) > 8 {
		sb.WriteString(" ...")
	}
	sb.WriteByte(']')
	return sb.String()
}
