#!/usr/bin/env bash
# Round 3 of the Net9 search (round3_plan.md): three runs, validation seeds
# 1-2, one thread each, the two seeds of a run side by side.
cd "$(dirname "$0")/../.."
run() {  # NET RUN SEED [flags]
  OMP_NUM_THREADS=1 .venv/bin/python experiments/net9/search.py "$1" --step 8 --val 5000 \
    --channels-last --no-plots --seed "$3" "${@:4}" \
    --history "experiments/net9/runs/$2_seed{seed}.json" > "runs/net9_$2_seed$3.log" 2>&1
}
mkdir -p runs
for spec in "shift10_16 shift10_16" "sep11_15 sep11_15_rot5 --rotation 5" \
            "shift10_16 shift10_16_rot5 --rotation 5"; do
  set -- $spec
  run "$1" "$2" 1 "${@:3}" & run "$1" "$2" 2 "${@:3}" & wait
done
