package text

import (
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// Config is a text encoder's architecture and vocabulary; a text-conditional
// model's spec holds it (model.Spec.Text), so a checkpoint alone rebuilds
// the tokenizer and the encoder.
type Config struct {
	// Vocab is the tokenizer's vocabulary: token id i is Vocab[i]; it
	// starts with Specials.
	Vocab []string `json:"vocab"`
	// MaxLen is the encoder's sequence length in tokens, BOS included:
	// prompts hold at most MaxLen−1 words.
	MaxLen int `json:"max_len"`
	// Width is the token embedding width D; Heads its attention heads
	// (Width divisible by Heads); Layers the number of transformer blocks.
	Width  int `json:"width"`
	Heads  int `json:"heads"`
	Layers int `json:"layers"`
	// Pooled also adds a projection of the mean unpadded token embedding
	// to the U-Net's time embedding (SDXL's pooled text embedding), besides
	// the cross-attention.
	Pooled bool `json:"pooled,omitempty"`
}

// DefaultConfig is the MNIST-caption encoder: width 64, 4 heads, 2 blocks,
// 16 positions (BOS + up to 15 words), pooled embedding on.
func DefaultConfig(vocab []string) Config {
	return Config{Vocab: vocab, MaxLen: 16, Width: 64, Heads: 4, Layers: 2, Pooled: true}
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	switch {
	case c.MaxLen < 2:
		return fmt.Errorf("text: max_len must be ≥ 2 (BOS and one word), got %d", c.MaxLen)
	case c.Width < 1 || c.Heads < 1 || c.Width%c.Heads != 0:
		return fmt.Errorf("text: width %d must be a positive multiple of heads %d", c.Width, c.Heads)
	case c.Layers < 0:
		return fmt.Errorf("text: layers must be ≥ 0 (got %d)", c.Layers)
	}
	_, err := c.Tokenizer()
	return err
}

// Tokenizer builds the config's tokenizer (prompts of up to MaxLen−1
// words).
func (c Config) Tokenizer() (*Tokenizer, error) { return FromVocab(c.Vocab, c.MaxLen-1) }

// Block is a pre-LayerNorm transformer block: h = x + Attn(LN1(x)) with
// padded keys masked; out = h + FC2(GELU(FC1(LN2(h)))), FC1 widening 4×.
type Block struct {
	LN1, LN2 *nn.LayerNorm
	Attn     *nn.MultiHeadAttention
	FC1, FC2 *nn.Linear
}

// Visit names parameters ln1, attn (to_q, to_k, to_v, to_out), ln2, fc1,
// fc2.
func (b *Block) Visit(prefix string, fn func(string, *autograd.Var)) {
	b.LN1.Visit(nn.Join(prefix, "ln1"), fn)
	b.Attn.Visit(nn.Join(prefix, "attn"), fn)
	b.LN2.Visit(nn.Join(prefix, "ln2"), fn)
	b.FC1.Visit(nn.Join(prefix, "fc1"), fn)
	b.FC2.Visit(nn.Join(prefix, "fc2"), fn)
}

// Forward maps x [B, L, D] to [B, L, D]; bias [B, L, L] masks padded keys.
func (b *Block) Forward(g *autograd.Graph, x, bias *autograd.Var) *autograd.Var {
	s := x.Shape()
	h := g.Add(x, b.Attn.ForwardMasked(g, b.LN1.Forward(g, x), nil, bias))
	m := g.Reshape(b.LN2.Forward(g, h), s[0]*s[1], s[2])
	m = b.FC2.Forward(g, g.GELU(b.FC1.Forward(g, m)))
	return g.Add(h, g.Reshape(m, s...))
}

// Encoder is the text encoder: token embedding plus a learned positional
// embedding, Layers pre-LN transformer blocks, a final LayerNorm. Sequences
// are [BOS, words..., PAD...] of MaxLen tokens; padded positions are masked
// out of every attention (as keys; their own outputs are computed but no
// one reads them), so a prompt's embedding does not depend on padding.
type Encoder struct {
	Token, Pos *nn.Embedding
	Blocks     []*Block
	Norm       *nn.LayerNorm
	MaxLen     int
}

// NewEncoder builds an encoder for c with weights drawn from rng
// (embeddings N(0, 1) like torch.nn.Embedding, Linear layers PyTorch's
// default, LayerNorms identity).
func NewEncoder(rng *rand.Rand, c Config) *Encoder {
	e := &Encoder{
		Token: nn.NewEmbedding(rng, len(c.Vocab), c.Width),
		Pos:   nn.NewEmbedding(rng, c.MaxLen, c.Width),
		Norm:  nn.NewLayerNorm(c.Width), MaxLen: c.MaxLen,
	}
	for range c.Layers {
		e.Blocks = append(e.Blocks, &Block{
			LN1: nn.NewLayerNorm(c.Width), Attn: nn.NewMultiHeadAttention(rng, c.Width, c.Width, c.Heads),
			LN2: nn.NewLayerNorm(c.Width), FC1: nn.NewLinear(rng, c.Width, 4*c.Width), FC2: nn.NewLinear(rng, 4*c.Width, c.Width),
		})
	}
	return e
}

// Width is the embedding width D.
func (e *Encoder) Width() int { return e.Token.W.Value.Dim(1) }

// Visit names parameters token_emb, pos_emb, blocks.N.*, norm.
func (e *Encoder) Visit(prefix string, fn func(string, *autograd.Var)) {
	e.Token.Visit(nn.Join(prefix, "token_emb"), fn)
	e.Pos.Visit(nn.Join(prefix, "pos_emb"), fn)
	for i, b := range e.Blocks {
		b.Visit(nn.Join(prefix, "blocks."+strconv.Itoa(i)), fn)
	}
	e.Norm.Visit(nn.Join(prefix, "norm"), fn)
}

// Mask records which of a batch's MaxLen positions hold tokens (BOS and
// words) rather than padding.
type Mask struct {
	B, L  int
	Valid []bool // [B·L], row-major
}

// maskedLogit is the bias that removes a key from a softmax: exp(−1e9)
// is 0 in float32, while finite logits keep the kernels NaN-free.
const maskedLogit = -1e9

// Bias returns the additive attention bias [B, rows, L] for queries of any
// kind (rows per image: L for self-attention, H·W for cross-attention):
// 0 on valid keys, −1e9 on padded ones. It lives in g's arena.
func (m *Mask) Bias(g *autograd.Graph, rows int) *autograd.Var {
	host := make([]float32, m.B*rows*m.L)
	for b := range m.B {
		for r := range rows {
			row := host[(b*rows+r)*m.L : (b*rows+r+1)*m.L]
			for j := range row {
				if !m.Valid[b*m.L+j] {
					row[j] = maskedLogit
				}
			}
		}
	}
	t := g.Arena().Get(m.B, rows, m.L)
	g.Backend().CopyFromHost(t, host)
	return autograd.Const(t)
}

// Pool returns the mean of h [B, L, D] over each image's valid positions:
// [B, D].
func (m *Mask) Pool(g *autograd.Graph, h *autograd.Var) *autograd.Var {
	s := h.Shape()
	host := make([]float32, m.B*m.L)
	for b := range m.B {
		n := 0
		for j := range m.L {
			if m.Valid[b*m.L+j] {
				n++
			}
		}
		for j := range m.L {
			if m.Valid[b*m.L+j] {
				host[b*m.L+j] = 1 / float32(n)
			}
		}
	}
	w := g.Arena().Get(m.B, 1, m.L)
	g.Backend().CopyFromHost(w, host)
	return g.Reshape(g.MatMul(autograd.Const(w), h, false, false, 1), s[0], s[2])
}

// Forward encodes a batch of token sequences (word ids as Tokenizer.Encode
// returns them; empty: the null prompt) into h [B, MaxLen, D] and the mask
// of valid positions. A sequence longer than MaxLen−1 or an id outside the
// vocabulary panics with a *tensor.ShapeError (autograd.Catch turns it into
// an error).
func (e *Encoder) Forward(g *autograd.Graph, tokens [][]int) (*autograd.Var, *Mask) {
	B, L, D := len(tokens), e.MaxLen, e.Width()
	V := e.Token.W.Value.Dim(0)
	ids := make([]int, B*L)
	pos := make([]int, B*L)
	m := &Mask{B: B, L: L, Valid: make([]bool, B*L)}
	for b, seq := range tokens {
		if len(seq) > L-1 {
			panic(&tensor.ShapeError{Op: "text encoder", Msg: fmt.Sprintf("prompt %d has %d tokens; the encoder reads at most %d", b, len(seq), L-1)})
		}
		ids[b*L] = BOS
		m.Valid[b*L] = true
		for j, id := range seq {
			if id < 0 || id >= V {
				panic(&tensor.ShapeError{Op: "text encoder", Msg: fmt.Sprintf("token id %d of prompt %d is outside the vocabulary of %d", id, b, V)})
			}
			ids[b*L+1+j] = id
			m.Valid[b*L+1+j] = true
		}
		for j := range L {
			pos[b*L+j] = j
		}
	}
	h := g.Add(e.Token.Forward(g, ids), e.Pos.Forward(g, pos))
	h = g.Reshape(h, B, L, D)
	if len(e.Blocks) > 0 {
		bias := m.Bias(g, L)
		for _, blk := range e.Blocks {
			h = blk.Forward(g, h, bias)
		}
	}
	return e.Norm.Forward(g, h), m
}
