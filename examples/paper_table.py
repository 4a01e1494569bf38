#!/usr/bin/env python
"""The paper's method table on the embedded data, end to end in a few CPU minutes.

Trains a cue model and a clean reference, fine-tunes the cue model with naive FT, LLRT, LPFT and
CBFT on a small clean subset, and prints one row per model: accuracy on the four counterfactual
views, cue reliance, and the loss barrier on cue data along the linear path from the cue model.

    python examples/paper_table.py [--n-clean 500] [--cpu]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from rich.console import Console
from rich.table import Table

from mmc_sweep.config import DataSpec, FinetuneSpec, ModelSpec, PathSpec, TrainSpec
from mmc_sweep.data import build_task
from mmc_sweep.experiment import finetune_cue_model, measure_paths, pick_device, train_base
from mmc_sweep.metrics import view_metrics

DATA = DataSpec(dataset="shapes", cue="box", cue_proportion=0.8, seed=0)
MODEL = ModelSpec(arch="small_cnn")
TRAIN = TrainSpec(epochs=8, lr=0.05, seed=0)
# every method gets the same clean subset, learning rate and epochs (FinetuneSpec's defaults)
FINETUNE = FinetuneSpec(n_clean=500, seed=0)
METHODS = ("naive_ft", "llrt", "lpft", "cbft")
PATHS = PathSpec(alphas=11, views=("cue",))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-clean", type=int, default=FINETUNE.n_clean, help="clean images for fine-tuning")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even when CUDA is available")
    args = parser.parse_args()
    console = Console()
    device = pick_device(use_cuda=not args.cpu)
    started = time.perf_counter()

    task = build_task(DATA, device)
    console.print(f"data: {len(task.train)} train / {len(task.views['clean'])} test images on {device}")
    models = {}
    for kind in ("cue", "clean"):
        t0 = time.perf_counter()
        models[kind] = train_base(task, kind, MODEL, TRAIN, device)
        console.print(f"trained {kind} model in {time.perf_counter() - t0:.1f} s")
    for method in METHODS:
        t0 = time.perf_counter()
        spec = dataclasses.replace(FINETUNE, method=method, n_clean=args.n_clean)
        models[method] = finetune_cue_model(task, models["cue"], spec)
        console.print(f"fine-tuned {method} in {time.perf_counter() - t0:.1f} s")

    table = Table(
        title=f"Cue model vs fine-tuning methods ({DATA.dataset} / {DATA.cue} cue, n_clean={args.n_clean})",
        caption="acc: accuracy (%) on each view; reliance: cue_reliance (0 = ignores the cue); "
        "barrier: loss barrier (nats) on cue data, linear path from the cue model",
    )
    for column in ("model", "clean", "cue", "rand_cue", "rand_img", "reliance", "barrier"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, model in models.items():
        m = view_metrics(model, task.views)
        paths, _ = measure_paths(task, {"cue_to_model": (models["cue"], model)}, PATHS)
        table.add_row(
            name if name in METHODS else f"{name} model",
            *(f"{100 * m[f'acc_{v}']:.1f}" for v in ("clean", "cue", "rand_cue", "rand_img")),
            f"{m['cue_reliance']:.3f}",
            f"{paths['barrier_loss_cue_to_model_cue']:.3f}",
        )
    console.print(table)
    console.print(f"total {time.perf_counter() - started:.0f} s on {device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
