"""The Net11 search (under 1,000 parameters): train a candidate under a
step's recipe, check the candidates' layers, or print what they scored.

    python experiments/net11/search.py NAME [train.py's flags]   # e.g. --step 9 --val 5000 --seed 1
    python experiments/net11/search.py --check    # equivariance and the 45-degree shift
    python experiments/net11/search.py --table

It uses the product only through its public names: model.TinyNet,
model.Deskew, train.parse_args, train.make_config and train.train (handed
the candidates). The group layers live here until a net that needs them is
chosen. V: validation accuracy, mean of epochs 10-14; T5: train accuracy,
the same.
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
from torch.optim.optimizer import register_optimizer_step_pre_hook  # noqa: E402

import model  # noqa: E402
import train  # noqa: E402

RUNS = Path(__file__).resolve().parent / "runs"
BASELINE = RUNS.parents[1] / "net10" / "runs"  # p4m3_3_5_3's seeds 1-4, the Net10 search's

# ---- dihedral groups of a 3x3 filter. D4 (p4m): turns by 90 degrees and
# mirror images, 8 elements. D8: turns by 45 degrees as a cyclic shift of the
# filter's eight border weights (as oriented-response networks do) and mirror
# images, 16 elements. Element g = n m + r of D_n (n turns): mirrored
# left-right m times, then turned r steps of 360 / n degrees counter-clockwise.
# Channel c * G + g is feature c under g (G = 2 n). A 90-degree turn or a
# mirror image of the input moves every map with it and channel c * G + g to
# c * G + h g; a 45-degree turn of a pixel grid is not a permutation, so D8
# nets are equivariant under p4m only, their 45-degree copies a prior.
RING = [0, 1, 2, 5, 8, 7, 6, 3]  # the border of a flattened 3x3, clockwise from top-left
MIRROR = [2, 1, 0, 5, 4, 3, 8, 7, 6]  # left-right


def source(g, n):
    """source[p]: the weight of the untransformed 3x3 filter (flattened) that
    element g of D_n puts at position p."""
    m, r = divmod(g, n)
    shift = r * 8 // n  # border positions a turn of r steps moves each weight
    turned = list(range(9))
    for k in range(8):  # counter-clockwise: position k takes the weight from k + shift
        turned[RING[k]] = RING[(k + shift) % 8]
    return [MIRROR[q] if m else q for q in turned]


def copies(w, n):
    """(C, 1, 3, 3) filters -> (2 n C, 1, 3, 3): each under all 2 n elements."""
    index = torch.tensor([source(g, n) for g in range(2 * n)], device=w.device)  # (G, 9)
    c = w.shape[0]
    return w.reshape(c, 9)[:, index].reshape(c * 2 * n, 1, 3, 3)


def product(a, b, n):
    """a after b in D_n: a's mirror reverses the sense of b's turn."""
    (ma, ra), (mb, rb) = divmod(a, n), divmod(b, n)
    return n * (ma ^ mb) + (ra + (-1) ** ma * rb) % n


def slots(n):
    """slots[s][g] = s^-1 g: the weight through which a 1x1 group conv
    reaches output orientation s from input orientation g."""
    inverse = lambda a: a if a >= n else -a % n  # noqa: E731
    return [[product(inverse(s), g, n) for g in range(2 * n)] for s in range(2 * n)]


class GConv(nn.Conv2d):
    """A bias-free 3x3 conv of C filters used 2 n times each: on the image
    (c_in 1) or depthwise on C x 2n maps."""

    def __init__(self, n, c_in, c, padding=0, dilation=1):
        super().__init__(c_in, c, 3, padding=padding, dilation=dilation, groups=c_in, bias=False)
        self.n = n

    def forward(self, x):
        w = copies(self.weight, self.n)
        return F.conv2d(x, w, padding=self.padding, dilation=self.dilation,
                        groups=1 if self.groups == 1 else len(w))


class GPointwise(nn.Conv2d):
    """A 1x1 conv from C_in x 2n to C_out x 2n maps that commutes with the
    group: 2 n C_in C_out weights; a batched matmul (faster on a CPU)."""

    def __init__(self, n, c_in, c_out):
        super().__init__(2 * n * c_in, c_out, 1, bias=False)
        self.n = n

    def forward(self, x):
        k, (c_out, ck) = 2 * self.n, self.weight.shape[:2]
        slot = torch.tensor(slots(self.n), device=x.device)
        m = self.weight.view(c_out, ck // k, k)[:, :, slot].permute(0, 2, 1, 3).reshape(k * c_out, ck)
        b, _, h, w = x.shape
        return torch.bmm(m.expand(b, *m.shape), x.reshape(b, ck, h * w)).view(b, -1, h, w)


class GBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over C features of G maps each, one mean, variance, (scale)
    and shift a feature. scale=False: the shift only (ReLU is positively
    homogeneous, so a scale folds into the next conv's weights)."""

    def __init__(self, n, c, scale=True):
        super().__init__(c)
        self.k = 2 * n
        if not scale:
            self.weight = None

    def forward(self, x):
        b, ck, h, w = x.shape
        return super().forward(x.reshape(b, ck // self.k, self.k * h, w)).view(b, ck, h, w)


class Funnel(nn.Module):
    """max(x cropped, BN(depthwise 3x3 of x)), a funnel activation whose
    condition is a valid group depthwise conv (the block's own 3x3): each map
    keeps its value or takes its neighbourhood's, whichever is larger."""

    def __init__(self, n, c, scale=True):
        super().__init__()
        self.conv, self.norm = GConv(n, c, c), GBatchNorm2d(n, c, scale)

    def forward(self, x):
        return torch.maximum(x[..., 1:-1, 1:-1], self.norm(self.conv(x)))


def stage(n, c_in, c_out, padding=0, dilation=1, scale=True, funnel=False):
    if c_in == 1:
        return [GConv(n, 1, c_out, padding), GBatchNorm2d(n, c_out, scale), nn.ReLU()]
    if funnel:  # the depthwise conv moves into the activation, after the 1x1
        return [GPointwise(n, c_in, c_out), GBatchNorm2d(n, c_out, scale), Funnel(n, c_out, scale)]
    return [GConv(n, c_in, c_in, padding, dilation), GPointwise(n, c_in, c_out),
            GBatchNorm2d(n, c_out, scale), nn.ReLU()]


class GroupGapNet(model.TinyNet):
    """The Net10 search's P4mGapNet in D_n: deskew, G `before` features at
    28 x 28 (a lifting conv, then a separable one), max-pool, `stages`
    separable convs after the pool (G `after` features, `last` in the last),
    global average pool, a 1x1 head on all G `last` maps. dilations: the
    after-pool depthwise convs' dilation, one each; scale: BatchNorm's
    scale; funnel: after the pool, 1x1 conv, BN, Funnel."""

    def __init__(self, n, before, after, last, stages=3, dilations=None, scale=True,
                 funnel=False, dropout=None):
        widths = [before] + [after] * (stages - 1) + [last]
        dilations = dilations or [1] * stages
        super().__init__(
            model.Deskew(),
            *stage(n, 1, before, padding=1, scale=scale),
            *stage(n, before, before, padding=1, scale=scale),
            nn.MaxPool2d(2),
            *[layer for c_in, c_out, d in zip(widths, widths[1:], dilations)
              for layer in stage(n, c_in, c_out, dilation=d, scale=scale, funnel=funnel)],
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(2 * n * last, 10, 1, bias=False),
        )


def take_nesterov_steps(optimizer, args, kwargs):
    """An optimizer step pre-hook: SGD takes Nesterov's step, for which
    train.train's SGD has no option (its momentum > 0 and no dampening allow it)."""
    for group in optimizer.param_groups:
        group["nesterov"] = True


NESTEROV = []  # the hook's handle, once registered


def net(*shape, weight_decay=0, nesterov=False, **kw):
    """A candidate; weight_decay: L2 on the conv weights as a gradient hook,
    what SGD's weight_decay adds, on the convs only (train.train's SGD has none);
    nesterov: every SGD of this process takes Nesterov's step (one candidate a run)."""
    def make(dropout=None):
        if nesterov and not NESTEROV:
            NESTEROV.append(register_optimizer_step_pre_hook(take_nesterov_steps))
        g_net = GroupGapNet(*shape, **kw)
        for conv in g_net.modules():
            if weight_decay and isinstance(conv, nn.Conv2d):
                conv.weight.register_hook(lambda grad, w=conv.weight: grad + weight_decay * w.detach())
        return g_net
    return make


CANDIDATES = {
    "p4m3_3_5_3": net(4, 3, 5, 3),                             # the Net10 search's best under 1,000
    "p4m3_3_5_3_d2": net(4, 3, 5, 3, dilations=[1, 1, 2]),     # RF 22 for 18, no weights
    "d8_3_3_2": net(8, 3, 3, 2, scale=False),                  # 45-degree copies, 16 a filter
    "p4mf3_3_5_3": net(4, 3, 5, 3, funnel=True),               # funnel activations after the pool
    "p4m3_3_5_3_wd": net(4, 3, 5, 3, weight_decay=5e-4),       # round 2: L2 on the conv weights
    "p4m3_3_5_3_ns": net(4, 3, 5, 3, scale=False),             # round 3: BatchNorm without its scale
    "p4m3_3_5_3_nag": net(4, 3, 5, 3, nesterov=True),          # round 6: Nesterov momentum
}


# ---- checks run before a round: what the layers promise
def check():
    torch.manual_seed(0)
    probe = torch.arange(9.).view(1, 1, 3, 3)
    # the shift against the border turned by hand: one 45-degree step
    # counter-clockwise moves each border weight one place along the border
    assert copies(probe, 8)[1, 0].tolist() == [[1, 2, 5], [0, 4, 8], [3, 6, 7]]
    # two steps are torch's 90-degree turn, and element n is the mirror image
    for n in (4, 8):
        assert torch.equal(copies(probe, n)[n // 4], torch.rot90(probe[0], 1, (1, 2)))
        assert torch.equal(copies(probe, n)[n], torch.flip(probe[0], (2,)))

    # the Nesterov hook: plain SGD with it takes torch's Nesterov steps, and
    # not plain momentum's
    weights = {}
    for hooked, flag in ((True, False), (False, True), (False, False)):
        torch.manual_seed(0)
        g_net = CANDIDATES["p4m3_3_5_3"]()
        optimizer = torch.optim.SGD(g_net.parameters(), lr=0.05, momentum=0.9, nesterov=flag)
        handle = hooked and register_optimizer_step_pre_hook(
            take_nesterov_steps)
        for _ in range(3):
            optimizer.zero_grad()
            F.nll_loss(g_net(torch.randn(16, 1, 28, 28)), torch.arange(16) % 10).backward()
            optimizer.step()
        if handle:
            handle.remove()
        weights[hooked, flag] = torch.cat([p.detach().flatten() for p in g_net.parameters()])
    assert torch.equal(weights[True, False], weights[False, True])
    assert not torch.allclose(weights[True, False], weights[False, False])

    def act(x, h):  # element h of p4m on images: mirrored m times, then turned r
        m, r = divmod(h, 4)
        return torch.rot90(torch.flip(x, (-1,)) if m else x, r, (-2, -1))

    x = torch.randn(8, 1, 28, 28)
    for name, make in CANDIDATES.items():
        g_net = make()
        n = g_net.layers[1].n
        for p in g_net.parameters():  # away from the initial values
            p.data.add_(0.3 * torch.randn_like(p))
        g_net.train()(torch.randn(64, 1, 28, 28))  # running statistics off their defaults
        g_net.eval()
        body = g_net.layers[1:-2]  # after the deskew, before the pool and head
        feats = body(x)
        for h in range(8):
            g = (h % 4) * (n // 4) + n * (h // 4)  # h as an element of D_n
            moved = body(act(x, h))
            c = feats.shape[1] // (2 * n)
            perm = [ch * 2 * n + product(g, e, n) for ch in range(c) for e in range(2 * n)]
            expect = torch.empty_like(feats)
            expect[:, perm] = act(feats, h)
            err = (moved - expect).abs().max().item()
            assert err < 1e-4, (name, h, err)
        print(f"{name}: {sum(p.numel() for p in g_net.parameters()):,} parameters, "
              f"equivariant under the 8 elements of p4m")


def scores(history):
    """(V, T5) of a finished history."""
    last = history["epochs"][10:15]
    return (statistics.mean(e["test_acc"] for e in last),
            statistics.mean(e["train_acc"] for e in last))


def table():
    rows = ["| run | params | seeds | V | T5 |", "|---|---|---|---|---|"]
    groups = {}
    paths = [*sorted(BASELINE.glob("p4m3_3_5_3_seed*.json")), *sorted(RUNS.glob("*_seed*.json"))]
    for path in paths:
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
    if argv[:1] == ["--check"]:
        check()
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
