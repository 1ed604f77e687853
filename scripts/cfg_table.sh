#!/usr/bin/env bash
# Classifier-free guidance sweep of a class-conditional MNIST model: label
# accuracy (the MNIST classifier agrees with the requested digit) and
# classifier-FID for w in {0, 1, 2, 3, 5}, labels i mod 10, 50 DDIM steps.
# Prints a markdown table. Usage: scripts/cfg_table.sh MODEL [N] [SCALES]
#   MODEL   a class-conditional checkpoint or export (diffuse train --classes 10)
#   N       samples per cell (default 300)
#   SCALES  space-separated guidance scales (default "0 1 2 3 5")
set -euo pipefail
model=${1:?usage: scripts/cfg_table.sh MODEL [N] [SCALES]}
n=${2:-300}
scales=${3:-0 1 2 3 5}
bin=$(mktemp -d)/diffuse
go build -o "$bin" ./cmd/diffuse
echo "| w | label accuracy | mean max-prob | classifier-FID | samples |"
echo "|---|---|---|---|---|"
for w in $scales; do
  out=$("$bin" eval --model "$model" -n "$n" --seed 1 --label all --cfg "$w" 2>/dev/null)
  get() { awk -v k="$1" '$1==k{print $2}' <<<"$out"; }
  echo "| $w | $(get label_accuracy) | $(get mean_max_prob) | $(get classifier_fid) | $n |"
done
