// Package assets holds the models embedded in the diffuse binary: the
// default MNIST diffusion model and the MNIST evaluation classifier.
package assets

import (
	"embed"
	"fmt"

	"github.com/diffuse-go/diffuse/safetensors"
)

//go:embed models
var files embed.FS

// Names of the embedded files.
const (
	MNISTModel = "mnist.safetensors"
	Classifier = "classifier.safetensors"
	// NoisyClassifier is the time-conditioned MNIST classifier of
	// classifier guidance (package guidance).
	NoisyClassifier = "noisy_classifier.safetensors"
)

// Open parses an embedded safetensors file by name.
func Open(name string) (*safetensors.File, error) {
	b, err := files.ReadFile("models/" + name)
	if err != nil {
		return nil, fmt.Errorf("this build embeds no %s: pass a file explicitly (--model / --classifier)", name)
	}
	f, err := safetensors.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("embedded %s: %w", name, err)
	}
	return f, nil
}
