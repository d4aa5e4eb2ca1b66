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

import torch.nn as nn  # noqa: E402

import model  # noqa: E402
import train  # noqa: E402

RUNS = Path(__file__).resolve().parent / "runs"


class SepNet(model.TinyNet):
    """Net7's layout: a padded 3x3 conv and a padded separable one at `before`
    channels, max-pool, four separable convs to `after` channels (GAP 6x6),
    then a 1x1 conv to the 10 classes. Net7 is SepNet(14, 25)."""

    def __init__(self, before, after, dropout=None):
        b, a, d = before, after, dropout
        super().__init__(
            *model.conv(1, b, padding=1, dropout=d),                  # b x28x28  RF 3
            *model.conv(b, b, padding=1, dropout=d, separable=True),  # b x28x28  RF 5
            nn.MaxPool2d(2),                                          # b x14x14  RF 6
            *model.conv(b, a, dropout=d, separable=True),             # a x12x12  RF 10
            *model.conv(a, a, dropout=d, separable=True),             # a x10x10  RF 14
            *model.conv(a, a, dropout=d, separable=True),             # a x8x8    RF 18
            *model.conv(a, a, dropout=d, separable=True),             # a x6x6    RF 22
            nn.AvgPool2d(6),                                          # a x1x1
            nn.Conv2d(a, 10, 1, bias=False),                          # 10x1x1
        )


CANDIDATES = {
    "net7": functools.partial(SepNet, 14, 25),   # 3,980: the reference
    "sep12_20": functools.partial(SepNet, 12, 20),
    "sep14_19": functools.partial(SepNet, 14, 19),
    "sep10_21": functools.partial(SepNet, 10, 21),
    "sep10_14": functools.partial(SepNet, 10, 14),
}


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
