"""python -m unittest: nets against the spec tables, LR values, log lines,
errors, the batched rotation, and a few real training steps. Offline."""
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import torch
import torch.nn as nn
import torchvision.transforms.functional as TF
from torchvision import transforms
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

import data
import model
from utils import evaluate, lr_line, make_ema, make_optimizer, test_line, train_epoch

HERE = Path(__file__).resolve().parent
DATA_DIR = os.environ.get("MNIST_DIR", str(HERE / "data"))


# ----------------------------------------------------------------- spec tables
# The spec's per-layer tables (shapes C x H x W, params), one entry per row;
# "conv+BRD" rows expand to the Conv2d, BatchNorm2d, ReLU, Dropout lines a
# torchsummary/torchinfo summary prints.
def conv(shape, params, bn=0, then="R"):
    rows = [("Conv2d", shape, params)]
    if bn:
        rows.append(("BatchNorm2d", shape, bn))
    rows += [({"R": "ReLU", "D": "Dropout"}[c], shape, 0) for c in then]
    return rows


def pool(kind, shape):
    return [(kind, shape, 0)]


NET1 = [*conv("16x26x26", 144), *conv("32x24x24", 4608), *conv("32x22x22", 9216),
        *pool("MaxPool2d", "32x11x11"), *conv("32x9x9", 9216), *conv("64x7x7", 18432),
        *conv("128x5x5", 73728), *conv("10x1x1", 32000, then="")]


def net2(then):
    return [*conv("8x26x26", 72, 16, then), *conv("16x24x24", 1152, 32, then),
            *pool("MaxPool2d", "16x12x12"), *conv("16x10x10", 2304, 32, then),
            *conv("16x8x8", 2304, 32, then), *conv("16x6x6", 2304, 32, then),
            *conv("16x4x4", 2304, 32, then), *pool("AvgPool2d", "16x1x1")]


NET4 = [*conv("12x28x28", 108, 24, "RD"), *conv("12x28x28", 1296, 24, "RD"),
        *pool("MaxPool2d", "12x14x14"), *conv("12x12x12", 1296, 24, "RD"),
        *conv("12x10x10", 1296, 24, "RD"), *conv("12x8x8", 1296, 24, "RD"),
        *conv("12x6x6", 1296, 24, "RD"), *conv("12x4x4", 1296, 24, "RD"),
        *pool("AvgPool2d", "12x1x1"), *conv("10x1x1", 120, then="")]
NET6 = [*conv("10x28x28", 90, 20, "RD"), *conv("10x28x28", 900, 20, "RD"),
        *pool("MaxPool2d", "10x14x14"), *conv("10x12x12", 900, 20, "RD"),
        *conv("10x10x10", 900, 20, "RD"), *conv("10x8x8", 900, 20, "RD"),
        *conv("10x6x6", 900, 20, "RD"), *conv("20x4x4", 1800, 40, "RD"),
        *pool("AvgPool2d", "20x1x1"), *conv("10x1x1", 200, then="")]


def separable(shape, c_in):
    """A depthwise 3x3 (c_in x 9 weights), then a pointwise 1x1 to the shape's channels."""
    c_out = int(shape.split("x")[0])
    return [("Conv2d", f"{c_in}x{shape.split('x', 1)[1]}", 9 * c_in), *conv(shape, c_in * c_out, 2 * c_out)]


# Net7 as the README's table states it
NET7 = [*conv("14x28x28", 126, 28), *separable("14x28x28", 14), *pool("MaxPool2d", "14x14x14"),
        *separable("25x12x12", 14), *separable("25x10x10", 25), *separable("25x8x8", 25),
        *separable("25x6x6", 25), *pool("AvgPool2d", "25x1x1"), *conv("10x1x1", 250, then="")]
SPEC = {"Net1": (NET1, 147_344), "Net2": (net2("R"), 10_616), "Net3": (net2("RD"), 10_616),
        "Net4": (NET4, 8_172), "Net5": (NET4, 8_172), "Net6": (NET6, 6_750), "Net7": (NET7, 3_980)}


def layer_rows(net):
    """(type, CxHxW, params) of every leaf layer, in the order it runs."""
    rows, hooks = [], []
    for m in net.modules():
        if not list(m.children()):
            hooks.append(m.register_forward_hook(lambda m, i, o: rows.append(
                (type(m).__name__, "x".join(map(str, o.shape[1:])),
                 sum(p.numel() for p in m.parameters())))))
    net.eval()(torch.zeros(2, 1, 28, 28))
    for h in hooks:
        h.remove()
    return rows


class TestNets(unittest.TestCase):
    def test_layers_match_spec_tables(self):
        for name, (table, total) in SPEC.items():
            with self.subTest(name):
                net = model.NETS[name]()
                self.assertEqual(layer_rows(net), table)
                self.assertEqual(sum(p.numel() for p in net.parameters()), total)
                self.assertFalse(any(isinstance(m, nn.Conv2d) and m.bias is not None
                                     for m in net.modules()))

    def test_net7_is_under_4000_parameters(self):
        self.assertLess(sum(p.numel() for p in model.Net7().parameters()), 4000)

    def test_outputs_are_log_probabilities(self):
        x = torch.randn(5, 1, 28, 28)
        for name, cls in model.NETS.items():
            with self.subTest(name):
                out = cls().eval()(x)
                self.assertEqual(out.shape, (5, 10))
                self.assertTrue(torch.all(out <= 0))
                torch.testing.assert_close(out.exp().sum(1), torch.ones(5))

    def test_dropout_rate_is_a_constructor_argument(self):
        rates = {m.p for m in model.Net6(dropout=0.2).modules() if isinstance(m, nn.Dropout)}
        self.assertEqual(rates, {0.2})
        self.assertEqual({m.p for m in model.Net5().modules() if isinstance(m, nn.Dropout)}, {0.05})
        self.assertFalse(any(isinstance(m, nn.Dropout) for m in model.Net2().modules()))


# ------------------------------------------------------------------ schedule
class TestSchedule(unittest.TestCase):
    # spec, "The log format": every recorded value, digit for digit
    RECORDED = {
        (938, 0): "0.01523497150347064", (938, 10): "0.03171837652888333",
        (938, 12): "0.008679444396382234", (938, 14): "4.0254362882487444e-07",
        (469, 0): "0.015240079703465942", (469, 10): "0.031703533067975895",
        (469, 12): "0.008670466465012771", (469, 14): "4.101745150496986e-07",
    }

    def test_onecycle_lr_lines_match_the_recorded_values(self):
        for steps_per_epoch in (938, 469):
            net = nn.Linear(1, 1)
            optimizer, scheduler = make_optimizer(net, 0.01, 0.9, "onecycle", 0.1, 15,
                                                  steps_per_epoch)
            for epoch in range(15):
                for _ in range(steps_per_epoch):
                    optimizer.step()
                    scheduler.step()
                want = self.RECORDED.get((steps_per_epoch, epoch))
                if want:
                    self.assertEqual(lr_line(epoch, scheduler), f"Epoch: {epoch} LR: [{want}]")

    def test_each_step_takes_its_own_schedule_and_a_flag_overrides_it(self):
        import train
        config = lambda *argv: train.make_config(train.parse_args(list(argv)))  # noqa: E731
        five, seven = config("--step", "5"), config("--step", "7")
        # steps 1-6: OneCycle's defaults at peak 0.1 (spec); step 7: README, "Net7"
        self.assertEqual((five["max_lr"], five["pct_start"], five.get("ema")), (0.1, 0.3, None))
        self.assertEqual((seven["net"], seven["max_lr"], seven["pct_start"], seven["ema"]),
                         ("Net7", 0.2, 0.15, 0.997))
        flagged = config("--step", "7", "--max-lr", "0.05", "--pct-start", "0.3", "--ema", "0")
        self.assertEqual((flagged["max_lr"], flagged["pct_start"], flagged["ema"]), (0.05, 0.3, 0.0))

    def test_no_scheduler_keeps_lr(self):
        optimizer, scheduler = make_optimizer(nn.Linear(1, 1), 0.01, 0.9, "none", 0.1, 15, 469)
        self.assertIsNone(scheduler)
        self.assertEqual(optimizer.param_groups[0]["lr"], 0.01)
        self.assertEqual(optimizer.param_groups[0]["momentum"], 0.9)

    def test_test_line_format(self):
        self.assertEqual(test_line(0.0216, 9938, 10000),
                         "Test set: Average loss: 0.0216, Accuracy: 9938/10000 (99.38%)")


# -------------------------------------------------------------- consistency
class TestConsistency(unittest.TestCase):
    def test_table_counts_the_last_five_epochs(self):
        import train
        def history(seed, accs):
            return {"step": 6, "seed": seed, "params": 6750,
                    "epochs": [{"test_acc": a, "seconds": 10.0 + seed} for a in accs]}
        held = history(1, [98.0, 99.5, 99.41, 99.40, 99.45, 99.60, 99.50])
        missed = history(2, [99.9, 99.2, 99.39, 99.50, 99.41, 99.44, 99.30])
        table = train.consistency([held, missed]).splitlines()
        self.assertEqual(table[2], "| 6 | 1 | 6,750 | 99.50 | 99.60 | 99.40 | 5/5 | yes | 11 |")
        self.assertEqual(table[3], "| 6 | 2 | 6,750 | 99.30 | 99.90 | 99.30 | 3/5 | no | 12 |")
        # mean 99.40, sample std of (99.50, 99.30) = 0.1414
        self.assertIn("99.40 ± 0.14 % (mean ± std over 2 seeds); target held on 1 of 2",
                      table[-1])
        # one seed: no spread to speak of
        self.assertTrue(train.consistency([missed]).endswith(
            "final test accuracy 99.30 % (1 seed); target held on 0 of 1"))


# ------------------------------------------------------------- command line
EPOCH_RE = re.compile(r"^EPOCH: (\d+)$")
BAR_RE = re.compile(r"^Loss=(\d+\.\d+(?:e-?\d+)?) Batch_id=(\d+) Accuracy=(\d+\.\d\d): "
                    r"100%\|█+\| (\d+)/(\d+) \[")
LR_RE = re.compile(r"^Epoch: (\d+) LR: \[(\d\.\d+(?:e-\d+)?)\]$")
TEST_RE = re.compile(r"^Test set: Average loss: (\d+\.\d{4}), "
                     r"Accuracy: (\d+)/(\d+) \((\d+\.\d\d)%\)$")


def run_train(*args):
    out = subprocess.run([sys.executable, str(HERE / "train.py"), *args], cwd=HERE,
                         capture_output=True, timeout=600)
    # decoded by hand: text mode would turn tqdm's carriage returns into newlines
    out.stdout, out.stderr = out.stdout.decode(), out.stderr.decode()
    return out


def final_lines(stdout):
    """The log as a terminal shows it: each tqdm redraw replaces the last."""
    return [line.split("\r")[-1].rstrip() for line in stdout.split("\n")]


class TestCommandLine(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.history = os.path.join(self.tmp.name, "h{step}_{seed}.json")

    def check_log(self, stdout, epochs, batches, with_lr):
        lines = [l for l in final_lines(stdout)]
        start = lines.index("EPOCH: 0")
        for epoch in range(epochs):
            i = start + epoch * (6 if with_lr else 5)
            self.assertEqual(EPOCH_RE.match(lines[i]).group(1), str(epoch))
            bar = BAR_RE.match(lines[i + 1])
            self.assertIsNotNone(bar, lines[i + 1])
            self.assertEqual(bar.group(2), str(batches - 1))
            self.assertEqual(bar.group(4, 5), (str(batches), str(batches)))
            i += 2
            if with_lr:
                self.assertEqual(LR_RE.match(lines[i]).group(1), str(epoch))
                i += 1
            self.assertEqual(lines[i], "")
            test = TEST_RE.match(lines[i + 1])
            self.assertIsNotNone(test, lines[i + 1])
            c, n, pct = int(test.group(2)), int(test.group(3)), float(test.group(4))
            self.assertEqual(n, 10000)
            self.assertAlmostEqual(pct, 100 * c / n, places=2)
            self.assertEqual(lines[i + 2], "")

    def test_step6_short_run_prints_documented_lines(self):
        out = run_train("--step", "6", "--epochs", "2", "--limit-batches", "3",
                        "--history", self.history)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("Parameters: 6,750", out.stdout)
        self.check_log(out.stdout, epochs=2, batches=3, with_lr=True)

    def test_step7_short_run_prints_documented_lines(self):
        out = run_train("--step", "7", "--epochs", "1", "--limit-batches", "2",
                        "--history", self.history, "--no-plots")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("Parameters: 3,980", out.stdout)
        self.check_log(out.stdout, epochs=1, batches=2, with_lr=True)

    def test_channels_last_trains_the_same_net(self):
        # another memory layout sums floats in another order: the same run to
        # a few decimals, not to the digit
        ckpt = os.path.join(self.tmp.name, "nhwc.pt")
        lines = []
        for flag in ([], ["--channels-last", "--save", ckpt]):
            out = run_train("--step", "7", "--epochs", "1", "--limit-batches", "20",
                            "--history", self.history, "--no-plots", *flag)
            self.assertEqual(out.returncode, 0, out.stderr)
            lines.append([l for l in final_lines(out.stdout) if TEST_RE.match(l)][-1])
        plain, nhwc = (TEST_RE.match(line) for line in lines)
        self.assertAlmostEqual(float(plain.group(1)), float(nhwc.group(1)), delta=0.002)
        self.assertLessEqual(abs(int(plain.group(2)) - int(nhwc.group(2))), 3)
        # the flag reached the net: its 1x1 conv weights are stored NHWC
        pointwise = torch.load(ckpt, weights_only=True)["state_dict"]["layers.4.weight"]
        self.assertEqual(pointwise.shape, (14, 14, 1, 1))
        self.assertEqual(pointwise.stride(), (14, 1, 14, 14))
        # and a checkpoint so stored tests the same in a plain net
        out = run_train("--eval", ckpt)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual([l for l in final_lines(out.stdout) if TEST_RE.match(l)], lines[1:])

    def test_step2_without_scheduler_prints_no_lr_line(self):
        out = run_train("--step", "2", "--epochs", "1", "--limit-batches", "2",
                        "--history", self.history)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertNotIn("LR:", out.stdout)
        self.check_log(out.stdout, epochs=1, batches=2, with_lr=False)

    def assert_clean_error(self, out, *words):
        self.assertNotEqual(out.returncode, 0)
        self.assertNotIn("Traceback", out.stderr)
        self.assertEqual(len(out.stderr.strip().splitlines()), 1, out.stderr)
        for word in words:
            self.assertIn(word, out.stderr)

    def test_unknown_step(self):
        self.assert_clean_error(run_train("--step", "9"), "--step", "9")

    def test_epochs_out_of_range(self):
        for bad in ("0", "-3", "101"):
            with self.subTest(bad):
                self.assert_clean_error(run_train("--epochs", bad), "--epochs")

    def test_report_reads_saved_histories(self):
        for seed, final in ((1, 99.45), (2, 99.35)):
            epochs = [{"test_acc": 99.5, "seconds": 20}] * 4 + [{"test_acc": final, "seconds": 25}]
            Path(self.history.format(step=6, seed=seed)).write_text(json.dumps(
                {"step": 6, "seed": seed, "params": 6750, "epochs": epochs}))
        out = run_train("--step", "6", "--seeds", "1", "2", "--report", "--history", self.history)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("| 6 | 1 | 6,750 | 99.45 | 99.50 | 99.45 | 5/5 | yes | 21 |", out.stdout)
        self.assertIn("| 6 | 2 | 6,750 | 99.35 | 99.50 | 99.35 | 4/5 | no | 21 |", out.stdout)
        self.assert_clean_error(run_train("--step", "6", "--seeds", "3", "--report",
                                          "--history", self.history), "no readable history")

    def test_bad_numbers(self):
        for flag, bad in (("--batch-size", "0"), ("--batch-size", "-1"), ("--rotation", "-5"),
                          ("--dropout", "1.5"), ("--val", "60000"), ("--limit-batches", "0"),
                          ("--ema", "1"), ("--ema", "-0.1"), ("--pct-start", "1"),
                          ("--shift", "-1"), ("--shift", "15"), ("--weight-decay", "-1"),
                          ("--label-smoothing", "1"), ("--label-smoothing", "-0.1"),
                          ("--elastic", "34 0"), ("--elastic", "-1 4"), ("--scale", "1"),
                          ("--scale", "-0.1")):
            with self.subTest(flag=flag, value=bad):
                self.assert_clean_error(run_train(flag, *bad.split()), flag)

    def test_unwritable_paths(self):
        blocker = Path(self.tmp.name) / "a_file"
        blocker.write_text("")
        self.assert_clean_error(run_train("--data-dir", str(blocker / "data"), "--history",
                                          self.history), "cannot write", "a_file")
        self.assert_clean_error(run_train("--history", str(blocker / "h.json")),
                                "cannot write", "--history")

    def test_corrupt_raw_file_from_the_command_line(self):
        raw = Path(self.tmp.name) / "d" / "MNIST" / "raw"
        raw.mkdir(parents=True)
        (raw / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b broken")
        out = run_train("--data-dir", str(raw.parent.parent), "--history", self.history)
        self.assert_clean_error(out, "t10k-images-idx3-ubyte.gz", "MD5", "delete it")

    def test_nan_loss_stops_with_a_clear_line(self):
        # Net1 has no BatchNorm: at lr 10 its loss is NaN within a few batches
        out = run_train("--step", "1", "--lr", "10", "--epochs", "1", "--limit-batches", "40",
                        "--history", self.history, "--no-plots")
        self.assert_clean_error(out, "loss became nan")
        # it stopped inside the first epoch: no history, and no empty file either
        self.assertFalse(Path(self.history.format(step=1, seed=1)).exists())

    def test_ctrl_c_keeps_finished_epochs(self):
        history = self.history.format(step=6, seed=1)
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "train.py"), "--step", "6", "--epochs", "50",
             "--limit-batches", "2", "--history", self.history], cwd=HERE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            # a shell's background job ignores SIGINT; the child must not
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        for line in proc.stdout:
            if line.startswith(b"EPOCH: 2"):
                break
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 130, stderr)
        err = stderr.decode().strip()
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn(f"finished epochs kept in {history}", err)
        finished = len(json.loads(Path(history).read_text())["epochs"])
        self.assertGreaterEqual(finished, 2)
        self.assertIn(f"interrupted: {finished} finished", err)
        self.assertTrue(Path(history.replace(".json", "_curves.png")).stat().st_size > 1000)

    def test_save_then_eval(self):
        ckpt = os.path.join(self.tmp.name, "net6.pt")
        out = run_train("--step", "6", "--epochs", "1", "--limit-batches", "5",
                        "--history", self.history, "--save", ckpt)
        self.assertEqual(out.returncode, 0, out.stderr)
        trained = [l for l in final_lines(out.stdout) if TEST_RE.match(l)][-1]
        for png in ("_curves.png", "_misclassified.png"):
            self.assertTrue(Path(self.history.format(step=6, seed=1).replace(".json", png)).exists())
        out = run_train("--eval", ckpt)
        self.assertEqual(out.returncode, 0, out.stderr)
        evaluated = [l for l in final_lines(out.stdout) if TEST_RE.match(l)]
        self.assertEqual(evaluated, [trained])  # the same weights give the same line
        self.assert_clean_error(run_train("--eval", ckpt, "--step", "5"), "step-6", "Net6")
        truncated = Path(self.tmp.name) / "truncated.pt"
        truncated.write_bytes(Path(ckpt).read_bytes()[:500])
        self.assert_clean_error(run_train("--eval", str(truncated)), "not a readable checkpoint")
        self.assert_clean_error(run_train("--eval", str(HERE / "README.md")),
                                "not a readable checkpoint")
        other = Path(self.tmp.name) / "other.pt"
        torch.save({"weights": torch.zeros(3)}, other)
        self.assert_clean_error(run_train("--eval", str(other)), "not a checkpoint")

    def test_step7_saves_the_averaged_weights_it_tested(self):
        ckpt = os.path.join(self.tmp.name, "net7.pt")
        out = run_train("--step", "7", "--epochs", "1", "--limit-batches", "20", "--no-plots",
                        "--history", self.history, "--save", ckpt)
        self.assertEqual(out.returncode, 0, out.stderr)
        tested = [l for l in final_lines(out.stdout) if TEST_RE.match(l)][-1]
        out = run_train("--eval", ckpt)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual([l for l in final_lines(out.stdout) if TEST_RE.match(l)], [tested])

    def test_unavailable_device(self):
        missing = next((d for d, ok in (("cuda", torch.cuda.is_available()),
                                        ("mps", torch.backends.mps.is_available())) if not ok), None)
        if missing is None:
            self.skipTest("every device is available here")
        self.assert_clean_error(run_train("--device", missing, "--history", self.history),
                                missing, "not available")


# ------------------------------------------------------------------ the data
class TestData(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        data.prepare_mnist(DATA_DIR)
        cls.images, cls.labels = data.load_tensors(DATA_DIR, train=True)

    def test_rotation_matches_torchvision_tensor_rotate(self):
        # Same grid, same nearest sampling: equal up to float rounding of the fill.
        x = self.images[:64]
        angles = torch.linspace(-15, 15, 64)
        fill = 1 / 255
        ours = data.affine(x, angles, fill)
        ref = torch.stack([TF.rotate(img, float(a), fill=[fill]) for img, a in zip(x, angles)])
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)

    def test_rotation_close_to_pil_rotate(self):
        # PIL computes the source pixel in its own arithmetic; where a sample
        # falls exactly between two pixels the nearest one can differ, so a
        # few pixels in ten thousand may disagree, never more than 0.1 %.
        raw = (self.images[:64, 0] * 255).round().to(torch.uint8)
        angles = torch.linspace(-15, 15, 64)
        ours = data.affine(self.images[:64], angles, 1 / 255)
        ref = torch.stack([TF.to_tensor(TF.rotate(Image.fromarray(img.numpy()), float(a), fill=(1,)))
                           for img, a in zip(raw, angles)])
        differ = ((ours - ref).abs() > 1e-6).float().mean().item()
        self.assertLess(differ, 1e-3)

    def test_rotation_really_rotates(self):
        x = self.images[:8]
        self.assertGreater((data.affine(x, torch.full((8,), 15.0), 0) - x).abs().sum(), 1)
        torch.testing.assert_close(data.affine(x, torch.zeros(8), 0), x)

    def test_rotation_and_shift_match_torchvision_affine(self):
        # TF.affine turns clockwise, TF.rotate and we counter-clockwise
        x = self.images[:64]
        angles = torch.linspace(-10, 10, 64)
        shifts = torch.randint(-2, 3, (64, 2), generator=torch.Generator().manual_seed(0))
        fill = 1 / 255
        ours = data.affine(x, angles, fill, shifts)
        ref = torch.stack([TF.affine(img, -float(a), s.tolist(), 1.0, [0.0, 0.0], fill=[fill])
                           for img, a, s in zip(x, angles, shifts)])
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)

    def test_zoom_with_rotation_and_shift_matches_torchvision_affine(self):
        x = self.images[:64]
        angles = torch.linspace(-10, 10, 64)
        scales = torch.linspace(0.8, 1.2, 64)
        shifts = torch.randint(-2, 3, (64, 2), generator=torch.Generator().manual_seed(0))
        fill = 1 / 255
        ours = data.affine(x, angles, fill, shifts, scales=scales)
        ref = torch.stack([TF.affine(img, -float(a), s.tolist(), float(z), [0.0, 0.0], fill=[fill])
                           for img, a, s, z in zip(x, angles, shifts, scales)])
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
        ink = lambda imgs: (imgs > 0.5).sum((1, 2, 3)).float()  # noqa: E731
        self.assertGreater(ink(ours[-8:]).mean(), 1.2 * ink(ours[:8]).mean())  # 1.2 vs 0.8

    def test_both_loaders_zoom_within_the_range(self):
        self.assertEqual(data.classic_transform(10, scale=0.1).transforms[0].scale, (0.9, 1.1))
        loader = data.DeviceLoader(self.images[:512], self.labels[:512], 512,
                                   torch.device("cpu"), shuffle=False, scale=0.1, seed=0)
        zoomed = next(iter(loader))[0] * data.STD + data.MEAN
        g = torch.Generator().manual_seed(0)  # unshuffled, the loader draws angles
        torch.empty(512).uniform_(0, 0, generator=g)  # (all 0 here), then the zooms
        scales = torch.empty(512).uniform_(0.9, 1.1, generator=g)
        self.assertTrue(scales.min() < 0.92 and scales.max() > 1.08)
        ref = data.affine(self.images[:512], torch.zeros(512), data.FILL / 255, scales=scales)
        torch.testing.assert_close(zoomed, ref, rtol=0, atol=1e-5)

    def test_bilinear_rotation_and_shift_match_torchvision_inside_the_frame(self):
        # Inside, the same bilinear weights. At the frame, where part of a
        # sample falls outside, torchvision weighs the image by the covered
        # share twice; we blend it with the fill once, so an MNIST frame,
        # which is all fill, stays exactly the fill.
        x = self.images[:64]
        angles = torch.linspace(-10, 10, 64)
        shifts = torch.randint(-2, 3, (64, 2), generator=torch.Generator().manual_seed(0))
        fill = 1 / 255
        ours = data.affine(x, angles, fill, shifts, "bilinear")
        ref = torch.stack([TF.affine(img, -float(a), s.tolist(), 1.0, [0.0, 0.0],
                                     TF.InterpolationMode.BILINEAR, fill=[fill])
                           for img, a, s in zip(x, angles, shifts)])
        torch.testing.assert_close(ours[..., 4:-4, 4:-4], ref[..., 4:-4, 4:-4], rtol=0, atol=1e-5)
        digits = torch.full((64, 1, 28, 28), fill)
        digits[..., 6:-6, 6:-6] = torch.rand(64, 1, 16, 16)  # turned 10 degrees, stays 4 px in
        frame = torch.ones(28, 28, dtype=torch.bool)
        frame[2:-2, 2:-2] = False
        moved = data.affine(digits, angles, fill, shifts, "bilinear")
        self.assertEqual(moved[..., frame].sub(fill).abs().max().item(), 0)
        nearest = data.affine(x, angles, fill, shifts)
        self.assertGreater((ours - nearest).abs().max(), 0.1)  # really another resampling
        between = (ours > 0.05) & (ours < 0.95)  # bilinear makes new grey levels
        self.assertGreater(between.sum(), (nearest > 0.05).logical_and(nearest < 0.95).sum())

    def test_classic_transform_takes_interpolation_and_elastic(self):
        steps = data.classic_transform(10, interpolation="bilinear").transforms
        self.assertEqual(steps[0].interpolation, TF.InterpolationMode.BILINEAR)
        steps = data.classic_transform(10, shift=2, interpolation="bilinear",
                                       elastic=(34.0, 4.0)).transforms
        self.assertEqual(steps[0].interpolation, TF.InterpolationMode.BILINEAR)
        self.assertIsInstance(steps[1], transforms.ElasticTransform)
        self.assertEqual((steps[1].alpha, steps[1].sigma), ([34.0, 34.0], [4.0, 4.0]))

    def test_elastic_fields_are_drawn_as_torchvision_draws_them(self):
        torch.manual_seed(5)
        ref = transforms.ElasticTransform.get_params([34.0, 34.0], [4.0, 4.0], [28, 28])
        ours = data.elastic_field(1, 34.0, 4.0, (28, 28), torch.Generator().manual_seed(5))
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)

    def test_elastic_deformation_matches_torchvision(self):
        x = self.images[:32]
        fields = data.elastic_field(32, 34.0, 4.0, (28, 28), torch.Generator().manual_seed(1))
        fill = 1 / 255
        ours = data.affine(x, torch.zeros(32), fill, displacement=fields)
        ref = torch.stack([TF.elastic_transform(img, d[None], TF.InterpolationMode.NEAREST,
                                                fill=[fill]) for img, d in zip(x, fields)])
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
        self.assertGreater((ours - x).abs().amax((1, 2, 3)).min(), 0.5)  # every digit deformed

    def test_both_loaders_shift_by_whole_pixels_up_to_the_limit(self):
        # with no rotation, every training image is its original moved by
        # (dx, dy) whole pixels, |dx|, |dy| <= 2, and some really are moved
        image = self.images[7:8]
        moves = {}
        for dx in range(-2, 3):
            for dy in range(-2, 3):
                moves[dx, dy] = TF.affine(image[0], 0.0, [dx, dy], 1.0, [0.0, 0.0],
                                          fill=[data.FILL / 255])
        loader = data.DeviceLoader(image.expand(400, 1, 28, 28), self.labels[:400], 400,
                                   torch.device("cpu"), shuffle=True, shift=2, seed=0)
        device_out = next(iter(loader))[0] * data.STD + data.MEAN
        pil = Image.fromarray((image[0, 0] * 255).round().to(torch.uint8).numpy())
        transform = data.classic_transform(0, shift=2)
        classic_out = torch.stack([transform(pil) for _ in range(100)]) * data.STD + data.MEAN
        for name, out in (("device", device_out), ("classic", classic_out)):
            seen = set()
            for img in out:
                match = [m for m, ref in moves.items() if (img - ref).abs().max() < 2e-3]
                self.assertEqual(len(match), 1, name)
                seen.add(match[0])
            self.assertGreater(len(seen), 10, name)  # 25 possible moves, many drawn

    def test_device_loader_yields_every_image_once_per_epoch(self):
        n = len(self.labels)
        ids = torch.arange(n, dtype=torch.float32)
        images = ids.view(n, 1, 1, 1).expand(n, 1, 28, 28)  # each image carries its index
        loader = data.DeviceLoader(images * data.STD + data.MEAN, self.labels, 128,
                                   torch.device("cpu"), shuffle=True, seed=3)
        self.assertEqual(len(loader), len(DataLoader(TensorDataset(self.labels), batch_size=128)))
        epochs = []
        for _ in range(2):
            seen = torch.cat([x[:, 0, 0, 0] for x, _ in loader]).round().long()
            self.assertEqual(sorted(seen.tolist()), list(range(n)))
            epochs.append(seen)
        self.assertFalse(torch.equal(epochs[0], epochs[1]))  # reshuffled

    def test_device_loader_labels_follow_images(self):
        loader = data.DeviceLoader(self.images, self.labels, 1000, torch.device("cpu"),
                                   shuffle=True, seed=0)
        x, y = next(iter(loader))
        raw = x * data.STD + data.MEAN
        diff = (self.images.view(len(self.images), -1) - raw[0].view(1, -1)).abs()
        match = diff.max(1).values < 1e-5
        self.assertEqual(self.labels[match][0], y[0])

    def test_corrupt_raw_file_is_named(self):
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "MNIST" / "raw"
            raw.mkdir(parents=True)
            (raw / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
            with self.assertRaisesRegex(data.DataError, "train-labels-idx1-ubyte.gz.*MD5"):
                data.prepare_mnist(tmp)


class TestTraining(unittest.TestCase):
    def test_a_few_steps_lower_the_loss(self):
        data.prepare_mnist(DATA_DIR)
        train, test = data.device_loaders(DATA_DIR, 128, 15, torch.device("cpu"), seed=1)
        cpu = torch.device("cpu")
        for name, lr in (("sgd", 0.05), ("adam", 0.01)):
            with self.subTest(name):
                torch.manual_seed(0)
                net = model.Net6()
                before, _, _ = evaluate(net, test, cpu, max_batches=2)
                optimizer, _ = make_optimizer(net, lr, 0.9, "none", 0, 1, 1, name=name)
                self.assertEqual(type(optimizer).__name__.lower(), name)
                loss, acc = train_epoch(net, train, optimizer, None, cpu, max_batches=40)
                after, correct, seen = evaluate(net, test, cpu, max_batches=2)
                self.assertTrue(math.isfinite(loss))
                self.assertLess(after, before * 0.7)
                self.assertGreater(correct / seen, 0.5)

    def test_label_smoothing_loss(self):
        # with lr 0 nothing moves, so the reported loss is the loss of these
        # weights: (1 - e) * NLL + e * mean over the 10 classes of -log p
        cpu = torch.device("cpu")
        torch.manual_seed(0)
        net = model.Net7()
        images, labels = self.images_and_labels()
        loader = [(images, labels)]
        for e in (0.0, 0.1):
            optimizer, _ = make_optimizer(net, 0.0, 0.0, "none", 0, 1, 1)
            loss, _ = train_epoch(net, loader, optimizer, None, cpu, label_smoothing=e)
            net.train()
            log_p = net(images).detach()
            nll = -log_p[torch.arange(len(labels)), labels].mean()
            expected = (1 - e) * nll - e * log_p.mean()
            self.assertAlmostEqual(loss, expected.item(), places=5)

    def images_and_labels(self):
        data.prepare_mnist(DATA_DIR)
        images, labels = data.load_tensors(DATA_DIR, train=True)
        return (images[:256] - data.MEAN) / data.STD, labels[:256]

    def test_ema_averages_weights_and_batchnorm_stats_after_every_step(self):
        data.prepare_mnist(DATA_DIR)
        cpu = torch.device("cpu")
        train, _ = data.device_loaders(DATA_DIR, 32, 0, cpu, seed=1)
        def states_after(steps, decay=None):
            torch.manual_seed(0)
            net = model.Net7()
            optimizer, _ = make_optimizer(net, 0.05, 0.9, "none", 0, 1, 1)
            ema = make_ema(net, decay)
            train.generator.manual_seed(1)  # the same batches in every call
            train_epoch(net, train, optimizer, None, cpu, max_batches=steps, ema=ema)
            return (ema.module if ema else net).state_dict()
        first, second = states_after(1), states_after(2)
        averaged = states_after(2, decay=0.25)
        for name in ("layers.0.weight", "layers.1.running_mean", "layers.1.running_var"):
            # the first update copies the weights, the second blends: 0.25 old + 0.75 new
            expected = 0.25 * first[name] + 0.75 * second[name]
            self.assertFalse(torch.allclose(first[name], second[name]), name)
            torch.testing.assert_close(averaged[name], expected, msg=name)


if __name__ == "__main__":
    unittest.main()
