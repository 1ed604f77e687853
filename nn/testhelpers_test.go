package nn

import "github.com/diffuse-go/diffuse/safetensors"

type safetensorsFile = safetensors.File

func readFile(path string) (*safetensors.File, error) { return safetensors.ReadFile(path) }
