"""Train one step of the MNIST experiment: `python train.py --step 5`.

Each step's whole recipe is one row of RECIPES; a flag overrides its field.
"""
import argparse
import json
import math
import os
import signal
import string
import sys
import time

import torch
from torchinfo import summary

import data
import model as models
import seeds
from seeds import STOP_SIGNALS, measured, run_paths, stop, stopped_by
from utils import (UserError, evaluate, lr_line, make_ema, make_optimizer, pick_device,
                   seed_everything, test_line, train_epoch,
                   writable)

# The six documented recipes (spec, "Per-step recipe"). rotation: train-time
# random rotation range in degrees; dropout None means the net has no Dropout.
# Steps 3 and 4 did not record their dropout rate: 0.05, the rate of steps 5-6.
RECIPES = {
    1: dict(net="Net1", rotation=0, dropout=None, scheduler="none", batch_size=128),
    2: dict(net="Net2", rotation=0, dropout=None, scheduler="none", batch_size=128),
    3: dict(net="Net3", rotation=6, dropout=0.05, scheduler="none", batch_size=128),
    4: dict(net="Net4", rotation=15, dropout=0.05, scheduler="none", batch_size=128),
    5: dict(net="Net5", rotation=15, dropout=0.05, scheduler="onecycle", batch_size=64),
    6: dict(net="Net6", rotation=15, dropout=0.05, scheduler="onecycle", batch_size=128),
    # beyond the original, one recipe: under 4,000, 3,000, 2,000 and 1,500
    # parameters (docs/net7.md ... net10.md); Net10 is turned within ±5 degrees
    **{step: dict(net=f"Net{step}", rotation=10 if step < 10 else 5, dropout=None,
                  scheduler="onecycle", batch_size=64, max_lr=0.2, pct_start=0.15, ema=0.997)
       for step in (7, 8, 9, 10)},
    # the fastest held run (docs/net11.md): its net is quicker stored channels-last
    11: dict(net="Net11", rotation=10, dropout=None, scheduler="onecycle", batch_size=128,
             max_lr=0.2, pct_start=0.15, ema=0.997, channels_last=True),
}
COMMON = dict(lr=0.01, momentum=0.9, max_lr=0.1, pct_start=0.3, ema=None, epochs=15)
MAX_EPOCHS = 100
TRAIN_IMAGES = 60_000


# Ranges live in the argument types: help, parsing and the error are one place.
def number(kind, low=None, high=None, low_open=False, high_open=False):
    """An argparse type: a finite `kind` in [low, high] (an end left open where asked)."""
    if high is None:
        span = f"{'>' if low_open else '>='} {low}"
    else:
        span = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}"
                                             f", got {text!r}") from None
        if not (math.isfinite(value)
                and (low is None or (value > low if low_open else value >= low))
                and (high is None or (value < high if high_open else value <= high))):
            raise argparse.ArgumentTypeError(f"must be finite and {span}, got {text}"
                                             if kind is float else f"must be {span}, got {text}")
        return value
    return parse


def template(text):
    """An argparse type: a path whose only fields are a plain {step} and {seed}."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion
                  in string.Formatter().parse(text) if name is not None]
    except ValueError:  # a lone { or }
        fields = [None]
    if any(field not in (("step", "", None), ("seed", "", None)) for field in fields):
        raise argparse.ArgumentTypeError(f"{text!r} may fill in only {{step}} and {{seed}}, "
                                         "each plain")
    return text


positive_int = number(int, 1)
seed_int = number(int, -2 ** 63, 2 ** 64 - 1)  # what torch.manual_seed takes
positive_float = number(float, 0, low_open=True)
fraction = number(float, 0, 1, high_open=True)  # [0, 1)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + line
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv=None):
    p = Parser(description=__doc__)
    its = "the step's"
    # the recipe: default None = the step's value (make_config)
    p.add_argument("--step", type=int, default=None, choices=sorted(RECIPES),
                   help="which step to run (default: 5; with --eval, the checkpoint's)")
    p.add_argument("--epochs", type=number(int, 1, MAX_EPOCHS), default=None,
                   help=f"epochs to train, 1 to {MAX_EPOCHS} (default: {COMMON['epochs']})")
    p.add_argument("--scheduler", choices=["none", "onecycle"], default=None,
                   help=f"LR schedule (default: {its})")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"train batch size, at most the training images (default: {its})")
    p.add_argument("--lr", type=positive_float, default=None,
                   help=f"SGD learning rate without a scheduler (default: {COMMON['lr']})")
    p.add_argument("--max-lr", type=positive_float, default=None,
                   help=f"OneCycleLR peak LR (default: {its}: {COMMON['max_lr']}, "
                        f"{RECIPES[7]['max_lr']} for steps 7-10)")
    p.add_argument("--pct-start", type=number(float, 0, 1, True, True), default=None,
                   help=f"share of the OneCycleLR steps spent rising to the peak, in (0, 1) "
                        f"(default: {its}: {COMMON['pct_start']}, {RECIPES[7]['pct_start']} "
                        "for steps 7-10)")
    p.add_argument("--rotation", type=number(float, 0, 180), default=None, metavar="DEG",
                   help=f"train-time random rotation in [-DEG, DEG], 0 to 180 (default: {its})")
    p.add_argument("--dropout", type=fraction, default=None,
                   help=f"dropout rate in [0, 1) (default: {its})")
    p.add_argument("--ema", type=fraction, default=None, metavar="DECAY",
                   help="test a moving average of the weights, updated every step with this "
                        f"decay in [0, 1); 0 for none (default: {its}: none, "
                        f"{RECIPES[7]['ema']} for steps 7-10)")
    # the run: which seeds, where things go, what to do
    p.add_argument("--seed", type=seed_int, default=1,
                   help="random seed, -2**63 to 2**64 - 1 as torch takes (default: %(default)s)")
    p.add_argument("--seeds", type=seed_int, nargs="+", default=None, metavar="S",
                   help="run once per seed, then print a consistency table (default: just --seed)")
    p.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                   help="train the seeds in N worker processes at once, the torch threads "
                        "shared out among them; each writes its log beside its history "
                        "(default: %(default)s, one seed after another in this process)")
    p.add_argument("--resume", action="store_true",
                   help="do not train again a seed whose history is complete for this recipe; "
                        "train the others from the start")
    p.add_argument("--report", action="store_true",
                   help="print the consistency table of --seeds from their saved histories; "
                        "train nothing")
    p.add_argument("--history", type=template, default="runs/step{step}_seed{seed}.json",
                   help="per-epoch history JSON, plots beside it; {step} and {seed} are filled "
                        "in (default: %(default)s)")
    p.add_argument("--no-plots", dest="plots", action="store_false",
                   help="do not draw the curves and misclassified digits beside the history")
    p.add_argument("--save", type=template, default=None, metavar="PATH",
                   help="save the trained model there; {step} and {seed} are filled in "
                        "(default: not saved)")
    p.add_argument("--eval", default=None, metavar="PATH",
                   help="test a checkpoint saved by --save; train nothing")
    p.add_argument("--val", type=number(int, 0, TRAIN_IMAGES - 1), default=0, metavar="N",
                   help="hold out N training images and report on them instead of the test "
                        "set, for tuning (default: 0, off)")
    p.add_argument("--limit-batches", type=positive_int, default=None, metavar="N",
                   help="train on only N batches an epoch, for quick checks; the test "
                        "set stays whole (default: all)")
    p.add_argument("--data-dir", default="./data", help="where MNIST is kept (default: %(default)s)")
    p.add_argument("--loader", default="device", choices=sorted(data.LOADERS),
                   help="device: whole set on the device, batched rotation; classic: "
                        "DataLoader with per-image PIL rotation, as the original "
                        "(default: %(default)s)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="auto takes cuda, then mps, then cpu (default: %(default)s)")
    p.add_argument("--channels-last", action="store_true",
                   help="store the net channels-last (NHWC): a training step of Net8 took 23.7 "
                        "ms with it and 43.5 without on one CPU thread, but 35.6 and 24.5 on two; "
                        "Net9's p4 layers stay NCHW and gain nothing (docs/bench.md); floats are "
                        "summed in another order, so a seed's numbers differ in the last digits "
                        "(default: off)")
    args = p.parse_args(argv)
    batch = args.batch_size or RECIPES[args.step or 5]["batch_size"]
    if batch > TRAIN_IMAGES - args.val:
        p.error(f"argument --batch-size: a batch of {batch} is more than the "
                f"{TRAIN_IMAGES - args.val:,} training images")
    return args


RECIPE_FLAGS = ("epochs", "scheduler", "batch_size", "lr", "max_lr", "pct_start", "rotation",
                "dropout", "ema")


def make_config(args):
    """The recipe as plain data: common values, then the step's row, then the
    recipe flags that were given."""
    step = args.step or 5
    given = {k: getattr(args, k) for k in RECIPE_FLAGS if getattr(args, k) is not None}
    return {**COMMON, **RECIPES[step], **given, "step": step}


def write_whole(path, write):
    """`write(tmp)`, then a rename to `path`: a stop mid-write never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    write(tmp)
    tmp.replace(path)


def train(cfg, run, seed, nets=models.NETS, on_epoch=None):
    """Train the recipe `cfg` with seed `seed` and the run options `run` (the
    parsed flags), printing the documented log and saving the history after
    every epoch; returns the history. cfg["net"] names a net class of `nets`;
    `on_epoch`, if given, is called with each finished epoch's record."""
    # set-up: paths checked, data, net, optimizer, the weight average
    seed_everything(seed)
    device = pick_device(run.device)
    paths = run_paths(run, cfg["step"], seed)
    path = writable(paths["history"], "history")
    save = paths["save"] and writable(paths["save"], "save")
    split = "Validation" if run.val else "Test"
    train_loader, test_loader = data.LOADERS[run.loader](
        run.data_dir, cfg["batch_size"], cfg["rotation"], device, seed, run.val)
    print(f"Device: {device}")
    net = nets[cfg["net"]](dropout=cfg["dropout"]).to(device)
    # nn.Conv2d weights stored channels-last return NHWC; Net9's p4 convs build
    # theirs at each step in the default layout, so they stay NCHW
    if run.channels_last or cfg.get("channels_last"):  # the flag, or the step's recipe
        net = net.to(memory_format=torch.channels_last)
    print(summary(net, input_size=(1, 1, 28, 28), col_names=("output_size", "num_params"),
                  device=device, verbose=0))
    params = sum(p.numel() for p in net.parameters())
    print(f"Parameters: {params:,}")
    history = dict(step=cfg["step"], seed=seed, config=cfg, params=params,
                   torch=torch.__version__, device=str(device), evaluated_on=split.lower(),
                   run=measured(run), epochs=[])
    steps_per_epoch = min(len(train_loader), run.limit_batches or len(train_loader))
    optimizer, scheduler = make_optimizer(net, cfg["lr"], cfg["momentum"], cfg["scheduler"],
                                          cfg["max_lr"], cfg["epochs"], steps_per_epoch,
                                          cfg["pct_start"])
    ema = make_ema(net, cfg["ema"])  # with a moving average, the average is tested
    tested = ema.module if ema else net

    # the epochs: train, test, save the history; then the tested weights saved
    try:
        try:
            for epoch in range(cfg["epochs"]):
                print(f"EPOCH: {epoch}")
                start = time.perf_counter()
                train_loss, train_acc = train_epoch(net, train_loader, optimizer, scheduler,
                                                    device, steps_per_epoch, ema)
                seconds = time.perf_counter() - start
                if scheduler is not None:
                    print(lr_line(epoch, scheduler))
                start = time.perf_counter()
                test_loss, correct, total = evaluate(tested, test_loader, device)
                test_seconds = time.perf_counter() - start
                print(f"\n{test_line(test_loss, correct, total, split)}\n")
                history["epochs"].append(dict(
                    epoch=epoch, train_loss=train_loss, train_acc=train_acc, test_loss=test_loss,
                    test_acc=100.0 * correct / total, lr=optimizer.param_groups[0]["lr"],
                    seconds=seconds, test_seconds=test_seconds))
                write_whole(path, lambda tmp: tmp.write_text(json.dumps(history, indent=1)))
                if on_epoch:
                    on_epoch(history["epochs"][-1])
        finally:  # also after a signal or a NaN: the finished epochs get their plots
            print(f"History: {path}")
            if run.plots and history["epochs"]:
                import figures  # and matplotlib, 0.4 s: only in a run that draws
                figures.save_plots(tested, history, test_loader, device, paths["curves"],
                                   paths["misclassified"])
        if save:
            write_whole(save, lambda tmp: torch.save(dict(
                state_dict=tested.state_dict(), step=cfg["step"], config=cfg,
                metrics=history["epochs"][-1]), tmp))
            print(f"Model: {save}")
    except KeyboardInterrupt as e:  # in an epoch, its plots or the save: say what is kept
        kept = (f": {len(history['epochs'])} finished epochs kept in {path}" if history["epochs"]
                else " before any epoch finished")
        raise UserError(stopped_by(e) + kept,
                        exit_code=128 + getattr(e, "signum", signal.SIGINT)) from None
    return history


def read_checkpoint(path):
    """A checkpoint saved by --save, checked: what does not fit is one line."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"no checkpoint at {path}") from None
    except Exception:  # truncated, or not a torch file at all
        raise UserError(f"{path} is not a readable checkpoint (truncated or not saved "
                        "by --save)") from None
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict)
            and isinstance(ckpt.get("config"), dict)):
        raise UserError(f"{path} is not a checkpoint saved by train.py --save")
    step, net, dropout = ckpt.get("step"), ckpt["config"].get("net"), ckpt["config"].get("dropout")
    wrong = (f"step {step!r} is not a step here" if type(step) is not int or step not in RECIPES
             else f"net {net!r} is not a net here" if type(net) is not str or net not in models.NETS
             else f"dropout {dropout!r} is not a rate in [0, 1)"
             if not (dropout is None or type(dropout) in (int, float) and 0 <= dropout < 1)
             else None)
    if wrong:
        raise UserError(f"{path}: {wrong}; not a checkpoint saved by train.py --save")
    return ckpt


def evaluate_checkpoint(args):
    """`--eval PATH`: the documented Test set line for a saved model."""
    ckpt = read_checkpoint(args.eval)
    cfg = ckpt["config"]
    if args.step is not None and args.step != ckpt["step"]:
        raise UserError(f"{args.eval} holds a step-{ckpt['step']} {cfg['net']}, "
                        f"not a step-{args.step} {RECIPES[args.step]['net']}")
    device = pick_device(args.device)
    net = models.NETS[cfg["net"]](dropout=cfg["dropout"])
    try:
        net.load_state_dict(ckpt["state_dict"])
    except Exception:  # missing, extra or misshapen weights, or not tensors at all
        raise UserError(f"{args.eval}: its weights do not fit {cfg['net']}") from None
    test_loader = data.test_loader(args.data_dir, device)
    print(f"Checkpoint: step {ckpt['step']}, {cfg['net']}, "
          f"{sum(p.numel() for p in net.parameters()):,} parameters, on {device}")
    print(f"\n{test_line(*evaluate(net.to(device), test_loader, device))}\n")


def main(argv=None):
    args = parse_args(argv)
    cfg = make_config(args)
    seed_list = args.seeds or [args.seed]
    # SIGTERM and a closed terminal stop a run as Ctrl-C does, while it runs
    handlers = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS[1:]}
    try:
        seeds.check_paths(args, cfg["step"], seed_list)
        if args.eval:
            return evaluate_checkpoint(args) or 0
        if args.report:
            print(seeds.consistency(seeds.load_histories(args, cfg["step"], seed_list)))
            return 0
        failed = seeds.run(train, cfg, args, seed_list)
    except (UserError, data.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)
    except KeyboardInterrupt as e:  # before a first epoch: nothing to keep
        print(f"error: {stopped_by(e)} before any epoch finished", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # logs in order when piped to a file
    try:
        sys.exit(main())
    except BrokenPipeError:  # piped into `head`, which has read enough: end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
