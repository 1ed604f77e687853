package unet

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/model/cond"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/text"
)

func testTextConfig() text.Config {
	c := text.DefaultConfig(append(append([]string{}, text.Specials...), "a", "thin", "thick", "seven", "three", ","))
	c.MaxLen = 8
	return c
}

// randomize fills the zero-initialized text layers (output projections,
// pooled projection) with random values, as training would.
func randomize(u *UNetS, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed))
	fill := func(v *autograd.Var) {
		for i := range v.Value.Data() {
			v.Value.Data()[i] = float32(r.NormFloat64() * 0.1)
		}
	}
	for _, x := range []*CrossAttention{u.Text.XRes2, u.Text.XMid, u.Text.XURes2} {
		fill(x.Proj.W)
		fill(x.Proj.B)
	}
	fill(u.Text.Pool.W)
	fill(u.Text.Pool.B)
}

// A text UNet-S starts (zero output projections) as exactly the base
// network of the same seed, whatever the prompt; its base parameters keep
// the reference names; once the new layers are nonzero, prompts change
// the output, per image, and padding does not matter.
func TestTextUNetS(t *testing.T) {
	base := NewUNetS(rand.New(rand.NewPCG(3, 3)))
	tu, err := NewTextUNetS(rand.New(rand.NewPCG(3, 3)), 0, testTextConfig())
	if err != nil {
		t.Fatal(err)
	}
	baseNames := map[string]bool{}
	for _, p := range nn.Parameters(base) {
		baseNames[p.Name] = true
	}
	var newNames []string
	for _, p := range nn.Parameters(tu) {
		if !baseNames[p.Name] {
			newNames = append(newNames, p.Name)
		}
		delete(baseNames, p.Name)
	}
	if len(baseNames) != 0 {
		t.Fatalf("base parameters missing from the text network: %v", baseNames)
	}
	for _, want := range []string{"text_encoder.token_emb.weight", "text_encoder.blocks.1.attn.to_q.weight", "xattn_res2.proj.weight", "xattn_mid.to_k.weight", "xattn_ures2.to_v.bias", "text_pool.weight"} {
		if !strings.Contains(strings.Join(newNames, " "), want) {
			t.Errorf("no parameter %s among the new ones %v", want, newNames)
		}
	}
	tok := tu.Tokenizer()
	enc := func(p string) []int {
		ids, err := tok.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	x, ts := randInput(3, 9)
	g := autograd.NoGrad(tensor.CPU)
	want := base.Forward(g, autograd.Const(x), ts).Value.ToHost()
	prompts := &cond.Cond{Tokens: [][]int{enc("a thin seven"), nil, enc("thick three")}}
	got := tu.ForwardCond(g, autograd.Const(x), ts, prompts).Value.ToHost()
	if d := maxDiff(want, got); d != 0 {
		t.Fatalf("zero-initialized text layers changed the output by %g", d)
	}

	randomize(tu, 5)
	out := func(tokens ...[]int) []float32 {
		return tu.ForwardCond(g, autograd.Const(x), ts, &cond.Cond{Tokens: tokens}).Value.ToHost()
	}
	thin := out(enc("a thin seven"), enc("a thin seven"), enc("a thin seven"))
	thick := out(enc("a thick three"), enc("a thick three"), enc("a thick three"))
	if d := maxDiff(thin, thick); d < 1e-3 {
		t.Fatalf("prompts 'a thin seven' and 'a thick three' differ by only %g", d)
	}
	null := out(nil, nil, nil)
	if d := maxDiff(null, tu.Forward(g, autograd.Const(x), ts).Value.ToHost()); d != 0 {
		t.Fatalf("Forward differs from the empty prompt by %g", d)
	}
	if d := maxDiff(null, thin); d < 1e-3 {
		t.Fatalf("the empty prompt and 'a thin seven' differ by only %g", d)
	}
	mixed := out(enc("a thin seven"), enc("a thick three"), nil)
	per := 784
	if maxDiff(mixed[:per], thin[:per]) > 1e-5 || maxDiff(mixed[per:2*per], thick[per:2*per]) > 1e-5 || maxDiff(mixed[2*per:], null[2*per:]) > 1e-5 {
		t.Fatal("prompts are not applied per image")
	}
	// Padding is masked: the same prompt at a longer max length (more PAD
	// positions; the position table extended) gives the same output.
	long := testTextConfig()
	long.MaxLen = 12
	tl, err := NewTextUNetS(rand.New(rand.NewPCG(3, 3)), 0, long)
	if err != nil {
		t.Fatal(err)
	}
	src := map[string]*autograd.Var{}
	for _, p := range nn.Parameters(tu) {
		src[p.Name] = p.Var
	}
	for _, p := range nn.Parameters(tl) {
		s := src[p.Name].Value.Data()
		copy(p.Var.Value.Data(), s) // pos_emb: the first 8 rows; the rest stay random
	}
	got = tl.ForwardCond(g, autograd.Const(x), ts, &cond.Cond{Tokens: [][]int{enc("a thin seven"), enc("a thin seven"), enc("a thin seven")}}).Value.ToHost()
	if d := maxDiff(got, thin); d > 1e-5 {
		t.Fatalf("more padding changed the output by %g", d)
	}

	for _, bad := range [][]int{{99}, {3, 3, 3, 3, 3, 3, 3, 3}} {
		err = autograd.Catch(func() { out(bad, nil, nil) })
		if err == nil || !strings.Contains(err.Error(), "text encoder") {
			t.Fatalf("tokens %v: err = %v, want a text encoder error", bad, err)
		}
	}
	err = autograd.Catch(func() { out(nil, nil) })
	if err == nil || !strings.Contains(err.Error(), "2 prompts for a batch of 3") {
		t.Fatalf("2 prompts for 3 images: err = %v", err)
	}
}

// Gradients reach every parameter of the text path (encoder, cross-attention
// and pooled projection) once the output projections are nonzero, and
// backward through a batch with empty prompts works.
func TestTextUNetSGradients(t *testing.T) {
	tu, err := NewTextUNetS(rand.New(rand.NewPCG(1, 1)), 10, testTextConfig())
	if err != nil {
		t.Fatal(err)
	}
	randomize(tu, 2)
	x, ts := randInput(2, 4)
	g := autograd.New(tensor.CPU)
	out := tu.ForwardCond(g, autograd.Const(x), ts, &cond.Cond{Labels: []int{7, cond.Null}, Tokens: [][]int{{3, 4, 6}, nil}})
	if err := g.Backward(g.Mean(g.Mul(out, out))); err != nil {
		t.Fatal(err)
	}
	for _, p := range nn.Parameters(tu) {
		if !strings.HasPrefix(p.Name, "text") && !strings.HasPrefix(p.Name, "xattn") {
			continue
		}
		if !p.Var.HasGrad() {
			t.Errorf("%s received no gradient", p.Name)
			continue
		}
		nz := false
		for _, v := range p.Var.Grad.Data() {
			nz = nz || v != 0
		}
		// Token rows of unused words get zero gradient; the table as a whole must not.
		if !nz {
			t.Errorf("%s: gradient is all zero", p.Name)
		}
	}
}

// CrossAttention's gradients (built from MatMul with transpose flags,
// Narrow, Softmax, a masking bias) match finite differences with respect
// to the image features, the tokens and its weights.
func TestCrossAttentionGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	a := NewCrossAttention(r, 8, 6, 2)
	for i := range a.Proj.W.Value.Data() {
		a.Proj.W.Value.Data()[i] = float32(r.NormFloat64() * 0.3)
	}
	randT := func(shape ...int) *tensor.Tensor {
		x := tensor.New(shape...)
		for i := range x.Data() {
			x.Data()[i] = float32(r.NormFloat64())
		}
		return x
	}
	x, ctx, w := randT(2, 8, 3, 2), randT(2, 4, 6), randT(2, 8, 3, 2)
	mask := &text.Mask{B: 2, L: 4, Valid: []bool{true, true, true, false, true, false, false, false}}
	loss := func(g *autograd.Graph, xv, cv *autograd.Var) *autograd.Var {
		return g.Sum(g.Mul(a.Forward(g, xv, cv, mask.Bias(g, 6)), autograd.Const(w)))
	}
	g := autograd.New(tensor.CPU)
	xv, cv := autograd.Input(x), autograd.Input(ctx)
	if err := g.Backward(loss(g, xv, cv)); err != nil {
		t.Fatal(err)
	}
	check := func(name string, v *tensor.Tensor, grad []float32) {
		d := v.Data()
		for _, j := range r.Perm(len(d))[:min(8, len(d))] {
			const h = 1e-2
			old := d[j]
			at := func(val float32) float64 {
				d[j] = val
				ng := autograd.NoGrad(tensor.CPU)
				return float64(loss(ng, autograd.Const(x), autograd.Const(ctx)).Value.Item())
			}
			num := (at(old+h) - at(old-h)) / (2 * h)
			d[j] = old
			if math.Abs(num-float64(grad[j])) > 2e-2*math.Max(1, math.Abs(num)) {
				t.Errorf("%s[%d]: backward %g, finite difference %g", name, j, grad[j], num)
			}
		}
	}
	check("x", x, xv.Grad.ToHost())
	cg := cv.Grad.ToHost()
	check("ctx", ctx, cg)
	// Masked tokens (image 0 token 3, image 1 tokens 1–3) get no gradient.
	for _, k := range []int{3, 5, 6, 7} {
		for j := range 6 {
			if cg[k*6+j] != 0 {
				t.Fatalf("masked token %d has gradient %g", k, cg[k*6+j])
			}
		}
	}
	for _, p := range nn.Parameters(a) {
		check(p.Name, p.Var.Value, p.Var.Grad.ToHost())
	}
}
