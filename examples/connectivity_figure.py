#!/usr/bin/env python
"""The paper's connectivity figure on the embedded data: LMC, LMCP and QMC side by side.

For each base seed (default 0, 1, 2) trains a cue model and an independent clean reference (its own
initialisation and batch order: ``base.pairing: independent``), then measures every path kind between
the cue model and its clean reference (different mechanisms) and, for consecutive seeds, between the
two clean references (the control pair: same mechanism, different seeds). Prints the loss barriers
(nats) and accuracy barriers (fraction) per pair, kind and view as the mean over seeds with its seed
interval, and writes the first seed's connectivity figures: loss and accuracy along α per view, and
the invariance metrics along α, one curve per kind.

The paper's reading: models with different mechanisms are not linearly connected, not even after
aligning their units (LMC and LMCP barriers), while a quadratic path (QMC) can connect them with
low loss but changes the model's invariances on the way; the control pair is far better connected.

    python examples/connectivity_figure.py [--seeds 0 1 2] [--out DIR] [--cpu] [--threads N]

Figures go to ``studies/connectivity_figures/`` below the current folder by default (``/studies/``
is ignored by git in this repository). No Ray, no Optuna: the library's plain functions only.
"""
from __future__ import annotations

import argparse
import dataclasses
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
from mmc_sweep.analysis.seeds import HI, LO, interval  # noqa: E402
from mmc_sweep.config import CLEAN_STREAM, DataSpec, ModelSpec, PathSpec, TrainSpec  # noqa: E402
from mmc_sweep.data import CueTask, build_task  # noqa: E402
from mmc_sweep.experiment import measure_paths, pick_device, train_base  # noqa: E402
from mmc_sweep.models import CueModel  # noqa: E402

DATA = DataSpec()  # embedded shapes, box cue on 80% of the 20,000 16-px training images
MODEL = ModelSpec()  # small_cnn
TRAIN = TrainSpec(epochs=8)
KINDS = ("linear", "lmcp", "qmc")
PATHS = PathSpec(kinds=KINDS)  # 11 alphas, 4 views; QMC midpoint: 4 epochs on cue data, random init
WHO = {"cue_to_clean": "cue model vs its independent clean reference",
       "clean_to_clean": "control: the clean references of two seeds"}


def barrier_rows(per_seed: list[dict[str, float]]) -> list[dict]:
    """One row per pair and kind: the mean over seeds of ``barrier_loss_<view>`` (nats) and
    ``barrier_acc_<view>`` (fraction), each with its seed interval (``_lo``, ``_hi``) and ``n``."""
    rows = []
    for path in WHO:
        for kind in KINDS:
            row: dict = {"pair": path, "kind": kind}
            columns = {f"{t}_{v}": barrier_column(t, kind, path, v) for t in ("barrier_loss", "barrier_acc")
                       for v in PATHS.views}
            for name, column in columns.items():
                values = [m[column] for m in per_seed if column in m]
                row["n"] = len(values)
                row[name] = sum(values) / len(values)
                row[name + LO], row[name + HI] = interval(values)
            rows.append(row)
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="base seeds (one pair each)")
    parser.add_argument("--out", type=Path, default=Path("studies") / "connectivity_figures",
                        help="folder of the figures (default: studies/connectivity_figures)")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even when CUDA is available")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's, one per core); 1 is much faster while another "
                             "process keeps a core busy")
    return parser.parse_args()


def train_models(task: CueTask, seeds: list[int], device: torch.device, console: Console) -> dict[str, CueModel]:
    """``cue_s<seed>`` and ``clean_s<seed>`` (the independent clean reference) for every seed, 8 epochs each."""
    models = {}
    for seed in seeds:
        for kind, stream in (("cue", ""), ("clean", CLEAN_STREAM)):
            t0 = time.perf_counter()
            spec = dataclasses.replace(TRAIN, seed=seed, stream=stream)
            models[f"{kind}_s{seed}"] = train_base(task, kind, MODEL, spec, device)
            console.print(f"trained {kind} model of seed {seed} in {time.perf_counter() - t0:.1f} s")
    return models


def main() -> int:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started, console = time.perf_counter(), Console()
    device = pick_device(use_cuda=not args.cpu)
    task = build_task(DATA, device)
    models = train_models(task, args.seeds, device, console)

    t0 = time.perf_counter()
    per_seed, first_rows = [], None
    for i, seed in enumerate(args.seeds):
        pairs = {"cue_to_clean": (models[f"cue_s{seed}"], models[f"clean_s{seed}"])}
        if i + 1 < len(args.seeds):
            pairs["clean_to_clean"] = (models[f"clean_s{seed}"], models[f"clean_s{args.seeds[i + 1]}"])
        metrics, rows = measure_paths(task, pairs, PATHS, seed=seed)
        per_seed.append(metrics)
        first_rows = rows if first_rows is None else first_rows
    console.print(f"measured {len(KINDS)} path kinds between {sum(len(m) > 0 for m in per_seed)} seeds' pairs "
                  f"in {time.perf_counter() - t0:.1f} s")
    table = barrier_rows(per_seed)
    print_rich([Block("Barriers per pair, path kind and view: mean over seeds, with their range", tuple(table[0]), tuple(table),
                      caption="loss: loss barrier, nats; acc: accuracy barrier, fraction "
                              "(max over α of the loss above / accuracy below the straight line between the ends)",
                      notes=(f"BatchNorm reset: {PATHS.bn_reset.label}; {PATHS.alphas} points per path; "
                             f"seeds {args.seeds}, independent pairs; n = pairs averaged",))],
               [], sys.stdout)

    args.out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(first_rows)
    first, second = args.seeds[0], args.seeds[1] if len(args.seeds) > 1 else None
    ends = {"cue_to_clean": (f"cue model (seed {first})", f"clean model (seed {first}, own stream)"),
            "clean_to_clean": (f"clean model (seed {first})", f"clean model (seed {second})")}
    for path in frame["path"].unique():
        title = pair_title(path, WHO[path], ends[path])
        file = connectivity_figure(frame[frame["path"] == path], title, args.out / f"connectivity_{path}.png", Size())
        console.print(f"wrote {file}")
    threads = torch.get_num_threads()
    console.print(f"total wall time {time.perf_counter() - started:.1f} s ({device}, {threads} torch threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
