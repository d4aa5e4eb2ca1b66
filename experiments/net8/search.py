"""The Net8 search: train a candidate net under a step's recipe, or print the
table of what the candidates scored on the validation split.

    python experiments/net8/search.py NAME [train.py's flags]   # e.g. --step 7 --val 5000 --seed 1
    python experiments/net8/search.py --table

It uses the product only through its public functions: train.parse_args,
train.make_config and train.train, which is handed the candidates by name.
"""
import functools
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import model  # noqa: E402
import train  # noqa: E402

RUNS = Path(__file__).resolve().parent / "runs"


# model.SeparableGapNet(before, after): Net7's layout, Net7 = (14, 25), 3,980
# parameters; round 1 ran these as SepNet, an identical copy (same layers in
# the same order: same initial weights for a seed), before Net8 joined model.py.
CANDIDATES = {f"sep{b}_{a}": functools.partial(model.SeparableGapNet, b, a)
              for b, a in ((14, 25), (12, 20), (14, 19), (10, 21), (10, 14))}


def scores(history):
    """(V, T5): validation and training accuracy, each averaged over the last five epochs."""
    last = history["epochs"][-train.LAST:]
    return (statistics.mean(e["test_acc"] for e in last),
            statistics.mean(e["train_acc"] for e in last))


def table():
    rows = ["| candidate | params | seeds | V: val acc, epochs 11-15 | T5: train acc, epochs 11-15 |",
            "|---|---|---|---|---|"]
    for name in CANDIDATES:
        paths = sorted(RUNS.glob(f"{name}_seed*.json"))
        histories = [json.loads(p.read_text()) for p in paths]
        histories = [h for h in histories if len(h["epochs"]) == h["config"]["epochs"]]
        if histories:
            v, t5 = zip(*map(scores, histories))
            seeds = " ".join(str(h["seed"]) for h in histories)
            rows.append(f"| {name} | {histories[0]['params']:,} | {seeds} "
                        f"| {statistics.mean(v):.3f} | {statistics.mean(t5):.3f} |")
    return "\n".join(rows)


def main(argv):
    if argv[:1] == ["--table"]:
        print(table())
        return 0
    name, flags = argv[0], argv[1:]
    args = train.parse_args(flags)
    cfg = dict(train.make_config(args), net=name)
    for seed in args.seeds or [args.seed]:
        train.train(cfg, args, seed, nets=CANDIDATES)
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main(sys.argv[1:]))
