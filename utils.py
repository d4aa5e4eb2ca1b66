"""Training and test loops, the optimizer and scheduler, seeding, device choice."""
import itertools
import random
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm


class UserError(Exception):
    """Bad input or a failed run: printed as one line, exit status non-zero."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


def writable(path, flag):
    """`path`, checked writable before any training."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with open(path, "a"):
            pass
        if not existed:  # checked, not created: no empty file if the run stops early
            path.unlink()
    except OSError as e:
        raise UserError(f"cannot write {path} ({e.strerror}: {e.filename}); "
                        f"choose another --{flag}") from None
    return path


def seed_everything(seed):
    random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name):
    """'auto' takes cuda, then mps, then cpu; a named device must be there."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": hasattr(torch.backends, "mps") and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        name = next(d for d in ("cuda", "mps", "cpu") if available[d])
    elif not available.get(name, False):
        have = ", ".join(d for d, ok in available.items() if ok)
        raise UserError(f"device '{name}' is not available on this machine (available: {have})")
    return torch.device(name)


def make_optimizer(model, lr, momentum, scheduler, max_lr, epochs, steps_per_epoch,
                   pct_start=0.3):
    """SGD with momentum and, for 'onecycle', a OneCycleLR stepped every batch
    with PyTorch's defaults otherwise (cosine, div 25, final div 1e4)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    if scheduler == "onecycle":
        return optimizer, torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, epochs=epochs, steps_per_epoch=steps_per_epoch,
            pct_start=pct_start)
    return optimizer, None


class WeightAverage(torch.optim.swa_utils.AveragedModel):
    """AveragedModel over weights and buffers whose update never reads its step
    count from the device nor copies to it (AveragedModel's does both every
    step): its first update copies, each later one moves every float 1 - decay
    of the way; integers (BatchNorm's step count) are copied, never blended."""
    updates = 0

    @torch.no_grad()
    def update_parameters(self, model):
        floats = []
        for a, c in zip([*self.module.parameters(), *self.module.buffers()],
                        [*model.parameters(), *model.buffers()]):
            if self.updates and a.is_floating_point():
                floats.append((a, c))
            else:
                a.copy_(c)
        if floats:
            self.multi_avg_fn(*map(list, zip(*floats)), None)
        self.updates += 1


def make_ema(model, decay):
    """A WeightAverage of `model` on its device, to be updated after every
    step (train_epoch does); None when decay is 0 or None."""
    if not decay:
        return None
    return WeightAverage(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay),
                         use_buffers=True)


def lr_line(epoch, scheduler):
    return f"Epoch: {epoch} LR: {scheduler.get_last_lr()}"


def test_line(loss, correct, total, split="Test"):
    return (f"{split} set: Average loss: {loss:.4f}, "
            f"Accuracy: {correct}/{total} ({100.0 * correct / total:.2f}%)")


def batches(loader, device, max_batches=None):
    """The loader's first `max_batches` batches (all by default), on `device`;
    a device loader's are there already: no copy."""
    for images, labels in itertools.islice(loader, max_batches):
        if images.device != device:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        yield images, labels


def device_sum(device):
    """A zero to sum losses into on `device`: float64 as Python's float, but
    float32 on MPS, which has no float64."""
    return torch.zeros((), dtype=torch.float32 if device.type == "mps" else torch.float64,
                       device=device)


def train_epoch(model, loader, optimizer, scheduler, device, max_batches=None, ema=None):
    """One pass over `loader` with the documented tqdm bar; returns
    (mean train loss, train accuracy %). Stops at the first non-finite loss,
    naming its batch. `ema`, a torch.optim.swa_utils.AveragedModel, is
    updated after every step.

    The loss sum, the correct count and the first non-finite loss stay on the
    device; the host reads them only when the bar redraws and after the last
    batch, so within an epoch it never waits for the device. The last bar line
    is as if read every batch: the last batch's loss, the epoch's accuracy."""
    model.train()
    total = min(len(loader), max_batches or len(loader))
    # a log file gets a bar update every 10 s, a terminal the usual 0.1 s
    bar = tqdm(total=total, file=sys.stdout, mininterval=0.1 if sys.stdout.isatty() else 10)
    loss_sum, correct, seen = device_sum(device), torch.zeros((), dtype=torch.long, device=device), 0
    bad_batch = torch.full((), -1, device=device)  # the first batch with a non-finite loss
    bad_loss = torch.zeros((), device=device)
    for batch_id, (images, labels) in enumerate(batches(loader, device, total)):
        optimizer.zero_grad(set_to_none=True)
        log_probs = model(images)
        loss = F.nll_loss(log_probs, labels)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        loss = loss.detach()
        first_bad = (bad_batch < 0) & ~loss.isfinite()
        bad_batch = torch.where(first_bad, batch_id, bad_batch)
        bad_loss = torch.where(first_bad, loss, bad_loss)
        loss_sum += loss.to(loss_sum.dtype) * len(labels)
        correct += (log_probs.argmax(1) == labels).sum()
        seen += len(labels)
        if batch_id == total - 1 or time.time() - bar.last_print_t >= bar.mininterval:
            if bad_batch.item() >= 0:  # the bar is about to redraw: now the host reads
                bar.close()
                raise UserError(f"loss became {bad_loss.item()} at batch {int(bad_batch.item())}; "
                                "training stopped (try a lower --lr or --max-lr)")
            bar.set_description(f"Loss={loss.item()} Batch_id={batch_id} "
                                f"Accuracy={100 * correct.item() / seen:0.2f}", refresh=False)
        bar.update()
    bar.close()
    return loss_sum.item() / seen, 100.0 * correct.item() / seen


@torch.no_grad()
def evaluate(model, loader, device, max_batches=None):
    """Returns (summed NLL / examples, correct, examples), read from the
    device once, after the last batch."""
    model.eval()
    loss_sum, correct, seen = device_sum(device), torch.zeros((), dtype=torch.long, device=device), 0
    for images, labels in batches(loader, device, max_batches):
        log_probs = model(images)
        loss_sum += F.nll_loss(log_probs, labels, reduction="sum").to(loss_sum.dtype)
        correct += (log_probs.argmax(1) == labels).sum()
        seen += len(labels)
    return loss_sum.item() / seen, correct.item(), seen
