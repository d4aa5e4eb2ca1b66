"""The Net10 search (under 1,000 parameters): train a candidate under a
step's recipe, or print what the candidates scored on the validation split.

    python experiments/net10/search.py NAME [train.py's flags]   # e.g. --step 9 --val 5000 --seed 1
    python experiments/net10/search.py --table

It uses the product only through its public names: model.P4GapNet,
train.parse_args, train.make_config and train.train (handed the candidates).
V: validation accuracy, mean of epochs 10-14; T5: train accuracy, the same.
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


def p4(before, after):
    """model.P4GapNet(before, after), Net9's layout at other widths."""
    return lambda dropout=None: model.P4GapNet(before, after, dropout)


CANDIDATES = {"p4_4_5": p4(4, 5), "p4_3_5": p4(3, 5)}


def scores(history):
    """(V, T5) of a finished history."""
    last = history["epochs"][10:15]
    return (statistics.mean(e["test_acc"] for e in last),
            statistics.mean(e["train_acc"] for e in last))


def table():
    rows = ["| run | params | seeds | V | T5 |", "|---|---|---|---|---|"]
    groups = {}
    for path in sorted(RUNS.glob("*_seed*.json")):
        h = json.loads(path.read_text())
        if len(h["epochs"]) == h["config"]["epochs"] and h["evaluated_on"] == "validation":
            groups.setdefault(path.name.rsplit("_seed", 1)[0], []).append(h)
    for run, histories in groups.items():
        v, t5 = zip(*map(scores, histories))
        seeds = " ".join(str(h["seed"]) for h in sorted(histories, key=lambda h: h["seed"]))
        rows.append(f"| {run} | {histories[0]['params']:,} | {seeds} | {statistics.mean(v):.3f} "
                    f"| {statistics.mean(t5):.3f} |")
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
