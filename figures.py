"""The pictures of the README and docs/steps.md, drawn from the committed runs:

    python figures.py    # reads results/, writes docs/*.png

  test_accuracy.png       test accuracy per epoch of every step, seed 1
  consistency.png         each seed's last five epochs, steps 5 on, against 99.40 %
  ladder.png              parameters against the share of seeds that hold the target
  speed.png               each seed's lowest of its last five against its step's time and parameters
  deskew.png              training digits as they come and as Net8's Deskew layer shows them
  turned_filters.png      Net9's first conv: its filters at their four turns, and their maps
  step{8,9}_seed1_curves.png  one run's loss and accuracy curves and its misclassified
  step{8,9}_seed1_misclassified.png  test digits, as a run draws them: results/saved/,
                          runs of steps 8 and 9, seed 1, whose weights were kept (--save)
"""
import argparse
import itertools
import math
import re
import sys
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import data  # noqa: E402
import model  # noqa: E402
from seeds import LAST, TARGET, read_history  # noqa: E402
from utils import UserError, batches  # noqa: E402

DPI = 80
HELD, MISSED = "tab:green", "tab:red"


# ---- one run's pictures, drawn beside its history as it trains
def plot_curves(history, path):
    """Train and test loss and accuracy per epoch, four panels."""
    epochs = [e["epoch"] for e in history["epochs"]]
    split = history.get("evaluated_on", "test")
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, key, title in zip(axes.flat, ("train_loss", "train_acc", "test_loss", "test_acc"),
                              ("Training loss", "Training accuracy (%)",
                               f"{split.title()} loss", f"{split.title()} accuracy (%)")):
        values = [e[key] for e in history["epochs"]]
        ax.plot(epochs, values, marker="o")
        if key.endswith("loss"):
            ax.set_yscale("log")  # the late epochs, where the steps differ, stay visible
        elif len(values) > 2 and values[0] < min(values[1:]) - 1:
            ax.set_ylim(min(values[1:]) - 0.2, max(values) + 0.1)  # zoomed past epoch 0
            title += f", epoch 0 ({values[0]:.2f}) below"
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1, 1].axhline(99.4, color="red", linestyle="--", linewidth=1, label="99.40 % target")
    axes[1, 1].legend()
    fig.suptitle(f"step {history['step']}, {history['config']['net']}, "
                 f"{history['params']:,} params, seed {history['seed']}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


@torch.no_grad()
def plot_misclassified(net, loader, device, path, mean, std, count=25):
    """A grid of the first `count` test digits the model gets wrong."""
    net.eval()
    wrong = []
    for images, labels in batches(loader, device):
        predicted = net(images).argmax(1)
        for i in (predicted != labels).nonzero().flatten().tolist():
            image = (images[i, 0].cpu() * std + mean).numpy()
            wrong.append((image, predicted[i].item(), labels[i].item()))
        if len(wrong) >= count:
            break
    side = math.ceil(math.sqrt(count))
    fig, axes = plt.subplots(side, side, figsize=(1.6 * side, 1.9 * side))
    for ax, item in itertools.zip_longest(axes.flat, wrong[:count]):
        ax.axis("off")
        if item:
            image, predicted, label = item
            ax.imshow(image, cmap="gray")
            ax.set_title(f"pred {predicted} / true {label}", fontsize=8)
    fig.suptitle(f"{len(wrong[:count])} misclassified test digits")
    # fixed margins: tight_layout measured all 25 titles, a second of the picture's time
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.01, top=0.92, wspace=0.1, hspace=0.3)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def save_plots(net, history, test_loader, device, curves, misclassified):
    plot_curves(history, curves)
    plot_misclassified(net, test_loader, device, misclassified, data.MEAN, data.STD)
    print(f"Plots: {curves} {misclassified}")


# ---- the pictures of the README and docs, from results/
def load(results):
    """{step: {seed: history}} of every results/step{step}_seed{seed}.json."""
    runs = {}
    for path in Path(results).glob("step*_seed*.json"):
        step, seed = map(int, re.fullmatch(r"step(\d+)_seed(\d+)\.json", path.name).groups())
        runs.setdefault(step, {})[seed] = read_history(path)
    return {step: dict(sorted(seeds.items())) for step, seeds in sorted(runs.items())}


def accuracies(history):
    return [e["test_acc"] for e in history["epochs"]]


def held(history):
    return all(a >= TARGET for a in accuracies(history)[-LAST:])


def label(history):
    return f"{history['config']['net']} ({history['params']:,})"


def target_line(ax):
    ax.axhline(TARGET, color="black", linestyle="--", linewidth=1, label=f"{TARGET:.2f} % target")


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(f"wrote {path}")


def test_accuracy(runs, path):
    fig, ax = plt.subplots(figsize=(9, 5))
    for i, (step, seeds) in enumerate(runs.items()):
        accs = accuracies(seeds[1])
        ax.plot(range(len(accs)), accs, marker="os^vD<>p*Xh"[i % 11], markersize=4,
                color=(*plt.cm.tab10.colors, "black")[i % 11], label=f"step {step}: {label(seeds[1])}")
    target_line(ax)
    ax.set_ylim(98.0, 99.8)  # where the steps differ; epoch 0 of some steps lies below
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy per epoch, seed 1")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, ncol=2)
    save(fig, path)


def consistency(runs, path):
    steps = {step: seeds for step, seeds in runs.items() if len(seeds) > 1}
    fig, axes = plt.subplots(1, len(steps), figsize=(3.2 * len(steps), 4.2), sharey=True)
    for ax, (step, seeds) in zip(axes, steps.items()):
        for seed, h in seeds.items():
            last = accuracies(h)[-LAST:]
            color = HELD if held(h) else MISSED
            ax.plot([seed] * len(last), last, color=color, linewidth=1, alpha=0.6)
            ax.scatter([seed] * len(last), last, color=color, s=12, zorder=3)
        target_line(ax)
        n = sum(map(held, seeds.values()))
        ax.set_title(f"step {step}, {label(next(iter(seeds.values())))}\n"
                     f"held on {n} of {len(seeds)}", fontsize=10)
        ax.set_xticks(list(seeds))
        ax.set_xlabel("seed")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"test accuracy (%), last {LAST} epochs")
    axes[0].plot([], [], color=HELD, marker="o", label="held: all five ≥ 99.40")
    axes[0].plot([], [], color=MISSED, marker="o", label="missed")
    axes[0].legend(loc="lower left", fontsize=8)
    save(fig, path)


def ladder(runs, path):
    points = {}  # nets with the same parameters and share (Net2 and Net3) share a label
    for seeds in runs.values():
        h, n = seeds[1], sum(map(held, seeds.values()))
        points.setdefault((h["params"], 100 * n / len(seeds)), []).append(
            f"{h['config']['net']}: {n} of {len(seeds)}")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    level = {}  # labels of points at the same height are stacked, not overlapped
    for (params, share), names in sorted(points.items()):
        ax.scatter(params, share, s=40, color=HELD if share >= 80 else MISSED, zorder=3)
        above = level[share] = level.get(share, -1) + 1
        ax.annotate(", ".join(names), (params, share), textcoords="offset points",
                    xytext=(6, 6 + 14 * above), fontsize=9,
                    bbox=dict(facecolor="white", edgecolor="none", pad=0.5))  # over the limit line
    ax.scatter([], [], color=HELD, label="holds on at least 80 % of its seeds (4 of 5)")
    ax.scatter([], [], color=MISSED, label="holds on fewer")
    ax.axvline(8000, color="gray", linestyle=":", linewidth=1, label="8,000-parameter limit")
    ax.set_xscale("log")
    ax.set_xlim(1000, 300_000)
    ax.set_ylim(-8, 122)  # room for labels stacked above 100 %
    ax.set_yticks(range(0, 101, 20))
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("seeds that hold the target (%)")
    ax.set_title("Parameters against the seeds that hold 99.40 % in each of the last five epochs")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper right", fontsize=8)
    save(fig, path)


def whole_runs(path):
    """{step: R} from the yardstick's table (`python bench.py --runs 7 ...`) at `path`."""
    rows = re.findall(r"^\| (\d+) \| Net\d+ \|.*\| ([\d.]+) \|$", Path(path).read_text(), re.M)
    return {int(step): float(ratio) for step, ratio in rows}


def speed(runs, ratios, path):
    """Each seed's lowest test accuracy of the last five epochs against its
    step's whole run as a multiple of step 7's, and against its parameters."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, x_of, xlabel in ((axes[0], ratios, "whole run, as a multiple of step 7's (2-core CPU)"),
                             (axes[1], {s: runs[s][1]["params"] for s in ratios}, "parameters")):
        span, placed = max(x_of.values()) - min(x_of.values()), []
        for step in sorted(ratios, key=x_of.get):
            lows = [min(accuracies(h)[-LAST:]) for h in runs[step].values()]
            ax.scatter([x_of[step]] * len(lows), lows, s=14, zorder=3,
                       color=[HELD if low >= TARGET else MISSED for low in lows])
            near = sum(x_of[step] - x < 0.08 * span for x in placed)  # stacked, not overlapped
            ax.annotate(f"step {step}", (x_of[step], max(lows)), textcoords="offset points",
                        xytext=(4, 6 + 11 * near), fontsize=8)
            placed.append(x_of[step])
        ax.margins(x=0.12, y=0.15)  # room for the labels
        target_line(ax)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"lowest test accuracy of the last {LAST} epochs (%)")
    axes[0].set_title("Held accuracy against time", fontsize=10)
    axes[1].set_title("Held accuracy against parameters", fontsize=10)
    axes[0].legend(loc="lower right", fontsize=8)
    save(fig, path)


def deskew(data_dir, path, n=12):
    """The first `n` test digits, and each as Net8 sees it: deskewed (the
    test split: the per-run pictures read it anyway, so nothing more loads)."""
    images, labels = data.load_tensors(data_dir, train=False)
    images = (images[:n] - data.MEAN) / data.STD
    with torch.no_grad():
        rows = {"as they come": images, "deskewed (model.Deskew)": model.Deskew()(images)}
    fig, axes = plt.subplots(2, n, figsize=(1.1 * n, 2.9))
    for ax_row, (title, batch) in zip(axes, rows.items()):
        for ax, image in zip(ax_row, batch):
            ax.imshow(image[0].numpy(), cmap="gray_r")
            ax.set_xticks([])
            ax.set_yticks([])
        ax_row[0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=10)
    for ax, label in zip(axes[0], labels[:n].tolist()):
        ax.set_title(str(label), fontsize=10)
    fig.suptitle("Deskewing: each digit sheared upright and centred by the moments of its ink",
                 fontsize=11)
    save(fig, path)


def turned_filters(run, data_dir, path, digit=0):
    """Net9's first conv from the saved run: each learnt filter and its three
    turns, and the four maps they give for one test digit."""
    net = saved_net(run)
    images, _ = data.load_tensors(data_dir, train=False)
    image = (images[digit:digit + 1] - data.MEAN) / data.STD
    first = next(m for m in net.modules() if isinstance(m, model.P4Conv))
    with torch.no_grad():
        filters = model.turns(first.weight)[:, 0]              # (4 C, 3, 3)
        maps = first(net.layers[0](image))[0]                  # (4 C, 28, 28), deskewed digit
    features = len(first.weight)
    fig, axes = plt.subplots(features, 8, figsize=(8, 1.05 * features + 0.6))
    for c in range(features):
        for r in range(4):
            axes[c, r].imshow(filters[c * 4 + r].numpy(), cmap="RdBu_r",
                              vmin=-filters[c * 4].abs().max(), vmax=filters[c * 4].abs().max())
            axes[c, 4 + r].imshow(maps[c * 4 + r].numpy(), cmap="gray_r")
        axes[c, 0].set_ylabel(f"feature {c}", rotation=0, ha="right", va="center", fontsize=9)
    for r in range(4):
        axes[0, r].set_title(f"filter, {90 * r}°", fontsize=9)
        axes[0, 4 + r].set_title(f"map, {90 * r}°", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Net9's first conv: {features} learnt 3x3 filters at four turns; "
                 "right: their maps of the first test digit, deskewed", fontsize=10)
    save(fig, path)


def saved_net(run):
    """The net saved as `run`.pt, read as --eval reads a checkpoint."""
    from train import read_checkpoint  # train imports this module: not at the top
    ckpt = read_checkpoint(run.with_suffix(".pt"))
    net = model.NETS[ckpt["config"]["net"]]()
    net.load_state_dict(ckpt["state_dict"])
    return net


def one_run(run, data_dir, out):
    """The curves and misclassified digits of the run saved as `run`.json
    (its history) and `run`.pt (its weights), drawn by save_plots."""
    cpu = torch.device("cpu")
    net, history = saved_net(run), read_history(run.with_suffix(".json"))
    save_plots(net, history, data.test_loader(data_dir, cpu), cpu,
               out / f"{run.name}_curves.png", out / f"{run.name}_misclassified.png")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="results", help="the committed runs (default: %(default)s)")
    p.add_argument("--out", default="docs", help="where the PNGs go (default: %(default)s)")
    p.add_argument("--data-dir", default="./data", help="where MNIST is kept (default: %(default)s)")
    args = p.parse_args(argv)
    runs, out = load(args.results), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    test_accuracy(runs, out / "test_accuracy.png")
    consistency(runs, out / "consistency.png")
    ladder(runs, out / "ladder.png")
    ratios = whole_runs(Path(args.results) / "bench_runs.md")
    speed(runs, {step: r for step, r in ratios.items() if step in runs}, out / "speed.png")
    deskew(args.data_dir, out / "deskew.png")
    for step in (8, 9, 10):
        one_run(Path(args.results) / "saved" / f"step{step}_seed1", args.data_dir, out)
    turned_filters(Path(args.results) / "saved" / "step9_seed1", args.data_dir,
                   out / "turned_filters.png")


if __name__ == "__main__":
    try:
        main()
    except UserError as e:  # a committed file that does not fit: one line
        sys.exit(f"error: {e}")
