"""The Net11 screen (issue 52, rounds 8 and 9): p4m nets under 1,500 and
under 1,000 parameters, the step-9 recipe, rotation within ±5 or ±10 degrees.

    python experiments/net11/search.py NAME [train.py's flags]   # e.g. --step 9 --val 5000 --seed 1
    python experiments/net11/search.py --table

It uses the product only through its public names: model.P4GapNet,
train.parse_args, train.make_config and train.train (handed the
candidates). V: validation accuracy, mean of epochs 10-14; T5: train
accuracy, the same; L5: the lowest validation accuracy of those epochs.
"""
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import model  # noqa: E402
import train  # noqa: E402

RUNS = Path(__file__).resolve().parent / "runs"
NET10_RUNS = RUNS.parents[1] / "net10" / "runs"  # p4m_3_5_3 at ±10, the Net10 search's


def p4m(before, after, last):
    return lambda dropout=None: model.P4GapNet(before, after, last=last, mirrors=True,
                                               dropout=dropout)


CANDIDATES = {"p4m_3_5_3": p4m(3, 5, 3), "p4m_3_6_3": p4m(3, 6, 3), "p4m_4_5_3": p4m(4, 5, 3),
              "p4m_3_4_3": p4m(3, 4, 3), "p4m_3_5_1": p4m(3, 5, 1)}  # round 9: under 1,000


def scores(history):
    last = history["epochs"][10:15]
    return (statistics.mean(e["test_acc"] for e in last),
            statistics.mean(e["train_acc"] for e in last), min(e["test_acc"] for e in last))


def table():
    rows = ["| run | params | seeds | V | T5 | L5 (lowest) |", "|---|---|---|---|---|---|"]
    groups = {}
    paths = [*sorted(NET10_RUNS.glob("p4m_3_5_3_seed*.json")), *sorted(RUNS.glob("p4m_*_seed*.json")),
             *sorted(RUNS.glob("p4m3_3_5_3_r5_seed*.json"))]  # round 9's baseline (round 5)
    for path in paths:
        h = json.loads(path.read_text())
        if len(h["epochs"]) == h["config"]["epochs"] and h["evaluated_on"] == "validation":
            groups.setdefault(path.name.rsplit("_seed", 1)[0], []).append(h)
    for run, histories in groups.items():
        v, t5, low = zip(*map(scores, histories))
        seeds = " ".join(str(h["seed"]) for h in sorted(histories, key=lambda h: h["seed"]))
        rows.append(f"| {run} | {histories[0]['params']:,} | {seeds} | {statistics.mean(v):.3f} "
                    f"| {statistics.mean(t5):.3f} | {min(low):.2f} |")
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
