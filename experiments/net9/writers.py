"""Round 23's measurement: how alike the stroke widths of two images are,
by how far apart they sit in MNIST's training and test files (the
correlation over all pairs that far apart; writers' digits sit together),
and each file's median stroke width in its two halves.

    python experiments/net9/writers.py
"""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import data  # noqa: E402


def stroke_width(images):
    """A stroke w pixels wide has w / (w + 2) of the ink of its 3x3 dilation."""
    ratio = images.sum((1, 2, 3)) / F.max_pool2d(images, 3, 1, 1).sum((1, 2, 3))
    return 2 * ratio / (1 - ratio)


def main():
    for name, train in (("training", True), ("test", False)):
        images, _ = data.load_tensors("data", train)
        w = stroke_width(images)
        half = len(images) // 2
        median = [f"{stroke_width(part).median():.2f}" for part in (images[:half], images[half:])]
        z = (w - w.mean()) / w.std()
        print(f"{name} file: " + ", ".join(f"{lag} apart {(z[:-lag] * z[lag:]).mean():.2f}"
                                           for lag in (1, 2, 10, 100, 1000))
              + f"; median width, first and second half: {median[0]} / {median[1]} px")


if __name__ == "__main__":
    main()
