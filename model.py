"""The networks of the MNIST experiment, Net1 ... Net6, and our Net7 ... Net11.

Each net is one flat ``nn.Sequential`` whose rows are the rows of its table in
the spec (a torchsummary/torchinfo summary prints them in that order), and each
returns log-probabilities of shape (N, 10). Only torch is imported: copy this
file into a notebook and it works. ``Net`` is the one we recommend for the
exercise (Net10: 1,473 parameters, 99.40 % held on 10 seeds of 10).
``python model.py`` prints every net's layers with output shape, parameters,
receptive field and jump.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def conv(c_in, c_out, padding=0, bn=True, dropout=None, separable=False):
    """A 3x3 bias-free convolution, then BatchNorm, ReLU and Dropout as asked.
    Separable: one 3x3 filter per input channel (depthwise), then a 1x1 conv
    that mixes the channels; 9 c_in + c_in c_out weights, not 9 c_in c_out."""
    if separable:
        layers = [nn.Conv2d(c_in, c_in, 3, padding=padding, groups=c_in, bias=False),
                  nn.Conv2d(c_in, c_out, 1, bias=False)]
    else:
        layers = [nn.Conv2d(c_in, c_out, 3, padding=padding, bias=False)]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU())
    if dropout is not None:
        layers.append(nn.Dropout(dropout))
    return layers


class TinyNet(nn.Module):
    """A stack of layers that ends in `outputs` scores per image, the first
    10 of them the class scores."""
    outputs = 10

    def __init__(self, *layers):
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        scores = self.layers(x).flatten(1)
        if scores.shape[1] != self.outputs:
            raise ValueError(f"{type(self).__name__} gives {scores.shape[1]} scores per image, "
                             f"not {self.outputs}")
        return F.log_softmax(scores[:, :10], dim=1)


class Net1(TinyNet):
    """147,344 parameters, no BatchNorm: the large baseline that overfits."""

    def __init__(self, dropout=None):
        d = dropout
        super().__init__(
            *conv(1, 16, bn=False, dropout=d),     # 16x26x26
            *conv(16, 32, bn=False, dropout=d),    # 32x24x24
            *conv(32, 32, bn=False, dropout=d),    # 32x22x22
            nn.MaxPool2d(2),                       # 32x11x11
            *conv(32, 32, bn=False, dropout=d),    # 32x9x9
            *conv(32, 64, bn=False, dropout=d),    # 64x7x7
            *conv(64, 128, bn=False, dropout=d),   # 128x5x5
            nn.Conv2d(128, 10, 5, bias=False),  # 10x1x1
        )


class Net2(TinyNet):
    """10,616 parameters: BatchNorm and global average pooling. As recorded,
    it ends with 16 channels: the first 10 are the classes, the other six are
    never a target and are dropped before the softmax."""
    outputs = 16

    def __init__(self, dropout=None):
        d = dropout
        super().__init__(
            *conv(1, 8, dropout=d),      # 8x26x26
            *conv(8, 16, dropout=d),     # 16x24x24
            nn.MaxPool2d(2),             # 16x12x12
            *conv(16, 16, dropout=d),    # 16x10x10
            *conv(16, 16, dropout=d),    # 16x8x8
            *conv(16, 16, dropout=d),    # 16x6x6
            *conv(16, 16, dropout=d),    # 16x4x4
            nn.AvgPool2d(4),             # 16x1x1
        )


class Net3(Net2):
    """Net2 with a Dropout after every ReLU (the rate was not recorded)."""

    def __init__(self, dropout=0.05):
        super().__init__(dropout=dropout)


class PaddedGapNet(TinyNet):
    """Two padded convs, max-pool, five convs, GAP, then a 1x1 conv to 10."""

    def __init__(self, width, last_width, dropout):
        w, d = width, dropout
        super().__init__(
            *conv(1, w, padding=1, dropout=d),   # w x28x28
            *conv(w, w, padding=1, dropout=d),   # w x28x28
            nn.MaxPool2d(2),                     # w x14x14
            *conv(w, w, dropout=d),              # w x12x12
            *conv(w, w, dropout=d),              # w x10x10
            *conv(w, w, dropout=d),              # w x8x8
            *conv(w, w, dropout=d),              # w x6x6
            *conv(w, last_width, dropout=d),     # last_width x4x4
            nn.AvgPool2d(4),                     # last_width x1x1
            nn.Conv2d(last_width, 10, 1, bias=False),  # 10x1x1
        )


class Net4(PaddedGapNet):
    """8,172 parameters: 12 channels throughout."""

    def __init__(self, dropout=0.05):
        super().__init__(12, 12, dropout)


class Net5(Net4):
    """The same network as Net4; step 5 changes only the recipe."""


class Net6(PaddedGapNet):
    """6,750 parameters: 10 channels, 20 in the last 3x3 conv."""

    def __init__(self, dropout=0.05):
        super().__init__(10, 20, dropout)


class Deskew(nn.Module):
    """Moment deskewing, the classic MNIST preprocessing, as a layer with no
    parameters: each image is sheared so that its ink's slant (the
    covariance of x and y over the variance of y) becomes zero, and moved so
    that its centre of mass is the image's centre; bilinear sampling. The
    background is each image's darkest value, so normalised images work."""

    def forward(self, x):
        n, _, h, w = x.shape
        background = x.flatten(1).amin(1)[:, None, None, None]
        ink = (x - background).clamp(min=0)[:, 0]                      # N x H x W
        mass = ink.sum((1, 2)).clamp(min=1e-6)
        # affine_grid's coordinates: pixel centres in (-1, 1), x across, y down
        ys = (torch.arange(h, device=x.device, dtype=x.dtype) * 2 + 1) / h - 1
        xs = (torch.arange(w, device=x.device, dtype=x.dtype) * 2 + 1) / w - 1
        my = (ink.sum(2) * ys).sum(1) / mass
        mx = (ink.sum(1) * xs).sum(1) / mass
        dy, dx = ys[None, :] - my[:, None], xs[None, :] - mx[:, None]
        var_y = (ink.sum(2) * dy ** 2).sum(1) / mass
        cov = (ink * dy[:, :, None] * dx[:, None, :]).sum((1, 2)) / mass
        slant = cov / var_y.clamp(min=1e-6)
        # output pixel (u, v) samples the input at (u + slant v + mx, v + my)
        one, zero = torch.ones_like(slant), torch.zeros_like(slant)
        theta = torch.stack([torch.stack([one, slant, mx], 1), torch.stack([zero, one, my], 1)], 1)
        grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
        out = F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
        return out + background  # what comes from outside the image is background


# ---- p4 and p4m convolutions (Net9, Net10): each filter shared by its four
# 90-degree turns (p4; Cohen & Welling 2016), or by those and their mirror
# images (p4m). Element g = 4 m + r of the group: mirrored left-right m times,
# then turned r times. Channel c * G + g is feature c under element g (G = 4
# or 8); transforming the image by h transforms every map and moves c * G + g
# to c * G + h g, so one learnt filter gives G channels.
def transform(x, g):
    """x's last two dims mirrored left-right if g >= 4, then turned g % 4 times."""
    return torch.rot90(torch.flip(x, (-1,)) if g >= 4 else x, g % 4, (-2, -1))


def turns(w, elements=4):
    """(C, 1, 3, 3) filters -> (G C, 1, 3, 3): each under elements 0 ... G - 1
    (the first four: turned by 0, 90, 180, 270 degrees)."""
    return torch.stack([transform(w, g) for g in range(elements)], 1).flatten(0, 1)


def slots(elements):
    """slots[s][g] = s^-1 g: the weight through which a 1x1 group conv
    reaches output orientation s from input orientation g."""
    def product(a, b):  # b, then a: a's mirror reverses the sense of b's turn
        (ma, ra), (mb, rb) = divmod(a, 4), divmod(b, 4)
        return 4 * (ma ^ mb) + (ra + (-1) ** ma * rb) % 4
    inverse = lambda a: a if a >= 4 else -a % 4  # noqa: E731 (a mirror undoes itself)
    return [[product(inverse(s), g) for g in range(elements)] for s in range(elements)]


class P4Conv(nn.Conv2d):
    """A bias-free 3x3 conv of C filters (9 C weights) used four times each,
    turned: on the image (c_in 1: 4 C outputs), or depthwise on C x 4 maps
    (c_in C: map c * 4 + r by filter c turned r times)."""
    elements = 4

    def __init__(self, c_in, c, padding=0):
        super().__init__(c_in, c, 3, padding=padding, groups=c_in, bias=False)

    def forward(self, x):
        w = turns(self.weight, self.elements)
        return F.conv2d(x, w, padding=self.padding, groups=1 if self.groups == 1 else len(w))


class P4Pointwise(nn.Conv2d):
    """A 1x1 conv from C_in x 4 to C_out x 4 channels that commutes with the
    turn: output (o, s) = sum over (c, g) of W[o, c, s^-1 g] x input (c, g);
    4 C_in C_out weights, not 16."""
    elements = 4

    def __init__(self, c_in, c_out):
        super().__init__(self.elements * c_in, c_out, 1, bias=False)

    def matrix(self):
        """The (G C_out, G C_in) matrix of the whole 1x1 conv."""
        k, (c_out, ck) = self.elements, self.weight.shape[:2]
        # the slots are made here, not kept as a buffer, which a weight
        # average would blend as if it were a weight
        slot = torch.tensor(slots(k), device=self.weight.device)
        w = self.weight.view(c_out, ck // k, k)[:, :, slot]  # (o, c, s, g)
        return w.permute(0, 2, 1, 3).reshape(k * c_out, ck)

    def forward(self, x):
        return F.conv2d(x, self.matrix()[:, :, None, None])


class P4BatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d over C features of G orientations each, seen as C
    channels of G H x W: one mean, variance, scale and shift per feature,
    shared by its G copies (2 C parameters)."""
    elements = 4

    def forward(self, x):
        n, ck, h, w = x.shape
        k = self.elements
        return super().forward(x.reshape(n, ck // k, k * h, w)).view(n, ck, h, w)


class P4mConv(P4Conv):
    """P4Conv with eight copies of each filter: its four turns and theirs mirrored."""
    elements = 8


class P4mPointwise(P4Pointwise):
    """P4Pointwise over eight orientations: 8 C_in C_out weights, not 64."""
    elements = 8

    def forward(self, x):
        # the conv's sums as a batched matmul, faster so on a CPU at these widths
        n, ck, h, w = x.shape
        m = self.matrix()
        return torch.bmm(m.expand(n, *m.shape), x.reshape(n, ck, h * w)).view(n, -1, h, w)


class P4mBatchNorm2d(P4BatchNorm2d):
    """P4BatchNorm2d over eight orientations."""
    elements = 8


def p4_conv(c_in, c_out, padding=0, dropout=None, mirrors=False):
    """model.conv in p4 form (p4m with mirrors): the first conv (c_in 1) or
    a separable one."""
    conv_, pointwise, norm = ((P4mConv, P4mPointwise, P4mBatchNorm2d) if mirrors else
                              (P4Conv, P4Pointwise, P4BatchNorm2d))
    convs = ([conv_(1, c_out, padding)] if c_in == 1 else
             [conv_(c_in, c_in, padding), pointwise(c_in, c_out)])
    return [*convs, norm(c_out), nn.ReLU(),
            *([nn.Dropout(dropout)] if dropout is not None else [])]


class SeparableGapNet(TinyNet):
    """Net6's layout, one unpadded conv fewer (GAP sees 6x6), with every 3x3
    conv after the first depthwise-separable: `before` channels before the
    pool, `after` after it; `deskew`: the image is deskewed first."""

    def __init__(self, before, after, dropout=None, deskew=False):
        b, a, d = before, after, dropout
        super().__init__(
            *([Deskew()] if deskew else []),                    # 1x28x28   RF 1
            *conv(1, b, padding=1, dropout=d),                  # b x28x28  RF 3
            *conv(b, b, padding=1, dropout=d, separable=True),  # b x28x28  RF 5
            nn.MaxPool2d(2),                                    # b x14x14  RF 6
            *conv(b, a, dropout=d, separable=True),             # a x12x12  RF 10
            *conv(a, a, dropout=d, separable=True),             # a x10x10  RF 14
            *conv(a, a, dropout=d, separable=True),             # a x8x8    RF 18
            *conv(a, a, dropout=d, separable=True),             # a x6x6    RF 22
            nn.AdaptiveAvgPool2d(1),                            # a x1x1    RF 32
            nn.Conv2d(a, 10, 1, bias=False),                    # 10x1x1
        )


class Net7(SeparableGapNet):
    """3,980 parameters: 14 channels before the pool, 25 after (docs/net7.md)."""

    def __init__(self, dropout=None):
        super().__init__(14, 25, dropout)


class Net8(SeparableGapNet):
    """2,834 parameters: each image deskewed, then 14 channels before the
    pool, 19 after (docs/net8.md)."""

    def __init__(self, dropout=None):
        super().__init__(14, 19, dropout, deskew=True)


class P4GapNet(TinyNet):
    """SeparableGapNet(deskew=True)'s layout in group convs of G copies a
    filter (p4: 4; p4m, with mirrors: 8): G x `before` channels before the
    pool, G x `after` after it, G x `last` (default `after`) out of the last
    conv; the 1x1 head reads all of them, so a 6 is not a 9."""

    def __init__(self, before, after, last=None, mirrors=False, dropout=None):
        b, a, z, g = before, after, last or after, dict(dropout=dropout, mirrors=mirrors)
        G = 8 if mirrors else 4
        super().__init__(
            Deskew(),                                  # 1x28x28      RF 1
            *p4_conv(1, b, padding=1, **g),            # G b x28x28   RF 3
            *p4_conv(b, b, padding=1, **g),            # G b x28x28   RF 5
            nn.MaxPool2d(2),                           # G b x14x14   RF 6
            *p4_conv(b, a, **g),                       # G a x12x12   RF 10
            *p4_conv(a, a, **g),                       # G a x10x10   RF 14
            *p4_conv(a, a, **g),                       # G a x8x8     RF 18
            *p4_conv(a, z, **g),                       # G z x6x6     RF 22
            nn.AdaptiveAvgPool2d(1),                   # G z x1x1     RF 32
            nn.Conv2d(G * z, 10, 1, bias=False),       # 10x1x1
        )


class Net9(P4GapNet):
    """1,783 parameters: Net8's layout with every filter shared by its four
    90-degree turns (p4 convs), 4 x 5 channels before the pool, 4 x 8 after
    (docs/net9.md)."""

    def __init__(self, dropout=None):
        super().__init__(5, 8, dropout=dropout)


class Net10(P4GapNet):
    """1,473 parameters: Net9's layout in p4m convs, each filter shared by its
    four turns and their mirror images (eight channels a feature): 8 x 3
    before the pool, 8 x 6 after it, 8 x 3 into the head (docs/net10.md)."""

    def __init__(self, dropout=None):
        super().__init__(3, 6, last=3, mirrors=True, dropout=dropout)


class Net11(TinyNet):
    """6,976 parameters, the fast rung: each image deskewed, one conv at
    28x28 (8 channels), then 24 channels at 14x14 and 40 at 7x7: its run
    (step 11) takes under half of step 7's time (docs/net11.md)."""

    def __init__(self, dropout=None):
        d = dropout
        super().__init__(
            Deskew(),                                             # 1x28x28   RF 1
            *conv(1, 8, padding=1, dropout=d),                    # 8x28x28   RF 3
            nn.MaxPool2d(2),                                      # 8x14x14   RF 4
            *conv(8, 24, padding=1, dropout=d, separable=True),   # 24x14x14  RF 8
            *conv(24, 24, padding=1, dropout=d, separable=True),  # 24x14x14  RF 12
            nn.MaxPool2d(2),                                      # 24x7x7    RF 14
            *conv(24, 40, padding=1, dropout=d, separable=True),  # 40x7x7    RF 22
            *conv(40, 40, padding=1, dropout=d, separable=True),  # 40x7x7    RF 30
            *conv(40, 40, dropout=d, separable=True),             # 40x5x5    RF 38
            nn.AdaptiveAvgPool2d(1),                              # 40x1x1    RF 54
            nn.Conv2d(40, 10, 1, bias=False),                     # 10x1x1
        )


Net = Net10  # the smallest net that held the target on every seed it was tested on

NETS = {net.__name__: net for net in (Net1, Net2, Net3, Net4, Net5, Net6, Net7, Net8, Net9,
                                      Net10, Net11)}


def layer_table(net, size=28):
    """(layer, output C x H x W, params, receptive field, jump) for every layer
    of `net` in the order it runs, on one `size` x `size` image. The receptive
    field grows by (kernel - 1) x jump at each conv or pool, and the jump (the
    input pixels between two neighbouring outputs) multiplies by its stride."""
    rows, hooks, rf, jump = [], [], 1, 1

    def record(layer, inputs, out):
        nonlocal rf, jump
        pick = lambda v: v[0] if isinstance(v, tuple) else v  # noqa: E731 (square)
        kernel, stride, dilation = (
            # global: a kernel the size of its input
            (inputs[0].shape[-1],) * 2 + (1,) if isinstance(layer, nn.AdaptiveAvgPool2d) else
            (layer.kernel_size, layer.stride, getattr(layer, "dilation", 1))
            if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) else (1, 1, 1))
        rf += (pick(kernel) - 1) * pick(dilation) * jump
        jump *= pick(stride)
        rows.append((type(layer).__name__, "x".join(map(str, out.shape[1:])),
                     sum(p.numel() for p in layer.parameters()), rf, jump))

    for layer in net.modules():
        if not list(layer.children()):
            hooks.append(layer.register_forward_hook(record))
    training = net.training
    with torch.no_grad():
        net.eval()(torch.zeros(1, 1, size, size))
    net.train(training)
    for hook in hooks:
        hook.remove()
    return rows


def describe(net):
    """layer_table as text, with the total."""
    lines = [f"{type(net).__name__}", f"{'layer':<17} {'output':>10} {'params':>7} {'RF':>4} {'jump':>4}"]
    lines += [f"{n:<17} {o:>10} {p:>7,} {rf:>4} {j:>4}" for n, o, p, rf, j in layer_table(net)]
    lines.append(f"{'total':<17} {'':>10} {sum(p.numel() for p in net.parameters()):>7,}")
    return "\n".join(lines)


if __name__ == "__main__":
    print("\n\n".join(describe(net()) for net in NETS.values()))
