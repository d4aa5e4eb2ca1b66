#!/usr/bin/env bash
# Round 1 of the Net8 search (round1_plan.md): four candidates, validation
# seeds 1-2, one thread each, two runs side by side.
cd "$(dirname "$0")/../.."
run() {
  OMP_NUM_THREADS=1 .venv/bin/python experiments/net8/search.py "$1" --step 7 --val 5000 \
    --channels-last --no-plots --seed "$2" \
    --history "experiments/net8/runs/$1_seed{seed}.json" > "runs/net8_$1_seed$2.log" 2>&1
}
mkdir -p runs
for name in sep12_20 sep14_19 sep10_21 sep10_14; do
  run "$name" 1 & run "$name" 2 & wait
done
