"""The search's own training loop, for what train.train has no flag for; the
same epochs, batches, LR schedule, weight average and history otherwise.

Round 25 (`--rho`, named sam.py then): sharpness-aware minimisation (SAM,
Foret et al. 2021) around the recipe's SGD: each step takes the gradient at
the weights moved `rho` (in L2 norm, all parameters together) up the
batch's gradient, and applies it at the unmoved weights; twice the forward
and backward passes per step. Rounds 26-29 (`--clean-from E`): no
rotation from epoch E on (the device loader's; not the classic one's), so
the last epochs fit the images as the test set shows them.

    python experiments/net9/loop.py NET [--rho R] [--clean-from E] [train.py's flags]
    SCRIPT=loop.py bash experiments/net9/pair.sh NET RUN --rho 0.05

It uses the product through its public functions (data.LOADERS,
utils.seed_everything, utils.pick_device, utils.batches,
utils.make_optimizer, utils.make_ema, utils.evaluate, train.parse_args,
train.make_config, train.measured, train.output_path, train.write_json)
and search.CANDIDATES. With neither flag it gives train.train's history, value
for value (checked on 2 short epochs).
"""
import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import data  # noqa: E402
import train  # noqa: E402
import utils  # noqa: E402
from search import CANDIDATES  # noqa: E402


def sam_epoch(net, loader, optimizer, scheduler, rho, steps, ema):
    """One epoch of SAM steps (plain SGD steps at rho 0); (mean loss,
    accuracy %) at the unmoved weights."""
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    loss_sum, correct, seen = 0.0, 0, 0
    for images, labels in utils.batches(loader, next(net.parameters()).device, steps):
        optimizer.zero_grad(set_to_none=True)
        log_probs = net(images)
        loss = F.nll_loss(log_probs, labels)
        loss.backward()
        if rho:
            with torch.no_grad():
                grads = [p.grad for p in params]
                scale = rho / (torch.stack([g.norm() for g in grads]).norm() + 1e-12)
                moves = [g * scale for g in grads]
                torch._foreach_add_(params, moves)
            for m in norms:  # the second pass must not count twice in BatchNorm's statistics
                m.momentum, m.saved = 0.0, m.momentum
            optimizer.zero_grad(set_to_none=True)
            F.nll_loss(net(images), labels).backward()
            for m in norms:
                m.momentum = m.saved
            with torch.no_grad():
                torch._foreach_sub_(params, moves)
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(net)
        loss_sum += loss.item() * len(labels)
        correct += (log_probs.argmax(1) == labels).sum().item()
        seen += len(labels)
    return loss_sum / seen, 100.0 * correct / seen


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("net", choices=sorted(CANDIDATES))
    p.add_argument("--rho", type=float, default=0.0)
    p.add_argument("--clean-from", type=int, default=None, metavar="EPOCH")
    ours, flags = p.parse_known_args(argv)
    run = train.parse_args(flags)
    cfg = dict(train.make_config(run), net=ours.net, sam_rho=ours.rho, clean_from=ours.clean_from)
    seed = run.seed
    utils.seed_everything(seed)
    device = utils.pick_device(run.device)
    path = train.output_path(run.history, cfg["step"], seed, "history")
    train_loader, test_loader = data.LOADERS[run.loader](
        run.data_dir, cfg["batch_size"], cfg["rotation"], device, seed, run.val)
    net = CANDIDATES[ours.net](dropout=cfg["dropout"]).to(device)
    if run.channels_last:
        net = net.to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in net.parameters())
    print(f"{ours.net}, rho {ours.rho}, clean from {ours.clean_from}, seed {seed}: "
          f"{params:,} parameters", flush=True)
    history = dict(step=cfg["step"], seed=seed, config=cfg, params=params,
                   torch=torch.__version__, device=str(device),
                   evaluated_on="validation" if run.val else "test",
                   run=train.measured(run), epochs=[])
    steps = min(len(train_loader), run.limit_batches or len(train_loader))
    optimizer, scheduler = utils.make_optimizer(net, cfg["lr"], cfg["momentum"], cfg["scheduler"],
                                                cfg["max_lr"], cfg["epochs"], steps,
                                                cfg["pct_start"])
    ema = utils.make_ema(net, cfg["ema"])
    tested = ema.module if ema else net
    for epoch in range(cfg["epochs"]):
        if epoch == ours.clean_from:
            train_loader.rotation = 0  # data.DeviceLoader's angle range
        start = time.perf_counter()
        train_loss, train_acc = sam_epoch(net, train_loader, optimizer, scheduler, ours.rho,
                                          steps, ema)
        seconds = time.perf_counter() - start
        test_loss, right, total = utils.evaluate(tested, test_loader, device)
        history["epochs"].append(dict(
            epoch=epoch, train_loss=train_loss, train_acc=train_acc, test_loss=test_loss,
            test_acc=100.0 * right / total, lr=optimizer.param_groups[0]["lr"], seconds=seconds))
        train.write_json(path, history)
        print(f"epoch {epoch}: train {train_acc:.2f} %, val {100.0 * right / total:.2f} %, "
              f"{seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
