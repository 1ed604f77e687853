package captions

import (
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/diffuse-go/diffuse/text"
)

// DigitWords are the digits' names, index = digit.
var DigitWords = [10]string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}

// Word lists of the caption grammar, by attribute and level. Adjectives go
// before the noun ("a bold seven"); phrases after it, separated by commas
// or introduced by "with" ("seven, tilted left", "a 7 with thin strokes").
// A Mid thickness or size has no adjective, only phrases ("medium
// strokes", "average size"); "slanted" alone means slanted right.
var (
	thickAdj = [3][]string{{"thin", "light", "skinny"}, nil, {"thick", "bold", "heavy"}}
	// thickWord fills "{w} strokes" / "{w} lines".
	thickWord = [3][]string{{"thin", "light", "skinny"}, {"medium", "regular", "normal"}, {"thick", "bold", "heavy"}}
	sizeAdj   = [3][]string{{"small", "little", "narrow"}, nil, {"large", "big", "wide"}}
	sizePhr   = [3][]string{{"small", "small size", "narrow"}, {"medium size", "average size", "normal size"}, {"large", "large size", "wide"}}
	slantAdj  = [3][]string{{"left slanted", "left leaning"}, {"upright", "straight"}, {"slanted", "right slanted", "right leaning", "italic"}}
	slantPhr  = [3][]string{
		{"slanted left", "leaning left", "tilted left", "slanted to the left", "leaning to the left"},
		{"upright", "straight", "standing straight"},
		{"slanted right", "leaning right", "tilted right", "slanted to the right", "leaning to the right"},
	}
	determiners = []string{"a", "the", ""}
)

// Vocabulary returns every word a caption can contain (as text.Split cuts
// them), in a fixed order: the tokenizer's vocabulary for MNIST captions.
func Vocabulary() []string {
	var ws []string
	seen := map[string]bool{}
	add := func(phrases ...string) {
		for _, p := range phrases {
			for _, w := range text.Split(p) {
				if !seen[w] {
					seen[w] = true
					ws = append(ws, w)
				}
			}
		}
	}
	add(DigitWords[:]...)
	for d := range 10 {
		add(strconv.Itoa(d))
	}
	add("a the digit number with strokes lines ,")
	for l := range 3 {
		add(thickAdj[l]...)
		add(thickWord[l]...)
		add(sizeAdj[l]...)
		add(sizePhr[l]...)
		add(slantAdj[l]...)
		add(slantPhr[l]...)
	}
	return ws
}

func pick(rng *rand.Rand, list []string) string { return list[rng.IntN(len(list))] }

// noun names the digit: "seven", "7", "digit 7", "number seven", ... or,
// without a digit, "digit".
func noun(rng *rand.Rand, d int, withDigit bool) string {
	if !withDigit {
		return "digit"
	}
	word, num := DigitWords[d], strconv.Itoa(d)
	switch rng.IntN(6) {
	case 0, 1:
		return word
	case 2:
		return num
	case 3:
		return "digit " + num
	case 4:
		return "number " + word
	}
	return "digit " + word
}

// Caption draws a caption of a with rng: the digit (as a word or numeral;
// left out one time in ten: "a thick digit"), and each of thickness, size
// and slant with probability 1/2, in random order and wording, as
// adjectives ("a thin slanted seven"), comma-separated phrases ("the digit
// 7, thick strokes") or a "with" phrase ("a 3 with bold strokes"). Every
// caption has at most MaxWords words.
func Caption(a Attributes, rng *rand.Rand) string {
	withDigit := rng.IntN(10) != 0
	type attr struct {
		adj    []string // nil: no adjective at this level
		phrase func() string
	}
	var attrs []attr
	if rng.IntN(2) == 0 {
		l := a.Thickness
		attrs = append(attrs, attr{thickAdj[l], func() string {
			if rng.IntN(2) == 0 {
				return pick(rng, thickWord[l]) + " lines"
			}
			return pick(rng, thickWord[l]) + " strokes"
		}})
	}
	if rng.IntN(2) == 0 {
		l := a.Size
		attrs = append(attrs, attr{sizeAdj[l], func() string { return pick(rng, sizePhr[l]) }})
	}
	if rng.IntN(2) == 0 {
		l := a.Slant
		attrs = append(attrs, attr{slantAdj[l], func() string { return pick(rng, slantPhr[l]) }})
	}
	rng.Shuffle(len(attrs), func(i, j int) { attrs[i], attrs[j] = attrs[j], attrs[i] })
	// Each attribute goes before the noun (when it has an adjective at its
	// level) or after it as a phrase.
	var before, after []string
	for _, at := range attrs {
		if at.adj != nil && rng.IntN(2) == 0 {
			before = append(before, pick(rng, at.adj))
		} else {
			after = append(after, at.phrase())
		}
	}
	det := pick(rng, determiners)
	var sb strings.Builder
	for _, w := range append(append([]string{det}, before...), noun(rng, a.Digit, withDigit)) {
		if w == "" {
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(w)
	}
	for i, p := range after {
		// A thickness phrase may read "with thin strokes"; others follow commas.
		if i == 0 && strings.HasSuffix(p, "strokes") && rng.IntN(2) == 0 {
			sb.WriteString(" with " + p)
			continue
		}
		sb.WriteString(", " + p)
	}
	return sb.String()
}

// MaxWords bounds the length of a caption in tokens (text.Split's words,
// commas included); captions' encoders must read at least this many.
const MaxWords = 15

// DigitOf returns the digit a prompt names (a digit word or numeral),
// and false when it names none or several different ones.
func DigitOf(prompt string) (int, bool) {
	found := -1
	for _, w := range text.Split(prompt) {
		d := -1
		if n, err := strconv.Atoi(w); err == nil && n >= 0 && n <= 9 && len(w) == 1 {
			d = n
		}
		for k, dw := range DigitWords {
			if w == dw {
				d = k
			}
		}
		if d < 0 {
			continue
		}
		if found >= 0 && found != d {
			return 0, false
		}
		found = d
	}
	return found, found >= 0
}
