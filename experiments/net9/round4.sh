#!/usr/bin/env bash
# Round 4 of the Net9 search (round4_plan.md): one run, validation seeds
# 1-2, one thread each, side by side.
cd "$(dirname "$0")/../.."
run() {  # SEED
  OMP_NUM_THREADS=1 .venv/bin/python experiments/net9/search.py three10_19 --step 8 --val 5000 \
    --channels-last --no-plots --seed "$1" \
    --history "experiments/net9/runs/three10_19_seed{seed}.json" > "runs/net9_three10_19_seed$1.log" 2>&1
}
mkdir -p runs
run 1 & run 2 & wait
