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
    return conv(c_in, c_out, padding, separable=True)


class SepNet(TinyNet):
    """ao's layout at another width (at 21 it is ao, Net7 until round 11): the
    3x3 convs after the first made separable, which pays for `width` channels
    throughout."""

    def __init__(self, width=20, last_width=None, dropout=None):
        w, last = width, last_width or width
        super().__init__(
            *conv(1, w, padding=1),        # w x28x28
            *separable(w, w, padding=1),   # w x28x28
            nn.MaxPool2d(2),               # w x14x14
            *separable(w, w),              # w x12x12
            *separable(w, w),              # w x10x10
            *separable(w, w),              # w x8x8
            *separable(w, last),           # last x6x6
            nn.AvgPool2d(6),
            nn.Conv2d(last, 10, 1, bias=False),
        )


class Net7At8(TinyNet):
    """o, Net7 until it was replaced by sep21: 3,968 parameters, Net6's layout
    at 8 channels (18 in the last 3x3 conv), one unpadded conv fewer."""

    def __init__(self, dropout=None):
        super().__init__(
            *conv(1, 8, padding=1), *conv(8, 8, padding=1), nn.MaxPool2d(2),
            *conv(8, 8), *conv(8, 8), *conv(8, 8), *conv(8, 18),
            nn.AvgPool2d(6), nn.Conv2d(18, 10, 1, bias=False),
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
    """10 channels and one 3x3 conv fewer than o: 3,992 parameters, GAP over 8x8."""

    def __init__(self, dropout=None):
        super().__init__(
            *conv(1, 10, padding=1), *conv(10, 10, padding=1), nn.MaxPool2d(2),
            *conv(10, 10), *conv(10, 10), *conv(10, 11),
            nn.AvgPool2d(8), nn.Conv2d(11, 10, 1, bias=False),
        )


class Padded14(TinyNet):
    """o with the three 8->8 convs after the pool padded: same 3,968
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

    def __init__(self, c, separable=False):
        super().__init__()
        self.block = nn.Sequential(*conv(c, c, separable=separable))

    def forward(self, x):
        return self.block(x) + x[..., 1:-1, 1:-1]


class Residual(TinyNet):
    """o with the three 8->8 convs after the pool made CropSkip blocks:
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
    """o with its three 8->8 convs after the pool replaced by inverted
    residual blocks 8->20->8: 3,980 parameters, same shapes."""

    def __init__(self, dropout=None):
        super().__init__(
            *conv(1, 8, padding=1), *conv(8, 8, padding=1), nn.MaxPool2d(2),
            InvertedResidual(8, 20), InvertedResidual(8, 20), InvertedResidual(8, 20),
            *conv(8, 18), nn.AvgPool2d(6), nn.Conv2d(18, 10, 1, bias=False),
        )


class Net7SiLU(Net7At8):
    """o with SiLU (x * sigmoid(x)) in place of every ReLU: same parameters."""

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
    """o with one 8->8 conv fewer and what it saves spent on the last conv:
    25 channels, GAP over 8x8, receptive field 18; 3,964 parameters."""

    def __init__(self, dropout=None):
        super().__init__(
            *conv(1, 8, padding=1), *conv(8, 8, padding=1), nn.MaxPool2d(2),
            *conv(8, 8), *conv(8, 8), *conv(8, 25),
            nn.AvgPool2d(8), nn.Conv2d(25, 10, 1, bias=False),
        )


class Shared(TinyNet):
    """o's layout at 10 channels, paid for by one 10->10 conv applied `uses`
    times after the pool (each use with a BatchNorm of its own), 19 channels
    in the last conv: 3,928 parameters with 3 uses (GAP 6x6, receptive field
    22), 3,948 with 4 (GAP 4x4, receptive field 26)."""

    def __init__(self, uses=3, dropout=None):
        shared = nn.Conv2d(10, 10, 3, bias=False)  # the same module, so the same weights
        repeated = [m for _ in range(uses) for m in (shared, nn.BatchNorm2d(10), nn.ReLU())]
        side = 14 - 2 * uses - 2
        super().__init__(
            *conv(1, 10, padding=1), *conv(10, 10, padding=1), nn.MaxPool2d(2),
            *repeated, *conv(10, 19), nn.AvgPool2d(side), nn.Conv2d(19, 10, 1, bias=False),
        )


def factorized(c_in, c_out, padding=0):
    """A 3x3 conv as a 3x1 then a 1x3 conv, each with BatchNorm and ReLU:
    6 c_in c_out weights instead of 9, and twice the depth."""
    return [nn.Conv2d(c_in, c_in, (3, 1), padding=(padding, 0), bias=False),
            nn.BatchNorm2d(c_in), nn.ReLU(),
            nn.Conv2d(c_in, c_out, (1, 3), padding=(0, padding), bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU()]


class Factorized10(TinyNet):
    """o's layout at 10 channels with every 3x3 conv after the first made a 3x1
    and a 1x3 (Inception-v3's factorisation), 20 channels at the end: 3,830
    parameters, same shapes and receptive field as o."""

    def __init__(self, dropout=None):
        super().__init__(
            *conv(1, 10, padding=1), *factorized(10, 10, padding=1), nn.MaxPool2d(2),
            *factorized(10, 10), *factorized(10, 10), *factorized(10, 10), *factorized(10, 20),
            nn.AvgPool2d(6), nn.Conv2d(20, 10, 1, bias=False),
        )


class OAt9(TinyNet):
    """o's layout one channel wider (9, and 20 in the last 3x3 conv): 4,947
    parameters, over the budget; it measures what the budget costs."""

    def __init__(self, dropout=None):
        super().__init__(
            *conv(1, 9, padding=1), *conv(9, 9, padding=1), nn.MaxPool2d(2),
            *conv(9, 9), *conv(9, 9), *conv(9, 9), *conv(9, 20),
            nn.AvgPool2d(6), nn.Conv2d(20, 10, 1, bias=False),
        )


class SepDeep(TinyNet):
    """Net7's layout at 19 channels with a fifth separable conv after the pool
    (GAP 4x4, receptive field 26, as Net6): 3,819 parameters."""

    def __init__(self, width=19, dropout=None):
        w = width
        super().__init__(
            *conv(1, w, padding=1), *separable(w, w, padding=1), nn.MaxPool2d(2),
            *[layer for _ in range(5) for layer in separable(w, w)],  # 12, 10, 8, 6, 4
            nn.AvgPool2d(4), nn.Conv2d(w, 10, 1, bias=False),
        )


def separable_v1(c_in, c_out):
    """MobileNet v1's separable conv, unpadded: BatchNorm and ReLU after the
    depthwise 3x3 too, not only after the 1x1 (2 c_in parameters more)."""
    return sep(c_in, c_out, v1=True)


class SepV1(TinyNet):
    """Net7 with its four separable convs after the pool in MobileNet v1's
    form: twice the ReLUs there, 3,969 parameters."""

    def __init__(self, dropout=None):
        super().__init__(
            *conv(1, 21, padding=1), *separable(21, 21, padding=1), nn.MaxPool2d(2),
            *separable_v1(21, 21), *separable_v1(21, 21), *separable_v1(21, 21),
            *separable_v1(21, 21), nn.AvgPool2d(6), nn.Conv2d(21, 10, 1, bias=False),
        )


class SepResidual(TinyNet):
    """Net7 with a residual connection (input cropped by a pixel) around each
    of its four separable convs after the pool: same 3,801 parameters."""

    def __init__(self, dropout=None):
        super().__init__(
            *conv(1, 21, padding=1), *separable(21, 21, padding=1), nn.MaxPool2d(2),
            *[CropSkip(21, separable=True) for _ in range(4)],
            nn.AvgPool2d(6), nn.Conv2d(21, 10, 1, bias=False),
        )


def shuffled(c, groups, padding=0):
    """A separable conv whose 1x1 is grouped (each output channel mixes c/groups
    inputs, 1/groups of the weights), then ShuffleNet's channel shuffle so the
    next 1x1 mixes across the groups."""
    return [nn.Conv2d(c, c, 3, padding=padding, groups=c, bias=False),
            nn.Conv2d(c, c, 1, groups=groups, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
            nn.ChannelShuffle(groups)]


class SepShuffle(TinyNet):
    """Net7's layout at 30 channels, its 1x1 convs in 3 groups with a channel
    shuffle after each (ShuffleNet v1): 3,780 parameters."""

    def __init__(self, width=30, groups=3, dropout=None):
        w, g = width, groups
        super().__init__(
            *conv(1, w, padding=1), *shuffled(w, g, padding=1), nn.MaxPool2d(2),
            *shuffled(w, g), *shuffled(w, g), *shuffled(w, g), *shuffled(w, g),
            nn.AvgPool2d(6), nn.Conv2d(w, 10, 1, bias=False),
        )


class SepLinearEnd(TinyNet):
    """Net7's layout at 23 channels whose last separable conv gives the 10 class
    scores itself (no BatchNorm, no ReLU; GAP after it): 3,818 parameters."""

    def __init__(self, width=23, dropout=None):
        w = width
        super().__init__(
            *conv(1, w, padding=1), *separable(w, w, padding=1), nn.MaxPool2d(2),
            *separable(w, w), *separable(w, w), *separable(w, w),
            nn.Conv2d(w, w, 3, groups=w, bias=False), nn.Conv2d(w, 10, 1, bias=False),
            nn.AvgPool2d(6),
        )


def sep(c_in, c_out, padding=0, kernel=3, v1=False):
    """A separable conv with a k x k depthwise filter; v1: BatchNorm and ReLU
    after the depthwise conv as well (MobileNet v1)."""
    depthwise = [nn.Conv2d(c_in, c_in, kernel, padding=padding, groups=c_in, bias=False)]
    if v1:
        depthwise += [nn.BatchNorm2d(c_in), nn.ReLU()]
    return depthwise + [nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class SepStages(TinyNet):
    """Round 6: Net7's layout (SepStages(21, 21) is Net7, parameter for
    parameter) with `stem` channels before the pool and `width` after it,
    `last` out of the last separable conv, a k x k first conv, and k x k
    depthwise filters after the pool (5x5: two convs take 14x14 to 6x6, not four)."""

    def __init__(self, stem=21, width=21, last=None, first_kernel=3, dw_kernel=3, v1=False,
                 dropout=None):
        last = last or width
        convs = 8 // (dw_kernel - 1)  # after the pool, 14x14 down to 6x6
        widths = [stem] + [width] * (convs - 1) + [last]
        super().__init__(
            nn.Conv2d(1, stem, first_kernel, padding=first_kernel // 2, bias=False),
            nn.BatchNorm2d(stem), nn.ReLU(),                              # stem x28x28
            *sep(stem, stem, padding=1), nn.MaxPool2d(2),                 # stem x14x14
            *[layer for c_in, c_out in zip(widths, widths[1:])
              for layer in sep(c_in, c_out, kernel=dw_kernel, v1=v1)],   # last x6x6
            nn.AvgPool2d(6), nn.Conv2d(last, 10, 1, bias=False),
        )


CANDIDATES = {
    "net7_3800": Net7At16,  # candidates g to n and p
    "sep20": SepNet,
    "wide_end": Net7At8,  # o, Net7 (3,968) until sep21 replaced it
    "wide10": Wide10,
    "padded14": Padded14,
    "residual": Residual,
    "inverted": Inverted,
    "silu": Net7SiLU,
    "deep8": Deep8,
    "wide25": WideEnd25,
    "shared10": Shared,
    "shared10x4": lambda dropout=None: Shared(4),
    "sep21_end26": lambda dropout=None: SepNet(21, 26),
    "sep21": lambda dropout=None: SepNet(21),  # ao, Net7 (3,801) until round 11
    "fact10": Factorized10,
    "net7_9ch": OAt9,
    "sep19_deep": SepDeep,
    "sep21_v1": SepV1,
    "sep21_res": SepResidual,
    "sep30_shuffle3": SepShuffle,
    "sep22_end16": lambda dropout=None: SepNet(22, 16),
    "sep23_linear_end": SepLinearEnd,
    "sep16_24": lambda dropout=None: SepStages(16, 24),
    "sep14_25": lambda dropout=None: SepStages(14, 25),  # ba; Net7 since round 11, layer for layer
    "sep20_first5": lambda dropout=None: SepStages(20, 20, first_kernel=5),
    "sep24_dw5": lambda dropout=None: SepStages(24, 24, dw_kernel=5),
    "sep21_v1_end16": lambda dropout=None: SepStages(21, 21, 16, v1=True),
    "net6": model.Net6,  # the original's 6,750-parameter net under step 7's recipe
}

# Step 7's recipe as it was in rounds 1-10, which every candidate here ran
# under; round 11 changed step 7 to peak 0.2, pct_start 0.15 and decay 0.997.
# Pinned so that the record's commands still give the runs they gave.
SEARCH_RECIPE = dict(max_lr=0.1, pct_start=0.3, ema=0.999)


def use(name):
    """Make step 7 train candidate `name`, under the search's recipe (flags override it)."""
    model.NETS[name] = CANDIDATES[name]
    train.RECIPES[7] = dict(train.RECIPES[7], net=name, **SEARCH_RECIPE)


if __name__ == "__main__":
    use(sys.argv[1])
    train.main(sys.argv[2:])
