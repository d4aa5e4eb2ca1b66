"""Seconds per training epoch of Net6 at the step-6 recipe, three ways:

  (a) classic: DataLoader + per-image PIL rotation (the original pipeline)
  (b) device:  whole set on the device, rotation as batched tensor ops
  (c) floor:   forward + backward + step on batches made beforehand

    python bench.py --repeats 3 --batches 150

Times `--batches` batches (all 469 by default) and scales to a full epoch.

    python bench.py --steps

times instead one training step (a batch of 64) of Net7, Net8 and Net9 at
1 and 2 threads, plain and channels-last, against a 1024 x 1024 matmul in
the same run, and profiles Net9's step by operator.

    python bench.py --runs 7 10

times instead each named step's whole epoch (training and the test pass)
as `python train.py --step N` runs it, at the default threads, the steps
interleaved; prints each step's seconds an epoch and its whole run as a
ratio to the first step's. Prints; writes nothing.
"""
import argparse
import contextlib
import io
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

import data
import model
from model import Net6
import train
from train import RECIPES, COMMON
from utils import make_optimizer, pick_device, seed_everything, train_epoch


def timed_epoch(loader, device, batches):
    """Seconds for `batches` batches of a real training epoch (bar included)."""
    net = Net6().to(device)
    optimizer, scheduler = make_optimizer(net, COMMON["lr"], COMMON["momentum"], "onecycle",
                                          COMMON["max_lr"], 1, batches)
    start = time.perf_counter()
    train_epoch(net, loader, optimizer, scheduler, device, batches)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def timed_floor(premade, device):
    net = Net6().to(device)
    optimizer, _ = make_optimizer(net, COMMON["lr"], COMMON["momentum"], "none", 0, 1, 1)
    net.train()
    start = time.perf_counter()
    for images, labels in premade:
        optimizer.zero_grad(set_to_none=True)
        F.nll_loss(net(images), labels).backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def flops_per_image(net, batch):
    """Forward + backward FLOPs of one image, by torch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode
    images, labels = batch
    with FlopCounterMode(display=False) as counter:
        F.nll_loss(net(images), labels).backward()
    return counter.get_total_flops() / len(images)


def floats_written(net):
    """Floats the net's layers write for one image in a forward pass: what a
    memory-bound step streams, forward and backward, in proportion."""
    x, total = torch.zeros(1, 1, 28, 28), 0
    for layer in net.layers:
        x = layer(x)
        total += x.numel()
    return total


def step_ms(net, batch, repeats, steps=10):
    """Median milliseconds of one SGD step (forward, backward, update)."""
    optimizer, _ = make_optimizer(net, COMMON["lr"], COMMON["momentum"], "none", 0, 1, 1)
    net.train()
    times = []
    for _ in range(repeats + 1):  # the first round warms up and is dropped
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            F.nll_loss(net(batch[0]), batch[1]).backward()
            optimizer.step()
        times.append((time.perf_counter() - start) / steps * 1000)
    return statistics.median(times[1:])


def matmul_gflops(repeats, n=1024):
    a, b = torch.randn(n, n), torch.randn(n, n)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        times.append((time.perf_counter() - start) / 10)
    return 2 * n ** 3 / statistics.median(times[1:]) / 1e9


def bench_steps(repeats, names=("Net7", "Net8", "Net9")):
    """One training step of each net, each thread count and memory format."""
    torch.manual_seed(0)
    batch = (torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    flops = {name: flops_per_image(model.NETS[name](), batch) for name in names}
    print("| net | floats written an image, fwd | of Net8's |\n|---|---|---|")
    floats = {name: floats_written(model.NETS[name]().eval()) for name in names}
    for name in names:
        print(f"| {name} | {floats[name]:,} | {floats[name] / floats['Net8']:.2f} |")
    print("\n| net | params | MFLOP an image, fwd+bwd | threads | format | ms a step | GFLOP/s "
          "| of matmul | s an epoch (938 steps) |\n|---|---|---|---|---|---|---|---|---|")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        peak = matmul_gflops(repeats)
        for name in names:
            for layout in ("plain", "channels-last"):
                net = model.NETS[name]()
                if layout != "plain":
                    net = net.to(memory_format=torch.channels_last)
                ms = step_ms(net, batch, repeats)
                rate = flops[name] * 64 / ms / 1e6
                print(f"| {name} | {sum(p.numel() for p in net.parameters()):,} | "
                      f"{flops[name] / 1e6:.1f} | {threads} | {layout} | {ms:.1f} | {rate:.1f} | "
                      f"{100 * rate / peak:.0f} % | {ms * 938 / 1000:.0f} |")
        print(f"| 1024x1024 matmul | | | {threads} | | | {peak:.0f} | 100 % | |")
    torch.set_num_threads(1)
    net = model.Net9()
    step_ms(net, batch, 1)
    with torch.profiler.profile() as prof:
        step_ms(net, batch, 1)
    print("\nNet9, one thread, plain: where a step's time goes\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def epoch_seconds(cfg, data_dir, nets=model.NETS, flags=()):
    """Seconds of one whole epoch of recipe `cfg`, training and the test pass,
    as train.train runs it with train.py's `flags` (its output muted, its
    history in a folder that is then deleted)."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        run = train.parse_args(["--no-plots", "--data-dir", data_dir, "--history",
                                f"{tmp}/history.json", *flags])
        epoch = train.train(dict(cfg, epochs=1), run, run.seed, nets=nets)["epochs"][0]
    return epoch["seconds"] + epoch["test_seconds"]


def whole_runs(epoch_times, epochs):
    """{name: (median s an epoch, s a whole run, that as a ratio to the first
    name's)} from each name's epoch times and its number of epochs."""
    runs = {name: (statistics.median(times), statistics.median(times) * epochs[name])
            for name, times in epoch_times.items()}
    first = runs[next(iter(runs))][1]
    return {name: (epoch, run, run / first) for name, (epoch, run) in runs.items()}


def bench_runs(steps, repeats, data_dir):
    """One epoch of each step's recipe, the steps interleaved, `repeats` times
    after a round that warms up and is dropped."""
    configs = {step: train.make_config(train.parse_args(["--step", str(step)])) for step in steps}
    times = {step: [] for step in steps}
    for round_ in range(repeats + 1):
        for step in steps:
            seconds = epoch_seconds(configs[step], data_dir)
            if round_:
                times[step].append(seconds)
    print(f"\n{pick_device('auto')}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"median of {repeats}, R = whole run / step {steps[0]}'s")
    print("| step | net | epochs | s an epoch (train + test) | runs | whole run s | R |\n"
          "|---|---|---|---|---|---|---|")
    epochs = {step: configs[step]["epochs"] for step in steps}
    for step, (epoch, run, ratio) in whole_runs(times, epochs).items():
        print(f"| {step} | {configs[step]['net']} | {epochs[step]} | {epoch:.2f} "
              f"| {' '.join(f'{t:.1f}' for t in times[step])} | {run:.0f} | {ratio:.2f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each (default: 3)")
    p.add_argument("--batches", type=int, default=None, help="batches timed per run (default: all)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    p.add_argument("--data-dir", default="./data", help="where MNIST is kept (default: ./data)")
    p.add_argument("--steps", action="store_true",
                   help="time one training step of Net7, Net8 and Net9 instead (CPU threads 1 "
                        "and 2, plain and channels-last; default: off)")
    p.add_argument("--runs", type=int, nargs="+", choices=sorted(RECIPES), metavar="STEP",
                   help="time one whole epoch of each step's recipe instead, as train.py runs "
                        "it; R: each whole run against the first step's (default: off)")
    args = p.parse_args()
    if args.runs:
        return bench_runs(args.runs, args.repeats, args.data_dir)
    if args.steps:
        return bench_steps(args.repeats)
    device = pick_device(args.device)
    recipe = RECIPES[6]
    seed_everything(1)
    loaders = {name: data.LOADERS[name](args.data_dir, recipe["batch_size"], recipe["rotation"],
                                        device, 1)[0] for name in ("classic", "device")}
    per_epoch = len(loaders["device"])
    batches = min(args.batches or per_epoch, per_epoch)
    premade = [b for _, b in zip(range(batches), loaders["device"])]
    scale = per_epoch / batches
    runs = {"classic": [], "device": [], "floor": []}
    for _ in range(args.repeats + 1):  # the first round warms up and is dropped
        for name in ("classic", "device"):
            runs[name].append(timed_epoch(loaders[name], device, batches) * scale)
        runs["floor"].append(timed_floor(premade, device) * scale)
    med = {name: statistics.median(times[1:]) for name, times in runs.items()}
    print(f"\nNet6, step-6 recipe, {device}, {torch.get_num_threads()} threads, "
          f"{batches} of {per_epoch} batches timed, median of {args.repeats}")
    print("| pipeline | s / epoch | runs |\n|---|---|---|")
    for name, label in (("classic", "(a) classic DataLoader + PIL"),
                        ("device", "(b) device loader"), ("floor", "(c) forward+backward only")):
        print(f"| {label} | {med[name]:.2f} | {' '.join(f'{t:.1f}' for t in runs[name][1:])} |")
    print(f"\na/b = {med['classic'] / med['device']:.2f}   b/c = {med['device'] / med['floor']:.2f}")


if __name__ == "__main__":
    main()
