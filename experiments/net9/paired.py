"""Round 30's reading of the noise: each lever the search tested, paired by
seed with the net it changed, on validation (V: epochs 10-14, the seeds
both ran) and on the test set (seeds 1-10: the mean of the last five, and
their lowest), each as mean ± standard error over the seeds; z, how many
standard errors apart V and the test set's mean are.

    python experiments/net9/paired.py    # from the repository root

Net8 without Deskew (sep14_19) tested as step 8 until commit e931af4; its
histories are read from git there. Net8 (dsk14_19) and Net9 (p4_5_8): the
product's, results/step{8,9}_seed*.json; the others: runs/test_*.
"""
import json
import math
import statistics
import subprocess
from pathlib import Path

RUNS = Path(__file__).resolve().parent / "runs"
RESULTS = Path(__file__).resolve().parents[2] / "results"
PAIRS = [  # (lever, before, after)
    ("Deskew at 2,834", "sep14_19", "dsk14_19"),
    ("StrokeWidth at 1,977", "dsk11_15", "stroke11_15"),
    ("clean ending at 2,834", "dsk14_19", "clean7_dsk14_19"),
    ("width, 1,977 -> 2,834", "dsk11_15", "dsk14_19"),
    ("clean ending at 1,977", "dsk11_15", "clean7_dsk11_15"),
    ("p4 convs, 1,977 -> 1,783", "dsk11_15", "p4_5_8"),
    ("p4 convs at 1,783 against Net8", "dsk14_19", "p4_5_8"),
]
TESTED = {"sep14_19": "git:e931af4", "dsk14_19": RESULTS / "step8_seed{}.json",
          "p4_5_8": RESULTS / "step9_seed{}.json"}


def accuracies(net, seed, test):
    if not test:
        path = RUNS / f"{net}_seed{seed}.json"
    elif TESTED.get(net) == "git:e931af4":
        text = subprocess.run(["git", "show", f"e931af4:results/step8_seed{seed}.json"],
                              capture_output=True, text=True, cwd=RESULTS).stdout
        return [e["test_acc"] for e in json.loads(text)["epochs"]] if text else None
    else:
        path = Path(str(TESTED.get(net, RUNS / f"test_{net}_seed{{}}.json")).format(seed))
    return [e["test_acc"] for e in json.loads(path.read_text())["epochs"]] if path.exists() else None


def paired(before, after, test, score):
    gains = []
    for seed in range(1, 11):
        a, b = accuracies(before, seed, test), accuracies(after, seed, test)
        if a and b:
            gains.append(score(b[10:15]) - score(a[10:15]))
    if len(gains) < 2:
        return None
    return statistics.mean(gains), statistics.stdev(gains) / math.sqrt(len(gains)), len(gains)


def main():
    print("| lever | V gain (seeds) | test gain, mean of last five | lowest of last five | z |")
    print("|---|---|---|---|---|")
    for lever, before, after in PAIRS:
        v = paired(before, after, False, statistics.mean)
        t, low = (paired(before, after, True, f) for f in (statistics.mean, min))
        cells = [f"{v[0]:+.3f} ± {v[1]:.3f} ({v[2]})"]
        if t:
            z = (v[0] - t[0]) / math.hypot(v[1], t[1])
            cells += [f"{t[0]:+.3f} ± {t[1]:.3f} ({t[2]})", f"{low[0]:+.3f} ± {low[1]:.3f}",
                      f"{z:.1f}"]
        else:
            cells += ["", "", ""]
        print(f"| {lever} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
