"""PNG figures of a mechanism map: the barrier matrix over many models with its mechanism groups, and
the layer-wise barriers of chosen pairs (which layers a path's barrier sits in).

Reads the rows as stored (:mod:`mmc_sweep.pair_matrix` rows; layer barrier rows of
:func:`mmc_sweep.paths.layers.layer_barriers` plus ``model_a`` / ``model_b``): matplotlib, numpy and
pandas only, no torch. Figures are drawn like every other figure (:class:`~mmc_sweep.analysis.figures.Size`:
Agg canvas, exactly ``width`` x ``height`` pixels).
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import PowerNorm
from matplotlib.patches import Rectangle

from mmc_sweep.analysis.columns import KIND_LABELS, KINDS
from mmc_sweep.analysis.figures import VIEW_ORDER, Size, _ordered
from mmc_sweep.analysis.mechanisms import barrier_matrix, mechanism_groups, same_mechanism_scale

CMAP = "viridis"  # low barrier (same mechanism) dark, high barrier bright
GROUP_COLOUR = "red"  # boxes around mechanism groups
ANNOTATE_UP_TO = 12  # models (or layers) per panel whose cells still have room for a number
# Control barrier: one number for every panel, or one per (kind, view); None: no control measured
Control = float | Mapping[tuple[str, str], float] | None


def _frame(rows: pd.DataFrame | list[dict]) -> pd.DataFrame:
    return rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))


def _kind_text(kind: str) -> str:
    return f"{KIND_LABELS[kind]} ({kind})" if kind in KIND_LABELS else kind


def _control_for(control: Control, kind: str, view: str) -> float | None:
    if control is None or isinstance(control, (int, float)):
        return None if control is None else float(control)
    return control.get((kind, view))


def _norm(values: np.ndarray) -> PowerNorm:
    """One colour scale from 0 to the largest finite value; square-root spacing so that the small
    barriers of one mechanism stay distinguishable next to the large ones between mechanisms."""
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    return PowerNorm(gamma=0.5, vmin=0.0, vmax=top, clip=True)


def _annotate(ax, matrix: np.ndarray, norm: PowerNorm, fontsize: str = "x-small") -> None:
    """The value in every cell, dark on bright cells and light on dark ones; '–' where missing."""
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            value = matrix[i, j]
            if not np.isfinite(value):
                ax.text(j, i, "–", ha="center", va="center", fontsize=fontsize, color="black")
                continue
            bright = norm(value) > 0.6
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=fontsize,
                    color="black" if bright else "white")


def _cmap():
    return colormaps[CMAP].with_extremes(bad="lightgrey")  # grey: a pair that was not measured


def _wrap(text: str, size: Size) -> str:
    """``text`` broken into lines that fit the figure's width (at most 8.5 px per character of medium text
    at 100 dpi)."""
    return textwrap.fill(text, width=max(40, int(size.width / (8.5 * size.dpi / 100))))


def _grid(fig, n_rows: int, n_cols: int):
    return fig.subplots(n_rows, n_cols, squeeze=False)


def pairs_figure(rows: pd.DataFrame, labels: dict[str, str], control_barrier: Control, title: str,
                 file: Path, size: Size) -> Path | None:
    """Heat maps of the loss barrier (nats) between every pair of models: one panel per path kind (rows
    of panels) and view (columns, in the order clean, cue, rand_cue, rand_img) present in ``rows``.

    Each panel orders its models by the mechanism groups of its own matrix (:func:`mechanism_groups`
    cut at ``same_mechanism_scale(control)``, the scale stated in the panel's title) and draws each
    group as a red box; tick labels are ``labels[name]`` (the name itself where ``labels`` lacks it).
    ``control_barrier``: the control pair's loss barrier (two models known to share a mechanism), one
    number for every panel or one per ``(kind, view)``; None: the scale's floor. One colour bar for
    every panel, the scales marked on it. Returns ``file``, or None when there are no rows.
    """
    frame = _frame(rows)
    if frame.empty:
        return None
    kinds, views = _ordered(frame["kind"], KINDS), _ordered(frame["view"], VIEW_ORDER)
    values = pd.to_numeric(frame["barrier_loss"], errors="coerce").to_numpy(dtype=float)
    norm, cmap = _norm(values), _cmap()
    fig = size.figure()
    axes = _grid(fig, len(kinds), len(views))
    scales, image = {}, None
    for r, kind in enumerate(kinds):
        for c, view in enumerate(views):
            ax = axes[r][c]
            chosen = frame[(frame["kind"] == kind) & (frame["view"] == view)]
            if chosen.empty:
                ax.set_axis_off()
                continue
            control = _control_for(control_barrier, kind, view)
            scale = same_mechanism_scale(control)
            scales[scale] = scales.get(scale, []) + [f"{kind}/{view}"]
            names, matrix = barrier_matrix(chosen, kind, view)
            order, groups = mechanism_groups(names, matrix, scale)
            position = [names.index(n) for n in order]
            shown = matrix[np.ix_(position, position)]
            image = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, norm=norm, interpolation="nearest")
            ticks = [labels.get(n, n) for n in order]
            ax.set_xticks(range(len(order)), ticks, rotation=90, fontsize="x-small")
            ax.set_yticks(range(len(order)), ticks, fontsize="x-small")
            if len(order) * len(views) <= ANNOTATE_UP_TO * 2:  # cells wide enough for a number
                _annotate(ax, shown, norm)
            for group in groups:  # contiguous in leaf order: clusters of one dendrogram cut are subtrees
                start = order.index(group[0])
                ax.add_patch(Rectangle((start - 0.5, start - 0.5), len(group), len(group), fill=False,
                                       edgecolor=GROUP_COLOUR, linewidth=2))
            control_text = "no control" if control is None or not math.isfinite(control) else f"control {control:.2g}"
            ax.set_title(f"{_kind_text(kind)}, {view}: {len(groups)} group{'s' if len(groups) != 1 else ''}\n"
                         f"same: < {scale:.2g} nats ({control_text})", fontsize="small")
    if image is not None:
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), label="loss barrier (nats)", shrink=0.8)
        for scale in scales:
            bar.ax.axhline(scale, color=GROUP_COLOUR, linewidth=1.5)
    note = ("Loss barrier between every pair of models. Red boxes: mechanism groups (average linkage cut at the "
            "same-mechanism scale, max(2 x the control pair's barrier, 0.05 nats): the red line on the colour bar). "
            "Grey: not measured.")
    fig.suptitle(f"{title}\n{_wrap(note, size)}", fontsize="medium")
    return size.save(fig, file)


def layers_figure(rows: pd.DataFrame, title: str, file: Path, size: Size, labels: dict[str, str] | None = None,
                  scale: float | None = None, scale_view: str | None = None) -> Path | None:
    """Layer-wise loss barriers (nats): one heat-map panel per pair (``model_a`` -> ``model_b``) and path
    kind, layers as rows (in the order the rows name them: the model's definition order), views as
    columns (clean, cue, rand_cue, rand_img order), every cell annotated. A cell is the barrier of the
    path on which ONLY that layer moves from A to B. ``labels``: display names of the models;
    ``scale``: cells above it (e.g. the same-mechanism scale) get a red frame, only in the column of
    ``scale_view`` when given (the view the scale was measured for, as :func:`~mmc_sweep.analysis.mechanisms.cue_layers`
    reads it). One shared colour bar.
    Returns ``file``, or None when there are no rows.
    """
    frame = _frame(rows)
    if frame.empty:
        return None
    labels = labels or {}
    panels = list(dict.fromkeys(zip(frame["model_a"], frame["model_b"], frame["kind"])))
    views = _ordered(frame["view"], VIEW_ORDER)
    values = pd.to_numeric(frame["barrier_loss"], errors="coerce").to_numpy(dtype=float)
    norm, cmap = _norm(values), _cmap()
    n_cols = min(len(panels), 3)
    n_rows = math.ceil(len(panels) / n_cols)
    fig = size.figure()
    axes = _grid(fig, n_rows, n_cols)
    image = None
    for index, (a, b, kind) in enumerate(panels):
        ax = axes[index // n_cols][index % n_cols]
        chosen = frame[(frame["model_a"] == a) & (frame["model_b"] == b) & (frame["kind"] == kind)]
        layers = list(dict.fromkeys(chosen["layer"]))
        table = (chosen.assign(barrier_loss=pd.to_numeric(chosen["barrier_loss"], errors="coerce"))
                 .pivot_table(index="layer", columns="view", values="barrier_loss", aggfunc="mean", dropna=False)
                 .reindex(index=layers, columns=views))
        matrix = table.to_numpy(dtype=float)
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(views)), views, fontsize="small")
        ax.set_yticks(range(len(layers)), layers, fontsize="small")
        if len(layers) <= 4 * ANNOTATE_UP_TO:
            _annotate(ax, matrix, norm, fontsize="small")
        if scale is not None:
            above = np.nan_to_num(matrix, nan=-np.inf) > scale
            if scale_view is not None:
                above[:, [v != scale_view for v in views]] = False
            for i, j in zip(*np.nonzero(above)):
                # inset, so that a frame never looks like its neighbour's
                ax.add_patch(Rectangle((j - 0.44, i - 0.44), 0.88, 0.88, fill=False, edgecolor=GROUP_COLOUR, linewidth=2))
        ax.set_title(f"{labels.get(a, a)} → {labels.get(b, b)}\n{_kind_text(kind)}", fontsize="small")
        ax.set_xlabel("view")
        if index % n_cols == 0:
            ax.set_ylabel("layer moved (the rest at the first model)")
    for index in range(len(panels), n_rows * n_cols):
        axes[index // n_cols][index % n_cols].set_axis_off()
    if image is not None:
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), label="loss barrier (nats)", shrink=0.8)
        if scale is not None:
            bar.ax.axhline(scale, color=GROUP_COLOUR, linewidth=1.5)
    note = "Loss barrier of the path on which only one layer moves from the first model to the second."
    if scale is not None:
        where = f" on the {scale_view} view" if scale_view is not None else ""
        note += f" Red frames: above {scale:.3g} nats{where} (the same-mechanism scale, the red line on the colour bar)."
    fig.suptitle(f"{title}\n{_wrap(note, size)}", fontsize="medium")
    return size.save(fig, file)
