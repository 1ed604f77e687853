// Package eval scores generated images with the project's MNIST classifier:
// the histogram of predicted classes, the mean max-probability (confidence),
// and the classifier-FID — the Fréchet distance between Gaussian fits of the
// classifier's penultimate features on the samples and on the MNIST test
// set. It is computed in a small MNIST classifier's feature space, not
// Inception's, so its values are not comparable with published FIDs; call it
// classifier-FID.
package eval

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"

	"github.com/diffuse-go/diffuse/autograd"
	"github.com/diffuse-go/diffuse/data"
	"github.com/diffuse-go/diffuse/internal/progress"
	"github.com/diffuse-go/diffuse/model/classifier"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/optim"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// ClassifierFormat marks classifier files in their metadata.
const ClassifierFormat = "diffuse-classifier-v1"

// TrainOptions configure TrainClassifier.
type TrainOptions struct {
	Epochs   int     // passes over the training set (default 3)
	Batch    int     // default 128
	LR       float32 // AdamW peak learning rate (default 2e-3), cosine-decayed to 0
	Seed     uint64
	Shift    int       // random translation augmentation, pixels (default 2)
	Progress io.Writer // progress bar destination (nil: none)
}

// TrainClassifier trains a classifier on train and returns it with its
// accuracy on test.
func TrainClassifier(train, test *data.Dataset, o TrainOptions) (*classifier.Net, float64, error) {
	if o.Epochs <= 0 {
		o.Epochs = 3
	}
	if o.Batch <= 0 {
		o.Batch = 128
	}
	if o.LR <= 0 {
		o.LR = 2e-3
	}
	if o.Shift < 0 {
		o.Shift = 0
	}
	if train.Labels == nil || test.Labels == nil {
		return nil, 0, fmt.Errorf("train classifier: datasets need labels")
	}
	sh := train.Shape()
	rng := rand.New(rand.NewPCG(o.Seed, 77))
	net := classifier.New(rng, sh[0], 10)
	params := nn.Parameters(net)
	opt := optim.NewAdamW(params, o.LR, 1e-4)
	g := autograd.New(tensor.CPU)
	B := o.Batch
	n := train.Len()
	steps := o.Epochs * (n / B)
	bar := progress.New(o.Progress, steps, "classifier")
	x := tensor.New(B, sh[0], sh[1], sh[2])
	aug := tensor.New(B, sh[0], sh[1], sh[2])
	labels := make([]int, B)
	idx := make([]int, B)
	step := 0
	for e := 0; e < o.Epochs; e++ {
		perm := rng.Perm(n)
		for b := 0; b+B <= n; b += B {
			copy(idx, perm[b:b+B])
			train.Batch(idx, x)
			for i, j := range idx {
				labels[i] = train.Labels[j]
			}
			shift(aug, x, o.Shift, rng)
			opt.LR = o.LR * float32(0.5*(1+math.Cos(math.Pi*float64(step)/float64(steps))))
			var loss float32
			err := autograd.Catch(func() {
				logits, _ := net.Forward(g, autograd.Const(aug))
				l := g.CrossEntropy(logits, labels)
				loss = l.Value.Item()
				optim.ZeroGrad(params)
				if err := g.Backward(l); err != nil {
					panic(&tensor.ShapeError{Op: "Backward", Msg: err.Error()})
				}
			})
			g.Reset()
			if err != nil {
				return nil, 0, err
			}
			if math.IsNaN(float64(loss)) {
				return nil, 0, fmt.Errorf("train classifier: loss is NaN at step %d; lower --lr", step+1)
			}
			opt.Update()
			step++
			bar.Set(step, progress.Float("loss", float64(loss)))
		}
	}
	bar.Finish()
	acc, err := Accuracy(net, test)
	return net, acc, err
}

// shift writes x translated by a random offset in [-s, s]² per sample
// (zero-filled with -1, the background) into dst.
func shift(dst, x *tensor.Tensor, s int, rng *rand.Rand) {
	b, c, h, w := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	xd, dd := x.Data(), dst.Data()
	for i := 0; i < b; i++ {
		dy, dx := 0, 0
		if s > 0 {
			dy, dx = rng.IntN(2*s+1)-s, rng.IntN(2*s+1)-s
		}
		for ch := 0; ch < c; ch++ {
			base := (i*c + ch) * h * w
			for y := 0; y < h; y++ {
				for xx := 0; xx < w; xx++ {
					sy, sx := y-dy, xx-dx
					v := float32(-1)
					if sy >= 0 && sy < h && sx >= 0 && sx < w {
						v = xd[base+sy*w+sx]
					}
					dd[base+y*w+xx] = v
				}
			}
		}
	}
}

// Predict runs the classifier over images [N, C, H, W] in batches and
// returns per-sample class probabilities [N][classes] and penultimate
// features [N][FeatureDim].
func Predict(net *classifier.Net, images *tensor.Tensor) ([][]float64, [][]float64, error) {
	const B = 250
	n := images.Dim(0)
	per := images.Numel() / max(n, 1)
	g := autograd.NoGrad(tensor.CPU)
	probs := make([][]float64, 0, n)
	feats := make([][]float64, 0, n)
	for s := 0; s < n; s += B {
		e := min(n, s+B)
		shape := append([]int{e - s}, images.Shape()[1:]...)
		x := tensor.FromSlice(images.Data()[s*per:e*per], shape...)
		err := autograd.Catch(func() {
			logits, f := net.Forward(g, autograd.Const(x))
			p := g.Softmax(logits)
			pd, fd := p.Value.Data(), f.Value.Data()
			k := net.Classes
			for i := 0; i < e-s; i++ {
				row := make([]float64, k)
				for j := range row {
					row[j] = float64(pd[i*k+j])
				}
				probs = append(probs, row)
				fr := make([]float64, classifier.FeatureDim)
				for j := range fr {
					fr[j] = float64(fd[i*classifier.FeatureDim+j])
				}
				feats = append(feats, fr)
			}
		})
		g.Reset()
		if err != nil {
			return nil, nil, err
		}
	}
	return probs, feats, nil
}

// Accuracy is the fraction of ds the classifier labels correctly.
func Accuracy(net *classifier.Net, ds *data.Dataset) (float64, error) {
	probs, _, err := Predict(net, ds.Images)
	if err != nil {
		return 0, err
	}
	ok := 0
	for i, p := range probs {
		if argmax(p) == ds.Labels[i] {
			ok++
		}
	}
	return float64(ok) / float64(len(probs)), nil
}

func argmax(p []float64) int {
	best := 0
	for i, v := range p {
		if v > p[best] {
			best = i
		}
	}
	return best
}

// Report is the score of a set of samples.
type Report struct {
	N             int
	Histogram     []int     // predicted class counts
	Fractions     []float64 // Histogram / N
	MeanMaxProb   float64   // mean over samples of the top class probability
	ClassifierFID float64   // Fréchet distance of penultimate features to the reference set
	Predicted     []int     // per-sample predicted class
}

// Score classifies samples [N, C, H, W] in [-1, 1] and compares their
// features with ref (the MNIST test set's stats, see ReferenceStats).
func Score(net *classifier.Net, samples *tensor.Tensor, ref Stats) (Report, error) {
	probs, feats, err := Predict(net, samples)
	if err != nil {
		return Report{}, err
	}
	r := Report{N: len(probs), Histogram: make([]int, net.Classes), Fractions: make([]float64, net.Classes)}
	for _, p := range probs {
		k := argmax(p)
		r.Predicted = append(r.Predicted, k)
		r.Histogram[k]++
		r.MeanMaxProb += p[k]
	}
	r.MeanMaxProb /= float64(r.N)
	for i, c := range r.Histogram {
		r.Fractions[i] = float64(c) / float64(r.N)
	}
	st, err := ComputeStats(feats)
	if err != nil {
		return r, err
	}
	r.ClassifierFID = Frechet(st, ref)
	return r, nil
}

// ReferenceStats are the classifier's feature statistics on a dataset
// (the MNIST test split for classifier-FID).
func ReferenceStats(net *classifier.Net, ds *data.Dataset) (Stats, error) {
	_, feats, err := Predict(net, ds.Images)
	if err != nil {
		return Stats{}, err
	}
	return ComputeStats(feats)
}

// SaveClassifier writes the classifier's weights (F16 when half) with its
// test accuracy in the metadata, atomically.
func SaveClassifier(path string, net *classifier.Net, acc float64, half bool) error {
	ts := nn.StateTensors(net, "")
	if half {
		for i := range ts {
			v, _ := ts[i].Float32()
			ts[i].DType, ts[i].Data = safetensors.F16, safetensors.Float32ToF16(v)
		}
	}
	meta := map[string]string{"diffuse.format": ClassifierFormat, "diffuse.test_accuracy": fmt.Sprintf("%.4f", acc),
		"diffuse.classes": fmt.Sprint(net.Classes), "diffuse.in_channels": "1"}
	return safetensors.WriteFile(path, ts, meta)
}

// LoadClassifier reads a classifier file written by SaveClassifier.
func LoadClassifier(f *safetensors.File, path string) (*classifier.Net, error) {
	if f.Metadata["diffuse.format"] != ClassifierFormat {
		return nil, fmt.Errorf("%s is not a diffuse classifier (diffuse.format %q): train one with 'diffuse eval train-classifier'", path, f.Metadata["diffuse.format"])
	}
	net := classifier.New(rand.New(rand.NewPCG(0, 0)), 1, 10)
	if err := nn.LoadFrom(f, net, ""); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return net, nil
}
