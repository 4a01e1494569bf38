"""The steps every experiment shares, as plain functions: train a base model, fine-tune it,
and measure a model (views, invariance, paths to other models) into flat metric names.

The example script and the study harness both use these, so a number means the same everywhere.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from mmc_sweep.config import (BASE_KINDS, AlignSpec, BaseModelSpec, FinetunedSpec, FinetuneSpec, ModelSpec, PathSpec,
                              QMCSpec, RevivalSpec, TrainSpec, spec_hash)
from mmc_sweep.costs import PhaseClock, clocked
from mmc_sweep.data import CueTask
from mmc_sweep.finetune import cue_pool, finetune
from mmc_sweep.metrics import view_metrics
from mmc_sweep.models import CueModel, create_model
from mmc_sweep.paths import (EndpointRows, MidpointStore, PairContext, barrier_metric, barriers, layer_barriers,
                             measure_layers, measure_pair)
from mmc_sweep.paths.midpoint import midpoint_key_specs
from mmc_sweep.revival import revival_curve, revival_metrics
from mmc_sweep.train import EpochCallback, train_model


def pick_device(use_cuda: bool = True) -> torch.device:
    """CUDA when asked for and present, else CPU. Never implicit: callers pass the result on."""
    return torch.device("cuda") if use_cuda and torch.cuda.is_available() else torch.device("cpu")


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def new_model(task: CueTask, spec: ModelSpec, seed: int, device: torch.device) -> CueModel:
    torch.manual_seed(seed)
    return create_model(spec.arch, task.num_classes, width=spec.width).to(device)


def train_base(
    task: CueTask,
    kind: str,
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
    resume: dict | None = None,
) -> CueModel:
    """Train the cue model (``kind='cue'``) or the clean reference (``kind='clean'``), initialised from
    ``train_spec.init_seed`` (and batched by ``train_spec.order_seed``: see ``TrainSpec.stream``)."""
    if kind not in BASE_KINDS:
        raise ValueError(f"base kind: expected one of {BASE_KINDS}, got {kind!r}")
    data = task.train if kind == "cue" else task.train_clean
    model = new_model(task, model_spec, train_spec.init_seed, device)
    return train_model(model, data, train_spec, on_epoch=on_epoch, resume=resume)


def finetune_cue_model(
    task: CueTask,
    cue_model: CueModel,
    spec: FinetuneSpec,
    on_epoch: EpochCallback | None = None,
    resume: dict | None = None,
) -> CueModel:
    """Fine-tune the cue model on ``spec.n_clean`` clean training images (CBFT also sees cue images:
    :func:`~mmc_sweep.finetune.cue_pool`)."""
    clean = task.clean_subset(spec.n_clean, spec.seed)
    return finetune(cue_model, clean, spec, cue_data=cue_pool(task, spec), on_epoch=on_epoch, resume=resume)


@dataclass(frozen=True, eq=False)  # eq=False: holds models
class Pair:
    """Two models whose paths are measured (A at alpha = 0), and what identifies them: the specs of
    both endpoints (e.g. a ``BaseModelSpec`` and a ``FinetunedSpec``), which content-address the
    pair's QMC midpoint. Without ``key`` a midpoint is trained and not stored."""

    a: CueModel
    b: CueModel
    key: tuple = ()


def midpoint_key(task: CueTask, pair: Pair, spec: PathSpec) -> str | None:
    """Content key of a pair's QMC midpoint: both endpoints' specs, the data and the QMC settings (with
    a random init, its seed stream: :func:`~mmc_sweep.paths.midpoint.midpoint_key_specs`)."""
    return spec_hash(*pair.key, task.spec, *midpoint_key_specs(spec.qmc)) if pair.key else None


def endpoint_key(task: CueTask, model_key: object, spec: PathSpec, seed: int) -> str:
    """Content key of a path endpoint's rows: the model's spec, the data, what evaluation reads of the
    path settings (views, BN re-estimation, batch size) and the seed of the BN batches."""
    evaluation = dataclasses.replace(spec, kinds=("linear",), alphas=2, align=AlignSpec(), qmc=QMCSpec())  # what it does not read
    return f"{spec_hash(model_key, task.spec, evaluation)}:{seed}"


def measure_paths(
    task: CueTask,
    pairs: dict[str, Pair | tuple[CueModel, CueModel]],
    spec: PathSpec,
    seed: int = 0,
    midpoints: MidpointStore | None = None,
    endpoints: EndpointRows | None = None,
    clock: PhaseClock | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """Evaluate every kind of ``spec.kinds`` between every named pair; return flat barrier metrics
    and the path rows. ``clock`` counts the seconds of aligning, midpoints and evaluation.

    Metrics are :func:`~mmc_sweep.paths.barrier_metric` names — ``barrier_loss_<path>_<view>``
    (nats) and ``barrier_acc_<path>_<view>`` (fraction) for the straight line, with ``lmcp_`` or
    ``qmc_`` before the path for the other kinds — plus the ``barrier_mid_*`` variants; rows carry
    ``path``, ``kind``, ``bn_reset`` and ``views_cue`` (``full`` or ``train``: which views the path was
    evaluated on, ``spec.views_cue`` resolved) too. QMC midpoints are looked up in (and saved to) ``midpoints``.
    Pairs with keys share the rows of a common endpoint, also with earlier calls given the same ``endpoints``.
    """
    endpoints = EndpointRows() if endpoints is None else endpoints
    views = task.path_views(spec.views_cue)
    views_cue = task.spec.views_cue if spec.views_cue == "data" else spec.views_cue
    metrics: dict[str, float] = {}
    rows: list[dict] = []
    for path, pair in pairs.items():
        pair = pair if isinstance(pair, Pair) else Pair(*pair)
        curves = measure_pair(pair.a, pair.b, views, pair_context(task, pair, spec, seed, midpoints, endpoints, clock))
        for kind in spec.kinds:
            for view, values in barriers([r for r in curves if r["kind"] == kind]).items():
                for name, value in values.items():
                    metrics[barrier_metric(name, kind, path, view)] = value
        rows += [{"path": path, "bn_reset": spec.bn_reset.label, "views_cue": views_cue, **r} for r in curves]
    return metrics, rows


def pair_context(task: CueTask, pair: Pair, spec: PathSpec, seed: int = 0, midpoints: MidpointStore | None = None,
                 endpoints: EndpointRows | None = None, clock: PhaseClock | None = None) -> PairContext:
    """What measuring ``pair``'s paths needs besides its models: the training images, and the content keys
    of its midpoint and endpoint rows (from ``pair.key``; none without it)."""
    ends = tuple(endpoint_key(task, k, spec, seed) for k in pair.key) if pair.key else (None, None)
    return PairContext(spec, {"clean": task.train_clean, "cue": task.train_cue}, seed, midpoints,
                       midpoint_key(task, pair, spec), endpoints, ends, clock)


def measure_pair_layers(task: CueTask, pair: Pair, spec: PathSpec, layers: Sequence[str] | None = None, seed: int = 0,
                        midpoints: MidpointStore | None = None, endpoints: EndpointRows | None = None) -> list[dict]:
    """The barriers of every kind of ``spec.kinds`` walked by one layer at a time (``layers``; None: every
    layer): one row per (kind, layer, view), :func:`~mmc_sweep.paths.layer_barriers`."""
    ctx = pair_context(task, pair, spec, seed, midpoints, endpoints)
    return layer_barriers(measure_layers(pair.a, pair.b, task.path_views(spec.views_cue), ctx, layers))


# (epoch, metrics of the model after it: train_loss and view metrics, checkpoint() -> state)
MetricsCallback = Callable[[int, dict[str, float], Callable[[], dict]], None]


def finetune_and_measure(
    task: CueTask,
    cue_model: CueModel,
    clean_model: CueModel,
    spec: FinetuneSpec,
    paths: PathSpec,
    seed: int = 0,
    on_epoch: MetricsCallback | None = None,
    resume: dict | None = None,
    keys: tuple[BaseModelSpec, BaseModelSpec] | None = None,
    midpoints: MidpointStore | None = None,
    epoch_views: bool = True,
    endpoints: EndpointRows | None = None,
    clock: PhaseClock | None = None,
    revival: RevivalSpec = RevivalSpec(),
) -> tuple[dict[str, float], list[dict], list[dict]]:
    """One fine-tuning run as a study trial does it: fine-tune, measure the views after every epoch
    (only the training loss without ``epoch_views``), then measure the final model, its paths
    ``cue_to_ft`` and ``ft_to_clean`` and, with ``revival.steps``, its cue revival. ``clock``: where
    each phase's seconds are counted (:mod:`mmc_sweep.costs`; fine-tuning includes the model's own
    view metrics).

    ``keys``: the specs of the cue and clean models, which with ``spec`` identify every endpoint
    (QMC midpoints are stored by them). Returns the final metrics (view metrics, barriers and
    ``revival_steps``/``revival_auc``), the path rows and the revival curve (empty with revival off).
    """

    def after_epoch(epoch, loss, model, checkpoint) -> None:
        if on_epoch is not None:
            on_epoch(epoch, {"train_loss": loss, **(view_metrics(model, task.views) if epoch_views else {})}, checkpoint)

    with clocked(clock, "finetune"):
        model = finetune_cue_model(task, cue_model, spec, on_epoch=after_epoch, resume=resume)
    pair_keys: dict[str, tuple] = {"cue_to_ft": (), "ft_to_clean": ()}
    if keys:
        cue_key, clean_key = keys
        # method none: the model is the cue model itself, so it has its spec (and shares its midpoints)
        ft_key = cue_key if spec.method == "none" else FinetunedSpec(cue_key, spec)
        pair_keys = {"cue_to_ft": (cue_key, ft_key), "ft_to_clean": (ft_key, clean_key)}
    pairs = {"cue_to_ft": Pair(cue_model, model, pair_keys["cue_to_ft"]),
             "ft_to_clean": Pair(model, clean_model, pair_keys["ft_to_clean"])}
    if spec.method == "none":  # its path to itself is flat
        del pairs["cue_to_ft"]
    barriers, rows = measure_paths(task, pairs, paths, seed=seed, midpoints=midpoints, endpoints=endpoints, clock=clock)
    with clocked(clock, "finetune"):  # the fine-tuned model's own view metrics
        final = view_metrics(model, task.views)
    if not revival.steps:
        return {**final, **barriers}, rows, []
    with clocked(clock, "revival"):
        curve = revival_curve(task, model, revival)
        cue_reliance = view_metrics(cue_model, task.views)["cue_reliance"]  # the level to regain
    return {**final, **barriers, **revival_metrics(curve, cue_reliance)}, rows, curve
