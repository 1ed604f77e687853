package text

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

var words = []string{"a", "thin", "thick", "seven", "7", ",", "digit", "the"}

func TestSplit(t *testing.T) {
	got := Split("  The digit 7, THICK-strokes!\tok ")
	want := []string{"the", "digit", "7", ",", "thick", "-", "strokes", "!", "ok"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Split = %q, want %q", got, want)
	}
	if len(Split("")) != 0 || len(Split("   ")) != 0 {
		t.Fatal("blank prompts split into words")
	}
}

// Encode/Decode round-trip; the vocabulary survives a save (Vocab) and
// rebuild (FromVocab); unknown words and long prompts are clear errors.
func TestTokenizer(t *testing.T) {
	tok, err := NewTokenizer(append(words, "thin"), 6)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Size() != len(Specials)+len(words) || tok.Vocab()[PAD] != "[PAD]" || tok.Vocab()[UNK] != "[UNK]" || tok.Vocab()[BOS] != "[BOS]" {
		t.Fatalf("vocabulary %q", tok.Vocab())
	}
	ids, err := tok.Encode("The digit 7, thin")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{10, 9, 7, 8, 4}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("ids %v, want %v", ids, want)
	}
	if s := tok.Decode(append([]int{BOS}, append(ids, PAD, PAD)...)); s != "the digit 7 , thin" {
		t.Fatalf("Decode = %q", s)
	}
	if e, err := tok.Encode(""); err != nil || len(e) != 0 {
		t.Fatalf("empty prompt: %v, %v; want no tokens (the null prompt)", e, err)
	}
	re, err := FromVocab(tok.Vocab(), tok.MaxWords())
	if err != nil {
		t.Fatal(err)
	}
	ids2, _ := re.Encode("The digit 7, thin")
	if !reflect.DeepEqual(ids, ids2) {
		t.Fatalf("rebuilt tokenizer encodes %v, original %v", ids2, ids)
	}

	_, err = tok.Encode("a purple seven, very thin")
	var uw *UnknownWordsError
	if !errors.As(err, &uw) || !reflect.DeepEqual(uw.Unknown, []string{"purple", "very"}) {
		t.Fatalf("unknown words: err = %v", err)
	}
	for _, s := range []string{`"purple"`, `"very"`, "seven the thick thin"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q lacks %s", err, s)
		}
	}
	loose, unk := tok.EncodeLoose("a purple [pad] seven")
	if !reflect.DeepEqual(loose, []int{3, UNK, UNK, UNK, UNK, 6}) || !reflect.DeepEqual(unk, []string{"purple", "[", "pad", "]"}) {
		t.Fatalf("EncodeLoose = %v %q; want UNK for purple and the pieces of a typed [pad]", loose, unk)
	}
	if _, err := tok.Encode("a thin thin thin thin seven thick"); err == nil || !strings.Contains(err.Error(), "at most 6") {
		t.Fatalf("7-token prompt with limit 6: err = %v", err)
	}
	if _, err := NewTokenizer([]string{"two words"}, 4); err == nil {
		t.Fatal("a vocabulary entry with a space was accepted")
	}
	if _, err := FromVocab([]string{"[PAD]", "x", "[BOS]"}, 4); err == nil {
		t.Fatal("a vocabulary without [UNK] at id 1 was accepted")
	}
	if _, err := FromVocab([]string{"[PAD]", "[UNK]", "[BOS]", "a", "a"}, 4); err == nil {
		t.Fatal("a vocabulary with a duplicate was accepted")
	}
}

func testConfig() Config {
	c := DefaultConfig(append(append([]string{}, Specials...), words...))
	c.MaxLen = 6
	return c
}

func maxAbsDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}

// The encoder's output for a prompt does not depend on the padding or on
// the other prompts of the batch; the empty prompt works (BOS only);
// different prompts give different embeddings; bad tokens are errors.
func TestEncoder(t *testing.T) {
	c := testConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	e := NewEncoder(rand.New(rand.NewPCG(1, 1)), c)
	g := autograd.NoGrad(tensor.CPU)
	h, m := e.Forward(g, [][]int{{3, 4, 6}, {}, {3, 5, 6}})
	if s := h.Shape(); !reflect.DeepEqual(s, []int{3, 6, 64}) {
		t.Fatalf("shape %v", s)
	}
	if !reflect.DeepEqual(m.Valid[:6], []bool{true, true, true, true, false, false}) || !m.Valid[6] || m.Valid[7] {
		t.Fatalf("mask %v", m.Valid)
	}
	out := h.Value.ToHost()
	per := 6 * 64
	h2, _ := e.Forward(g, [][]int{{3, 4, 6}})
	if d := maxAbsDiff(out[:4*64], h2.Value.ToHost()[:4*64]); d > 1e-5 {
		t.Fatalf("a prompt's embedding depends on the batch by %g", d)
	}
	if d := maxAbsDiff(out[:4*64], out[2*per:2*per+4*64]); d < 1e-3 {
		t.Fatalf("'a thin seven' and 'a thick seven' embed alike (diff %g)", d)
	}
	// Longer padding (a bigger MaxLen with the same weights) changes nothing.
	long := c
	long.MaxLen = 9
	el := NewEncoder(rand.New(rand.NewPCG(1, 1)), long)
	src := map[string]*autograd.Var{}
	for _, p := range nn.Parameters(e) {
		src[p.Name] = p.Var
	}
	for _, p := range nn.Parameters(el) {
		copy(p.Var.Value.Data(), src[p.Name].Value.Data())
	}
	hl, _ := el.Forward(g, [][]int{{3, 4, 6}})
	if d := maxAbsDiff(out[:4*64], hl.Value.ToHost()[:4*64]); d > 1e-5 {
		t.Fatalf("more padding changed the embedding by %g", d)
	}
	pool := m.Pool(g, h).Value.ToHost()
	var want float32
	for j := range 4 {
		want += out[j*64] / 4
	}
	if math.Abs(float64(pool[0]-want)) > 1e-5 || math.Abs(float64(pool[64]-out[per])) > 1e-6 {
		t.Fatalf("pooled %g, %g; want the mean over valid positions %g, %g", pool[0], pool[64], want, out[per])
	}
	for _, bad := range [][]int{{99}, {3, 3, 3, 3, 3, 3}, {-1}} {
		if err := autograd.Catch(func() { e.Forward(g, [][]int{bad}) }); err == nil || !strings.Contains(err.Error(), "text encoder") {
			t.Errorf("tokens %v: err = %v", bad, err)
		}
	}
	bad := c
	bad.Heads = 5
	if bad.Validate() == nil {
		t.Error("width 64 with 5 heads validated")
	}
}

// Every encoder parameter receives a gradient, which matches finite
// differences of the loss for a few entries.
func TestEncoderGradients(t *testing.T) {
	e := NewEncoder(rand.New(rand.NewPCG(2, 2)), testConfig())
	tokens := [][]int{{3, 4, 6}, {}, {9, 10, 7, 8}}
	r := rand.New(rand.NewPCG(3, 3))
	weights := tensor.New(3, 6, 64)
	for i := range weights.Data() {
		weights.Data()[i] = float32(r.NormFloat64())
	}
	loss := func(g *autograd.Graph) *autograd.Var {
		h, m := e.Forward(g, tokens)
		return g.Add(g.Sum(g.Mul(h, autograd.Const(weights))), g.Sum(m.Pool(g, h)))
	}
	g := autograd.New(tensor.CPU)
	if err := g.Backward(loss(g)); err != nil {
		t.Fatal(err)
	}
	for _, p := range nn.Parameters(e) {
		if !p.Var.HasGrad() {
			t.Fatalf("%s: no gradient", p.Name)
		}
	}
	for _, p := range nn.Parameters(e) {
		if !strings.Contains(p.Name, "blocks.0.attn.to_k.weight") && !strings.Contains(p.Name, "pos_emb") && !strings.Contains(p.Name, "blocks.1.fc1.bias") {
			continue
		}
		d := p.Var.Value.Data()
		grad := p.Var.Grad.ToHost()
		for _, j := range r.Perm(len(d))[:6] {
			const h = 1e-2
			old := d[j]
			d[j] = old + h
			lp := float64(loss(autograd.NoGrad(tensor.CPU)).Value.Item())
			d[j] = old - h
			lm := float64(loss(autograd.NoGrad(tensor.CPU)).Value.Item())
			d[j] = old
			num := (lp - lm) / (2 * h)
			if math.Abs(num-float64(grad[j])) > 3e-2*math.Max(1, math.Abs(num)) {
				t.Errorf("%s[%d]: backward %g, finite difference %g", p.Name, j, grad[j], num)
			}
		}
	}
}
