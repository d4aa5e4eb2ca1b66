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


class CropSkip(nn.Module):
    """An unpadded 3x3 block plus its input cropped by the pixel it loses on
    each side: a residual connection that costs no parameters."""

    def __init__(self, c):
        super().__init__()
        self.block = nn.Sequential(*conv(c, c))

    def forward(self, x):
        return self.block(x) + x[..., 1:-1, 1:-1]


class Residual(TinyNet):
    """Net7 with the three 8->8 convs after the pool made CropSkip blocks:
    same 3,968 parameters, same shapes."""

    def __init__(self, dropout=None):
        super().__init__(
            *conv(1, 8, padding=1), *conv(8, 8, padding=1), nn.MaxPool2d(2),
            CropSkip(8), CropSkip(8), CropSkip(8),
            *conv(8, 18), nn.AvgPool2d(6), nn.Conv2d(18, 10, 1, bias=False),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2's block, unpadded: 1x1 up to `wide` channels, depthwise 3x3,
    1x1 back down with no ReLU, plus the input cropped by a pixel each side."""

    def __init__(self, c, wide):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(c, wide, 1, bias=False), nn.BatchNorm2d(wide), nn.ReLU(),
            nn.Conv2d(wide, wide, 3, groups=wide, bias=False), nn.BatchNorm2d(wide), nn.ReLU(),
            nn.Conv2d(wide, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return self.block(x) + x[..., 1:-1, 1:-1]


class Inverted(TinyNet):
    """Net7 with its three 8->8 convs after the pool replaced by inverted
    residual blocks 8->20->8: 3,980 parameters, same shapes."""

    def __init__(self, dropout=None):
        super().__init__(
            *conv(1, 8, padding=1), *conv(8, 8, padding=1), nn.MaxPool2d(2),
            InvertedResidual(8, 20), InvertedResidual(8, 20), InvertedResidual(8, 20),
            *conv(8, 18), nn.AvgPool2d(6), nn.Conv2d(18, 10, 1, bias=False),
        )


class Net7SiLU(model.Net7):
    """Net7 with SiLU (x * sigmoid(x)) in place of every ReLU: same parameters."""

    def __init__(self, dropout=None):
        super().__init__(dropout)
        for i, layer in enumerate(self.layers):
            if isinstance(layer, nn.ReLU):
                self.layers[i] = nn.SiLU()


class Deep8(TinyNet):
    """Net6's layout at 8 channels, all five unpadded convs after the pool,
    11 channels in the last, GAP over 4x4: 3,972 parameters, receptive field 26."""

    def __init__(self, dropout=None):
        super().__init__(
            *conv(1, 8, padding=1), *conv(8, 8, padding=1), nn.MaxPool2d(2),
            *conv(8, 8), *conv(8, 8), *conv(8, 8), *conv(8, 8), *conv(8, 11),
            nn.AvgPool2d(4), nn.Conv2d(11, 10, 1, bias=False),
        )


class WideEnd25(TinyNet):
    """Net7 with one 8->8 conv fewer and what it saves spent on the last conv:
    25 channels, GAP over 8x8, receptive field 18; 3,964 parameters."""

    def __init__(self, dropout=None):
        super().__init__(
            *conv(1, 8, padding=1), *conv(8, 8, padding=1), nn.MaxPool2d(2),
            *conv(8, 8), *conv(8, 8), *conv(8, 25),
            nn.AvgPool2d(8), nn.Conv2d(25, 10, 1, bias=False),
        )


CANDIDATES = {
    "net7_3800": Net7At16,  # candidates g to n and p
    "sep20": SepNet,
    "wide_end": model.Net7,  # it became Net7 (3,968)
    "wide10": Wide10,
    "padded14": Padded14,
    "residual": Residual,
    "inverted": Inverted,
    "silu": Net7SiLU,
    "deep8": Deep8,
    "wide25": WideEnd25,
    "net6": model.Net6,  # the original's 6,750-parameter net under step 7's recipe
}

if __name__ == "__main__":
    name, argv = sys.argv[1], sys.argv[2:]
    model.NETS[name] = CANDIDATES[name]
    train.RECIPES[7] = dict(train.RECIPES[7], net=name)
    train.main(argv)
