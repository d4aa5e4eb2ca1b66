"""The Net10 search (under 1,000 parameters): train a candidate under a
step's recipe, or print what the candidates scored on the validation split.

    python experiments/net10/search.py NAME [train.py's flags]   # e.g. --step 9 --val 5000 --seed 1
    python experiments/net10/search.py --table

It uses the product only through its public names: model.P4GapNet,
model.TinyNet, model.Deskew, train.parse_args, train.make_config and
train.train (handed the candidates). Round 2's p4m layers live here until a
net that needs them is chosen.
V: validation accuracy, mean of epochs 10-14; T5: train accuracy, the same.
"""
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import model  # noqa: E402
import train  # noqa: E402

RUNS = Path(__file__).resolve().parent / "runs"


def p4(before, after):
    """model.P4GapNet(before, after), Net9's layout at other widths."""
    return lambda dropout=None: model.P4GapNet(before, after, dropout)


# ---- p4m (round 2): each 3x3 filter shared by its four turns and their
# mirror images. Channel c * 8 + g is feature c under group element g = 4 m + r:
# mirrored (across the vertical axis) m times, then turned r times.
def transform(x, g):
    """x's last two dims mirrored, then turned, as element g says."""
    m, r = divmod(g, 4)
    return torch.rot90(torch.flip(x, (-1,)) if m else x, r, (-2, -1))


def compose(a, b):
    (ma, ra), (mb, rb) = divmod(a, 4), divmod(b, 4)
    return 4 * (ma ^ mb) + (ra + (-1) ** ma * rb) % 4


def inverse(a):
    m, r = divmod(a, 4)
    return a if m else (-r) % 4


# output orientation s reads input orientation g with weight slot s^-1 g
SLOT = [[compose(inverse(s), g) for g in range(8)] for s in range(8)]


class P4mConv(nn.Conv2d):
    """P4Conv with eight copies of each filter: on the image (c_in 1) or depthwise."""

    def __init__(self, c_in, c, padding=0):
        super().__init__(c_in, c, 3, padding=padding, groups=c_in, bias=False)

    def forward(self, x):
        w = torch.stack([transform(self.weight, g) for g in range(8)], 1).flatten(0, 1)
        return F.conv2d(x, w, padding=self.padding, groups=1 if self.groups == 1 else len(w))


def p4m_pointwise(x, w):
    """The 1x1 conv that commutes with the group, of weights w (C_out, C_in, 8):
    output (o, s) reads input (c, g) with weight w[o, c, s^-1 g]."""
    c_out, c_in = w.shape[:2]
    w = w[:, :, torch.tensor(SLOT, device=x.device)]  # (o, c, s, g)
    # a matmul over (N, C, H W): the 1x1 conv's outputs, faster on a CPU (results/bench.md)
    n, _, h, wd = x.shape
    return torch.matmul(w.permute(0, 2, 1, 3).reshape(8 * c_out, 8 * c_in),
                        x.reshape(n, 8 * c_in, h * wd)).view(n, 8 * c_out, h, wd)


class P4mPointwise(nn.Conv2d):
    """A 1x1 conv from C_in x 8 to C_out x 8 that commutes with the group: 8 C_in C_out weights."""

    def __init__(self, c_in, c_out):
        super().__init__(8 * c_in, c_out, 1, bias=False)

    def forward(self, x):
        c_out, c8 = self.weight.shape[:2]
        return p4m_pointwise(x, self.weight.view(c_out, c8 // 8, 8))


class P4mSepPointwise(nn.Module):
    """P4mPointwise separable in the group (round 5): each input feature's
    eight maps mixed by its own 8 weights (a convolution over the group),
    then the features mixed by C_in x C_out weights shared by every element:
    w[o, c, h] = mix[o, c] x group[c, h], 8 C_in + C_in C_out weights."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.group = nn.Parameter(torch.empty(c_in, 8).uniform_(-8 ** -0.5, 8 ** -0.5))
        self.mix = nn.Parameter(torch.empty(c_out, c_in).uniform_(-c_in ** -0.5, c_in ** -0.5))

    def forward(self, x):
        return p4m_pointwise(x, self.mix[:, :, None] * self.group[None])


class P4mBatchNorm2d(nn.BatchNorm2d):
    def forward(self, x):
        n, c8, h, w = x.shape
        return super().forward(x.reshape(n, c8 // 8, 8 * h, w)).view(n, c8, h, w)


class MirrorPool(nn.Module):
    """Each feature's 8 GAP outputs to 4: element r (turned r times) averaged
    with r M (mirrored, then turned r times). A mirrored input swaps slots 1
    and 3, a turned one cycles them, so the head still tells a digit from
    its mirror image and a 6 from a 9; it reads half the numbers (round 8)."""

    def forward(self, x):
        n, c8 = x.shape[:2]
        return x.reshape(n, c8 // 8, 2, 4).mean(2).reshape(n, c8 // 2, 1, 1)


def p4m_conv(c_in, c_out, padding=0, pointwise=P4mPointwise, act=nn.ReLU):
    convs = ([P4mConv(1, c_out, padding)] if c_in == 1 else
             [P4mConv(c_in, c_in, padding), pointwise(c_in, c_out)])
    return [*convs, P4mBatchNorm2d(c_out), act()]


class P4mGapNet(model.TinyNet):
    """P4GapNet in p4m convs, 8 x `before` channels before the pool, 8 x
    `after` after it, 8 x `last` in the last conv; full: with the separable
    conv at 28 x 28 (short: without it, one stage fewer there); `stages`
    separable convs after the pool (GAP sees 14 - 2 x stages), their 1x1
    convs `pointwise`; tied: the convs after the pool that keep the width
    share their weights; `act` after every BatchNorm; sep_same: the a -> a
    1x1 convs separable in the group; mirror_head: the head reads MirrorPool's
    4 numbers a feature."""

    def __init__(self, before, after, last, full=True, stages=4, pointwise=P4mPointwise,
                 tied=False, act=nn.ReLU, sep_same=False, mirror_head=False, dropout=None):
        b, a = before, after
        widths = [b] + [a] * (stages - 1) + [last]
        after_pool = [p4m_conv(c_in, c_out, act=act,
                               pointwise=P4mSepPointwise if sep_same and c_in == c_out else pointwise)
                      for c_in, c_out in zip(widths, widths[1:])]
        if tied:  # the a -> a convs are one conv (depthwise and 1x1), each with its own BatchNorm
            same = [i for i, (c_in, c_out) in enumerate(zip(widths, widths[1:])) if c_in == c_out]
            for i in same[1:]:
                after_pool[i][:2] = after_pool[same[0]][:2]
        super().__init__(
            model.Deskew(),
            *p4m_conv(1, b, padding=1, act=act),
            *(p4m_conv(b, b, padding=1, act=act) if full else []),
            nn.MaxPool2d(2),
            *[layer for stage in after_pool for layer in stage],
            nn.AvgPool2d(14 - 2 * stages),
            *([MirrorPool()] if mirror_head else []),
            nn.Conv2d((4 if mirror_head else 8) * last, 10, 1, bias=False),
        )


def p4m(*shape, **kw):
    return lambda dropout=None: P4mGapNet(*shape, **kw)


CANDIDATES = {"p4_4_5": p4(4, 5), "p4_3_5": p4(3, 5),
              "p4m_3_4_3": p4m(3, 4, 3), "p4m_3_3_3": p4m(3, 3, 3),
              "p4ms_4_4_3": p4m(4, 4, 3, full=False),
              "p4m3_3_5_3": p4m(3, 5, 3, stages=3), "p4m_3_5_3": p4m(3, 5, 3),
              "p4m3_3_6_2": p4m(3, 6, 2, stages=3), "p4m2_4_7_3": p4m(4, 7, 3, stages=2),
              "p4mg_3_7_3": p4m(3, 7, 3, pointwise=P4mSepPointwise),
              "p4mg_3_6_4": p4m(3, 6, 4, pointwise=P4mSepPointwise),
              "p4mt_3_5_3": p4m(3, 5, 3, tied=True), "p4mt5_3_5_3": p4m(3, 5, 3, stages=5, tied=True),
              "p4m3_3_5_3_silu": p4m(3, 5, 3, stages=3, act=nn.SiLU),
              "p4m_3_4_3_silu": p4m(3, 4, 3, act=nn.SiLU),
              "p4mg2_3_5_3": p4m(3, 5, 3, sep_same=True),
              "p4mh_2_5_3": p4m(2, 5, 3, mirror_head=True),
              "p4mh_3_5_3": p4m(3, 5, 3, mirror_head=True), "p4m_2_5_3": p4m(2, 5, 3)}


def scores(history):
    """(V, T5) of a finished history."""
    last = history["epochs"][10:15]
    return (statistics.mean(e["test_acc"] for e in last),
            statistics.mean(e["train_acc"] for e in last))


def table():
    rows = ["| run | params | seeds | V | T5 |", "|---|---|---|---|---|"]
    groups = {}
    for path in sorted(RUNS.glob("*_seed*.json")):
        h = json.loads(path.read_text())
        if len(h["epochs"]) == h["config"]["epochs"] and h["evaluated_on"] == "validation":
            groups.setdefault(path.name.rsplit("_seed", 1)[0], []).append(h)
    for run, histories in groups.items():
        v, t5 = zip(*map(scores, histories))
        seeds = " ".join(str(h["seed"]) for h in sorted(histories, key=lambda h: h["seed"]))
        rows.append(f"| {run} | {histories[0]['params']:,} | {seeds} | {statistics.mean(v):.3f} "
                    f"| {statistics.mean(t5):.3f} |")
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
