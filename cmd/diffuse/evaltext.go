package main

// 'diffuse eval-text': how well a text-conditional MNIST model follows its
// prompts — digit accuracy from prompts, and whether thickness, size and
// slant move the way the prompt says.

import (
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/data/captions"
	"github.com/diffuse-go/diffuse/eval"
	"github.com/diffuse-go/diffuse/guidance"
	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/model"
	"github.com/diffuse-go/diffuse/model/classifier"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/text"
	"github.com/diffuse-go/diffuse/train"
)

const defaultGridPrompts = "seven|a thin slanted seven|a thick upright seven|a small zero|a large zero|the digit 3, bold strokes|a 3 with thin strokes, leaning left|a left slanted four|a right slanted four|a wide heavy eight"

// attrPair is one attribute's prompt pair: {d} is replaced by the digit
// word; Low is the prompt for the low tercile (thin, small, left).
type attrPair struct {
	name, measure string
	low, high     string
	value         func(captions.Measures) float64
	cuts          func(*captions.Thresholds, int) captions.Cuts
}

var attrPairs = []attrPair{
	{"thickness", "ink mass (px)", "a thin {d}", "a thick {d}", func(m captions.Measures) float64 { return m.Ink },
		func(t *captions.Thresholds, d int) captions.Cuts { return t.Ink[d] }},
	{"size", "bbox area (px)", "a small {d}", "a large {d}", func(m captions.Measures) float64 { return m.Area },
		func(t *captions.Thresholds, d int) captions.Cuts { return t.Area[d] }},
	{"slant", "shear cov(x,y)/var(y)", "a left slanted {d}", "a right slanted {d}", func(m captions.Measures) float64 { return m.Slant },
		func(t *captions.Thresholds, d int) captions.Cuts { return t.Slant[d] }},
}

// digitPromptForms are the wordings of the digit-accuracy prompts, cycled
// over the images of each digit.
var digitPromptForms = []func(d int) string{
	func(d int) string { return captions.DigitWords[d] },
	func(d int) string { return "a " + captions.DigitWords[d] },
	func(d int) string { return "the digit " + strconv.Itoa(d) },
	func(d int) string { return "number " + captions.DigitWords[d] },
}

func runEvalText(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eval-text", flag.ContinueOnError)
	fs.SetOutput(stderr)
	modelPath := fs.String("model", "", "text-conditional model (checkpoint or export), e.g. runs/mnist-text/model.safetensors")
	clsPath := fs.String("classifier", "", "classifier file (default: the embedded one)")
	nDigit := fs.Int("n-digit", 20, "samples per digit for digit accuracy (prompts cycle through: seven, a seven, the digit 7, number seven)")
	nAttr := fs.Int("n-attr", 100, "samples per side of each attribute pair (digits cycle 0..9; both sides share the initial noise)")
	scale := fs.Float64("cfg", 3, "classifier-free guidance scale")
	seed := fs.Uint64("seed", 0, "sampling seed")
	batch := fs.Int("batch", 100, "images per forward pass (CFG doubles it)")
	grid := fs.String("grid", "", "also write a prompt grid here (one row per --grid-prompts prompt)")
	gridPrompts := fs.String("grid-prompts", defaultGridPrompts, "the grid's prompts, separated by |")
	gridCols := fs.Int("grid-cols", 8, "samples per grid row")
	skip := fs.String("skip", "", "parts to leave out, comma-separated: digits, attributes")
	sm := samplerFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: diffuse eval-text --model FILE [flags]

Measures how a text-conditional MNIST model follows prompts:
  digits      for every digit, --n-digit samples from prompts naming it
              ("seven", "a seven", "the digit 7", "number seven"); the
              embedded classifier's accuracy at recognizing the named digit
  attributes  for thickness, size and slant, --n-attr samples from each
              side of a prompt pair ("a thin {d}" / "a thick {d}", "a small
              {d}" / "a large {d}", "a left slanted {d}" / "a right slanted
              {d}"; digits cycle 0..9, the two sides share initial noise):
              the measured property (ink mass, bounding-box area, shear;
              see package data/captions) as mean ± sd per side, the share
              of pairs that moved in the prompted direction, the share of
              samples in the prompted per-digit tercile of the training
              set, and the digit accuracy

Examples:
  diffuse eval-text --model runs/mnist-text/model.safetensors
  diffuse eval-text --model runs/mnist-text/model.safetensors --cfg 5 --n-attr 200
  diffuse eval-text --model runs/mnist-text/model.safetensors --skip digits,attributes --grid docs/text.png

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("eval-text: unexpected argument %q (see --help)", fs.Arg(0))
	}
	if *modelPath == "" {
		return fmt.Errorf("eval-text: pass --model, a text-conditional model (train one with 'diffuse train --text')")
	}
	if *nDigit < 1 || *nAttr < 1 {
		return fmt.Errorf("eval-text: --n-digit and --n-attr must be ≥ 1")
	}
	skipped := map[string]bool{}
	for _, s := range strings.Split(*skip, ",") {
		switch s = strings.TrimSpace(s); s {
		case "":
		case "digits", "attributes":
			skipped[s] = true
		default:
			return fmt.Errorf("eval-text: --skip %q: the parts are digits and attributes", s)
		}
	}
	net, cfg, name, err := loadModel(*modelPath, true)
	if err != nil {
		return err
	}
	tok := model.Tokenizer(net)
	if tok == nil {
		return fmt.Errorf("eval-text: %s is not text-conditional (train one with 'diffuse train --text')", name)
	}
	cls, err := loadClassifier(*clsPath)
	if err != nil {
		return err
	}
	gen := func(prompts []string) (*tensor.Tensor, error) {
		return generatePrompts(net.(model.Conditional), tok, cfg, sm, prompts, *scale, *seed, *batch, stderr)
	}
	if sm.Name == "" { // generate's default, named here for the report
		sm.Name = "ddim"
		if cfg.IsNCSN() {
			sm.Name = "langevin"
		}
	}
	fmt.Fprintf(stdout, "model %s, %s %d steps (eta %g), cfg %g, seed %d\n", name, sm.Name, sm.Steps, sm.Eta, *scale, *seed)
	if !skipped["digits"] {
		t0 := time.Now()
		var prompts []string
		var want []int
		for d := range 10 {
			for i := range *nDigit {
				prompts = append(prompts, digitPromptForms[i%len(digitPromptForms)](d))
				want = append(want, d)
			}
		}
		imgs, err := gen(prompts)
		if err != nil {
			return err
		}
		pred, err := predictDigits(cls, imgs)
		if err != nil {
			return err
		}
		var parts []string
		ok := 0
		for d := range 10 {
			k := 0
			for i := d * *nDigit; i < (d+1)**nDigit; i++ {
				if pred[i] == want[i] {
					k++
				}
			}
			ok += k
			parts = append(parts, fmt.Sprintf("%d:%.2f", d, float64(k)/float64(*nDigit)))
		}
		fmt.Fprintf(stdout, "digit_accuracy %.4f (%d samples, %.0fs)\n", float64(ok)/float64(len(pred)), len(pred), time.Since(t0).Seconds())
		fmt.Fprintf(stdout, "digit_accuracy_per_digit %s\n", strings.Join(parts, " "))
	}
	if !skipped["attributes"] {
		for _, ap := range attrPairs {
			t0 := time.Now()
			digits := make([]int, *nAttr)
			for i := range digits {
				digits[i] = i % 10
			}
			side := func(tmpl string) ([]float64, float64, error) {
				prompts := make([]string, *nAttr)
				for i, d := range digits {
					prompts[i] = strings.ReplaceAll(tmpl, "{d}", captions.DigitWords[d])
				}
				imgs, err := gen(prompts)
				if err != nil {
					return nil, 0, err
				}
				ms, err := captions.MeasureAll(imgs)
				if err != nil {
					return nil, 0, err
				}
				pred, err := predictDigits(cls, imgs)
				if err != nil {
					return nil, 0, err
				}
				vals := make([]float64, len(ms))
				acc := 0.0
				for i, m := range ms {
					vals[i] = ap.value(m)
					if pred[i] == digits[i] {
						acc++
					}
				}
				return vals, acc / float64(len(ms)), nil
			}
			lo, accLo, err := side(ap.low)
			if err != nil {
				return err
			}
			hi, accHi, err := side(ap.high)
			if err != nil {
				return err
			}
			mLo, sLo := meanSD(lo)
			mHi, sHi := meanSD(hi)
			moved := 0
			for i := range lo {
				if hi[i] > lo[i] {
					moved++
				}
			}
			fmt.Fprintf(stdout, "%s %s: %q %.3f ± %.3f | %q %.3f ± %.3f | difference %+.3f (%.1f pooled sd) | pairs moved as prompted %.0f%% | digit accuracy %.2f / %.2f (%.0fs)\n",
				ap.name, ap.measure, ap.low, mLo, sLo, ap.high, mHi, sHi, mHi-mLo, (mHi-mLo)/math.Sqrt((sLo*sLo+sHi*sHi)/2),
				100*float64(moved)/float64(len(lo)), accLo, accHi, time.Since(t0).Seconds())
			if th := cfg.Captions; th != nil {
				inLo, inHi := 0, 0
				for i, d := range digits {
					c := ap.cuts(th, d)
					if c.Level(lo[i]) == captions.Low {
						inLo++
					}
					if c.Level(hi[i]) == captions.High {
						inHi++
					}
				}
				fmt.Fprintf(stdout, "%s in_prompted_tercile %.0f%% / %.0f%% (training-set per-digit terciles; 33%% by chance)\n",
					ap.name, 100*float64(inLo)/float64(len(lo)), 100*float64(inHi)/float64(len(hi)))
			}
		}
	}
	if *grid != "" {
		rows := splitPrompts(*gridPrompts)
		var prompts []string
		for _, p := range rows {
			for range *gridCols {
				prompts = append(prompts, p)
			}
		}
		imgs, err := gen(prompts)
		if err != nil {
			return err
		}
		const pad, sc = 2, 2
		img, err := imageio.LabelRows(imageio.Grid(imgs, *gridCols, pad, sc), rows, cfg.Model.Size*sc, pad)
		if err != nil {
			return err
		}
		if err := imageio.SavePNG(*grid, img); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s (%d prompts × %d samples)\n", *grid, len(rows), *gridCols)
	}
	return nil
}

// generatePrompts samples one image per prompt with classifier-free
// guidance at scale w (image i of the run uses the run's i-th initial
// noise, so equal seeds pair images across calls).
func generatePrompts(net model.Conditional, tok *text.Tokenizer, cfg train.Config, sm *samplerChoice, prompts []string, w float64, seed uint64, batch int, progress io.Writer) (*tensor.Tensor, error) {
	tokens := make([][]int, len(prompts))
	for i, p := range prompts {
		var err error
		if tokens[i], err = tok.Encode(p); err != nil {
			return nil, err
		}
	}
	g, err := guidance.NewCFG(net, &model.Cond{Tokens: tokens}, nil, []float64{w}, len(prompts))
	if err != nil {
		return nil, err
	}
	return generate(g, cfg, sm, pipeline.Options{N: len(prompts), Batch: batch, Seed: seed, Progress: progress})
}

// predictDigits returns the classifier's digit for every image.
func predictDigits(cls *classifier.Net, imgs *tensor.Tensor) ([]int, error) {
	probs, _, err := eval.Predict(cls, imgs)
	if err != nil {
		return nil, err
	}
	out := make([]int, len(probs))
	for i, p := range probs {
		for k, v := range p {
			if v > p[out[i]] {
				out[i] = k
			}
		}
	}
	return out, nil
}

func meanSD(v []float64) (mean, sd float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	for _, x := range v {
		sd += (x - mean) * (x - mean)
	}
	if len(v) > 1 {
		sd = math.Sqrt(sd / float64(len(v)-1))
	}
	return mean, sd
}
