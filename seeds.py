"""Several seeds of one recipe: the checks that each writes its own files,
--resume, the seeds one after another or in worker processes, the signals
that stop them, and the consistency table.

train.main hands run() the function that trains one seed, so this module
never imports train.py.
"""
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import statistics
import sys
import threading
import time
from contextlib import redirect_stdout
from pathlib import Path

import torch

import data
from utils import UserError, pick_device, writable

TARGET, LAST = 99.40, 5  # the accuracy target, held in each of the last 5 epochs
EPOCH_NUMBERS = ("train_loss", "train_acc", "test_loss", "test_acc", "seconds")


# Ctrl-C, SIGTERM (kill, a scheduler) and SIGHUP (a closed terminal) stop a
# run alike: finished epochs kept, workers ended, exit 128 + the signal.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum):
        super().__init__()
        self.signum = signum


def stop(signum, _):
    raise Interrupted(signum)


def stopped_by(e):
    signum = getattr(e, "signum", signal.SIGINT)
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"


def run_paths(run, step, seed):
    """Every file a run of `seed` writes: the history and, beside it, its log
    (--jobs), curves and misclassified digits; the checkpoint (--save)."""
    history = Path(run.history.format(step=step, seed=seed))
    return dict(history=history, log=history.with_suffix(".log"),
                curves=history.with_name(history.stem + "_curves.png"),
                misclassified=history.with_name(history.stem + "_misclassified.png"),
                save=Path(run.save.format(step=step, seed=seed)) if run.save else None)


def check_paths(run, step, seeds):
    """Refuse (exit 2) a seed given twice, and two seeds or two files that
    would write one path: each run writes its own files."""
    repeated = next((seed for i, seed in enumerate(seeds) if seed in seeds[:i]), None)
    if repeated is not None:
        raise UserError(f"argument --seeds: seed {repeated} is given twice", exit_code=2)
    writers = {}
    for seed in seeds:
        for kind, path in run_paths(run, step, seed).items():
            if path is not None:
                other = writers.setdefault(path.resolve(), (seed, kind))
                if other[0] != seed:
                    raise UserError(f"seeds {other[0]} and {seed} would both write {path}; "
                                    f"put {{seed}} in --{'save' if kind == 'save' else 'history'}",
                                    exit_code=2)
                if other[1] != kind:
                    raise UserError(f"seed {seed}'s {other[1]} and {kind} would both be {path}; "
                                    "give --history and --save different paths", exit_code=2)


def measured(run):
    """The run options that change what a history measures, beside its recipe."""
    return dict(val=run.val, limit_batches=run.limit_batches)


def read_history(path):
    """The history at `path`, checked as far as a table or --resume reads it:
    what does not fit is one line naming the file."""
    try:
        history = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"no readable history at {path} ({getattr(e, 'strerror', None) or e})"
                        ) from None
    epochs = history.get("epochs") if isinstance(history, dict) else None
    wrong = ("it is not a history (an object with step, seed, params, config, epochs)"
             if not (isinstance(epochs, list) and isinstance(history.get("config"), dict)
                     and all(type(history.get(k)) is int for k in ("step", "seed", "params")))
             else "its epoch list is empty" if not epochs
             else next((f"epoch {i} has no finite {key}" for i, e in enumerate(epochs)
                        for key in EPOCH_NUMBERS
                        if not (isinstance(e, dict) and type(e.get(key)) in (int, float)
                                and math.isfinite(e[key]))), None))
    if wrong:
        raise UserError(f"{path}: {wrong}")
    return history


def load_histories(run, step, seeds):
    histories = []
    for seed in seeds:
        path = run_paths(run, step, seed)["history"]
        try:
            history = read_history(path)
        except UserError as e:
            raise UserError(f"{e}; train that seed first") from None
        if (history["step"], history["seed"]) != (step, seed):
            raise UserError(f"{path} holds step {history['step']} seed "
                            f"{history['seed']}, not step {step} seed {seed}")
        histories.append(history)
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
    n, split = len(finals), histories[0].get("evaluated_on", "test")
    if n > 1:
        rows.append(f"\nfinal {split} accuracy {statistics.mean(finals):.2f} ± "
                    f"{statistics.stdev(finals):.2f} % (mean ± std over {n} seeds); "
                    f"target held on {passed} of {n}")
    else:
        rows.append(f"\nfinal {split} accuracy {finals[0]:.2f} % (1 seed); target held on {passed} of 1")
    return "\n".join(rows)


def complete_history(cfg, run, seed, say=print):
    """--resume: the seed's saved history if it is complete for this recipe
    and its checkpoint is there if one is asked for, else None, saying in
    one line why the seed is trained again."""
    paths = run_paths(run, cfg["step"], seed)
    if not paths["history"].exists():
        return None
    try:
        saved = read_history(paths["history"])
    except UserError as e:
        say(f"seed {seed}: {e}; training it from the start")
        return None
    # the recipe's fields (older histories hold more); a history written
    # before "run" existed was a full test-set run
    if not ((saved["step"], saved["seed"]) == (cfg["step"], seed)
            and all(saved["config"].get(k) == v for k, v in json.loads(json.dumps(cfg)).items())
            and saved.get("run", dict(val=0, limit_batches=None)) == measured(run)):
        say(f"seed {seed}: {paths['history']} holds another run (step, seed, recipe, --val or "
            "--limit-batches); training it from the start")
    elif len(saved["epochs"]) < cfg["epochs"]:
        say(f"seed {seed}: {paths['history']} has {len(saved['epochs'])} of {cfg['epochs']} "
            "epochs; training it from the start")
    elif paths["save"] and not paths["save"].exists():
        say(f"seed {seed}: no checkpoint at {paths['save']}; training it again")
    else:
        say(f"seed {seed}: complete in {paths['history']}; not trained again")
        return saved
    return None


def train_in_process(train_one, cfg, run, seeds, label):
    """The seeds one after another; a seed that fails is named and the next
    one trained, but Ctrl-C stops them all. Returns ({seed: history}, failed)."""
    histories, failed = {}, []
    for i, seed in enumerate(seeds):
        if label:
            print(f"=== seed {seed} ({i + 1} of {len(seeds)}) ===")
        try:
            histories[seed] = train_one(cfg, run, seed)
        except (UserError, data.DataError) as e:
            if getattr(e, "exit_code", 1) > 128:  # a signal stops every seed
                raise
            print(f"error: {f'seed {seed}: ' if label else ''}{e}", file=sys.stderr)
            failed.append(seed)
    return histories, failed


def train_in_worker(train_one, cfg, run, seed, threads, events):
    """One seed in a worker process: its documented log goes to a file beside
    its history, each finished epoch and its end to the parent via `events`."""
    def interrupt(signum, _):  # the parent ends a worker so: it stops as a run stops at Ctrl-C
        events.cancel_join_thread()  # and at exit does not wait for a parent that no longer reads
        raise Interrupted(signum)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)

    def end_with_parent():  # a parent killed outright cannot end its workers: they end themselves
        multiprocessing.connection.wait([multiprocessing.parent_process().sentinel])
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=end_with_parent, daemon=True).start()
    torch.set_num_threads(threads)
    try:
        log = writable(run_paths(run, cfg["step"], seed)["log"], "history")
        with open(log, "w", buffering=1) as out, redirect_stdout(out):
            try:
                history = train_one(cfg, run, seed,
                                    on_epoch=lambda e: events.put(("epoch", seed, e)))
            except (UserError, data.DataError) as e:
                print(f"error: {e}")
                raise
        events.put(("done", seed, history))
    except (UserError, data.DataError) as e:
        events.put(("error", seed, str(e)))
    except KeyboardInterrupt:  # ended before its first epoch: nothing to keep
        pass


def finished_history(cfg, run, seed, since):
    """The seed's history as its worker left it on disk, if it wrote it (after
    `since`, a time.time()) and it is complete for this recipe."""
    path = run_paths(run, cfg["step"], seed)["history"]
    try:
        fresh = path.stat().st_mtime >= since
    except OSError:
        return None
    return complete_history(cfg, run, seed, say=lambda _: None) if fresh else None


def worker_context(train_one):
    """Workers forked from a server process that imported train_one's module
    once (forkserver): each starts in a moment, and CUDA, which that server
    never touched, works in it. Spawned where there is no forkserver."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([train_one.__module__])
    return context


def train_in_workers(train_one, cfg, run, seeds, jobs, worker=train_in_worker, context=None):
    """The seeds in `jobs` worker processes at once, each with its share of
    the torch threads; prints a line per seed per epoch. Ctrl-C ends every
    worker (the finished epochs are on disk). A worker that ends without
    its last word (a queue may drop it) left its history on disk: it is read
    from there. Returns ({seed: history}, failed)."""
    context = context or worker_context(train_one)
    events = context.Queue()
    threads = max(1, torch.get_num_threads() // jobs)
    split = "validation" if run.val else "test"
    waiting, running, histories, failed, started = list(seeds), {}, {}, [], {}

    def end(seed, history=None, error=None):
        running.pop(seed).join()
        if error:
            print(f"error: seed {seed}: {error}", file=sys.stderr)
            failed.append(seed)
        else:
            histories[seed] = history
            print(f"seed {seed}: done")

    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                seed = waiting.pop(0)
                started[seed] = time.time()
                running[seed] = context.Process(target=worker,
                                                args=(train_one, cfg, run, seed, threads,
                                                      events))
                # born ignoring Ctrl-C, which is the parent's to handle: it ends the workers
                default = signal.signal(signal.SIGINT, signal.SIG_IGN)
                try:
                    running[seed].start()
                finally:
                    signal.signal(signal.SIGINT, default)
                log = run_paths(run, cfg["step"], seed)["log"]
                print(f"seed {seed}: started, {threads} torch thread(s), log {log}")
            try:
                kind, seed, value = events.get(timeout=0.2)
            except queue.Empty:  # a worker that ended without its last word
                for seed in [s for s, w in running.items() if w.exitcode is not None]:
                    code = running[seed].exitcode
                    history = finished_history(cfg, run, seed, started[seed]) if code == 0 else None
                    if history:  # the word was late or lost
                        end(seed, history)
                    else:  # killed or crashed
                        end(seed, error=f"its worker ended with exit code {code}"
                                        + ("" if code else " before its last epoch"))
                continue
            if seed not in running:  # the late word of a seed already ended
                continue
            if kind == "epoch":
                print(f"seed {seed} epoch {value['epoch']}: {split} {value['test_acc']:.2f} %, "
                      f"train {value['train_acc']:.2f} %, {value['seconds']:.0f} s")
            elif kind == "done":
                end(seed, value)
            else:
                end(seed, error=value)
    except KeyboardInterrupt as e:
        ignored = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
        for worker in running.values():  # a second signal waits for them too
            worker.terminate()
        for worker in running.values():
            worker.join()
        for signum, handler in ignored.items():
            signal.signal(signum, handler)
        raise UserError(f"{stopped_by(e)}: every seed's finished epochs are kept in its history; "
                        "run again with --resume to train what is missing",
                        exit_code=128 + getattr(e, "signum", signal.SIGINT)) from None
    return histories, failed


def run(train_one, cfg, args, seeds):
    """Train `seeds` (all but those --resume finds complete), in --jobs
    workers or here, then print the table; returns the seeds that failed."""
    done = {}
    for seed in seeds if args.resume else []:
        if (saved := complete_history(cfg, args, seed)) is not None:
            done[seed] = saved
    todo = [seed for seed in seeds if seed not in done]
    if todo:  # once, before any seed: MNIST that cannot be had fails every seed alike
        data.prepare_mnist(args.data_dir)
    if args.jobs > 1 and len(todo) > 1:
        pick_device(args.device)  # once, before the workers start
        trained, failed = train_in_workers(train_one, cfg, args, todo, min(args.jobs, len(todo)))
    else:
        trained, failed = train_in_process(train_one, cfg, args, todo, label=len(seeds) > 1)
    done.update(trained)
    if len(seeds) > 1 and done:
        print(consistency([done[seed] for seed in seeds if seed in done]))
    return failed
