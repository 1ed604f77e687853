package nn

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/tensor"
)

type pair struct {
	A *Linear
	C *Conv2d
}

func (p *pair) Visit(prefix string, fn func(string, *autograd.Var)) {
	p.A.Visit(Join(prefix, "a"), fn)
	p.C.Visit(Join(prefix, "c"), fn)
}

func TestStateDictRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	m := &pair{NewLinear(rng, 3, 4), NewConv2d(rng, 2, 5, 3, 1, 1)}
	dir := t.TempDir()
	path := filepath.Join(dir, "m.safetensors")
	if err := Save(path, m, map[string]string{"arch": "pair"}); err != nil {
		t.Fatal(err)
	}
	m2 := &pair{NewLinear(rng, 3, 4), NewConv2d(rng, 2, 5, 3, 1, 1)}
	if err := Load(path, m2); err != nil {
		t.Fatal(err)
	}
	p1, p2 := Parameters(m), Parameters(m2)
	for i := range p1 {
		if p1[i].Name != p2[i].Name {
			t.Fatalf("names %s vs %s", p1[i].Name, p2[i].Name)
		}
		a, b := p1[i].Var.Value.Data(), p2[i].Var.Value.Data()
		for j := range a {
			if a[j] != b[j] {
				t.Fatalf("%s[%d]: %v vs %v", p1[i].Name, j, a[j], b[j])
			}
		}
	}
	if CountParams(m) != 3*4+4+2*5*9+5 {
		t.Errorf("CountParams = %d", CountParams(m))
	}
}

func TestLoadOtherArchitectureFails(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := Save(path, &pair{NewLinear(rng, 3, 4), NewConv2d(rng, 2, 5, 3, 1, 1)}, nil); err != nil {
		t.Fatal(err)
	}
	err := Load(path, &pair{NewLinear(rng, 3, 6), NewConv2d(rng, 2, 5, 3, 1, 1)})
	if err == nil || !strings.Contains(err.Error(), "a.weight") || !strings.Contains(err.Error(), "another architecture") {
		t.Fatalf("want a shape-mismatch error naming a.weight, got %v", err)
	}
	other := &struct{ *Linear }{NewLinear(rng, 3, 4)}
	err = LoadFrom(mustRead(t, path), prefixed{"x", other.Linear}, "")
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("want a missing-parameter error, got %v", err)
	}
	if err := Load(filepath.Join(t.TempDir(), "none.safetensors"), other.Linear); err == nil {
		t.Fatal("missing file: want an error")
	}
}

type prefixed struct {
	p string
	m Module
}

func (p prefixed) Visit(prefix string, fn func(string, *autograd.Var)) {
	p.m.Visit(Join(prefix, p.p), fn)
}

func mustRead(t *testing.T, path string) *safetensorsFile {
	t.Helper()
	f, err := readFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// The attention layer equals a naive per-head computation.
func TestMultiHeadAttentionNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	B, L, S, D, Dc, H := 2, 3, 4, 8, 6, 2
	a := NewMultiHeadAttention(rng, D, Dc, H)
	x := tensor.New(B, L, D)
	ctx := tensor.New(B, S, Dc)
	for _, tt := range []*tensor.Tensor{x, ctx} {
		for i := range tt.Data() {
			tt.Data()[i] = float32(rng.NormFloat64())
		}
	}
	g := autograd.NoGrad(tensor.CPU)
	got := a.Forward(g, autograd.Const(x), autograd.Const(ctx)).Value.Data()

	lin := func(l *Linear, in []float32, rows, din int) []float64 {
		w, b := l.W.Value.Data(), l.B.Value.Data()
		dout := len(b)
		out := make([]float64, rows*dout)
		for r := 0; r < rows; r++ {
			for o := 0; o < dout; o++ {
				s := float64(b[o])
				for i := 0; i < din; i++ {
					s += float64(in[r*din+i]) * float64(w[o*din+i])
				}
				out[r*dout+o] = s
			}
		}
		return out
	}
	q := lin(a.Q, x.Data(), B*L, D)
	k := lin(a.K, ctx.Data(), B*S, Dc)
	v := lin(a.V, ctx.Data(), B*S, Dc)
	dh := D / H
	o := make([]float32, B*L*D)
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			for i := 0; i < L; i++ {
				sc := make([]float64, S)
				mx := math.Inf(-1)
				for j := 0; j < S; j++ {
					for d := 0; d < dh; d++ {
						sc[j] += q[(b*L+i)*D+h*dh+d] * k[(b*S+j)*D+h*dh+d]
					}
					sc[j] /= math.Sqrt(float64(dh))
					mx = math.Max(mx, sc[j])
				}
				z := 0.0
				for j := range sc {
					sc[j] = math.Exp(sc[j] - mx)
					z += sc[j]
				}
				for d := 0; d < dh; d++ {
					s := 0.0
					for j := 0; j < S; j++ {
						s += sc[j] / z * v[(b*S+j)*D+h*dh+d]
					}
					o[(b*L+i)*D+h*dh+d] = float32(s)
				}
			}
		}
	}
	want := lin(a.Out, o, B*L, D)
	for i := range want {
		if math.Abs(float64(got[i])-want[i]) > 1e-5 {
			t.Fatalf("out[%d] = %v, naive %v", i, got[i], want[i])
		}
	}
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }
