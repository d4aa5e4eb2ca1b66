"""Seconds per training epoch of Net6 at the step-6 recipe, three ways:

  (a) classic: DataLoader + per-image PIL rotation (the original pipeline)
  (b) device:  whole set on the device, rotation as batched tensor ops
  (c) floor:   forward + backward + step on batches made beforehand

    python bench.py --repeats 3 --batches 150

Times `--batches` batches (all 469 by default) and scales to a full epoch.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import data
from model import Net6
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each (default: 3)")
    p.add_argument("--batches", type=int, default=None, help="batches timed per run (default: all)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    p.add_argument("--data-dir", default="./data", help="where MNIST is kept (default: ./data)")
    args = p.parse_args()
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
