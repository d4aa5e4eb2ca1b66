"""Round 7's measure: how well the tested net fits the training images.

    python results/net7/fit_probe.py NAME [--extra-ema D ...] --step 7 --val 5000 --history H.json [train.py flags]

Trains candidate NAME (candidates.py) exactly as candidates.py does (its log
and history are train.py's own: nothing here draws a random number or touches
the training) and, after each of the last five epochs, also scores the net
that is tested (for step 7 the weights' average) on the 55,000 training
images as they are, unaugmented. Those accuracies go to H_fit.json beside the
history. F5, their mean, sees the same net and epochs the goal does, on 11
times the images of the validation split.

--extra-ema D ... (round 9): also keep averages with these decays, updated
after every step beside the run's own, and score each of them in the last five
epochs on the training images and on the held-out ones ("extra" in H_fit.json).
They see the same training run as the run's own average, so their differences
are paired, not seed noise; the run itself is unchanged.
"""
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import candidates  # noqa: E402
import data  # noqa: E402
import train  # noqa: E402

LAST = 5
candidates.use(sys.argv.pop(1))
state = dict(train_loader=None, fit=[], epoch=0, extras={})
EXTRA_DECAYS = []
if sys.argv[1:2] == ["--extra-ema"]:
    sys.argv.pop(1)
    while sys.argv[1:] and not sys.argv[1].startswith("-"):
        EXTRA_DECAYS.append(float(sys.argv.pop(1)))


def capture_loaders(original):
    def load(*args, **kwargs):
        train_loader, test_loader = original(*args, **kwargs)
        clean = copy.copy(train_loader)  # the same tensor, served in order, unaugmented
        clean.shuffle, clean.batch_size = False, 1000
        clean.rotation = clean.shift = clean.scale = 0
        clean.elastic = None
        state["train_loader"] = clean
        return train_loader, test_loader
    return load


def with_extras(make_ema):
    """The run's own average, plus one per extra decay, all updated after every step."""
    def make(model, decay):
        ema = make_ema(model, decay)
        if ema is None or not EXTRA_DECAYS:
            return ema
        state["extras"] = {d: make_ema(model, d) for d in EXTRA_DECAYS}
        update_own = ema.update_parameters

        def update_all(model):
            update_own(model)
            for extra in state["extras"].values():
                extra.update_parameters(model)
        ema.update_parameters = update_all
        return ema
    return make


def with_fit(evaluate):
    """train.py's per-epoch test, then (last five epochs) the training images."""
    def accuracy(net, loader, device):
        _, correct, total = evaluate(net, loader, device)
        return 100.0 * correct / total

    def run(net, loader, device, *args):
        result = evaluate(net, loader, device, *args)
        state["epoch"] += 1
        if state["epoch"] > state["epochs"] - LAST:
            record = dict(epoch=state["epoch"] - 1,
                          train_fit_acc=accuracy(net, state["train_loader"], device))
            if state["extras"]:
                record["extra"] = {
                    str(d): dict(train_fit_acc=accuracy(e.module, state["train_loader"], device),
                                 val_acc=accuracy(e.module, loader, device))
                    for d, e in state["extras"].items()}
            state["fit"].append(record)
            state["path"].write_text(json.dumps(state["fit"], indent=1) + "\n")
        return result
    return run


data.LOADERS = {k: capture_loaders(v) for k, v in data.LOADERS.items()}
train.evaluate = with_fit(train.evaluate)
train.make_ema = with_extras(train.make_ema)
args = train.parse_args(sys.argv[1:])
state["epochs"] = args.epochs
if not args.history:
    sys.exit("error: fit_probe.py needs --history (its accuracies go beside it)")
state["path"] = Path(args.history.replace(".json", "_fit.json"))
train.main(sys.argv[1:])
