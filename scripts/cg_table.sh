#!/usr/bin/env bash
# Classifier guidance on the embedded (unconditional) MNIST model: label
# accuracy and classifier-FID against the guidance scale s, with labels
# i mod 10, 50 DDIM steps, η = 1. Prints a markdown table.
# Usage: scripts/cg_table.sh [N] [SCALES...]
#   N       samples per cell (default 300)
#   SCALES  guidance scales (default 0 1 2 5 10)
# Environment: CLASSIFIER (default: the embedded noisy classifier),
# TEMP (softmax temperature τ, default 1), GRID (a PNG path: also write a
# 10×10 grid at the last scale, row k = ten samples of label k).
set -euo pipefail
n=${1:-300}
shift || true
scales=("$@")
[[ ${#scales[@]} -eq 0 ]] && scales=(0 1 2 5 10)
bin=$(mktemp -d)/diffuse
go build -o "$bin" ./cmd/diffuse
cargs=(--guidance-temperature "${TEMP:-1}")
[[ -n ${CLASSIFIER:-} ]] && cargs+=(--guidance-classifier "$CLASSIFIER")
echo "| s | label accuracy | classifier-FID | mean max-prob | seconds |"
echo "|---|---|---|---|---|"
last=${scales[${#scales[@]}-1]}
for s in "${scales[@]}"; do
  t0=$(date +%s)
  out=$("$bin" eval -n "$n" --seed 1 --sampler ddim --steps 50 --eta 1 --label all \
    --classifier-guidance "$s" "${cargs[@]}" 2>/dev/null)
  t1=$(date +%s)
  get() { awk -v k="$1" '$1==k{print $2}' <<<"$out"; }
  echo "| $s | $(get label_accuracy) | $(get classifier_fid) | $(get mean_max_prob) | $((t1 - t0)) |"
done
if [[ -n ${GRID:-} ]]; then
  rows=$(for k in 0 1 2 3 4 5 6 7 8 9; do for _ in 0 1 2 3 4 5 6 7 8 9; do printf '%d,' "$k"; done; done)
  "$bin" sample -n 100 --cols 10 --seed 1 --sampler ddim --steps 50 --eta 1 --label "${rows%,}" \
    --classifier-guidance "$last" "${cargs[@]}" -o "$GRID" >/dev/null 2>&1
fi
