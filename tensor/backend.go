package tensor

// Backend owns tensor storage and runs the kernels. Every method writes its
// result into a destination tensor given by the caller and allocates nothing
// but what Alloc is asked for. Shapes are checked by the package-level op
// functions before a backend method is called, so backends may assume valid
// operands. CPU is the only implementation today; a CUDA backend implements
// the same interface (storage as device pointers, kernels as cuBLAS/cuDNN
// calls) without any change to model code.
type Backend interface {
	// Name identifies the backend ("cpu", "cuda:0", ...).
	Name() string
	// Alloc returns storage for n float32 values. Contents are unspecified.
	Alloc(n int) *Storage
	// CopyToHost copies t's values into dst (len(dst) == t.Numel()).
	CopyToHost(dst []float32, t *Tensor)
	// CopyFromHost copies src into t's storage (len(src) == t.Numel()).
	CopyFromHost(t *Tensor, src []float32)
	// Fill sets every element of t to v.
	Fill(t *Tensor, v float32)
	// Copy copies src into dst (same element count).
	Copy(dst, src *Tensor)
	// CopyStrided copies rows×n blocks: dst[dOff+r*dStride+i] = src[sOff+r*sStride+i]
	// for r < rows, i < n (element offsets into the storages). Used for
	// concat, narrow and their gradients.
	CopyStrided(dst *Tensor, dOff, dStride int, src *Tensor, sOff, sStride, rows, n int)
	// AddStrided is CopyStrided that adds into dst instead of overwriting.
	AddStrided(dst *Tensor, dOff, dStride int, src *Tensor, sOff, sStride, rows, n int)

	// Axpby sets y = a*x + b*y elementwise (x, y same element count).
	Axpby(y *Tensor, a float32, x *Tensor, b float32)
	// Add sets y = a + b elementwise (y may alias a or b).
	Add(y, a, b *Tensor)
	// Mul sets y = a * b elementwise (y may alias a or b).
	Mul(y, a, b *Tensor)
	// Scale sets y = s * x (y may alias x).
	Scale(y, x *Tensor, s float32)
	// AddRowVector sets y[r, i, s] = x[r, i, s] + v[r % vRows, i] for x viewed as
	// [rows, n, inner]; v has vRows*n elements (vRows divides rows). It adds
	// per-channel biases (inner = H*W) and per-sample embeddings alike.
	AddRowVector(y, x, v *Tensor, rows, n, inner, vRows int)
	// SumRowVector is AddRowVector's gradient: dv[r % vRows, i] = Σ dy[r, i, s]
	// over s and the rows that map to it. dv is overwritten.
	SumRowVector(dv, dy *Tensor, rows, n, inner, vRows int)
	// Sum returns the sum of all elements (float64 accumulation).
	Sum(x *Tensor) float64
	// Dot returns Σ a*b (float64 accumulation).
	Dot(a, b *Tensor) float64

	// Gemm computes c = alpha*op(a)*op(b) + beta*c, row-major 2-D (shapes
	// already checked), m×k times k×n.
	Gemm(transA, transB bool, m, n, k int, alpha float32, a, b *Tensor, beta float32, c *Tensor)
	// GemmBatched is batch independent Gemms on consecutive matrices.
	GemmBatched(batch int, transA, transB bool, m, n, k int, alpha float32, a, b *Tensor, beta float32, c *Tensor)

	// Conv2dForward, Conv2dBackwardData and Conv2dBackwardFilter: NCHW
	// convolution (groups 1, dilation 1); bias and db may be nil.
	Conv2dForward(y, x, w, bias *Tensor, p ConvParams)
	Conv2dBackwardData(dx, dy, w *Tensor, p ConvParams)
	Conv2dBackwardFilter(dw, db, dy, x *Tensor, p ConvParams)

	// GroupNormForward normalizes x [n, c, hw] per (sample, group); mean and
	// rstd [n*groups] are saved for the backward pass. With silu, y is
	// silu(groupnorm(x)).
	GroupNormForward(y, mean, rstd, x, gamma, beta *Tensor, n, c, hw, groups int, eps float32, silu bool)
	GroupNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta *Tensor, n, c, hw, groups int, silu bool)
	// LayerNormForward normalizes rows of x [rows, cols]; gamma/beta may be nil.
	LayerNormForward(y, mean, rstd, x, gamma, beta *Tensor, rows, cols int, eps float32)
	LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma *Tensor, rows, cols int)
	// SoftmaxForward is a row softmax of x [rows, cols].
	SoftmaxForward(y, x *Tensor, rows, cols int)
	SoftmaxBackward(dx, dy, y *Tensor, rows, cols int)

	// Activation sets y = f(x); ActivationBackward sets dx = dy * f'(x).
	Activation(kind Act, y, x *Tensor)
	ActivationBackward(kind Act, dx, dy, x *Tensor)

	// UpsampleNearest repeats each pixel of x [nc, h, w] f×f times.
	UpsampleNearest(y, x *Tensor, nc, h, w, f int)
	UpsampleNearestBackward(dx, dy *Tensor, nc, h, w, f int)

	// AdamStep updates parameters p in place from gradient g with moment
	// buffers m, v (PyTorch Adam/AdamW rule; see optim).
	AdamStep(p, g, m, v *Tensor, h AdamHyper)
}

// Act names an elementwise activation.
type Act int

// Activations known to every backend.
const (
	SiLU     Act = iota
	GELU         // exact erf form (PyTorch default)
	GELUTanh     // tanh approximation
)

// ConvParams describes a 2-D convolution: input [N, C, H, W], filter
// [CO, C, KH, KW], output [N, CO, OH, OW], one stride and padding for both
// spatial dims.
type ConvParams struct {
	N, C, H, W, CO, KH, KW, Stride, Pad int
}

// OH is the output height.
func (p ConvParams) OH() int { return (p.H+2*p.Pad-p.KH)/p.Stride + 1 }

// OW is the output width.
func (p ConvParams) OW() int { return (p.W+2*p.Pad-p.KW)/p.Stride + 1 }

// AdamHyper holds one Adam(W) step's scalars. Step counts from 1.
type AdamHyper struct {
	LR, Beta1, Beta2, Eps, WeightDecay float32
	Decoupled                          bool // AdamW: decay the weights, not the gradient
	Step                               int
}
