#!/usr/bin/env python
"""The paper's connectivity figure on the embedded data: LMC, LMCP and QMC side by side, in ~3 CPU minutes.

Trains a cue model (seed 0) and two clean models (seeds 0 and 1), then measures every path kind
between three pairs: the cue model and each clean model (different mechanisms), and the two clean
models (the control: same mechanism, different seeds). Prints the loss barriers (nats) and the
accuracy barriers (fraction) per pair, kind and view, and writes one connectivity figure per pair:
loss and accuracy along α per view, and the invariance metrics along α, one curve per kind.

The paper's reading: models with different mechanisms are not linearly connected, not even after
aligning their units (LMC and LMCP barriers), while a quadratic path (QMC) can connect them with
low loss but changes the model's invariances on the way; the control pair is far better connected.

    python examples/connectivity_figure.py [--out DIR] [--cpu] [--threads N]

Figures go to ``studies/connectivity_figures/`` below the current folder by default (``/studies/``
is ignored by git in this repository). No Ray, no Optuna: the library's plain functions only.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402

from mmc_sweep.analysis.columns import barrier_column  # noqa: E402
from mmc_sweep.analysis.figures import Size, connectivity_figure, pair_title  # noqa: E402
from mmc_sweep.analysis.render import Block, print_rich  # noqa: E402
from mmc_sweep.config import DataSpec, ModelSpec, PathSpec, TrainSpec  # noqa: E402
from mmc_sweep.data import CueTask, build_task  # noqa: E402
from mmc_sweep.experiment import measure_paths, pick_device, train_base  # noqa: E402
from mmc_sweep.models import CueModel  # noqa: E402

DATA = DataSpec()  # embedded shapes, box cue on 80% of the 20,000 16-px training images
MODEL = ModelSpec()  # small_cnn
KINDS = ("linear", "lmcp", "qmc")
PATHS = PathSpec(kinds=KINDS)  # 11 alphas, 4 views; QMC midpoint: 4 epochs on cue data, random init
# path name: (model at α = 0, model at α = 1, who the pair is)
PAIRS = {
    "cue_to_clean": ("cue", "clean_s0", "cue model vs clean model, same seed"),
    "cue_to_clean_s1": ("cue", "clean_s1", "cue model vs clean model of another seed"),
    "clean_to_clean": ("clean_s0", "clean_s1", "control: two clean models of different seeds"),
}
# model name: (base kind, training seed)
MODELS = {"cue": ("cue", 0), "clean_s0": ("clean", 0), "clean_s1": ("clean", 1)}
END_NAMES = {"cue": "cue model (seed 0)", "clean_s0": "clean model (seed 0)", "clean_s1": "clean model (seed 1)"}


def barrier_rows(metrics: dict[str, float]) -> list[dict]:
    """One row per pair and kind: ``barrier_loss_<view>`` (nats) and ``barrier_acc_<view>`` (fraction)."""
    rows = []
    for path in PAIRS:
        for kind in KINDS:
            row: dict = {"pair": path, "kind": kind}
            for barrier_type in ("barrier_loss", "barrier_acc"):
                for view in PATHS.views:
                    row[f"{barrier_type}_{view}"] = metrics[barrier_column(barrier_type, kind, path, view)]
            rows.append(row)
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("studies") / "connectivity_figures",
                        help="folder of the figures (default: studies/connectivity_figures)")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even when CUDA is available")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's, one per core); 1 is much faster while another "
                             "process keeps a core busy")
    return parser.parse_args()


def train_models(task: CueTask, device: torch.device, console: Console) -> dict[str, CueModel]:
    """The cue model and the two clean models of :data:`MODELS` (8 epochs each)."""
    models = {}
    for name, (kind, seed) in MODELS.items():
        t0 = time.perf_counter()
        models[name] = train_base(task, kind, MODEL, TrainSpec(epochs=8, seed=seed), device)
        console.print(f"trained {name} ({kind} data, seed {seed}) in {time.perf_counter() - t0:.1f} s")
    return models


def main() -> int:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started, console = time.perf_counter(), Console()
    device = pick_device(use_cuda=not args.cpu)
    task = build_task(DATA, device)
    models = train_models(task, device, console)

    t0 = time.perf_counter()
    pairs = {path: (models[a], models[b]) for path, (a, b, _) in PAIRS.items()}
    metrics, rows = measure_paths(task, pairs, PATHS)
    console.print(f"measured {len(KINDS)} path kinds between {len(PAIRS)} pairs in {time.perf_counter() - t0:.1f} s")
    table = barrier_rows(metrics)
    print_rich([Block("Barriers per pair, path kind and view", tuple(table[0]), tuple(table),
                      caption="loss: loss barrier, nats; acc: accuracy barrier, fraction "
                              "(max over α of the loss above / accuracy below the straight line between the ends)",
                      notes=(f"BatchNorm reset: {PATHS.bn_reset.label}; {PATHS.alphas} points per path",))],
               [], sys.stdout)

    args.out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    for path, (a, b, who) in PAIRS.items():
        title = pair_title(path, who, (END_NAMES[a], END_NAMES[b]))
        file = connectivity_figure(frame[frame["path"] == path], title, args.out / f"connectivity_{path}.png", Size())
        console.print(f"wrote {file}")
    threads = torch.get_num_threads()
    console.print(f"total wall time {time.perf_counter() - started:.1f} s ({device}, {threads} torch threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
