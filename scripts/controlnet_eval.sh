#!/usr/bin/env bash
# The ControlNet acceptance measurement: on the first N MNIST test digits,
# edge-map agreement (IoU, Pearson) and label agreement of ControlNet samples
# vs base samples from the same seeds (50 DDIM steps), plus the grid
# docs/controlnet.png (control | sample pairs). Prints the table and the
# wall-clock and CPU time. Usage: scripts/controlnet_eval.sh [CONTROLNET] [N]
#   CONTROLNET  ControlNet file (default runs/controlnet-edges/controlnet.safetensors)
#   N           test digits (default 500)
set -euo pipefail
cn=${1:-runs/controlnet-edges/controlnet.safetensors}
n=${2:-500}
bin=$(mktemp -d)/diffuse
go build -o "$bin" ./cmd/diffuse
/usr/bin/time -f "wall %e s, cpu %U s user + %S s sys" \
  "$bin" eval-controlnet --controlnet "$cn" -n "$n" --steps 50 --seed 0 --batch 100 \
  --grid docs/controlnet.png --grid-n 40 2>&1 | grep -v '^sample '
