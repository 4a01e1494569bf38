"""Path kinds, a registry: each turns two models into the curve that path evaluation walks.

* ``linear`` (LMC): ``(1-a)·A + a·B``;
* ``lmcp``: the straight line from A to B with B's hidden units first permuted to match A's
  (``paths.align``), so the permutation symmetry of the network cannot fake a barrier;
* ``qmc``: the quadratic Bezier curve through a trained midpoint (``paths.qmc``), looked up in a
  :class:`~mmc_sweep.paths.midpoint.MidpointStore` by content key before it is trained.

Every kind goes through the same BN reset and the same evaluation (:func:`measure_pair`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from torch import nn

from mmc_sweep.config import PathSpec, to_dict
from mmc_sweep.costs import PhaseClock, clocked
from mmc_sweep.data import ImageSet
from mmc_sweep.paths.align import align
from mmc_sweep.paths.evaluate import EndpointRows, evaluate_curve
from mmc_sweep.paths.interpolate import Curve, State, bezier_curve, linear_curve
from mmc_sweep.paths.midpoint import MidpointStore, random_init_seed, train_midpoint


@dataclass(frozen=True, eq=False)  # eq=False: holds tensors
class PairContext:
    """What building and evaluating one pair's paths needs besides the two models."""

    spec: PathSpec
    train: dict[str, ImageSet]  # training images by source, "clean" and "cue": BN reset, alignment, midpoints
    seed: int = 0  # which fixed images BN reset and activation matching use
    midpoints: MidpointStore | None = None
    midpoint_key: str | None = None  # content key of this pair's QMC midpoint; None: train it, store nothing
    endpoints: EndpointRows | None = None  # rows of endpoints measured before, shared with other pairs
    endpoint_keys: tuple[str | None, str | None] = (None, None)  # content keys of A's and B's rows; None: not shared
    clock: PhaseClock | None = None  # where the seconds of aligning, midpoints and evaluation are counted


PathKind = Callable[[nn.Module, nn.Module, PairContext], Curve]
BUILD_PHASE = {"lmcp": "align", "qmc": "midpoint"}  # what building a kind's curve costs is counted as
PATH_KINDS: dict[str, PathKind] = {}
ENDS_AT_B: set[str] = set()  # kinds whose curve at alpha 1 is B's weights exactly (lmcp ends at B aligned to A)


def register_kind(name: str, ends_at_b: bool = True) -> Callable[[PathKind], PathKind]:
    def wrap(fn: PathKind) -> PathKind:
        if name in PATH_KINDS:
            raise ValueError(f"path kind {name!r} registered twice")
        PATH_KINDS[name] = fn
        if ends_at_b:
            ENDS_AT_B.add(name)
        return fn

    return wrap


def kind_names() -> list[str]:
    return list(PATH_KINDS)


def path_kind(name: str) -> PathKind:
    if name not in PATH_KINDS:
        raise ValueError(f"paths.kinds: unknown path kind {name!r}; valid: {', '.join(PATH_KINDS)}")
    return PATH_KINDS[name]


def _training_images(ctx: PairContext, source: str, key: str) -> ImageSet:
    if source not in ctx.train:
        raise ValueError(f"{key}: {source!r} needs training images train[{source!r}]; given: {sorted(ctx.train)}")
    return ctx.train[source]


@register_kind("linear")
def linear(model_a: nn.Module, model_b: nn.Module, ctx: PairContext) -> Curve:
    return linear_curve(model_a.state_dict(), model_b.state_dict())


@register_kind("lmcp", ends_at_b=False)
def lmcp(model_a: nn.Module, model_b: nn.Module, ctx: PairContext) -> Curve:
    method = ctx.spec.align
    data = _training_images(ctx, method.data, "paths.align.data") if method.method == "activation" else None
    return linear_curve(model_a.state_dict(), align(model_a, model_b, method, data, ctx.seed).state_dict())


def midpoint_state(model_a: nn.Module, model_b: nn.Module, ctx: PairContext) -> State:
    """The pair's trained midpoint: from the store when it has the key, else trained (and stored)."""
    device = next(model_a.parameters()).device
    store = ctx.midpoints if ctx.midpoint_key is not None else None  # without a key nothing is stored
    stored = store.load(ctx.midpoint_key) if store is not None else None
    if stored is not None:
        return {k: v.to(device) for k, v in stored.items()}
    qmc = ctx.spec.qmc
    started = time.perf_counter()
    state = train_midpoint(model_a, model_b, _training_images(ctx, qmc.data, "paths.qmc.data"), qmc).state_dict()
    if store is not None:
        store.save(ctx.midpoint_key, state, {"qmc": to_dict(qmc), "init_seed": random_init_seed(qmc),
                                            "train_seconds": time.perf_counter() - started,
                                            "device": str(device)})
    return state


@register_kind("qmc")
def qmc(model_a: nn.Module, model_b: nn.Module, ctx: PairContext) -> Curve:
    return bezier_curve(model_a.state_dict(), midpoint_state(model_a, model_b, ctx), model_b.state_dict())


def measure_pair(model_a: nn.Module, model_b: nn.Module, views: dict[str, ImageSet], ctx: PairContext) -> list[dict]:
    """Rows of every kind in ``ctx.spec.kinds`` between A and B, each row with its ``kind``. Every
    kind starts at A's weights exactly; an endpoint whose rows ``ctx.endpoints`` holds is not measured again."""
    cache = ctx.endpoints if ctx.endpoints is not None else EndpointRows()
    key_a, key_b = ctx.endpoint_keys
    rows = []
    for kind in ctx.spec.kinds:
        b_key = key_b if kind in ENDS_AT_B else None
        known = {alpha: r for alpha, r in ((0.0, cache.get(key_a)), (1.0, cache.get(b_key))) if r is not None}
        with clocked(ctx.clock, BUILD_PHASE.get(kind, "paths")):
            curve = path_kind(kind)(model_a, model_b, ctx)
        with clocked(ctx.clock, "paths"):
            measured = evaluate_curve(model_a, curve, views, ctx.spec, ctx.train, ctx.seed, known)
        for alpha, key in ((0.0, key_a), (1.0, b_key)):
            if alpha not in known:  # measured just now
                cache.put(key, [r for r in measured if r["alpha"] == alpha])
        rows += [{"kind": kind, **r} for r in measured]
    return rows
