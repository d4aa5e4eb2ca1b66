#!/usr/bin/env bash
# One run of the Net9 search: candidate NET (search.py) under step 8's recipe
# and the flags given, on validation seeds 1 and 2 side by side, one thread
# each; histories in runs/RUN_seed{1,2}.json, logs in the top runs/.
#   bash experiments/net9/pair.sh NET RUN [train.py flags]
#   SEEDS=1 bash experiments/net9/pair.sh NET RUN    # seed 1 alone (a screen)
#   SCRIPT=loop.py bash experiments/net9/pair.sh NET RUN --rho R   # rounds 25-29: loop.py
cd "$(dirname "$0")/../.."
mkdir -p runs
for seed in ${SEEDS:-1 2}; do
  OMP_NUM_THREADS=1 python "experiments/net9/${SCRIPT:-search.py}" "$1" --step 8 --val 5000 \
    --channels-last --no-plots --seed "$seed" "${@:3}" \
    --history "experiments/net9/runs/$2_seed{seed}.json" > "runs/net9_$2_seed$seed.log" 2>&1 &
done
wait
