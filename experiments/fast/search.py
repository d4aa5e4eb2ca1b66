"""The fast search: the fastest net that holds 99.40 % on a 2-core CPU.

    python experiments/fast/search.py NAME [train.py's flags]   # e.g. --step 7 --val 5000 --seed 1
    python experiments/fast/search.py --time NAME[:FLAGS] ...   # R against step 7, the yardstick's way
    python experiments/fast/search.py --table

It uses the product only through its public names: model.conv,
model.TinyNet, model.Deskew, train.parse_args, train.make_config,
train.train (handed the candidates) and bench.epoch_seconds. V: validation
accuracy, mean of the last 5 epochs; L5: the lowest of them.
"""
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch.nn as nn  # noqa: E402

import bench  # noqa: E402
import model  # noqa: E402
import train  # noqa: E402
from model import conv  # noqa: E402

RUNS = Path(__file__).resolve().parent / "runs"


def fast_net(first, c1, c2, deskew=False, c0=8):
    """Down to 14 x 14 in the first layer: `first` is "s2d" (each 2 x 2
    block of pixels becomes 4 channels, no weights, then a padded 3x3 conv
    4 -> c1) or "stride2" (a padded 3x3 conv 1 -> c1 of stride 2); or
    "pool28" (round 3): a padded 3x3 conv 1 -> c0 at 28 x 28, max-pool, a
    padded separable conv c0 -> c1. Then a padded separable conv at 14 x 14,
    max-pool, c2 channels at 7 x 7 (two padded separable convs, one
    unpadded), global average pool, a 1x1 head."""
    def make(dropout=None):
        head = ([nn.PixelUnshuffle(2), *conv(4, c1, padding=1)] if first == "s2d" else
                [*conv(1, c0, padding=1), nn.MaxPool2d(2), *conv(c0, c1, padding=1, separable=True)]
                if first == "pool28" else
                [nn.Conv2d(1, c1, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU()])
        return model.TinyNet(
            *([model.Deskew()] if deskew else []),
            *head,                                              # c1 x14x14
            *conv(c1, c1, padding=1, separable=True),           # c1 x14x14
            nn.MaxPool2d(2),                                    # c1 x7x7
            *conv(c1, c2, padding=1, separable=True),           # c2 x7x7
            *conv(c2, c2, padding=1, separable=True),           # c2 x7x7
            *conv(c2, c2, separable=True),                      # c2 x5x5
            nn.AdaptiveAvgPool2d(1),                            # c2 x1x1
            nn.Conv2d(c2, 10, 1, bias=False),                   # 10x1x1
        )
    return make


CANDIDATES = {
    "s2d_16_32": fast_net("s2d", 16, 32),
    "st2_16_32": fast_net("stride2", 16, 32),
    "s2d_12_24": fast_net("s2d", 12, 24),
    "s2d_16_32_dsk": fast_net("s2d", 16, 32, deskew=True),
    "s2d_24_40": fast_net("s2d", 24, 40),                     # round 2
    "s2d_24_40_dsk": fast_net("s2d", 24, 40, deskew=True),
    "p28_8_24_40_dsk": fast_net("pool28", 24, 40, deskew=True),  # round 3
}


def scores(history):
    """(V, L5) of a finished history."""
    last = [e["test_acc"] for e in history["epochs"][-5:]]
    return statistics.mean(last), min(last)


def table():
    rows = ["| run | params | seeds | V | L5 (lowest) |", "|---|---|---|---|---|"]
    groups = {}
    for path in sorted(RUNS.glob("*_seed*.json")):
        h = json.loads(path.read_text())
        if len(h["epochs"]) == h["config"]["epochs"] and h["evaluated_on"] == "validation":
            groups.setdefault(path.name.rsplit("_seed", 1)[0], []).append(h)
    for run, histories in groups.items():
        v, low = zip(*map(scores, histories))
        seeds = " ".join(str(h["seed"]) for h in sorted(histories, key=lambda h: h["seed"]))
        rows.append(f"| {run} | {histories[0]['params']:,} | {seeds} | {statistics.mean(v):.3f} "
                    f"| {min(low):.2f} |")
    return "\n".join(rows)


def time_candidates(specs, repeats=2):
    """R of each NAME[:FLAGS] (flags comma-separated, e.g. s2d_16_32:--batch-size,128)
    against step 7 as a user runs it, interleaved, median of `repeats`."""
    runs = {"step 7": (train.make_config(train.parse_args(["--step", "7"])), ())}
    for spec in specs:
        name, _, flags = spec.partition(":")
        flags = tuple(flags.split(",")) if flags else ()
        cfg = dict(train.make_config(train.parse_args(["--step", "7", *flags])), net=name)
        runs[spec] = (cfg, flags)
    times = {spec: [] for spec in runs}
    for round_ in range(repeats + 1):
        for spec, (cfg, flags) in runs.items():
            seconds = bench.epoch_seconds(cfg, str(ROOT / "data"), {**model.NETS, **CANDIDATES}, flags)
            if round_:
                times[spec].append(seconds)
    epochs = {spec: cfg["epochs"] for spec, (cfg, _) in runs.items()}
    for spec, (epoch, run, ratio) in bench.whole_runs(times, epochs).items():
        print(f"| {spec} | {epochs[spec]} | {epoch:.2f} | {run:.0f} | {ratio:.3f} |")


def main(argv):
    if argv[:1] == ["--table"]:
        print(table())
        return 0
    if argv[:1] == ["--time"]:
        time_candidates(argv[1:])
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
