#!/usr/bin/env bash
# Classifier-FID of one model under DDIM (10/20/50/100 steps × η 0/0.5/1)
# and DDPM (1000 steps), the shape of the DDIM paper's Table 1. Prints a
# markdown table; each cell is "classifier-FID / mean max-prob". Usage: scripts/ddim_table.sh [MODEL] [N]
#   MODEL  checkpoint or export (default: the model embedded in diffuse)
#   N      samples per cell (default 500)
set -euo pipefail
model=${1:-}
n=${2:-500}
bin=$(mktemp -d)/diffuse
go build -o "$bin" ./cmd/diffuse
margs=()
[[ -n $model ]] && margs=(--model "$model")
fid() { "$bin" eval "${margs[@]}" -n "$n" --seed 1 "$@" 2>/dev/null | awk '$1=="classifier_fid"{f=$2} $1=="mean_max_prob"{p=$2} END{printf "%s / %.4f", f, p}'; }
echo "| sampler | steps | η=0 | η=0.5 | η=1 |"
echo "|---|---|---|---|---|"
for s in 10 20 50 100; do
  row="| DDIM | $s"
  for eta in 0 0.5 1; do row+=" | $(fid --sampler ddim --steps "$s" --eta "$eta")"; done
  echo "$row |"
done
echo "| DDPM (β̃, fixed_small) | 1000 | $(fid --sampler ddpm --steps 1000 --variance fixed_small) | | |"
