#!/usr/bin/env python
"""The paper's method table on the embedded data, end to end in a few CPU minutes.

For each base seed (default 0, 1, 2): trains a cue model and an independent clean reference (its own
initialisation and batch order: ``base.pairing: independent``), fine-tunes the cue model with naive
FT, LLRT, LPFT and CBFT on the same 500 clean images, and measures every model: accuracy on the four
counterfactual views, cue reliance, and the loss barrier on cue data along the straight line from the
cue model. Prints one row per model: the mean over the seeds with its seed interval [lo, hi]
(mmc_sweep.analysis.seeds: min–max below four seeds, else a 95 % t-interval).

    python examples/paper_table.py [--seeds 0 1 2] [--n-clean 500] [--cpu]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from mmc_sweep.analysis.seeds import INTERVAL_RULE, interval  # noqa: E402
from mmc_sweep.config import CLEAN_STREAM, DataSpec, FinetuneSpec, ModelSpec, PathSpec, TrainSpec  # noqa: E402
from mmc_sweep.data import build_task  # noqa: E402
from mmc_sweep.experiment import finetune_cue_model, measure_paths, pick_device, train_base  # noqa: E402
from mmc_sweep.metrics import view_metrics  # noqa: E402

DATA = DataSpec(dataset="shapes", cue="box", cue_proportion=0.8, seed=0)
MODEL = ModelSpec(arch="small_cnn")
TRAIN = TrainSpec(epochs=8, lr=0.05)
# every method gets the same clean subset, learning rate and epochs (FinetuneSpec's defaults)
FINETUNE = FinetuneSpec(n_clean=500)
METHODS = ("naive_ft", "llrt", "lpft", "cbft")
PATHS = PathSpec(alphas=11, views=("cue",))
COLUMNS = ("acc_clean", "acc_cue", "acc_rand_cue", "acc_rand_img", "cue_reliance", "barrier")


def measure_seed(task, seed: int, n_clean: int, device, console: Console) -> dict[str, dict[str, float]]:
    """Model name -> its metrics (accuracies as fractions, cue reliance, barrier in nats) for one seed."""
    t0 = time.perf_counter()
    models = {"cue model": train_base(task, "cue", MODEL, dataclasses.replace(TRAIN, seed=seed), device),
              "clean model": train_base(task, "clean", MODEL,
                                        dataclasses.replace(TRAIN, seed=seed, stream=CLEAN_STREAM), device)}
    for method in METHODS:
        spec = dataclasses.replace(FINETUNE, method=method, n_clean=n_clean, seed=seed)
        models[method] = finetune_cue_model(task, models["cue model"], spec)
    out = {}
    for name, model in models.items():
        barriers, _ = measure_paths(task, {"p": (models["cue model"], model)}, PATHS)
        out[name] = {**view_metrics(model, task.views), "barrier": barriers["barrier_loss_p_cue"]}
    console.print(f"seed {seed}: trained, fine-tuned and measured in {time.perf_counter() - t0:.1f} s")
    return out


def cell(values: list[float], scale: float) -> str:
    mean = sum(values) / len(values)
    lo, hi = interval(values)
    return f"{scale * mean:.3f}" if lo != lo else f"{scale * mean:.3f} [{scale * lo:.3f}, {scale * hi:.3f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="base seeds (one pair each)")
    parser.add_argument("--n-clean", type=int, default=FINETUNE.n_clean, help="clean images for fine-tuning")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even when CUDA is available")
    args = parser.parse_args()
    console = Console()
    device = pick_device(use_cuda=not args.cpu)
    started = time.perf_counter()
    task = build_task(DATA, device)
    console.print(f"data: {len(task.train)} train / {len(task.views['clean'])} test images on {device}")
    per_seed = [measure_seed(task, seed, args.n_clean, device, console) for seed in args.seeds]

    table = Table(
        title=f"Cue model vs fine-tuning methods ({DATA.dataset} / {DATA.cue} cue, n_clean={args.n_clean}, "
              f"seeds {', '.join(map(str, args.seeds))}, independent pairs)",
        caption="acc: accuracy (fraction) on each view; cue_reliance: 0 = ignores the cue; barrier: loss barrier "
                f"(nats) on cue data, linear path from the cue model. {escape(INTERVAL_RULE)}",
    )
    for column in ("model",) + COLUMNS:
        table.add_column(column, justify="left" if column == "model" else "right")
    for name in per_seed[0]:
        table.add_row(name, *(cell([seed[name][c] for seed in per_seed], 1.0) for c in COLUMNS))
    console.print(table)
    console.print(f"total {time.perf_counter() - started:.0f} s on {device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
