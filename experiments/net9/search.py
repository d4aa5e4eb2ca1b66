"""The Net9 search: train a candidate net under a step's recipe, or print the
table of what the candidates scored on the validation split.

    python experiments/net9/search.py NAME [train.py's flags]   # e.g. --step 8 --val 5000 --seed 1
    python experiments/net9/search.py --table

It uses the product only through its public functions and classes:
model.conv, model.TinyNet, model.SeparableGapNet, model.P4GapNet,
model.Deskew, train.parse_args, train.make_config and train.train, which is
handed the candidates by name.
"""
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import model  # noqa: E402
import train  # noqa: E402
from model import conv  # noqa: E402

RUNS = Path(__file__).resolve().parent / "runs"


def logits_map(c_in):
    """A depthwise 3x3 then a 1x1 conv to the 10 class maps, with no BatchNorm
    or ReLU: the GAP of its output is the logits, and no 1x1 head follows."""
    return [nn.Conv2d(c_in, c_in, 3, groups=c_in, bias=False), nn.Conv2d(c_in, 10, 1, bias=False)]


def stem(b, d):
    """Net8's first rows: a padded conv, a padded separable conv (b channels,
    28x28), the max-pool to 14x14."""
    return [*conv(1, b, padding=1, dropout=d), *conv(b, b, padding=1, dropout=d, separable=True),
            nn.MaxPool2d(2)]


def layout(block, before, after, dropout=None):
    """model.SeparableGapNet's layout with `block(c_in, c_out, padding,
    dropout)` (a list of layers) in place of each of its separable convs."""
    b, a, d = before, after, dropout
    return model.TinyNet(
        *conv(1, b, padding=1, dropout=d),                  # b x28x28  RF 3
        *block(b, b, 1, d),                                 # b x28x28  RF 5
        nn.MaxPool2d(2),                                    # b x14x14  RF 6
        *block(b, a, 0, d),                                 # a x12x12  RF 10
        *block(a, a, 0, d),                                 # a x10x10  RF 14
        *block(a, a, 0, d),                                 # a x8x8    RF 18
        *block(a, a, 0, d),                                 # a x6x6    RF 22
        nn.AvgPool2d(6),                                    # a x1x1    RF 32
        nn.Conv2d(a, 10, 1, bias=False),                    # 10x1x1
    )


def no_head(before, after, dropout=None):
    """Net8's layout (model.SeparableGapNet) whose last separable conv gives
    the 10 class maps: no BatchNorm, ReLU or 1x1 head after it."""
    b, a, d = before, after, dropout
    return model.TinyNet(
        *stem(b, d),                                        # b x14x14  RF 6
        *conv(b, a, dropout=d, separable=True),             # a x12x12  RF 10
        *conv(a, a, dropout=d, separable=True),             # a x10x10  RF 14
        *conv(a, a, dropout=d, separable=True),             # a x8x8    RF 18
        *logits_map(a),                                     # 10x6x6    RF 22
        nn.AvgPool2d(6),                                    # 10x1x1    RF 32
    )


def two_pools(c1, c2, c3, dropout=None):
    """Fewer, wider layers at two resolutions: two padded convs at 28x28, a
    pool, two padded separable convs at 14x14, a second pool, then unpadded
    separable convs 7 -> 5 -> 3 and the class maps at 1x1."""
    d = dropout
    return model.TinyNet(
        *conv(1, c1, padding=1, dropout=d),                    # c1 x28x28  RF 3
        *conv(c1, c1, padding=1, dropout=d, separable=True),   # c1 x28x28  RF 5
        nn.MaxPool2d(2),                                       # c1 x14x14  RF 6
        *conv(c1, c2, padding=1, dropout=d, separable=True),   # c2 x14x14  RF 10
        *conv(c2, c2, padding=1, dropout=d, separable=True),   # c2 x14x14  RF 14
        nn.MaxPool2d(2),                                       # c2 x7x7    RF 16
        *conv(c2, c3, dropout=d, separable=True),              # c3 x5x5    RF 24
        *conv(c3, c3, dropout=d, separable=True),              # c3 x3x3    RF 32
        *logits_map(c3),                                       # 10x1x1     RF 40
    )


class Residual(nn.Module):
    """x + body(x), x cropped to body's output (an unpadded 3x3 conv loses a
    pixel each side): an identity path that costs no parameters."""

    def __init__(self, *body):
        super().__init__()
        self.body = nn.Sequential(*body)

    def forward(self, x):
        y = self.body(x)
        c = (x.shape[-1] - y.shape[-1]) // 2
        return y + x[..., c:x.shape[-2] - c, c:x.shape[-1] - c]


def residual(before, after, dropout=None):
    """model.SeparableGapNet with an identity path around each of its three
    same-width separable convs (after -> after)."""
    b, a, d = before, after, dropout
    return model.TinyNet(
        *stem(b, d),                                        # b x14x14  RF 6
        *conv(b, a, dropout=d, separable=True),                  # a x12x12  RF 10
        Residual(*conv(a, a, dropout=d, separable=True)),        # a x10x10  RF 14
        Residual(*conv(a, a, dropout=d, separable=True)),        # a x8x8    RF 18
        Residual(*conv(a, a, dropout=d, separable=True)),        # a x6x6    RF 22
        nn.AvgPool2d(6),                                         # a x1x1    RF 32
        nn.Conv2d(a, 10, 1, bias=False),                         # 10x1x1
    )


def deep_after(before, after, layers, dropout=None):
    """model.SeparableGapNet with `layers` unpadded separable convs after the
    pool, not four (each takes 2 pixels off the 14x14 map); GAP over what is
    left."""
    b, a, d = before, after, dropout
    widths = [b] + [a] * layers
    return model.TinyNet(
        *stem(b, d),                                        # b x14x14  RF 6
        *[layer for c_in, c_out in zip(widths, widths[1:])
          for layer in conv(c_in, c_out, dropout=d, separable=True)],
        nn.AvgPool2d(14 - 2 * layers),                      # a x1x1    RF 32
        nn.Conv2d(a, 10, 1, bias=False),                    # 10x1x1
    )


def grouped(c, groups, dropout=None):
    """A separable conv c -> c whose 1x1 mixes within `groups` groups of
    channels (c^2 / groups weights), then a channel shuffle, so that the
    next 1x1's groups each see every group of this one."""
    layers = conv(c, c, dropout=dropout, separable=True)
    layers[1] = nn.Conv2d(c, c, 1, groups=groups, bias=False)
    return layers + [nn.ChannelShuffle(groups)]


def shuffled(before, after, groups, dropout=None):
    """model.SeparableGapNet whose three after -> after 1x1 convs are
    grouped, with a channel shuffle after each (grouped())."""
    b, a, d = before, after, dropout
    return model.TinyNet(
        *stem(b, d),                                        # b x14x14  RF 6
        *conv(b, a, dropout=d, separable=True),             # a x12x12  RF 10
        *grouped(a, groups, d),                             # a x10x10  RF 14
        *grouped(a, groups, d),                             # a x8x8    RF 18
        *grouped(a, groups, d),                             # a x6x6    RF 22
        nn.AvgPool2d(6),                                    # a x1x1    RF 32
        nn.Conv2d(a, 10, 1, bias=False),                    # 10x1x1
    )


class ShiftNorm(nn.BatchNorm2d):
    """BatchNorm with a learnt shift but no learnt scale: before a ReLU and
    a bias-free conv the scale is redundant (its size passes through the ReLU
    into the next conv's weights, its sign into the previous conv's), the
    shift is not (it is the ReLU's threshold)."""

    def __init__(self, channels):
        super().__init__(channels, affine=False)
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return super().forward(x) + self.shift.view(1, -1, 1, 1)


def shift_norm(before, after, dropout=None):
    """model.SeparableGapNet with every BatchNorm's scale dropped (ShiftNorm):
    one parameter a channel fewer, spent on width."""
    net = model.SeparableGapNet(before, after, dropout)
    for i, layer in enumerate(net.layers):
        if isinstance(layer, nn.BatchNorm2d):
            net.layers[i] = ShiftNorm(layer.num_features)
    return net


def mobilenet_v1(c_in, c_out, padding=0, dropout=None):
    """A separable conv with BatchNorm and ReLU after its depthwise conv too
    (MobileNetV1's block): twice the nonlinear layers for 2 c_in parameters.
    In layout(): mnv1_11_14."""
    layers = conv(c_in, c_out, padding=padding, dropout=dropout, separable=True)
    return [layers[0], nn.BatchNorm2d(c_in), nn.ReLU(), *layers[1:]]


class ECA(nn.Module):
    """Efficient channel attention (Wang et al., ECA-Net): each channel scaled
    by a sigmoid of a 3-tap conv across the channels' global means; 3
    parameters, a per-image gate."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x):
        gate = self.mix(x.mean((2, 3)).unsqueeze(1)).sigmoid()   # N x 1 x C
        return x * gate.squeeze(1)[:, :, None, None]


def attention(before, after, dropout=None):
    """model.SeparableGapNet with an ECA gate after each separable conv after
    the pool."""
    b, a, d = before, after, dropout
    return model.TinyNet(
        *stem(b, d),                                        # b x14x14  RF 6
        *conv(b, a, dropout=d, separable=True), ECA(),      # a x12x12  RF 10
        *conv(a, a, dropout=d, separable=True), ECA(),      # a x10x10  RF 14
        *conv(a, a, dropout=d, separable=True), ECA(),      # a x8x8    RF 18
        *conv(a, a, dropout=d, separable=True), ECA(),      # a x6x6    RF 22
        nn.AvgPool2d(6),                                    # a x1x1    RF 32
        nn.Conv2d(a, 10, 1, bias=False),                    # 10x1x1
    )


class Shift(nn.Module):
    """A zero-parameter stand-in for a depthwise 3x3 conv (Wu et al., "Shift"):
    channel i is moved one pixel towards tap i mod 9 of the 3x3 (the centre
    included): a depthwise conv whose fixed kernels are one-hot. Unpadded,
    the map loses a pixel each side, as an unpadded 3x3 conv's does."""

    def __init__(self, channels, padding=0):
        super().__init__()
        self.padding = padding
        kernel = torch.zeros(channels, 9)
        kernel[torch.arange(channels), torch.arange(channels) % 9] = 1
        self.register_buffer("kernel", kernel.view(channels, 1, 3, 3), persistent=False)

    def forward(self, x):
        return nn.functional.conv2d(x, self.kernel, padding=self.padding, groups=x.shape[1])


def shift_conv(c_in, c_out, padding=0, dropout=None):
    """A separable conv whose depthwise 3x3 is a Shift: only the 1x1 learns.
    In layout(), every separable conv: zeroshift12_19."""
    layers = conv(c_in, c_out, padding=padding, dropout=dropout, separable=True)
    return [Shift(c_in, padding), *layers[1:]]


class CReLU(nn.Module):
    """Concatenated ReLU (Shang et al.): [relu(x), relu(-x)], twice the
    channels for nothing; early conv filters tend to come in opposite pairs."""

    def forward(self, x):
        return torch.cat([x.relu(), (-x).relu()], 1)


def paired(c_in, c_out):
    """A separable conv to c_out / 2 channels, BatchNorm, then CReLU: c_out."""
    layers = conv(c_in, c_out // 2, separable=True)
    return [*layers[:-1], CReLU()]


def crelu(before, after, dropout=None):
    """model.SeparableGapNet whose separable convs after the pool each give
    `after` / 2 channels, doubled by CReLU (paired())."""
    b, a = before, after
    return model.TinyNet(
        *stem(b, dropout),                                  # b x14x14  RF 6
        *paired(b, a),                                      # a x12x12  RF 10
        *paired(a, a),                                      # a x10x10  RF 14
        *paired(a, a),                                      # a x8x8    RF 18
        *paired(a, a),                                      # a x6x6    RF 22
        nn.AvgPool2d(6),                                    # a x1x1    RF 32
        nn.Conv2d(a, 10, 1, bias=False),                    # 10x1x1
    )


def wide_first(first, before, after, dropout=None):
    """model.SeparableGapNet whose first conv gives `first` channels and its
    padded separable conv `before`: more of the one full 3x3 conv."""
    f, b, a, d = first, before, after, dropout
    return model.TinyNet(
        *conv(1, f, padding=1, dropout=d),                  # f x28x28  RF 3
        *conv(f, b, padding=1, dropout=d, separable=True),  # b x28x28  RF 5
        nn.MaxPool2d(2),                                    # b x14x14  RF 6
        *conv(b, a, dropout=d, separable=True),             # a x12x12  RF 10
        *conv(a, a, dropout=d, separable=True),             # a x10x10  RF 14
        *conv(a, a, dropout=d, separable=True),             # a x8x8    RF 18
        *conv(a, a, dropout=d, separable=True),             # a x6x6    RF 22
        nn.AvgPool2d(6),                                    # a x1x1    RF 32
        nn.Conv2d(a, 10, 1, bias=False),                    # 10x1x1
    )


def tied(before, after, dropout=None):
    """model.SeparableGapNet whose three after -> after separable convs are
    one conv applied three times (its depthwise and 1x1 weights shared),
    each time with a BatchNorm of its own: the width of a net with three
    times those weights."""
    b, a, d = before, after, dropout
    shared = conv(a, a, dropout=d, separable=True)[:2]
    return model.TinyNet(
        *stem(b, d),                                        # b x14x14  RF 6
        *conv(b, a, dropout=d, separable=True),             # a x12x12  RF 10
        *[layer for _ in range(3)                           # a x10, 8, 6  RF 14, 18, 22
          for layer in (*shared, nn.BatchNorm2d(a), nn.ReLU())],
        nn.AvgPool2d(6),                                    # a x1x1    RF 32
        nn.Conv2d(a, 10, 1, bias=False),                    # 10x1x1
    )


class BlurPool(nn.Module):
    """Anti-aliased max-pooling (Zhang, "Making convolutional networks
    shift-invariant again"): a max over 2x2 at stride 1, then a fixed
    [1 2 1] x [1 2 1] / 16 blur at stride 2. No parameters; 28x28 -> 14x14."""

    def __init__(self, channels):
        super().__init__()
        tap = torch.tensor([1.0, 2.0, 1.0])
        kernel = (tap[:, None] * tap[None, :] / 16).expand(channels, 1, 3, 3).contiguous()
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, x):
        x = nn.functional.max_pool2d(x, 2, stride=1)
        return nn.functional.conv2d(x, self.kernel, stride=2, padding=1, groups=x.shape[1])


def blurred(before, after, dropout=None):
    """model.SeparableGapNet with its max-pool anti-aliased (BlurPool)."""
    net = model.SeparableGapNet(before, after, dropout)
    i = next(i for i, layer in enumerate(net.layers) if isinstance(layer, nn.MaxPool2d))
    net.layers[i] = BlurPool(before)
    return net


def deskewed(before, after, dropout=None):
    """model.SeparableGapNet that sees each image deskewed (model.Deskew;
    round 16 ran a copy of it here, the same code, commit 7f8aab4)."""
    return model.SeparableGapNet(before, after, dropout, deskew=True)


def stroked(before, after, dropout=None):
    """The same, each image's strokes first made 2 pixels wide (StrokeWidth;
    it was model.StrokeWidth for round 21's test, commit 0954e56)."""
    return augmented(StrokeWidth(2.0), before, after, dropout)


class TrainingOnly(nn.Module):
    """A random augmentation as a layer with no parameters: `augment` in
    training, the identity in eval mode; `strength` is its range."""

    def __init__(self, strength):
        super().__init__()
        self.strength = strength

    def forward(self, x):
        return self.augment(x) if self.training else x


class Thickness(TrainingOnly):
    """Each image's strokes thickened or thinned by a random amount t in
    (-s, s): blended toward its 3x3 grey dilation (t > 0) or erosion (t < 0)
    by |t|."""

    def augment(self, x):
        t = torch.empty(len(x), 1, 1, 1, device=x.device).uniform_(-self.strength, self.strength)
        dilated, eroded = F.max_pool2d(x, 3, 1, 1), -F.max_pool2d(-x, 3, 1, 1)
        return x + t.clamp(min=0) * (dilated - x) + (-t).clamp(min=0) * (eroded - x)


class Zoom(TrainingOnly):
    """Each image scaled about its centre by a random factor in (1 - s,
    1 + s), bilinear, the background (its darkest value) filled in."""

    def augment(self, x):
        n = len(x)
        scale = torch.empty(n, device=x.device).uniform_(1 - self.strength, 1 + self.strength)
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale  # output to input coordinates
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        background = x.flatten(1).amin(1)[:, None, None, None]
        return F.grid_sample(x - background, grid, align_corners=False) + background


class StrokeWidth(nn.Module):
    """Stroke-width normalisation, on training and test images alike (no
    parameters): a stroke w pixels wide has w / (w + 2) of the ink of its 3x3
    grey dilation, whatever its length, so each image's width is estimated
    from that ratio and brought to `width` by a blend toward its dilation
    (thinner images) or erosion (thicker), up to one pixel a side per pass."""

    def __init__(self, width=2.0, passes=2):
        super().__init__()
        self.width, self.passes = width, passes

    def forward(self, x):
        background = x.flatten(1).amin(1)[:, None, None, None]
        ink = x - background
        for _ in range(self.passes):
            dilated, eroded = F.max_pool2d(ink, 3, 1, 1), -F.max_pool2d(-ink, 3, 1, 1)
            ratio = ink.sum((1, 2, 3)) / dilated.sum((1, 2, 3)).clamp(min=1e-6)
            t = ((self.width - 2 * ratio / (1 - ratio).clamp(min=1e-6)) / 2)[:, None, None, None]
            ink = ink + t.clamp(0, 1) * (dilated - ink) + (-t).clamp(0, 1) * (eroded - ink)
        return ink + background


def augmented(first, before, after, dropout=None):
    """A layer with no parameters (rounds 19-21: an augmentation, or
    StrokeWidth) in front of the deskewed net."""
    net = model.SeparableGapNet(before, after, dropout, deskew=True)
    return model.TinyNet(first, *net.layers)


class AttentionPool(nn.Module):
    """Global pooling weighted by where the net looks: a 1x1 conv scores
    every position, a softmax over the positions turns the scores into
    weights, and each channel's weighted mean is taken (c + 1 parameters).
    Its weights start at zero, so it starts as global average pooling."""

    def __init__(self, channels):
        super().__init__()
        self.score = nn.Conv2d(channels, 1, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def forward(self, x):
        weights = self.score(x).flatten(2).softmax(2)                # N x 1 x HW
        return (x.flatten(2) * weights).sum(2)[:, :, None, None]     # N x C x 1 x 1


def attention_pooled(before, after, dropout=None):
    """The deskewed net (dsk) with AttentionPool in place of its GAP."""
    net = model.SeparableGapNet(before, after, dropout, deskew=True)
    layers = [AttentionPool(after) if isinstance(layer, nn.AvgPool2d) else layer
              for layer in net.layers]
    return model.TinyNet(*layers)


def named(builder, *widths):
    return lambda dropout=None: builder(*widths, dropout=dropout)


CANDIDATES = {
    # Net8's search, model.SeparableGapNet(before, after): Net8 is sep14_19
    **{f"sep{b}_{a}": named(model.SeparableGapNet, b, a)
       for b, a in ((14, 19), (10, 14), (11, 15), (9, 16), (6, 17))},
    "nohead12_16": named(no_head, 12, 16),
    "twopool8_14_16": named(two_pools, 8, 14, 16),
    "nohead14_20": named(no_head, 14, 20),
    "res11_15": named(residual, 11, 15),
    "shift10_16": named(shift_norm, 10, 16),
    "three10_19": named(deep_after, 10, 19, 3),
    "five10_13": named(deep_after, 10, 13, 5),
    "shuffle11_18": named(shuffled, 11, 18, 2),
    "mnv1_11_14": named(layout, mobilenet_v1, 11, 14),
    "eca11_15": named(attention, 11, 15),
    "zeroshift12_19": named(layout, shift_conv, 12, 19),
    "crelu11_20": named(crelu, 11, 20),
    "first16_11_14": named(wide_first, 16, 11, 14),
    "tied14_21": named(tied, 14, 21),
    "tied11_24": named(tied, 11, 24),
    "blur11_15": named(blurred, 11, 15),
    "dsk11_15": named(deskewed, 11, 15),
    "dsk14_19": named(deskewed, 14, 19),
    "dsk9_12": named(deskewed, 9, 12),
    "thick11_15": lambda dropout=None: augmented(Thickness(0.5), 11, 15, dropout),
    "zoom11_15": lambda dropout=None: augmented(Zoom(0.1), 11, 15, dropout),
    "stroke11_15": named(stroked, 11, 15),
    "stroke14_19": named(stroked, 14, 19),
    "attn11_15": named(attention_pooled, 11, 15),
    # round 30: model.P4GapNet (p4_5_8 is model.Net9); round 30 ran a copy of
    # the p4 layers kept here (commit 08c6d60): the same weights and history
    **{f"p4_{b}_{a}": named(model.P4GapNet, b, a)
       for b, a in ((5, 8), (6, 8), (4, 9), (4, 7))},
}


def scores(history):
    """(V, T5): validation and training accuracy, each averaged over the last five epochs."""
    last = history["epochs"][-train.LAST:]
    return (statistics.mean(e["test_acc"] for e in last),
            statistics.mean(e["train_acc"] for e in last))


def table():
    rows = ["| run | params | recipe | seeds | V: val acc, epochs 10-14 | T5: train acc, epochs 10-14 |",
            "|---|---|---|---|---|---|"]
    groups = {}
    for path in sorted(RUNS.glob("*_seed*.json")):
        h = json.loads(path.read_text())  # test runs (test_*) are read by train.py --report
        if len(h["epochs"]) == h["config"]["epochs"] and h["evaluated_on"] == "validation":
            groups.setdefault(path.name.rsplit("_seed", 1)[0], []).append(h)
    for run, histories in groups.items():
        v, t5 = zip(*map(scores, histories))
        cfg, split = histories[0]["config"], histories[0].get("run", {})  # older ones lack "run"
        recipe = (f"rot {cfg['rotation']:g}, batch {cfg['batch_size']}, peak {cfg['max_lr']:g}, "
                  f"ema {cfg['ema']}" + (f", dropout {cfg['dropout']:g}" if cfg["dropout"] else "")
                  + (f", SAM rho {cfg['sam_rho']:g}" if cfg.get("sam_rho") else "")
                  + (f", no rotation from epoch {cfg['clean_from']}"
                     if cfg.get("clean_from") is not None else "")
                  + (", a split per seed" if split.get("val_seed") else "")
                  + (", block S for seed S" if split.get("val_block") else ""))
        seeds = " ".join(str(h["seed"]) for h in sorted(histories, key=lambda h: h["seed"]))
        rows.append(f"| {run} | {histories[0]['params']:,} | {recipe} | {seeds} "
                    f"| {statistics.mean(v):.3f} | {statistics.mean(t5):.3f} |")
    return "\n".join(rows)


def main(argv):
    if argv[:1] == ["--table"]:
        print(table())
        return 0
    name, flags = argv[0], argv[1:]
    args = train.parse_args(flags)
    cfg = dict(train.make_config(args), net=name)
    for seed in args.seeds or [args.seed]:
        train.train(cfg, args, seed, nets=CANDIDATES)
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main(sys.argv[1:]))
