"""Round 20's measurements of what varies among MNIST's training digits
once deskewed, and of StrokeWidth's effect (round 20's plan quotes them):

    python experiments/net9/shapes.py

Width: the stroke width estimated as StrokeWidth estimates it (the first
20,000 training images; after StrokeWidth, the first 5,000). Height, the
vertical spread of ink and ink mass: of the first 20,000 deskewed, per class.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import data  # noqa: E402
import model  # noqa: E402
from search import StrokeWidth  # noqa: E402
from writers import stroke_width  # noqa: E402


def spread(values, labels):
    """Each class's coefficient of variation, lowest to highest, in %."""
    cv = [values[labels == c].std() / values[labels == c].mean() for c in range(10)]
    return f"{100 * min(cv):.0f}-{100 * max(cv):.0f} %"


images, labels = data.load_tensors("data", True)
images, labels = images[:20_000], labels[:20_000]
quantiles = torch.tensor([0.01, 0.05, 0.5, 0.95, 0.99])
print("width, 1/5/50/95/99 %:", [f"{q:.2f}" for q in stroke_width(images).quantile(quantiles)])
normalised = StrokeWidth(2.0)((images[:5000] - data.MEAN) / data.STD)
ink = normalised - normalised.flatten(1).amin(1)[:, None, None, None]
print("after StrokeWidth:", [f"{q:.2f}" for q in stroke_width(ink).quantile(quantiles)])
with torch.no_grad():
    ink = model.Deskew()(images)[:, 0]
rows = torch.arange(28.0)
mass = ink.sum((1, 2))
centre = (ink.sum(2) * rows).sum(1) / mass
spread_y = ((ink.sum(2) * (rows - centre[:, None]) ** 2).sum(1) / mass).sqrt()
inked = (ink > 0.1).any(2).float()
height = 28 - inked.argmax(1) - inked.flip(1).argmax(1)
print("deskewed height:", " ".join(f"{c}: {height[labels == c].float().mean():.1f} ± "
                                   f"{height[labels == c].float().std():.1f}" for c in range(10)))
print("within a class, the vertical spread of ink varies", spread(spread_y, labels),
      "and ink mass", spread(mass, labels))
