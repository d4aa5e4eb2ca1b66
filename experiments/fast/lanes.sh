#!/usr/bin/env bash
# Runs LABEL NET SEEDS FLAGS... in two lanes side by side, one thread each:
#   bash experiments/fast/lanes.sh "LABEL NET FLAGS" ...   (seeds 1-4 each)
# Each lane takes every other job; each history goes to runs/LABEL_seedS.json.
cd "$(dirname "$0")/../.."
jobs=()
for spec in "$@"; do for seed in 1 2 3 4; do jobs+=("$spec|$seed"); done; done
lane() {
  for ((i = $1; i < ${#jobs[@]}; i += 2)); do
    IFS='|' read -r spec seed <<< "${jobs[$i]}"
    read -r label net flags <<< "$spec"
    OMP_NUM_THREADS=1 .venv/bin/python experiments/fast/search.py "$net" --step 7 --val 5000 --no-plots \
      --channels-last --seed "$seed" --history "experiments/fast/runs/${label}_seed{seed}.json" \
      $flags > "runs/fast_${label}_seed${seed}.log" 2>&1
  done
}
mkdir -p runs
lane 0 & lane 1 & wait
