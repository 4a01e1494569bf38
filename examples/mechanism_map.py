#!/usr/bin/env python
"""A mechanism map on the embedded data: which models share a mechanism, where the cue sits, and
whether fine-tuning removed it or only hid it. A few CPU minutes, no Ray.

Trains cue models at two cue proportions (two seeds each), two independent clean models, and
fine-tunes one cue model with naive FT, LLRT and CBFT on the same clean images. Then:

1. the connectivity matrix: the loss barrier between every pair of these models (straight line and,
   unless --quick, the permutation-aligned line), on the clean view and on rand_img (random images
   carrying their label's cue: the view that isolates the cue), and its mechanism groups — models
   merged while their average barrier stays below the same-mechanism scale, twice the barrier of the
   control pair (the two clean models: same mechanism, different seeds);
2. layer-wise barriers from the cue model to its naive-FT and CBFT models: the barrier when only one
   layer moves, which tells in which layers the two models differ on the cue view;
3. cue revival: each model re-trained on cue data for 1 .. 32 SGD steps, and how many steps bring
   half the cue model's cue reliance back.

The paper's reading (Lubana et al., ICML 2023): naive FT stays in the cue model's basin (same
mechanism, it keeps the cue), CBFT leaves it (another mechanism, the cue dropped). The last paragraph
printed says whether these numbers agree.

    python examples/mechanism_map.py [--out DIR] [--quick] [--cpu] [--threads N]

Figures go to ``mechanism_map/`` below the current folder by default: ``pairs.png`` (the matrix
heat maps with the groups), ``layers.png`` (layer-wise barriers), ``revival.png`` (cue reliance
against re-training steps).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from rich import box  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from mmc_sweep.analysis.figures import Size, revival_figure  # noqa: E402
from mmc_sweep.analysis.map_figures import layers_figure, pairs_figure  # noqa: E402
from mmc_sweep.analysis.mechanisms import (barrier_matrix, cue_layers, groups_table, mechanism_groups,  # noqa: E402
                                           same_mechanism_scale)
from mmc_sweep.config import (CLEAN_STREAM, AlignSpec, BaseModelSpec, BNResetSpec, DataSpec, FinetunedSpec, FinetuneSpec,  # noqa: E402
                              ModelSpec, PathSpec, RevivalSpec, TrainSpec)
from mmc_sweep.data import CueTask, build_task  # noqa: E402
from mmc_sweep.experiment import Pair, finetune_cue_model, measure_pair_layers, pick_device, train_base  # noqa: E402
from mmc_sweep.metrics import view_metrics  # noqa: E402
from mmc_sweep.models import CueModel  # noqa: E402
from mmc_sweep.pair_matrix import measure_matrix  # noqa: E402
from mmc_sweep.paths import EndpointRows, model_layers  # noqa: E402
from mmc_sweep.revival import revival_curve, revival_steps  # noqa: E402

DATA = DataSpec(dataset="shapes", cue="box", n_train=8000, n_test=500)  # cue_proportion: set per model
MODEL = ModelSpec(arch="small_cnn")
TRAIN = TrainSpec(epochs=6)
PROPORTIONS = (0.8, 1.0)  # cue proportions of the cue models (--proportions); the first one's seed-0 model is fine-tuned
SEEDS = (0, 1)
# n_clean a multiple of batch_size: whole batches, the same run whatever finetune.batching
FINETUNE = FinetuneSpec(n_clean=512, batch_size=64, epochs=10)
METHODS = ("naive_ft", "llrt", "cbft")
BN_RESET = BNResetSpec(batches=2)  # cumulative, 2 x 256 clean training images per point
PATHS = PathSpec(kinds=("linear", "lmcp"), alphas=5, views=("clean", "cue", "rand_img"), bn_reset=BN_RESET,
                 align=AlignSpec(batches=4))
LAYER_PATHS = PathSpec(kinds=("linear",), alphas=5, views=("clean", "cue", "rand_img"), bn_reset=BN_RESET)
REVIVAL = RevivalSpec(steps=(1, 2, 4, 8, 16, 32))
CUE_VIEW = "rand_img"  # the view that isolates the cue: cue_reliance comes from it
UNLIKE = 0.3  # cue reliances this far apart: two models that cannot share the cue mechanism
QUICK = {"data": dataclasses.replace(DATA, n_train=4000, n_test=500), "train": dataclasses.replace(TRAIN, epochs=4),
         "paths": dataclasses.replace(PATHS, kinds=("linear",), alphas=3)}


@dataclasses.dataclass
class Zoo:
    """The models of the map, by name, with what identifies and describes each one."""

    models: dict[str, CueModel] = dataclasses.field(default_factory=dict)
    keys: dict[str, BaseModelSpec | FinetunedSpec] = dataclasses.field(default_factory=dict)  # content keys
    labels: dict[str, str] = dataclasses.field(default_factory=dict)  # for tables and figures
    info: dict[str, dict] = dataclasses.field(default_factory=dict)  # method, cue_proportion

    def add(self, name: str, model: CueModel, key, label: str, method: str, proportion: float) -> None:
        self.models[name], self.keys[name], self.labels[name] = model, key, label
        self.info[name] = {"method": method, "cue_proportion": proportion}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("mechanism_map"), help="folder of the figures (default: mechanism_map)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller data, 4 training epochs, straight paths of 3 points only (about half the time)")
    parser.add_argument("--proportions", type=float, nargs=2, default=list(PROPORTIONS), metavar=("P1", "P2"),
                        help="cue proportions of the cue models; the seed-0 model of the first is fine-tuned (default: %(default)s)")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even when CUDA is available")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (default 0: torch's default, one per core; on cores shared with other "
                             "work, 1 is often much faster)")
    return parser.parse_args()


def train_zoo(data: DataSpec, train: TrainSpec, proportions: list[float], device: torch.device,
              console: Console) -> tuple[Zoo, CueTask, str]:
    """Cue models (every proportion and seed), clean models (every seed, own stream: independent of the
    cue models), and the first proportion's seed-0 cue model fine-tuned by every method. Returns the
    zoo, the task of the fine-tuned cue model (on which everything is measured) and its name."""
    zoo = Zoo()
    tasks = {p: build_task(dataclasses.replace(data, cue_proportion=p), device) for p in proportions}
    for p in proportions:
        for seed in SEEDS:
            t0, spec = time.perf_counter(), dataclasses.replace(train, seed=seed)
            model = train_base(tasks[p], "cue", MODEL, spec, device)
            name = f"cue{p:g}_s{seed}"
            zoo.add(name, model, BaseModelSpec("cue", tasks[p].spec, MODEL, spec), f"cue p={p:g} s{seed}", "base_cue", p)
            console.print(f"trained {zoo.labels[name]} in {time.perf_counter() - t0:.1f} s")
    task = tasks[proportions[0]]
    for seed in SEEDS:
        t0, spec = time.perf_counter(), dataclasses.replace(train, seed=seed, stream=CLEAN_STREAM)
        model = train_base(task, "clean", MODEL, spec, device)
        zoo.add(f"clean_s{seed}", model, BaseModelSpec("clean", task.spec, MODEL, spec), f"clean s{seed}", "base_clean", 0.0)
        console.print(f"trained clean s{seed} in {time.perf_counter() - t0:.1f} s")
    base = f"cue{proportions[0]:g}_s{SEEDS[0]}"
    for method in METHODS:
        t0, spec = time.perf_counter(), dataclasses.replace(FINETUNE, method=method, seed=SEEDS[0])
        model = finetune_cue_model(task, zoo.models[base], spec)
        zoo.add(method, model, FinetunedSpec(zoo.keys[base], spec), method, method, proportions[0])
        console.print(f"fine-tuned {zoo.labels[base]} with {method} in {time.perf_counter() - t0:.1f} s")
    return zoo, task, base


def print_models(zoo: Zoo, metrics: dict[str, dict], console: Console) -> None:
    table = Table(title="The models", caption="clean, rand_cue, rand_img: accuracy (fraction) on each view; cue "
                                              "reliance: 0 = ignores the cue, 1 = follows it (from rand_img)")
    for column in ("model", "method", "cue p", "clean", "rand_cue", "rand_img", "cue reliance"):
        table.add_column(column, justify="left" if column in ("model", "method") else "right", no_wrap=column == "model")
    for name, m in metrics.items():
        table.add_row(zoo.labels[name], zoo.info[name]["method"], f"{zoo.info[name]['cue_proportion']:g}",
                      *(f"{m[c]:.3f}" for c in ("acc_clean", "acc_rand_cue", "acc_rand_img", "cue_reliance")))
    console.print(table)


def control_barriers(rows: pd.DataFrame, a: str, b: str) -> dict[tuple[str, str], float]:
    """(kind, view) -> the control pair's loss barrier (nats)."""
    pair = rows[((rows["model_a"] == a) & (rows["model_b"] == b)) | ((rows["model_a"] == b) & (rows["model_b"] == a))]
    return {(k, v): float(x) for k, v, x in zip(pair["kind"], pair["view"], pair["barrier_loss"])}


def print_matrix(rows: pd.DataFrame, zoo: Zoo, kind: str, view: str, scale: float, console: Console) -> list[list[str]]:
    """The barrier matrix of one kind and view, models in group order, group boundaries as lines; the
    groups with their members' methods and cue proportions. Returns the groups."""
    names, matrix = barrier_matrix(rows, kind, view)
    order, groups = mechanism_groups(names, matrix, scale)
    number = {n: i + 1 for i, n in enumerate(order)}
    table = Table(title=f"Loss barrier (nats), {kind} path, {view} view: models in mechanism-group order",
                  caption=f"bold: below the same-mechanism scale {scale:.3f} nats; lines separate the groups",
                  box=box.MINIMAL, show_edge=False)  # narrow: nine columns of numbers fit 80 characters
    table.add_column("model", no_wrap=True)
    for n in order:
        table.add_column(str(number[n]), justify="right")
    ends = {g[-1] for g in groups}
    for n in order:
        i = names.index(n)
        cells = []
        for m in order:
            value = matrix[i, names.index(m)]
            text = "–" if n == m else ("n/a" if not math.isfinite(value) else f"{value:.2f}")
            cells.append(f"[bold]{text}[/bold]" if n != m and value < scale else text)
        table.add_row(f"{number[n]} {zoo.labels[n]}", *cells, end_section=n in ends)
    console.print(table)
    for row in groups_table(order, groups, zoo.info):
        console.print(f"  group {row['group']}: {', '.join(zoo.labels[m] for m in row['members'])}  "
                      f"[dim](methods {', '.join(map(str, row['methods']))}; cue proportions "
                      f"{', '.join(f'{p:g}' for p in row['cue_proportions'])})[/dim]")
    return groups


def measure_layer_pairs(task: CueTask, zoo: Zoo, pairs: list[tuple[str, str]], seed: int = 0) -> pd.DataFrame:
    """Layer barrier rows (model_a, model_b, kind, layer, view, barriers) of every pair, linear path."""
    endpoints = EndpointRows()  # the cue model's own rows: measured once for both pairs
    out = []
    for a, b in pairs:
        pair = Pair(zoo.models[a], zoo.models[b], (zoo.keys[a], zoo.keys[b]))
        rows = measure_pair_layers(task, pair, LAYER_PATHS, seed=seed, endpoints=endpoints)
        out += [{"model_a": a, "model_b": b, **r} for r in rows]
    return pd.DataFrame(out)


def print_layers(layers: pd.DataFrame, zoo: Zoo, scale: float, console: Console) -> pd.DataFrame:
    views = list(LAYER_PATHS.views)
    table = Table(title="Layer-wise loss barrier (nats), linear path: only the named layer moves from the cue model",
                  caption=f"bold: above the same-mechanism scale {scale:.3f} nats ({CUE_VIEW}: the cue-isolating view)")
    table.add_column("pair", no_wrap=True)
    table.add_column("layer")
    for v in views:
        table.add_column(v, justify="right")
    for (a, b), pair in layers.groupby(["model_a", "model_b"], sort=False):
        for i, layer in enumerate(dict.fromkeys(pair["layer"])):
            values = pair[pair["layer"] == layer].set_index("view")["barrier_loss"]
            cells = [f"[bold]{values[v]:.3f}[/bold]" if values[v] > scale else f"{values[v]:.3f}" for v in views]
            table.add_row(f"{zoo.labels[a]} → {zoo.labels[b]}" if i == 0 else "", layer, *cells,
                          end_section=layer == pair["layer"].iloc[-1])
    console.print(table)
    found = cue_layers(layers, scale, view=CUE_VIEW, kind="linear")
    for (a, b), _ in layers.groupby(["model_a", "model_b"], sort=False):
        mine = found[(found["model_a"] == a) & (found["model_b"] == b)]
        text = ", ".join(f"{r.layer} ({r.barrier_loss:.2f})" for r in mine.itertuples()) or "none"
        console.print(f"  cue layers {zoo.labels[a]} → {zoo.labels[b]} (barrier on {CUE_VIEW} > {scale:.3f} nats): {text}")
    return found


def revive(task: CueTask, zoo: Zoo, names: list[str], level: float, console: Console) -> pd.DataFrame:
    """Revival curve of every named model, printed with its revival steps; rows for revival_figure."""
    table = Table(title=f"Cue revival: cue reliance after n SGD steps on cue data (lr {REVIVAL.lr}, batch {REVIVAL.batch_size})",
                  caption=f"revival steps: first count at which cue reliance regains half the cue model's ({level / 2:.3f}); "
                          f"inf: not within {REVIVAL.steps[-1]} steps")
    table.add_column("model", no_wrap=True)
    for s in (0,) + REVIVAL.steps:
        table.add_column(str(s), justify="right")
    table.add_column("revival steps", justify="right")
    curves = []
    for name in names:
        curve = revival_curve(task, zoo.models[name], REVIVAL)
        steps = revival_steps(curve, level)
        table.add_row(zoo.labels[name], *(f"{p['cue_reliance']:.2f}" for p in curve), f"{steps:g}")
        curves += [{"method": zoo.labels[name], "step": p["step"], "n_models": 1, "cue_reliance": p["cue_reliance"],
                    "cue_reliance_min": p["cue_reliance"], "cue_reliance_max": p["cue_reliance"],
                    "revival_steps": steps} for p in curve]
    console.print(table)
    return pd.DataFrame(curves)


def group_of(groups: list[list[str]], name: str) -> list[str]:
    return next(g for g in groups if name in g)


def summary_kind(kinds: tuple[str, ...]) -> str:
    """The path kind the reading rests on: LMCP when measured. Two models trained from different seeds
    differ by a permutation of their units too, which inflates a straight-line barrier (see the control
    pair's LMC barrier on the clean view); aligning first removes that part."""
    return "lmcp" if "lmcp" in kinds else "linear"


def summary(zoo: Zoo, base: str, kind: str, groups: list[list[str]], rows: pd.DataFrame, scales: dict,
            found: pd.DataFrame, revival: pd.DataFrame, metrics: dict[str, dict], layers: list[str]) -> str:
    """What the numbers show, in words, next to the paper's claims: groups of ``kind`` on the cue view,
    cue layers of the straight line, revival steps."""
    label, lines = zoo.labels, []
    reliance = {n: metrics[n]["cue_reliance"] for n in metrics}
    for method in ("naive_ft", "cbft"):
        mates = [m for m in group_of(groups, method) if m != method]
        lines.append(f"{method} (cue reliance {reliance[method]:.2f}; its cue model {reliance[base]:.2f}) "
                     f"{'stays in the group of' if base in mates else 'leaves the group of'} its cue model"
                     + (f" and sits with {', '.join(label[m] for m in mates)}." if mates else " and is a group of its own."))
    naive_with, cbft_with = base in group_of(groups, "naive_ft"), base in group_of(groups, "cbft")
    if naive_with and not cbft_with:
        lines.append("This agrees with the paper: naive FT keeps the cue model's mechanism, CBFT moves to another.")
    else:
        lines.append(f"This does NOT match the paper's claim (naive FT in the cue model's basin, CBFT out of it): here "
                     f"naive FT {'is' if naive_with else 'is not'} and CBFT {'is' if cbft_with else 'is not'} grouped "
                     "with the cue model.")
    if abs(reliance["cbft"] - reliance["naive_ft"]) < 0.1:
        lines.append(f"CBFT's cue reliance is within 0.1 of naive FT's ({reliance['cbft']:.2f} vs "
                     f"{reliance['naive_ft']:.2f}): CBFT has not removed more of the cue than naive FT"
                     + (", although it left the cue model's group." if not cbft_with else "."))
    names, matrix = barrier_matrix(rows, kind, CUE_VIEW)
    unlike = [(a, b, matrix[i, j]) for i, a in enumerate(names) for j, b in enumerate(names)
              if i < j and matrix[i, j] < scales[(kind, CUE_VIEW)] and abs(reliance[a] - reliance[b]) > UNLIKE]
    if unlike:
        a, b, value = max(unlike, key=lambda u: abs(reliance[u[0]] - reliance[u[1]]))
        lines.append(f"Caution: {len(unlike)} of {len(names) * (len(names) - 1) // 2} pairs show no {CUE_VIEW} barrier "
                     f"although their cue reliances differ by more than {UNLIKE} (e.g. {label[a]} and {label[b]}: "
                     f"{value:.2f} nats, cue reliance {reliance[a]:.2f} vs {reliance[b]:.2f}). A barrier is the loss "
                     "above the straight line between the two ends, and a path towards a model that is bad on a view "
                     "rarely rises above that line: no barrier is weak evidence of a shared mechanism, a barrier "
                     "strong evidence of different ones.")
    for method in ("naive_ft", "cbft"):
        mine = found[found["model_b"] == method]
        if mine.empty:
            lines.append(f"No single layer moved alone raises the {CUE_VIEW} barrier to {method} above "
                         f"{scales[('linear', CUE_VIEW)]:.2f} nats.")
            continue
        where = ", ".join(f"{r.layer} (layer {layers.index(r.layer) + 1} of {len(layers)}, {r.barrier_loss:.2f} nats)"
                          for r in mine.itertuples())
        half = {"first" if layers.index(x) < len(layers) / 2 else "second" for x in mine["layer"]}
        lines.append(f"The {CUE_VIEW} barrier to {method} sits in {where}: the "
                     f"{' and '.join(sorted(half))} half of the network.")
    steps = revival.groupby("method")["revival_steps"].first()
    naive, cbft = steps[label["naive_ft"]], steps[label["cbft"]]
    if cbft > naive:
        lines.append(f"Revival: CBFT needs {cbft:g} steps on cue data to regain half the cue model's cue reliance, "
                     f"naive FT {naive:g}: the cue was removed more thoroughly, as the paper's reading expects (one seed).")
    else:
        lines.append(f"Revival: CBFT needs {cbft:g} steps on cue data to regain half the cue model's cue reliance, "
                     f"naive FT {naive:g}: no sign here that CBFT removed the cue more thoroughly than naive FT hid it.")
    return " ".join(lines)


def main() -> int:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data, train, paths = (QUICK["data"], QUICK["train"], QUICK["paths"]) if args.quick else (DATA, TRAIN, PATHS)
    started, console = time.perf_counter(), Console()
    device = pick_device(use_cuda=not args.cpu)
    console.print(f"data: embedded {data.dataset} / {data.cue} cue, {data.n_train} train / {data.n_test} test images; "
                  f"{MODEL.arch}, {train.epochs} epochs; cue proportions {', '.join(f'{p:g}' for p in args.proportions)}; "
                  f"seeds {', '.join(map(str, SEEDS))}; fine-tuning: n_clean={FINETUNE.n_clean}, {FINETUNE.epochs} epochs")
    zoo, task, base = train_zoo(data, train, args.proportions, device, console)
    metrics = {name: view_metrics(model, task.views) for name, model in zoo.models.items()}
    print_models(zoo, metrics, console)

    t0 = time.perf_counter()
    rows = pd.DataFrame(measure_matrix(task, zoo.models, paths, keys=zoo.keys))
    console.print(f"measured {len(zoo.models) * (len(zoo.models) - 1) // 2} pairs x {len(paths.kinds)} kinds "
                  f"({paths.alphas} points, BN reset {paths.bn_reset.label}) in {time.perf_counter() - t0:.1f} s")
    control = control_barriers(rows, "clean_s0", "clean_s1")
    scales = {kv: same_mechanism_scale(c) for kv, c in control.items()}
    console.print("control pair (clean s0 vs clean s1, same mechanism): loss barrier "
                  + "; ".join(f"{k}/{v} {c:.3f} nats -> same-mechanism scale {scales[(k, v)]:.3f}" for (k, v), c in control.items()))
    groups = {kv: print_matrix(rows, zoo, *kv, scales[kv], console) for kv in control}

    t0 = time.perf_counter()
    scale = scales[("linear", CUE_VIEW)]
    layers = measure_layer_pairs(task, zoo, [(base, "naive_ft"), (base, "cbft")])
    console.print(f"measured layer-wise barriers of 2 pairs in {time.perf_counter() - t0:.1f} s")
    found = print_layers(layers, zoo, scale, console)

    t0 = time.perf_counter()
    revival = revive(task, zoo, [base, "clean_s0", *METHODS], metrics[base]["cue_reliance"], console)
    console.print(f"revival of {revival['method'].nunique()} models in {time.perf_counter() - t0:.1f} s")

    args.out.mkdir(parents=True, exist_ok=True)
    n_kinds = len(paths.kinds)
    title = (f"Mechanism map: {data.dataset} / {data.cue} cue, cue models at p = {', '.join(f'{p:g}' for p in args.proportions)}, "
             f"seeds {', '.join(map(str, SEEDS))}; {zoo.labels[base]} fine-tuned (n_clean = {FINETUNE.n_clean})")
    files = [
        pairs_figure(rows, zoo.labels, control, title, args.out / "pairs.png",
                     Size(width=450 * len(paths.views) + 250, height=520 * n_kinds + 180)),
        layers_figure(layers, f"Where the cue sits: {zoo.labels[base]} vs its fine-tuned models", args.out / "layers.png",
                      Size(width=1200, height=700), labels=zoo.labels, scale=scale, scale_view=CUE_VIEW),
        revival_figure(revival, metrics[base]["cue_reliance"], {"name": "mechanism map"}, args.out / "revival.png", Size()),
    ]
    for file in files:
        if file is not None:
            console.print(f"wrote {file}")
    kind = summary_kind(paths.kinds)
    text = summary(zoo, base, kind, groups[(kind, CUE_VIEW)], rows, scales, found, revival, metrics,
                   list(model_layers(zoo.models[base])))
    console.print(f"\n[bold]What this shows[/bold] (groups: {kind} path, {CUE_VIEW} view; one seed of each model): {text}")
    console.print(f"\ntotal wall time {time.perf_counter() - started:.1f} s ({device}, {torch.get_num_threads()} torch threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
