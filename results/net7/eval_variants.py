"""Paired comparison of ways to get the tested net out of one training run.

    python results/net7/eval_variants.py OUT.json NAME --step 7 --val 5000 [train.py flags]

Trains candidate NAME (candidates.py) exactly as candidates.py does (its log
and history are train.py's own) and,
after every epoch, also scores on the same held-out images:
  - the weight average with its BatchNorm statistics recomputed on the
    training images, unaugmented ("recal_clean") and as augmented for
    training ("recal_aug") -- torch.optim.swa_utils.update_bn;
  - averages with longer horizons (decay 0.9995 and 0.9998), each as it is
    and recalibrated on the unaugmented images.
All variants see the same training trajectory, so their differences are not
seed noise. Per-epoch accuracies go to OUT.json.
"""
import copy
import itertools
import json
import sys
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import candidates  # noqa: E402
import data  # noqa: E402
import train  # noqa: E402

out_path = Path(sys.argv.pop(1))
candidates.use(sys.argv.pop(1))
EXTRA_DECAYS = (0.9995, 0.9998)
state = dict(train_loader=None, extras={}, epochs=[])


def capture_loaders(original):
    def load(*args, **kwargs):
        train_loader, test_loader = original(*args, **kwargs)
        state["train_loader"] = train_loader
        return train_loader, test_loader
    return load


data.LOADERS = {k: capture_loaders(v) for k, v in data.LOADERS.items()}


class MultiEMA(AveragedModel):
    """The run's own average, plus the extra ones, all updated after every step."""

    def update_parameters(self, model):
        super().update_parameters(model)
        for ema in state["extras"].values():
            ema.update_parameters(model)


def make_ema(model, decay):
    for d in EXTRA_DECAYS:
        state["extras"][d] = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(d),
                                           use_buffers=True)
    return MultiEMA(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


RECAL_IMAGES = 20_000  # plenty for 116 BatchNorm statistics


def clean_batches(loader, size=1000):
    return [loader.images[start:start + size] for start in range(0, RECAL_IMAGES, size)]


def augmented_batches(loader, size=1000):
    """As the training batches are augmented, from a generator of their own,
    so the training run itself draws exactly what it would without this."""
    copy_ = copy.copy(loader)
    copy_.batch_size, copy_.generator = size, torch.Generator().manual_seed(12345)
    return [x for x, _ in itertools.islice(copy_, RECAL_IMAGES // size)]


def recalibrated(net, batches):
    net = copy.deepcopy(net)
    update_bn(batches, net)
    return net


original_evaluate = train.evaluate


def evaluate(net, loader, device, max_batches=None):
    result = original_evaluate(net, loader, device, max_batches)
    if loader is state["train_loader"]:
        return result
    acc = lambda m: 100.0 * original_evaluate(m, loader, device)[1] / len(loader.labels)  # noqa: E731
    clean = clean_batches(state["train_loader"])
    augmented = augmented_batches(state["train_loader"])
    record = dict(ema=100.0 * result[1] / result[2],
                  recal_clean=acc(recalibrated(net, clean)),
                  recal_aug=acc(recalibrated(net, augmented)))
    for d, ema in state["extras"].items():
        record[f"ema{d}"] = acc(ema.module)
        record[f"ema{d}_recal_clean"] = acc(recalibrated(ema.module, clean))
    state["epochs"].append(record)
    out_path.write_text(json.dumps(state["epochs"], indent=1))
    print("variants:", {k: round(v, 2) for k, v in record.items()})
    return result


train.make_ema = make_ema
train.evaluate = evaluate

if __name__ == "__main__":
    sys.exit(train.main())
