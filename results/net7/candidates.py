"""Net7 candidates that are not (or no longer) in model.py, trained through
train.py's own command line on the validation split (README, "Net7"):

    python results/net7/candidates.py NAME --step 7 --val 5000 [train.py flags]

NAME is one of CANDIDATES; the run records it as its "net".
"""
import sys
from pathlib import Path

import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import model  # noqa: E402
import train  # noqa: E402
from model import TinyNet, conv  # noqa: E402


def separable(c_in, c_out, padding=0):
    """Depthwise 3x3 then pointwise 1x1, one BatchNorm and ReLU after both."""
    return [nn.Conv2d(c_in, c_in, 3, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class SepNet(TinyNet):
    """Net7's layout with the 3x3 convs after the first made separable, which
    pays for `width` channels throughout."""

    def __init__(self, width=20, dropout=None):
        w = width
        super().__init__(
            *conv(1, w, padding=1),        # w x28x28
            *separable(w, w, padding=1),   # w x28x28
            nn.MaxPool2d(2),               # w x14x14
            *separable(w, w),              # w x12x12
            *separable(w, w),              # w x10x10
            *separable(w, w),              # w x8x8
            *separable(w, w),              # w x6x6
            nn.AvgPool2d(6),
            nn.Conv2d(w, 10, 1, bias=False),
        )


class Net7At16(TinyNet):
    """The first Net7, 3,800 parameters: 16 channels in the last 3x3 conv."""

    def __init__(self, dropout=None):
        super().__init__(
            *conv(1, 8, padding=1), *conv(8, 8, padding=1), nn.MaxPool2d(2),
            *conv(8, 8), *conv(8, 8), *conv(8, 8), *conv(8, 16),
            nn.AvgPool2d(6), nn.Conv2d(16, 10, 1, bias=False),
        )


class Wide10(TinyNet):
    """10 channels and one 3x3 conv fewer than Net7: 3,992 parameters, GAP over 8x8."""

    def __init__(self, dropout=None):
        super().__init__(
            *conv(1, 10, padding=1), *conv(10, 10, padding=1), nn.MaxPool2d(2),
            *conv(10, 10), *conv(10, 10), *conv(10, 11),
            nn.AvgPool2d(8), nn.Conv2d(11, 10, 1, bias=False),
        )


class Padded14(TinyNet):
    """Net7 with the three 8->8 convs after the pool padded: same 3,968
    parameters and receptive field, more positions (compute) per parameter."""

    def __init__(self, dropout=None):
        super().__init__(
            *conv(1, 8, padding=1), *conv(8, 8, padding=1), nn.MaxPool2d(2),
            *conv(8, 8, padding=1), *conv(8, 8, padding=1), *conv(8, 8, padding=1),
            *conv(8, 18), nn.AvgPool2d(12), nn.Conv2d(18, 10, 1, bias=False),
        )


CANDIDATES = {
    "net7_3800": Net7At16,  # candidates g to n and p
    "sep20": SepNet,
    "wide_end": model.Net7,  # it became Net7 (3,968)
    "wide10": Wide10,
    "padded14": Padded14,
}

if __name__ == "__main__":
    name, argv = sys.argv[1], sys.argv[2:]
    model.NETS[name] = CANDIDATES[name]
    train.RECIPES[7] = dict(train.RECIPES[7], net=name)
    train.main(argv)
