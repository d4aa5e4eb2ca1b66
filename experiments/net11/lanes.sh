#!/usr/bin/env bash
# Runs "LABEL NET SEEDS FLAGS" jobs in two lanes side by side, one thread each:
#   bash experiments/net11/lanes.sh "p4m_3_6_3_r5 p4m_3_6_3 1,2,3,4 --rotation 5" ...
# Each lane takes every other job; each history goes to runs/LABEL_seedS.json.
cd "$(dirname "$0")/../.."
jobs=()
for spec in "$@"; do
  read -r label net seeds flags <<< "$spec"
  for seed in ${seeds//,/ }; do jobs+=("$label|$net|$seed|$flags"); done
done
lane() {
  for ((i = $1; i < ${#jobs[@]}; i += 2)); do
    IFS='|' read -r label net seed flags <<< "${jobs[$i]}"
    OMP_NUM_THREADS=1 .venv/bin/python experiments/net11/search.py "$net" --step 9 --val 5000 --no-plots \
      --seed "$seed" --history "experiments/net11/runs/${label}_seed{seed}.json" \
      $flags > "runs/net11_${label}_seed${seed}.log" 2>&1
  done
}
mkdir -p runs
lane 0 & lane 1 & wait
