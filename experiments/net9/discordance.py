"""Round 23's measurement: on how many images two trained candidates
disagree, on the validation split and on the test set, and the standard
error that leaves on the difference of their accuracies (McNemar's count).

    python experiments/net9/search.py NET --step 8 --val 5000 --channels-last \\
        --no-plots --seed 1 --history 'runs/disc/NET_seed{seed}.json' \\
        --save 'runs/disc/NET_seed{seed}.pt'            # for each of the two nets
    python experiments/net9/discordance.py dsk11_15 stroke11_15 [--seed 1]

It uses the product through data's public functions and search.CANDIDATES.
"""
import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import data  # noqa: E402
import search  # noqa: E402


def right(name, seed, images, labels):
    ckpt = torch.load(f"runs/disc/{name}_seed{seed}.pt", map_location="cpu", weights_only=True)
    net = search.CANDIDATES[name]()
    net.load_state_dict(ckpt["state_dict"])
    with torch.no_grad():
        guesses = torch.cat([net.eval()(x).argmax(1) for x in images.split(1000)])
    return guesses.eq(labels)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    train_images, train_labels = data.load_tensors("data", True)
    _, val = data.validation_split(5000)  # the split of rounds 1-22
    test_images, test_labels = data.load_tensors("data", False)
    sets = {"validation": (train_images[val], train_labels[val]),
            "test": (test_images, test_labels),
            "test, its first 5,000": (test_images[:5000], test_labels[:5000]),
            "test, its last 5,000": (test_images[5000:], test_labels[5000:])}
    for split, (images, labels) in sets.items():
        images = (images - data.MEAN) / data.STD
        a, b = (right(name, args.seed, images, labels) for name in (args.a, args.b))
        n, only_a, only_b = len(labels), int((a & ~b).sum()), int((b & ~a).sum())
        se = 100 * math.sqrt(only_a + only_b - (only_b - only_a) ** 2 / n) / n
        print(f"{split}: {n} images; {args.a} {100 * a.float().mean():.2f} %, {args.b} "
              f"{100 * b.float().mean():.2f} %; right only for {args.a}: {only_a}, only for "
              f"{args.b}: {only_b}; difference {100 * (only_b - only_a) / n:+.2f}, its standard "
              f"error {se:.2f}")


if __name__ == "__main__":
    main()
