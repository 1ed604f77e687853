// Package text is diffuse's text conditioning: a word-level tokenizer with
// a saved vocabulary and a small transformer text encoder whose token
// embeddings a U-Net reads through cross-attention (as Stable Diffusion
// reads CLIP's). Both are sized for MNIST captions ("a thin slanted
// seven"), not for open-ended language.
package text

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
)

// Special tokens. Their ids are fixed: every vocabulary starts with them.
const (
	// PAD fills a token sequence up to the encoder's fixed length; the
	// encoder masks padded positions out of every attention.
	PAD = 0
	// UNK stands for a word outside the vocabulary (EncodeLoose only;
	// Encode refuses unknown words).
	UNK = 1
	// BOS starts every sequence the encoder reads (added by the encoder,
	// not by the tokenizer), so even the empty prompt — the null condition
	// of classifier-free guidance — has one position to attend to.
	BOS = 2
)

// Specials are the spellings of PAD, UNK and BOS, in id order.
var Specials = []string{"[PAD]", "[UNK]", "[BOS]"}

// Tokenizer maps prompts to word ids: lowercase, split on white space,
// punctuation and symbols each a token of their own ("the digit 7, thick"
// → the, digit, 7, ",", thick). Its vocabulary is Specials followed by the
// words it was built from.
type Tokenizer struct {
	vocab  []string
	ids    map[string]int
	maxLen int
}

// NewTokenizer builds a tokenizer over words (Specials are prepended;
// duplicates dropped, first occurrence kept) for prompts of at most
// maxWords tokens. Words must be lowercase single tokens as Split makes
// them.
func NewTokenizer(words []string, maxWords int) (*Tokenizer, error) {
	vocab := append([]string{}, Specials...)
	seen := map[string]bool{}
	for _, s := range Specials {
		seen[s] = true
	}
	for _, w := range words {
		if seen[w] {
			continue
		}
		if sp := Split(w); len(sp) != 1 || sp[0] != w {
			return nil, fmt.Errorf("tokenizer: vocabulary entry %q is not one lowercase token (it splits into %q)", w, sp)
		}
		seen[w] = true
		vocab = append(vocab, w)
	}
	return FromVocab(vocab, maxWords)
}

// FromVocab rebuilds a tokenizer from a saved vocabulary (Vocab's output:
// id i is vocab[i], starting with Specials) and prompt length limit.
func FromVocab(vocab []string, maxWords int) (*Tokenizer, error) {
	if len(vocab) < len(Specials) {
		return nil, fmt.Errorf("tokenizer: vocabulary of %d entries lacks the special tokens %v", len(vocab), Specials)
	}
	for i, s := range Specials {
		if vocab[i] != s {
			return nil, fmt.Errorf("tokenizer: vocabulary entry %d is %q, want %q (vocabularies start with %v)", i, vocab[i], s, Specials)
		}
	}
	if maxWords < 1 {
		return nil, fmt.Errorf("tokenizer: the prompt length limit must be ≥ 1 (got %d)", maxWords)
	}
	t := &Tokenizer{vocab: append([]string{}, vocab...), ids: map[string]int{}, maxLen: maxWords}
	for i, w := range vocab {
		if _, dup := t.ids[w]; dup {
			return nil, fmt.Errorf("tokenizer: vocabulary holds %q twice", w)
		}
		t.ids[w] = i
	}
	return t, nil
}

// Vocab returns the vocabulary: token id i is Vocab()[i].
func (t *Tokenizer) Vocab() []string { return append([]string{}, t.vocab...) }

// Size is the number of token ids (Specials included).
func (t *Tokenizer) Size() int { return len(t.vocab) }

// MaxWords is the longest prompt, in tokens, the tokenizer accepts.
func (t *Tokenizer) MaxWords() int { return t.maxLen }

// Split lowercases s and cuts it into words: runs of letters and digits
// separated by white space; every punctuation or symbol character is a
// word of its own.
func Split(s string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, cur.String())
			cur.Reset()
		}
	}
	for _, r := range strings.ToLower(s) {
		switch {
		case unicode.IsSpace(r):
			flush()
		case unicode.IsPunct(r) || unicode.IsSymbol(r):
			flush()
			out = append(out, string(r))
		default:
			cur.WriteRune(r)
		}
	}
	flush()
	return out
}

// UnknownWordsError is Encode's error for a prompt with words outside the
// vocabulary; its message lists them and the known words.
type UnknownWordsError struct {
	Prompt  string
	Unknown []string
	Known   []string // the vocabulary without Specials, sorted
}

func (e *UnknownWordsError) Error() string {
	return fmt.Sprintf("prompt %q: unknown word(s) %s; this model knows: %s",
		e.Prompt, strings.Join(quoteAll(e.Unknown), ", "), strings.Join(e.Known, " "))
}

func quoteAll(ws []string) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = fmt.Sprintf("%q", w)
	}
	return out
}

// Known returns the vocabulary's words (Specials left out), sorted.
func (t *Tokenizer) Known() []string {
	k := append([]string{}, t.vocab[len(Specials):]...)
	sort.Strings(k)
	return k
}

// EncodeLoose returns the ids of prompt's words, UNK for each word outside
// the vocabulary, and those words. It does not check the length.
func (t *Tokenizer) EncodeLoose(prompt string) (ids []int, unknown []string) {
	ids = []int{}
	for _, w := range Split(prompt) {
		id, ok := t.ids[w]
		if !ok || id < len(Specials) { // "[pad]" typed by a user is not the special token
			id = UNK
			unknown = append(unknown, w)
		}
		ids = append(ids, id)
	}
	return ids, unknown
}

// Encode returns the ids of prompt's words (no BOS, no padding: the
// encoder adds those); "" gives the empty sequence, the null prompt. A
// word outside the vocabulary is an *UnknownWordsError (listing the
// unknown and the known words); a prompt longer than MaxWords tokens is an
// error too.
func (t *Tokenizer) Encode(prompt string) ([]int, error) {
	ids, unk := t.EncodeLoose(prompt)
	if len(unk) > 0 {
		return nil, &UnknownWordsError{Prompt: prompt, Unknown: unk, Known: t.Known()}
	}
	if len(ids) > t.maxLen {
		return nil, fmt.Errorf("prompt %q has %d tokens; this model reads at most %d (punctuation counts as a token): shorten it", prompt, len(ids), t.maxLen)
	}
	return ids, nil
}

// Decode joins the words of ids with single spaces, skipping PAD and BOS
// and writing UNK as [UNK]; an id outside the vocabulary is written as
// [id N].
func (t *Tokenizer) Decode(ids []int) string {
	var ws []string
	for _, id := range ids {
		switch {
		case id == PAD || id == BOS:
		case id < 0 || id >= len(t.vocab):
			ws = append(ws, fmt.Sprintf("[id %d]", id))
		default:
			ws = append(ws, t.vocab[id])
		}
	}
	return strings.Join(ws, " ")
}
