"""Round 7's measure: how well the tested net fits the training images.

    python results/net7/fit_probe.py NAME --step 7 --val 5000 --history H.json [train.py flags]

Trains candidate NAME (candidates.py) exactly as candidates.py does (its log
and history are train.py's own: nothing here draws a random number or touches
the training) and, after each of the last five epochs, also scores the net
that is tested (for step 7 the weights' average) on the 55,000 training
images as they are, unaugmented. Those accuracies go to H_fit.json beside the
history. F5, their mean, sees the same net and epochs the goal does, on 11
times the images of the validation split.
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
state = dict(train_loader=None, fit=[], epoch=0)


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


def with_fit(evaluate):
    """train.py's per-epoch test, then (last five epochs) the training images."""
    def run(net, loader, device, *args):
        result = evaluate(net, loader, device, *args)
        state["epoch"] += 1
        if state["epoch"] > state["epochs"] - LAST:
            _, correct, total = evaluate(net, state["train_loader"], device)
            state["fit"].append(dict(epoch=state["epoch"] - 1, train_fit_acc=100.0 * correct / total))
            state["path"].write_text(json.dumps(state["fit"], indent=1) + "\n")
        return result
    return run


data.LOADERS = {k: capture_loaders(v) for k, v in data.LOADERS.items()}
train.evaluate = with_fit(train.evaluate)
args = train.parse_args(sys.argv[1:])
state["epochs"] = args.epochs
if not args.history:
    sys.exit("error: fit_probe.py needs --history (its accuracies go beside it)")
state["path"] = Path(args.history.replace(".json", "_fit.json"))
train.main(sys.argv[1:])
