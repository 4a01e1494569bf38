"""Layer-wise connectivity: the barrier of a path when only ONE layer walks it and every other entry
stays at model A's weights, which locates a path's barrier in the layers that cause it.

A layer is a module that owns parameters or buffers itself, with a BatchNorm merged into the
convolution or linear module directly before it (conv+BN re-parametrise one linear map: interpolating
one without the other is not a step of either model's function).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain

from torch import nn

from mmc_sweep.costs import clocked
from mmc_sweep.data import ImageSet
from mmc_sweep.paths.barriers import barriers
from mmc_sweep.paths.evaluate import evaluate_curve
from mmc_sweep.paths.interpolate import Curve, State
from mmc_sweep.paths.kinds import BUILD_PHASE, PairContext, path_kind

_LINEAR = (nn.modules.conv._ConvNd, nn.Linear)


def model_layers(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """The model's layers in definition order: name (module path of the conv/linear) -> the state-dict
    keys it owns. Every state-dict key belongs to exactly one layer."""
    in_state = model.state_dict().keys()
    layers: dict[str, tuple[str, ...]] = {}
    open_linear: str | None = None  # the previous layer, while it is a conv/linear without its BN
    for name, module in model.named_modules():
        own = chain(module.named_parameters(recurse=False), module.named_buffers(recurse=False))
        keys = tuple(k for k in (f"{name}.{n}" if name else n for n, _ in own) if k in in_state)  # no non-persistent buffers
        if not keys:
            continue
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and open_linear is not None:
            layers[open_linear] += keys
            open_linear = None
        else:
            layers[name] = keys
            open_linear = name if isinstance(module, _LINEAR) else None
    return layers


def layer_curve(curve: Curve, state_a: State, keys: Iterable[str]) -> Curve:
    """alpha -> A's state with only ``keys`` taken from ``curve(alpha)``."""
    wanted = tuple(keys)

    def at(alpha: float) -> State:
        point = curve(alpha)
        return {**state_a, **{k: point[k] for k in wanted}}

    return at


def measure_layers(model_a: nn.Module, model_b: nn.Module, views: dict[str, ImageSet], ctx: PairContext,
                   layers: Sequence[str] | None = None) -> list[dict]:
    """Rows (``kind``, ``layer``, then as :func:`evaluate_curve`) of every kind in ``ctx.spec.kinds``
    walked by one layer at a time (``layers``; None: every layer of :func:`model_layers`). Every
    layer curve starts at A exactly, so alpha 0 is measured once (or taken from ``ctx.endpoints``)."""
    owned = model_layers(model_a)
    names = list(owned) if layers is None else list(layers)
    unknown = [n for n in names if n not in owned]
    if unknown:
        raise ValueError(f"layers: unknown layer(s) {unknown}; valid: {', '.join(owned)}")
    state_a = model_a.state_dict()
    key_a = ctx.endpoint_keys[0] if ctx.endpoints is not None else None
    cached = ctx.endpoints.get(key_a) if ctx.endpoints is not None else None
    known = {0.0: cached} if cached is not None else {}
    rows = []
    for kind in ctx.spec.kinds:
        with clocked(ctx.clock, BUILD_PHASE.get(kind, "paths")):
            curve = path_kind(kind)(model_a, model_b, ctx)  # once per kind: lmcp aligns, qmc trains here
        for layer in names:
            with clocked(ctx.clock, "paths"):
                measured = evaluate_curve(model_a, layer_curve(curve, state_a, owned[layer]), views, ctx.spec,
                                          ctx.train, ctx.seed, known)
            if 0.0 not in known:  # measured just now: every later layer and kind reuses it
                known[0.0] = [{k: v for k, v in r.items() if k != "alpha"} for r in measured if r["alpha"] == 0.0]
                if ctx.endpoints is not None:
                    ctx.endpoints.put(key_a, known[0.0])
            rows += [{"kind": kind, "layer": layer, **r} for r in measured]
    return rows


def layer_barriers(rows: list[dict]) -> list[dict]:
    """One dict per (kind, layer, view) of :func:`measure_layers` rows, with its :func:`barriers`."""
    out = []
    for kind, layer in dict.fromkeys((r["kind"], r["layer"]) for r in rows):
        curve_rows = [r for r in rows if r["kind"] == kind and r["layer"] == layer]
        out += [{"kind": kind, "layer": layer, "view": view, **values} for view, values in barriers(curve_rows).items()]
    return out
