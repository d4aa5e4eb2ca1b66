"""Train one step of the MNIST experiment: `python train.py --step 5`.

Each step's whole recipe is one row of RECIPES; a flag overrides its field.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torchinfo import summary

import data
import model as models
from utils import (UserError, evaluate, lr_line, make_ema, make_optimizer, pick_device,
                   plot_curves, plot_misclassified, seed_everything, test_line, train_epoch)

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
    # beyond the original: under 4,000 parameters (README, "Net7"). ema: the
    # tested weights are a moving average of the trained ones, with this decay.
    7: dict(net="Net7", rotation=10, dropout=None, scheduler="onecycle", batch_size=64,
            max_lr=0.2, pct_start=0.15, ema=0.997),
}
COMMON = dict(optimizer="sgd", lr=0.01, momentum=0.9, max_lr=0.1, pct_start=0.3, weight_decay=0.0,
              label_smoothing=0.0, shift=0, scale=0.0, interpolation="nearest", elastic=None,
              epochs=15, seed=1)
AUGMENT = ("shift", "scale", "interpolation", "elastic")  # passed to the loaders as they are
MAX_EPOCHS = 100
TARGET, LAST = 99.40, 5  # the accuracy target, held in each of the last 5 epochs


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + line
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv=None):
    p = Parser(description=__doc__)
    step_default = "the step's"
    p.add_argument("--step", type=int, default=None, choices=sorted(RECIPES),
                   help="which documented step to run (default: 5; with --eval, the checkpoint's)")
    p.add_argument("--epochs", type=int, default=COMMON["epochs"],
                   help=f"epochs to train, 1 to {MAX_EPOCHS} (default: %(default)s)")
    p.add_argument("--scheduler", choices=["none", "onecycle"], default=None,
                   help=f"LR schedule (default: {step_default})")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"train batch size (default: {step_default})")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default=COMMON["optimizer"],
                   help="SGD with momentum 0.9, or Adam with beta1 0.9 (default: %(default)s)")
    p.add_argument("--lr", type=float, default=COMMON["lr"], help="learning rate without a scheduler (default: %(default)s)")
    p.add_argument("--max-lr", type=float, default=None,
                   help=f"OneCycleLR peak LR (default: {step_default}, {COMMON['max_lr']} for steps 1-6)")
    p.add_argument("--pct-start", type=float, default=None,
                   help="share of the OneCycleLR steps spent rising to the peak "
                        f"(default: {step_default}, {COMMON['pct_start']} for steps 1-6)")
    p.add_argument("--weight-decay", type=float, default=COMMON["weight_decay"],
                   help="weight decay (L2) on every parameter (default: %(default)s)")
    p.add_argument("--label-smoothing", type=float, default=COMMON["label_smoothing"],
                   metavar="E", help="train on targets with E spread evenly over the 10 "
                                     "classes; 0 for none (default: %(default)s)")
    p.add_argument("--rotation", type=float, default=None, metavar="DEG",
                   help=f"train-time random rotation in [-DEG, DEG], 0 for none "
                        f"(default: {step_default})")
    p.add_argument("--shift", type=int, default=COMMON["shift"], metavar="PX",
                   help="train-time random shift of up to PX whole pixels each way, "
                        "after the rotation; 0 for none (default: %(default)s)")
    p.add_argument("--scale", type=float, default=COMMON["scale"], metavar="S",
                   help="train-time random zoom by a factor in [1-S, 1+S], with the "
                        "rotation; 0 for none (default: %(default)s)")
    p.add_argument("--interpolation", choices=["nearest", "bilinear"],
                   default=COMMON["interpolation"],
                   help="how augmented (rotated, zoomed, shifted, deformed) training images "
                        "are resampled; nearest is torchvision's default (default: %(default)s)")
    p.add_argument("--elastic", type=float, nargs=2, default=COMMON["elastic"],
                   metavar=("ALPHA", "SIGMA"),
                   help="train-time elastic deformation after the rotation (and shift), "
                        "as torchvision's ElasticTransform(ALPHA, SIGMA) (default: none)")
    p.add_argument("--dropout", type=float, default=None,
                   help=f"dropout rate (default: {step_default})")
    p.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="test an exponential moving average of the weights, updated every "
                        f"step with this decay; 0 for none (default: {step_default})")
    p.add_argument("--seed", type=int, default=COMMON["seed"], help="random seed (default: %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                   help="run once per seed, then print a consistency table (default: just --seed)")
    p.add_argument("--history", default="results/step{step}_seed{seed}.json",
                   help="per-epoch history JSON; {step} and {seed} are filled in (default: %(default)s)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="auto takes cuda, then mps, then cpu (default: %(default)s)")
    p.add_argument("--channels-last", action="store_true",
                   help="keep the net's activations channels-last (NHWC): about 1.5x faster "
                        "on a CPU for Net7's depthwise convs; sums floats in another order, "
                        "so a seed's numbers differ in the last digits (default: off)")
    p.add_argument("--data-dir", default="./data", help="where MNIST is kept (default: %(default)s)")
    p.add_argument("--loader", default="device", choices=sorted(data.LOADERS),
                   help="device: whole set on the device, batched augmentation; "
                        "classic: DataLoader with per-image transforms, as the original (default: %(default)s)")
    p.add_argument("--save", default=None, metavar="PATH",
                   help="save the trained model there; {step} and {seed} are filled in "
                        "(default: not saved)")
    p.add_argument("--eval", default=None, metavar="PATH",
                   help="evaluate a checkpoint saved by --save on the test set; train nothing")
    p.add_argument("--report", action="store_true",
                   help="print the consistency table of --seeds from their saved histories; "
                        "train nothing")
    p.add_argument("--no-plots", dest="plots", action="store_false",
                   help="do not draw the curves and misclassified digits next to the history")
    p.add_argument("--val", type=int, default=0, metavar="N",
                   help="hold out N training images and report on them instead of the test "
                        "set, for tuning (default: 0, off)")
    p.add_argument("--limit-batches", type=int, default=None,
                   help="train on only this many batches per epoch, for quick checks; the test "
                        "set is always whole (default: all)")
    args = p.parse_args(argv)
    if not 1 <= args.epochs <= MAX_EPOCHS:
        p.error(f"--epochs must be between 1 and {MAX_EPOCHS}, got {args.epochs}")
    if not 0 <= args.val < 60_000:
        p.error(f"--val must be between 0 and 59999, got {args.val}")
    for name in ("batch_size", "limit_batches"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.rotation is not None and not 0 <= args.rotation <= 180:
        p.error(f"--rotation must be between 0 and 180, got {args.rotation}")
    if not 0 <= args.shift <= 14:
        p.error(f"--shift must be between 0 and 14, got {args.shift}")
    if not 0 <= args.scale < 1:
        p.error(f"--scale must be in [0, 1), got {args.scale}")
    if args.dropout is not None and not 0 <= args.dropout < 1:
        p.error(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.pct_start is not None and not 0 < args.pct_start < 1:
        p.error(f"--pct-start must be between 0 and 1, got {args.pct_start}")
    if args.elastic is not None and not (args.elastic[0] >= 0 and args.elastic[1] > 0):
        p.error(f"--elastic needs ALPHA >= 0 and SIGMA > 0, got {args.elastic}")
    if not 0 <= args.label_smoothing < 1:
        p.error(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if not 0 <= args.weight_decay < 1:
        p.error(f"--weight-decay must be in [0, 1), got {args.weight_decay}")
    if args.ema is not None and not 0 <= args.ema < 1:
        p.error(f"--ema must be in [0, 1), got {args.ema}")
    return args


def make_config(args):
    """The step's recipe with the flags laid over it: plain data."""
    step = args.step or 5
    cfg = dict(COMMON, **RECIPES[step], step=step)
    for key, value in vars(args).items():
        if key not in ("seeds", "eval", "report", "step") and (value is not None or key not in cfg):
            cfg[key] = value
    return cfg


def write_json(path, obj):
    """Write whole or not at all: a crash mid-write never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def output_path(cfg, key):
    """cfg[key] with {step} and {seed} filled in, checked writable before any training."""
    path = Path(cfg[key].format(step=cfg["step"], seed=cfg["seed"]))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with open(path, "a"):
            pass
        if not existed:  # checked, not created: no empty file if the run stops early
            path.unlink()
    except OSError as e:
        raise UserError(f"cannot write {path} ({e.strerror}: {e.filename}); "
                        f"choose another --{key}") from None
    return path


def save_plots(net, history, test_loader, device, path):
    curves = path.with_name(path.stem + "_curves.png")
    wrong = path.with_name(path.stem + "_misclassified.png")
    plot_curves(history, curves)
    plot_misclassified(net, test_loader, device, wrong, data.MEAN, data.STD)
    print(f"Plots: {curves} {wrong}")


def train(cfg):
    """Train one configuration, printing the documented log and saving the
    history after every epoch; returns the history."""
    seed_everything(cfg["seed"])
    device = pick_device(cfg["device"])
    path = output_path(cfg, "history")
    save = cfg["save"] and output_path(cfg, "save")
    split = "Validation" if cfg["val"] else "Test"
    load = data.LOADERS[cfg["loader"]]
    train_loader, test_loader = load(cfg["data_dir"], cfg["batch_size"], cfg["rotation"],
                                     device, cfg["seed"], cfg["val"],
                                     **{k: cfg[k] for k in AUGMENT})
    print(f"Device: {device}")
    net = models.NETS[cfg["net"]](dropout=cfg["dropout"]).to(device)
    if cfg["channels_last"]:  # the weights so stored make every conv return NHWC
        net = net.to(memory_format=torch.channels_last)
    print(summary(net, input_size=(1, 1, 28, 28), col_names=("output_size", "num_params"),
                  device=device, verbose=0))
    params = sum(p.numel() for p in net.parameters())
    print(f"Parameters: {params:,}")
    history = dict(step=cfg["step"], seed=cfg["seed"], config=cfg, params=params,
                   torch=torch.__version__, device=str(device), evaluated_on=split.lower(),
                   epochs=[])

    limit = cfg["limit_batches"]
    steps_per_epoch = min(len(train_loader), limit or len(train_loader))
    optimizer, scheduler = make_optimizer(net, cfg["lr"], cfg["momentum"], cfg["scheduler"],
                                          cfg["max_lr"], cfg["epochs"], steps_per_epoch,
                                          cfg["pct_start"], cfg["weight_decay"], cfg["optimizer"])
    ema = make_ema(net, cfg.get("ema"))  # with a moving average, the average is tested
    tested = ema.module if ema else net
    try:
        for epoch in range(cfg["epochs"]):
            print(f"EPOCH: {epoch}")
            start = time.perf_counter()
            train_loss, train_acc = train_epoch(net, train_loader, optimizer, scheduler, device,
                                                limit, ema, cfg["label_smoothing"])
            seconds = time.perf_counter() - start
            if scheduler is not None:
                print(lr_line(epoch, scheduler))
            test_loss, correct, total = evaluate(tested, test_loader, device)
            print(f"\n{test_line(test_loss, correct, total, split)}\n")
            history["epochs"].append(dict(
                epoch=epoch, train_loss=train_loss, train_acc=train_acc, test_loss=test_loss,
                test_acc=100.0 * correct / total, lr=optimizer.param_groups[0]["lr"],
                seconds=seconds))
            write_json(path, history)
    except KeyboardInterrupt:
        raise UserError(f"interrupted: {len(history['epochs'])} finished epochs kept in {path}",
                        exit_code=130) from None
    finally:  # also after Ctrl-C or a NaN: the finished epochs get their plots
        print(f"History: {path}")
        if cfg["plots"] and history["epochs"]:
            save_plots(tested, history, test_loader, device, path)
    if save:
        torch.save(dict(state_dict=tested.state_dict(), step=cfg["step"], config=cfg,
                        metrics=history["epochs"][-1]), save)
        print(f"Model: {save}")
    return history


def evaluate_checkpoint(args):
    """`--eval PATH`: the documented Test set line for a saved model."""
    try:
        ckpt = torch.load(args.eval, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"no checkpoint at {args.eval}") from None
    except Exception:  # truncated, or not a torch file at all
        raise UserError(f"{args.eval} is not a readable checkpoint (truncated or not saved "
                        "by --save)") from None
    if not (isinstance(ckpt, dict) and {"state_dict", "step", "config"} <= ckpt.keys()):
        raise UserError(f"{args.eval} is not a checkpoint saved by train.py --save")
    cfg = ckpt["config"]
    if args.step is not None and args.step != ckpt["step"]:
        raise UserError(f"{args.eval} holds a step-{ckpt['step']} {cfg['net']}, "
                        f"not a step-{args.step} {RECIPES[args.step]['net']}")
    device = pick_device(args.device)
    net = models.NETS[cfg["net"]](dropout=cfg["dropout"])
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError:
        raise UserError(f"{args.eval}: its weights do not fit {cfg['net']}") from None
    _, test_loader = data.LOADERS["device"](args.data_dir, 1, 0, device, 0)
    print(f"Checkpoint: step {ckpt['step']}, {cfg['net']}, "
          f"{sum(p.numel() for p in net.parameters()):,} parameters, on {device}")
    print(f"\n{test_line(*evaluate(net.to(device), test_loader, device))}\n")


def load_histories(cfg, seeds):
    histories = []
    for seed in seeds:
        path = Path(cfg["history"].format(step=cfg["step"], seed=seed))
        try:
            histories.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            raise UserError(f"no readable history at {path}; train that seed first") from None
    return histories


def consistency(histories):
    """Per seed: final, best, min of the last 5, how many of the last 5 reach
    the target, whether all do, seconds per epoch; then mean and spread."""
    rows = ["| step | seed | params | final | best | min last 5 | last 5 >= 99.40 | target held "
            "| s / epoch |", "|---|---|---|---|---|---|---|---|---|"]
    finals, passed = [], 0
    for h in histories:
        accs = [e["test_acc"] for e in h["epochs"]]
        last = accs[-LAST:]
        hits = sum(a >= TARGET for a in last)
        held = len(last) == LAST and hits == LAST
        passed += held
        finals.append(accs[-1])
        seconds = statistics.mean(e["seconds"] for e in h["epochs"])
        rows.append(f"| {h['step']} | {h['seed']} | {h['params']:,} | {accs[-1]:.2f} "
                    f"| {max(accs):.2f} | {min(last):.2f} | {hits}/{len(last)} "
                    f"| {'yes' if held else 'no'} | {seconds:.0f} |")
    n = len(finals)
    if n > 1:
        rows.append(f"\nfinal test accuracy {statistics.mean(finals):.2f} ± "
                    f"{statistics.stdev(finals):.2f} % (mean ± std over {n} seeds); "
                    f"target held on {passed} of {n}")
    else:
        rows.append(f"\nfinal test accuracy {finals[0]:.2f} % (1 seed); target held on {passed} of 1")
    return "\n".join(rows)


def main(argv=None):
    sys.stdout.reconfigure(line_buffering=True)  # logs in order when piped to a file
    args = parse_args(argv)
    cfg = make_config(args)
    seeds = args.seeds or [args.seed]
    try:
        if args.eval:
            return evaluate_checkpoint(args) or 0
        if args.report:
            print(consistency(load_histories(cfg, seeds)))
            return 0
        histories = []
        for i, seed in enumerate(seeds):
            if len(seeds) > 1:
                print(f"=== seed {seed} ({i + 1} of {len(seeds)}) ===")
            histories.append(train(dict(cfg, seed=seed)))
        if len(seeds) > 1:
            print(consistency(histories))
    except (UserError, data.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
