package main

// Text conditioning in 'diffuse train': the --text model config and the
// captioned MNIST data set.

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/diffuse-go/diffuse/data"
	"github.com/diffuse-go/diffuse/data/captions"
	"github.com/diffuse-go/diffuse/text"
	"github.com/diffuse-go/diffuse/train"
)

// textSpec is the text encoder of 'train --text' (nil without it): the
// MNIST caption vocabulary, width 64, 4 heads, 2 blocks, 16 positions.
func textSpec(on bool) *text.Config {
	if !on {
		return nil
	}
	c := text.DefaultConfig(append(append([]string{}, text.Specials...), captions.Vocabulary()...))
	return &c
}

// textTrainData returns what a run trains on: ds itself, or for a
// text-conditional model ds with captions. The caption thresholds are
// fitted on ds when the run starts, stored in the config (checkpoint and
// configPath, rewritten) and reused on resume.
func textTrainData(st *train.State, ds *data.Dataset, configPath string) (train.Dataset, error) {
	if st.Config.Model.Text == nil {
		return ds, nil
	}
	if st.Config.Data != "mnist" {
		return nil, fmt.Errorf("--text trains on MNIST captions (digit, thickness, size, slant); --data %s has no labels to caption", st.Config.Data)
	}
	if len(st.Config.Model.Text.Vocab) < len(text.Specials)+1 {
		return nil, fmt.Errorf("text config has an empty vocabulary")
	}
	cds, err := captions.NewDataset(ds, st.Config.Captions)
	if err != nil {
		return nil, err
	}
	if st.Config.Captions == nil {
		st.Config.Captions = cds.Thresholds
		cj, _ := json.MarshalIndent(st.Config, "", "  ")
		if err := os.WriteFile(configPath, append(cj, '\n'), 0o644); err != nil {
			return nil, fmt.Errorf("write config.json: %w (choose a writable --out)", err)
		}
	}
	return cds, nil
}
