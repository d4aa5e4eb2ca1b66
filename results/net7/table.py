"""The tables of results/net7/README.md (the Net7 search): candidates, the
ways to test one run (eval_variants.py), F5 (fit_probe.py) and the paired
averages of rounds 9-10, from their histories here: `python results/net7/table.py`."""
import json
import statistics
from pathlib import Path

HERE = Path(__file__).parent
# file stem, what it is (relative to the candidates above it)
CANDIDATES = [
    ("a_base", "a: two max-pools, 10 channels (1→8→10, pool, 10→10→10, pool, 10→10), "
               "GAP 7x7, ±15°, batch 128"),
    ("c_poolearly_rot10", "c: pool after the first conv, 12 channels, GAP 7x7, ±10°, batch 128 "
                          "(stopped after 6 epochs, behind g at each one)"),
    ("g_net6at8ch_rot10", "g: Net6's layout at 8 channels, 16 in the last 3x3 conv, ±10°, "
                          "batch 128"),
    ("h_bs64_rot10", "h: g at batch 64"),
    ("i_rot5", "i: h at ±5°"),
    ("k_rot15", "k: h at ±15°"),
    ("j_maxlr005", "j: h with OneCycle peak 0.05"),
    ("m_bs32_maxlr005", "m: j at batch 32"),
    ("sep20", "sep20: h's layout at 20 channels, the 3x3 convs after the first made "
              "depthwise + 1x1"),
    ("wide_end", "wide_end: h with 18 channels in the last 3x3 conv"),
    ("n_ema0999", "n: h, tested on the weights' moving average, decay 0.999"),
    ("p_ema0998", "p: n with decay 0.998"),
    ("o_wide_end_ema0999", "o: wide_end with n's average (Net7 until ao)"),
    ("q_pct02", "q: o with OneCycle's peak at 20 % of the steps, not 30 %"),
    ("r_maxlr02", "r: o with OneCycle peak 0.2"),
    ("s_shift2", "s: o with a random shift of up to 2 pixels after the rotation"),
    ("wide10", "t: 10 channels, one 3x3 conv fewer (1→10→10, pool, 10→10→10→11), GAP 8x8, "
               "o's recipe (seed 1 only: behind o)"),
    ("padded14", "u: o's net with its three 8→8 convs after the pool padded (14x14), GAP 12x12 "
                 "(seed 1 only: behind o)"),
    ("wd5e-4", "v: o with weight decay 5e-4"),
    ("adam0.01", "w: o with Adam, OneCycle peak 0.01"),
    ("adam0.003", "x: w with peak 0.003 (seed 1 only: behind w)"),
    ("bs32", "y: o at batch 32 (seed 1 only: behind o)"),
    ("z_rot7", "z: o at ±7°"),
    ("bilinear", "aa: o with the rotated images resampled bilinearly, not nearest"),
    ("ls0.1", "ab: o with label smoothing 0.1"),
    ("residual", "ac: o's net with a residual (input cropped by a pixel) around each of its "
                 "three 8→8 convs after the pool"),
    ("inverted", "ad: o's net with those three convs as MobileNetV2 inverted residual blocks, "
                 "8→20→8 around a depthwise 3x3"),
    ("elastic50-5", "ae: o with an elastic deformation after the rotation "
                    "(torchvision's ElasticTransform defaults, alpha 50, sigma 5)"),
    ("silu", "af: o's net with SiLU in place of every ReLU"),
    ("deep8", "ag: Net6's layout at 8 channels (five unpadded convs after the pool, 11 "
              "channels in the last, GAP 4x4, receptive field 26), o's recipe"),
    ("wide25", "ah: o's net with one 8→8 conv fewer and 25 channels in the last conv "
               "(GAP 8x8, receptive field 18)"),
    ("variants/o", "ai: o again, each run on one thread (OMP_NUM_THREADS=1): the same recipe "
                   "and seeds, floats summed in another order"),
    ("scale0.1", "aj: o with a random zoom by a factor in [0.9, 1.1] with the rotation"),
    ("shared10", "ak: o's layout at 10 channels, its three convs after the pool one 10→10 "
                 "conv used three times (a BatchNorm for each use), 19 channels in the last"),
    ("shared10x4", "al: ak with the shared conv used four times (GAP 4x4, receptive field 26)"),
    ("fact10", "an: o's layout at 10 channels, every 3x3 conv after the first made a 3x1 "
               "then a 1x3 conv (BatchNorm and ReLU after each), 20 channels at the end"),
    ("sep21", "**ao: sep20 at 21 channels, with o's recipe (the weights' average) (Net7 "
              "until round 11)**"),
    ("sep21_end26", "ap: ao with 26 channels out of its last separable conv"),
    ("net6_val", "am: the original's Net6, over the budget, under step 7's recipe (to calibrate "
                 "the split: on the test set it holds the target on 5 of 5 seeds)"),
    # round 5: every run with --channels-last, and ao's seeds 3-4 too
    ("sep21_v1", "aq: ao with BatchNorm and ReLU after each depthwise conv after the pool as "
                 "well (MobileNet v1's separable conv)"),
    ("sep19_deep", "ar: ao's layout at 19 channels with a fifth separable conv after the pool "
                   "(GAP 4x4, receptive field 26)"),
    ("sep21_res", "as: ao with a residual (input cropped by a pixel) around each separable "
                  "conv after the pool"),
    ("sep21_maxlr0.2", "at: ao with OneCycle peak 0.2"),
    ("sep21_maxlr0.05", "au: ao with OneCycle peak 0.05"),
    ("sep30_shuffle3", "av: ao's layout at 30 channels, its 1x1 convs in 3 groups, each "
                       "followed by a channel shuffle (ShuffleNet v1)"),
    ("sep23_linear_end", "aw: ao's layout at 23 channels, the last separable conv giving the 10 "
                         "class scores itself (no BatchNorm or ReLU), GAP after it"),
    ("sep22_end16", "ax: ao at 22 channels, 16 out of its last separable conv"),
    ("sep21_bs32", "ay: ao at batch 32"),
    # round 6: the net changed only, judged on T5 (round6_plan.txt)
    ("sep16_24", "az: ao with 16 channels before the pool and 24 after"),
    ("sep14_25", "ba: 14 channels before the pool, 25 after"),
    ("sep20_first5", "bb: ao at 20 channels with a 5x5 first conv (receptive field 24)"),
    ("sep24_dw5", "bc: 24 channels, after the pool two separable convs with 5x5 depthwise "
                  "filters instead of four 3x3 ones"),
    ("sep21_v1_end16", "bd: aq's separable convs after the pool with 16 out of the last (as ax)"),
]


def last5(accs):
    return f"{statistics.mean(accs[-5:]):.2f} / {min(accs[-5:]):.2f}" if len(accs) >= 15 else ""


def main():
    print("| candidate | params | val acc, epochs 1 / 5 / 10 / 15 (seed 1) | best val | "
          "last 5 mean / min, seed 1 | the same, seeds 2, 3, 4 | mean of the last-5 means "
          "(seeds) | train acc, last epoch | the same, mean over the seeds | train acc, epochs "
          "11–15, mean over them and the seeds (round 6's T5) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for stem, what in CANDIDATES:
        runs, train_accs, train_last5 = {}, [], []
        for seed in (1, 2, 3, 4):
            path = HERE / f"{stem}_seed{seed}.json"
            if path.exists():
                epochs = json.loads(path.read_text())["epochs"]
                runs[seed] = [e["test_acc"] for e in epochs]
                if len(epochs) >= 15:
                    train_accs.append(epochs[-1]["train_acc"])
                    train_last5.append(statistics.mean(e["train_acc"] for e in epochs[10:15]))
        h = json.loads((HERE / f"{stem}_seed1.json").read_text())
        accs = runs[1]
        marks = " / ".join(f"{accs[i]:.2f}" if i < len(accs) else "–" for i in (0, 4, 9, 14))
        others = "; ".join(last5(runs[seed]) for seed in (2, 3, 4) if seed in runs)
        full = [statistics.mean(a[-5:]) for a in runs.values() if len(a) >= 15]
        mean = f"{statistics.mean(full):.2f} ({len(full)})" if full else ""
        train_mean = (f"{statistics.mean(train_accs):.2f} ({len(train_accs)})"
                      if train_accs else "")
        t5 = (f"{statistics.mean(train_last5):.2f} ({len(train_last5)})"
              if train_last5 else "")
        print(f"| {what} | {h['params']:,} | {marks} | {max(accs):.2f} | {last5(accs)} "
              f"| {others} | {mean} | {h['epochs'][-1]['train_acc']:.2f} | {train_mean} | {t5} |")


VARIANTS = [  # key in variants/o_seed<N>_variants.json, what it is
    ("ema", "the weights' average, decay 0.999, its BatchNorm statistics averaged too (step 7)"),
    ("recal_clean", "the same weights, BatchNorm statistics recomputed on 20,000 training "
                    "images, unaugmented"),
    ("recal_aug", "the same, on 20,000 training images rotated as for training"),
    ("ema0.9995", "an average with decay 0.9995 (about 2,000 steps)"),
    ("ema0.9995_recal_clean", "the same, BatchNorm statistics recomputed, unaugmented"),
    ("ema0.9998", "an average with decay 0.9998 (about 5,000 steps)"),
    ("ema0.9998_recal_clean", "the same, BatchNorm statistics recomputed, unaugmented"),
]


def variants():
    runs = {}
    for seed in (1, 2, 3, 4):
        path = HERE / "variants" / f"o_seed{seed}_variants.json"
        if path.exists():
            runs[seed] = json.loads(path.read_text())
    print("| tested net, one training run per seed | "
          + " | ".join(f"last 5 mean / min, seed {s}" for s in runs) + " |")
    print("|---|" + "---|" * len(runs))
    for key, what in VARIANTS:
        print(f"| {what} | "
              + " | ".join(last5([e[key] for e in epochs]) for epochs in runs.values()) + " |")


FIT = [  # stem in fit/ (fit_probe.py), what it is
    # round 7 (round7_plan.txt): the references, then the schedule
    ("ao", "ao (Net7 until round 11)"),
    ("net6", "Net6 under step 7's recipe (am)"),
    ("pct0.15", "ao with OneCycle's peak at 15 % of the steps"),
    ("pct0.2", "ao with OneCycle's peak at 20 % of the steps"),
    # round 8 (round8_plan.txt)
    ("sep14_25", "ba: 14 channels before the pool, 25 after"),
    ("sep16_24", "az: 16 channels before the pool, 24 after"),
    ("ax", "ax: ao at 22 channels, 16 out of its last separable conv"),
    ("aq", "aq: MobileNet v1's separable convs after the pool"),
    ("lr0.2", "ao with OneCycle peak 0.2"),
    ("bs32", "ao at batch 32"),
    ("ema0.998", "ao tested on an average with decay 0.998"),
    ("ema0.9995", "ao tested on an average with decay 0.9995"),
    ("wd1e-4", "ao with weight decay 1e-4"),
    ("adam0.01", "ao with Adam, OneCycle peak 0.01"),
    # reported only, after round 8: nets whose test results are known
    ("ap", "ap (test: held on 4 of 5 seeds)"),
    ("o", "o, Net7 before ao (test: held on 0 of 5 seeds)"),
]


def fit():
    """Rounds 7-8: F5, the tested net on the unaugmented training images."""
    print("| run | params | F5 by seed | F5, mean | V (last-5 mean), mean | T5, mean |")
    print("|---|---|---|---|---|---|")
    for stem, what in FIT:
        f5, v, t5, params = [], [], [], None
        for seed in range(1, 6):
            path = HERE / "fit" / f"{stem}_seed{seed}.json"
            fit_path = HERE / "fit" / f"{stem}_seed{seed}_fit.json"
            if not (path.exists() and fit_path.exists()):
                continue
            h = json.loads(path.read_text())
            fits = json.loads(fit_path.read_text())
            if len(h["epochs"]) < 15 or len(fits) < 5:
                continue
            params = h["params"]
            f5.append(statistics.mean(e["train_fit_acc"] for e in fits))
            v.append(statistics.mean(e["test_acc"] for e in h["epochs"][10:15]))
            t5.append(statistics.mean(e["train_acc"] for e in h["epochs"][10:15]))
        if f5:
            print(f"| {what} | {params:,} | {', '.join(f'{x:.3f}' for x in f5)} "
                  f"| {statistics.mean(f5):.3f} ({len(f5)}) | {statistics.mean(v):.2f} "
                  f"| {statistics.mean(t5):.2f} |")


ROUND9 = [  # stem in fit/, what it is (round9_plan.txt)
    ("r9_ao", "ao (Net7 until round 11)"),
    ("r9_lr0.2", "ao, OneCycle peak 0.2"),
    ("r9_lr0.3", "ao, OneCycle peak 0.3"),
    ("r9_ba_lr0.2", "ba (14 channels before the pool, 25 after), peak 0.2"),
    ("r9_net6", "Net6 under step 7's recipe (reported only)"),
    ("r11_ba_lr0.2_pct0.15", "round 11: ba, peak 0.2 at 15 % of the steps (Net7, step 7, at 0.997)"),
]
DECAYS = ("0.999", "0.998", "0.997", "0.995")  # the run's own average first


def paired():
    """Round 9: each run's own average (0.999) and the extra ones kept beside it."""
    print("| recipe | params | average's decay | F5 by seed | F5, mean | F5 at epoch 11, mean "
          "| V (last-5 mean), mean |")
    print("|---|---|---|---|---|---|---|")
    for stem, what in ROUND9:
        runs = []
        for seed in range(1, 6):
            fit_path = HERE / "fit" / f"{stem}_seed{seed}_fit.json"
            fits = json.loads(fit_path.read_text()) if fit_path.exists() else []
            if len(fits) == 5:
                h = json.loads((HERE / "fit" / f"{stem}_seed{seed}.json").read_text())
                runs.append((h, fits))
        if not runs:
            continue
        for decay in DECAYS:
            f5, f11, v = [], [], []
            for h, fits in runs:
                if decay == DECAYS[0]:
                    fit_accs = [e["train_fit_acc"] for e in fits]
                    val_accs = [e["test_acc"] for e in h["epochs"][10:15]]
                else:
                    fit_accs = [e["extra"][decay]["train_fit_acc"] for e in fits]
                    val_accs = [e["extra"][decay]["val_acc"] for e in fits]
                f5.append(statistics.mean(fit_accs))
                f11.append(fit_accs[0])
                v.append(statistics.mean(val_accs))
            print(f"| {what} | {runs[0][0]['params']:,} | {decay} | {', '.join(f'{x:.3f}' for x in f5)} "
                  f"| {statistics.mean(f5):.3f} ({len(f5)}) | {statistics.mean(f11):.3f} "
                  f"| {statistics.mean(v):.2f} |")


if __name__ == "__main__":
    main()
    print()
    variants()
    print()
    fit()
    print()
    paired()
