#!/usr/bin/env bash
# Classifier-FID (and mean classifier max-probability) of one model under
# every k-diffusion sampler and DDIM at equal budgets of 10, 20 and 50
# DENOISER CALLS (network evaluations), not steps. Prints a markdown table;
# each cell is "FID / max-prob (steps)". Usage:
#   scripts/sampler_table.sh [MODEL] [N]
#   MODEL  checkpoint or export (default: the model embedded in diffuse)
#   N      samples per cell (default 200)
# Environment: SAMPLERS="a b" limits the rows, BUDGETS="10 20" the columns;
# JOBS=k computes k rows at once.
# Run it at low priority on a shared machine: nice -n 5 scripts/sampler_table.sh
#
# Calls per sampler for n steps (sampler/samplers.go; the schedule's last
# step goes to σ = 0, where the second-order samplers take a one-call Euler
# step): first-order and multistep samplers (ddim, euler, euler_ancestral,
# lms, dpmpp_2m, dpmpp_2m_sde[_heun], dpmpp_3m_sde) make n calls;
# heun, dpm_2, dpm_2_ancestral, dpmpp_2s_ancestral and dpmpp_sde make
# 2n−1. The steps chosen are the most whose calls fit the budget.
set -euo pipefail
model=${1:-}
n=${2:-200}
bin=$(mktemp -d)/diffuse
go build -o "$bin" ./cmd/diffuse
margs=()
[[ -n $model ]] && margs=(--model "$model")

# calls SAMPLER STEPS: denoiser calls of STEPS steps.
calls() {
  case $1 in
    heun|dpm_2|dpm_2_ancestral|dpmpp_2s_ancestral|dpmpp_sde) echo $((2 * $2 - 1)) ;;
    *) echo "$2" ;;
  esac
}
# steps SAMPLER BUDGET: the most steps whose calls fit BUDGET.
steps() {
  local s=1
  while (( $(calls "$1" $((s + 1))) <= $2 )); do s=$((s + 1)); done
  echo "$s"
}
# cell SAMPLER STEPS: "FID / max-prob".
cell() {
  "$bin" eval "${margs[@]}" -n "$n" --seed 1 --sampler "$1" --steps "$2" 2>/dev/null |
    awk '$1=="classifier_fid"{f=$2} $1=="mean_max_prob"{p=$2} END{printf "%s / %s", f, p}'
}

# row SAMPLER: one table row.
row() {
  local r="| $1" st b
  for b in $budgets; do
    st=$(steps "$1" "$b")
    r+=" | $(cell "$1" "$st") ($st steps, $(calls "$1" "$st") calls)"
  done
  echo "$r |"
}

all="ddim euler euler_ancestral heun dpm_2 dpm_2_ancestral lms dpmpp_2s_ancestral dpmpp_sde dpmpp_2m dpmpp_2m_sde dpmpp_2m_sde_heun dpmpp_3m_sde"
samplers=${SAMPLERS:-$all} # SAMPLERS="euler heun": only these rows
jobs=${JOBS:-1}            # JOBS=3: rows computed 3 at a time (printed in order)
tmp=$(dirname "$bin")
budgets=${BUDGETS:-10 20 50} # BUDGETS="10 20": only these columns
head="| sampler" rule="|---"
for b in $budgets; do head+=" | $b calls"; rule+="|---"; done
echo "$head |"
echo "$rule|"
i=0
for s in $samplers; do
  if (( jobs > 1 )); then
    while (( $(jobs -rp | wc -l) >= jobs )); do wait -n; done
    row "$s" > "$tmp/row$i" &
  else
    row "$s"
  fi
  i=$((i + 1))
done
if (( jobs > 1 )); then
  wait
  for ((k = 0; k < i; k++)); do cat "$tmp/row$k"; done
fi
