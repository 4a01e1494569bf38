"""PNG figures of a study: paths of chosen trials, the connectivity figure of one pair (every path
kind side by side, with the invariance metrics along the path), Pareto scatter, optimisation
history, importances.

Headless by construction: figures are ``matplotlib.figure.Figure`` objects drawn on the Agg canvas,
never pyplot, so no display and no global backend switch are involved. Each figure is exactly
``width`` x ``height`` pixels (``figsize = px / dpi``, saved without tight bounding boxes).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mmc_sweep.analysis.columns import KIND_LABELS, KINDS, parse_barrier_column, path_label
from mmc_sweep.analysis.pareto import metric_column, non_dominated
from mmc_sweep.analysis.seeds import interval, interval_name
from mmc_sweep.analysis.spec import Objective, objectives
from mmc_sweep.analysis.tables import completed, with_n_clean

VIEW_ORDER = ("clean", "cue", "rand_cue", "rand_img")
# One colour and line style per path kind, the same in every figure (grey for a kind not listed).
KIND_COLOURS = {"linear": "C0", "lmcp": "C1", "qmc": "C2"}
KIND_LINESTYLES = {"linear": "-", "lmcp": "--", "qmc": "-."}
# Invariance metrics of every path point: column, panel title, axis label
INVARIANCE_PANELS = (
    ("cue_reliance", "cue reliance", "0: ignores the cue, 1: follows it"),
    ("pred_consistency", "prediction consistency", "fraction same, own vs random cue"),
    ("rep_cosine", "representation cosine", "features' cosine, own vs random cue"),
)
BASELINE_MARKERS = ("X", "P", "D", "v", "^", "<", ">")
PATH_TEXT = {"cue_to_ft": "from the cue model to each fine-tuned model",
             "ft_to_clean": "from each fine-tuned model to the clean reference"}
BARRIER_WORDS = {"barrier_loss": "loss barrier", "barrier_acc": "accuracy barrier",
                 "barrier_mid_loss": "loss barrier at α = 0.5", "barrier_mid_acc": "accuracy barrier at α = 0.5"}
# Which model sits at each end of a path (α = 0, α = 1)
PATH_ENDS = {"cue_to_ft": ("cue model", "fine-tuned model"), "ft_to_clean": ("fine-tuned model", "clean reference"),
             "cue_to_clean": ("cue model", "clean reference"), "clean_to_clean": ("clean reference", "clean reference")}


@dataclass(frozen=True)
class Size:
    """Pixel size of every figure; ``dpi`` sets how large text and lines look at that size."""

    width: int = 1200
    height: int = 800
    dpi: int = 100

    def figure(self) -> Figure:
        fig = Figure(figsize=(self.width / self.dpi, self.height / self.dpi), dpi=self.dpi, layout="constrained")
        FigureCanvasAgg(fig)
        return fig

    def save(self, fig: Figure, file: Path) -> Path:
        # Nudge the size by a hair so float rounding never loses a pixel (w/dpi*dpi = w - 1e-13).
        fig.set_size_inches((self.width + 1e-3) / self.dpi, (self.height + 1e-3) / self.dpi)
        fig.savefig(file, dpi=self.dpi, format="png")
        return file


def unit(metric: str) -> str:
    """Unit of a trials column, for axis labels."""
    if metric.startswith(("acc_", "cue_reliance", "barrier_acc_", "barrier_mid_acc_")):
        return "fraction"
    if metric.startswith(("barrier_loss_", "barrier_mid_loss_", "loss_")):
        return "nats"
    return "images" if metric == "n_clean" else ""


def axis_label(metric: str, mode: str | None = None, short: bool = False) -> str:
    """Axis label with unit (and which way is better) for a trials column name; ``short``: two
    lines, the column name and unit, then the direction."""
    better = {"max": "higher is better", "min": "lower is better"}.get(mode or "", "")
    if short:
        name = f"{metric} ({unit(metric)})" if unit(metric) else metric
        return f"{name}\n{better}" if better else name
    if metric.startswith("acc_"):
        text = f"accuracy on the {metric[4:]} view (fraction)"
    elif metric == "cue_reliance":
        text = "cue reliance (0 = ignores the cue, 1 = follows it)"
    elif parse_barrier_column(metric) is not None:
        barrier_type, kind, path, view = parse_barrier_column(metric)
        text = f"{BARRIER_WORDS[barrier_type]} {path_label(path)}, {view} view, {kind} path ({unit(metric)})"
    elif metric.startswith("loss_"):
        text = f"cross-entropy on the {metric[5:]} view (nats)"
    elif metric == "n_clean":
        text = "clean images seen (n_clean)"
    else:
        text = metric
    return text + (f", {better}" if better else "")


# ----------------------------------------------------------------------------------------- paths
def _curve(paths: pd.DataFrame, trial_id: str, path: str) -> pd.DataFrame:
    return paths[(paths["trial_id"] == trial_id) & (paths["path"] == path)]


def _ordered(values: Any, order: Sequence[str]) -> list[str]:
    """Distinct non-null values: those in ``order`` first, in that order, then the rest sorted."""
    present = {str(v) for v in pd.Series(values).dropna()}
    return [v for v in order if v in present] + sorted(present - set(order))


def _bn_text(rows: pd.DataFrame) -> str:
    """The recorded evaluation settings of a figure's paths: BN reset and (when recorded) the views' cueing."""
    labels = _ordered(rows["bn_reset"], ()) if "bn_reset" in rows else []
    cued = _ordered(rows["views_cue"], ()) if "views_cue" in rows else []
    views = f"; cued views: {', '.join(cued)} (paths.views_cue)" if cued else ""  # full | train
    return f"BatchNorm reset: {', '.join(labels) or 'unknown'}{views}"


def _kind_label(kind: str) -> str:
    return f"{KIND_LABELS[kind]} ({kind})" if kind in KIND_LABELS else kind


def _loss_acc_axes(fig: Any, views: Sequence[str]) -> np.ndarray:
    """Two rows of panels, one column per view: loss (nats) above accuracy (fraction), α along x."""
    axes = fig.subplots(2, len(views), sharex=True, squeeze=False)
    for j, view in enumerate(views):
        axes[0][j].set_title(f"{view} view")
        axes[1][j].set_xlabel("α")
        for i in range(2):
            axes[i][j].grid(alpha=0.3)
    axes[0][0].set_ylabel("loss (cross-entropy, nats)")
    axes[1][0].set_ylabel("accuracy (fraction)")
    return axes


def path_figure(paths: pd.DataFrame, trials: pd.DataFrame, chosen: Sequence[str], which: str,
                file: Path, size: Size) -> Path | None:
    """Loss (top) and accuracy (bottom) along ``which`` paths of the chosen trials, one column per
    view, with the base pair's cue->clean path as the black reference; one colour per trial and,
    when several path kinds were measured, one line style per kind. None if nothing to draw."""
    by_id = trials.set_index("trial_id")
    chosen = [t for t in chosen if t in by_id.index]
    seeds = set(by_id.loc[chosen, "base_seed"].dropna()) if chosen else set()
    base = trials[(trials["method"] == "base_clean") & (trials["status"] == "completed")]
    if seeds and base["base_seed"].isin(seeds).any():
        base = base[base["base_seed"].isin(seeds)]
    # (legend label, path rows, is the base-pair reference)
    curves = [(f"base pair cue→clean ({tid})", _curve(paths, tid, "cue_to_clean"), True) for tid in base["trial_id"]]
    curves += [(f"{by_id.at[tid, 'method']} ({tid})", _curve(paths, tid, which), False) for tid in chosen]
    curves = [c for c in curves if len(c[1])]
    if not any(not ref for _, _, ref in curves):
        return None
    drawn = pd.concat([c[1] for c in curves])
    views, kinds = _ordered(paths["view"], VIEW_ORDER), _ordered(drawn["kind"], KINDS)
    fig = size.figure()
    axes = _loss_acc_axes(fig, views)
    colours = itertools.cycle(f"C{i}" for i in range(10))  # matplotlib's default colour cycle
    marker = "o" if paths["alpha"].nunique() <= 21 else None  # dots only where they can be told apart
    handles: list[Line2D] = []
    for label, curve, ref in curves:
        colour = "black" if ref else next(colours)
        for kind, kind_rows in curve.groupby("kind", dropna=False):
            name = label if len(kinds) <= 1 else f"{label} [{kind}]"
            style = ("--" if ref else "-") if len(kinds) <= 1 else KIND_LINESTYLES.get(str(kind), ":")
            for j, view in enumerate(views):
                v = kind_rows[kind_rows["view"] == view].sort_values("alpha")
                for i, col in enumerate(("loss", "acc")):
                    line, = axes[i][j].plot(v["alpha"], v[col], color=colour, linestyle=style,
                                            marker=marker, markersize=3, linewidth=1.5, label=name)
            handles.append(line)
    start, end = PATH_ENDS[which]
    what = "Linear paths" if kinds == ["linear"] else f"Paths ({', '.join(map(_kind_label, kinds))})"
    legend = ("dashed" if len(kinds) <= 1 else "black") + ": base pair, cue model → clean reference"
    fig.suptitle(f"{what} {PATH_TEXT[which]}\nα = 0: {start}, α = 1: {end}; {legend}\n{_bn_text(drawn)}",
                 fontsize="medium")
    fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize="small")
    return size.save(fig, file)


def connectivity_figure(rows: pd.DataFrame, title: str, file: Path, size: Size) -> Path | None:
    """The paper's connectivity figure of one pair: every path kind measured between the two models
    side by side. One column per view: loss (nats) along α, then accuracy (fraction); below, the
    invariance metrics along α (one panel each, left out when the rows have none). One curve per
    kind, coloured as everywhere (:data:`KIND_COLOURS`).

    ``rows``: the path rows of one pair (columns ``kind``, ``alpha``, ``view``, ``loss``, ``acc``,
    optionally ``cue_reliance``, ``pred_consistency``, ``rep_cosine`` and ``bn_reset``); ``title``
    says which pair and which model is at each end; the BN reset label is added below it.
    Returns ``file``, or None when there are no rows.
    """
    if rows.empty:
        return None
    views, kinds = _ordered(rows["view"], VIEW_ORDER), _ordered(rows["kind"], KINDS)
    # Invariance metrics are one value per point, repeated on every view's row: first non-null each.
    metrics = [m for m, _, _ in INVARIANCE_PANELS if m in rows and rows[m].notna().any()]
    points = rows.groupby(["kind", "alpha"])[metrics].first().reset_index() if metrics else None
    fig = size.figure()
    top, bottom = fig.subfigures(2, 1, height_ratios=(2, 1)) if metrics else (fig, None)
    axes = _loss_acc_axes(top, views)
    marker = "o" if rows["alpha"].nunique() <= 21 else None  # dots only where they can be told apart
    style = {k: {"color": KIND_COLOURS.get(k, "C7"), "linestyle": KIND_LINESTYLES.get(k, ":"), "marker": marker,
                 "markersize": 3, "linewidth": 1.5, "label": _kind_label(k)} for k in kinds}
    for kind in kinds:
        for j, view in enumerate(views):
            v = rows[(rows["kind"] == kind) & (rows["view"] == view)].sort_values("alpha")
            for i, col in enumerate(("loss", "acc")):
                axes[i][j].plot(v["alpha"], v[col], **style[kind])
    if bottom is not None:
        panels = bottom.subplots(1, len(INVARIANCE_PANELS), sharex=True, squeeze=False)[0]
        for ax, (metric, name, meaning) in zip(panels, INVARIANCE_PANELS):
            ax.set_title(f"{name} (all views)", fontsize="medium")
            ax.set_xlabel("α")
            ax.set_ylabel(meaning, fontsize="small")
            ax.grid(alpha=0.3)
            if metric not in metrics:
                ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
                continue
            for kind in kinds:
                p = points[points["kind"] == kind].sort_values("alpha")
                ax.plot(p["alpha"], p[metric], **style[kind])
    handles = [Line2D([], [], **style[k]) for k in kinds]
    fig.suptitle(f"{title}\n{_bn_text(rows)}", fontsize="medium")
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small")
    return size.save(fig, file)


def pair_title(path: str, who: str, ends: tuple[str, str] | None = None) -> str:
    """Title of a connectivity figure: the path and pair (``who``), and which model is at each end of
    α (``ends``; default: the usual models of ``path``)."""
    start, end = ends or PATH_ENDS.get(path, ("model A", "model B"))
    return f"Connectivity {path_label(path)}: {who}\nα = 0: {start}, α = 1: {end}"


# ---------------------------------------------------------------------------------------- pareto
def scatter_axes(spec: dict) -> list[Objective]:
    """The two plotted axes: the study's first two objectives, else clean accuracy vs cue reliance."""
    objs = objectives(spec)
    return objs[:2] if len(objs) >= 2 else [Objective("acc_clean", "max"), Objective("cue_reliance", "min")]


def pareto_figure(trials: pd.DataFrame, spec: dict, file: Path, size: Size) -> Path | None:
    """Search trials on the two objectives, colour = n_clean; front ringed, baselines and bases marked."""
    x_obj, y_obj = scatter_axes(spec)
    done = with_n_clean(completed(trials))
    xcol, ycol = metric_column(done, x_obj.metric), metric_column(done, y_obj.metric)
    if xcol not in done or ycol not in done:
        return None
    search = done[(done["role"] == "search") & done[xcol].notna() & done[ycol].notna()]
    others = done[done["role"] != "search"]
    if search.empty and others.empty:
        return None
    fig = size.figure()
    ax = fig.subplots()
    n = search["n_clean"].astype(float)
    if search.empty or n.isna().all():
        sc = ax.scatter(search[xcol], search[ycol], color="C0", s=30, label="search trials")
    else:
        lo, hi = float(n.min()), float(n.max())
        norm = LogNorm(lo, hi) if lo > 0 and hi / lo >= 10 else Normalize(lo, hi if hi > lo else lo + 1)
        sc = ax.scatter(search[xcol], search[ycol], c=n, cmap="viridis", norm=norm, s=30, label="search trials")
        fig.colorbar(sc, ax=ax, label="n_clean (clean images seen)")
    if len(search):
        signs = np.array([1.0 if o.mode == "max" else -1.0 for o in (x_obj, y_obj)])
        pts = search[[xcol, ycol]].to_numpy(dtype=float)
        front = pts[non_dominated(pts * signs)]
        front = front[np.argsort(front[:, 0])]
        ax.plot(front[:, 0], front[:, 1], color="black", linewidth=1)
        ax.scatter(front[:, 0], front[:, 1], facecolors="none", edgecolors="black", s=90, linewidths=1.5,
                   label="Pareto front (these two axes)")
    baseline_index = 0
    for method, rows in others.groupby("method", sort=True):
        rows = rows[rows[xcol].notna() & rows[ycol].notna()]
        if not len(rows):
            continue
        if (rows["role"] == "base").all():  # cue model black, clean reference white
            style = {"marker": "s", "color": "black" if method == "base_cue" else "white"}
            kind = "base model"
        else:
            marker = BASELINE_MARKERS[baseline_index % len(BASELINE_MARKERS)]
            style = {"marker": marker, "color": f"C{baseline_index + 1}"}
            kind, baseline_index = "baseline", baseline_index + 1
        if len(rows) == 1:
            ax.scatter(rows[xcol], rows[ycol], edgecolors="black", s=110, zorder=3, label=f"{method} ({kind})", **style)
            continue
        # several base seeds: their mean, with the seed interval as error bars (seeds.INTERVAL_RULE)
        mean = [float(rows[c].mean()) for c in (xcol, ycol)]
        errors = [[[m - lo], [hi - m]] for m, (lo, hi) in zip(mean, (interval(rows[c].tolist()) for c in (xcol, ycol)))]
        ax.errorbar(mean[0], mean[1], xerr=errors[0], yerr=errors[1], color="black", linewidth=1, capsize=3, zorder=2)
        ax.scatter([mean[0]], [mean[1]], edgecolors="black", s=110, zorder=3,
                   label=f"{method} ({kind}; mean of n = {len(rows)} seeds, bars: {interval_name(len(rows))})", **style)
    ax.set_xlabel(axis_label(x_obj.metric, x_obj.mode))
    ax.set_ylabel(axis_label(y_obj.metric, y_obj.mode))
    ax.set_title(f"{spec.get('name', 'study')}: search trials on the study's objectives ({len(search)} completed)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return size.save(fig, file)


# --------------------------------------------------------------------------------------- history
def history_figure(trials: pd.DataFrame, spec: dict, file: Path, size: Size) -> Path | None:
    """Each objective over search trials in the order they finished, with the best so far."""
    search = trials[trials["role"] == "search"].sort_values(["finished_at", "trial_id"], na_position="first")
    if search.empty:
        return None
    objs = objectives(spec)
    fig = size.figure()
    axes = fig.subplots(len(objs), 1, sharex=True, squeeze=False)[:, 0]
    number = np.arange(1, len(search) + 1)
    ok = (search["status"] == "completed").to_numpy()
    for ax, obj in zip(axes, objs):
        col = metric_column(search, obj.metric)
        values = (pd.to_numeric(search[col], errors="coerce").to_numpy(dtype=float) if col in search
                  else np.full(len(search), np.nan))
        values = np.where(ok, values, np.nan)
        ax.scatter(number, values, s=18 if len(search) <= 300 else 5, color="C0", label="completed trial")
        best = pd.Series(values).cummax() if obj.mode == "max" else pd.Series(values).cummin()
        ax.step(number, best.to_numpy(), where="post", color="C3", linewidth=2, zorder=3, label="best so far")
        missing = ~ok
        if missing.any():
            for x in number[missing]:
                ax.axvline(x, color="grey", alpha=0.25, linewidth=0.8)
        ax.set_ylabel(axis_label(obj.metric, obj.mode, short=True))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small",
                  title=f"{int(missing.sum())} failed/pruned (grey lines)" if missing.any() else None)
    axes[-1].set_xlabel("search trial (in the order finished)")
    fig.suptitle(f"{spec.get('name', 'study')}: optimisation history of each objective")
    return size.save(fig, file)


# ------------------------------------------------------------------------------------ efficiency
def efficiency_figure(table: pd.DataFrame, spec: dict, file: Path, size: Size) -> Path | None:
    """Cue reliance and clean accuracy against n_clean (log scale), one line per method with its seed
    interval as a band; the goal's cue reliance as a dashed line. None when no method was measured
    at more than one n_clean."""
    from mmc_sweep.analysis.efficiency import GOAL_CUE_RELIANCE

    if table.empty or table.groupby("method")["n_clean"].nunique().max() < 2:
        return None
    fig = size.figure()
    axes = fig.subplots(1, 2, sharex=True)
    for colour, (method, rows) in zip(itertools.cycle(f"C{i}" for i in range(10)), table.groupby("method", sort=True)):
        for ax, metric in zip(axes, ("cue_reliance", "acc_clean")):
            ax.plot(rows["n_clean"], rows[metric], marker="o", color=colour, label=f"{method} (n = {rows['n_models'].max()})")
            ax.fill_between(rows["n_clean"], rows[metric + "_lo"], rows[metric + "_hi"], color=colour, alpha=0.15,
                            linewidth=0)
    axes[0].axhline(GOAL_CUE_RELIANCE, color="grey", linestyle="--", linewidth=1, label=f"goal ({GOAL_CUE_RELIANCE:g})")
    for ax, metric in zip(axes, ("cue_reliance", "acc_clean")):
        ax.set_xscale("log")
        ax.set_xlabel("n_clean (clean images fine-tuning saw)")
        ax.set_ylabel(axis_label(metric))
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize="small", title="method (models per point)")
    fig.suptitle(f"{spec.get('name', 'study')}: sample efficiency (bands: seed intervals)")
    return size.save(fig, file)


# ------------------------------------------------------------------------------------ revival
def revival_figure(curves: pd.DataFrame, cue_reliance: float, spec: dict, file: Path, size: Size) -> Path | None:
    """Mean cue reliance against re-training steps on cue data (step 0 at the left edge of a symlog
    axis), one line per method with the range over its models as a band; half the cue model's cue
    reliance (what revival_steps counts to) as a dashed line. None without revival curves."""
    if curves.empty:
        return None
    fig = size.figure()
    ax = fig.subplots()
    for colour, (method, rows) in zip(itertools.cycle(f"C{i}" for i in range(10)), curves.groupby("method", sort=True)):
        ax.plot(rows["step"], rows["cue_reliance"], marker="o", color=colour, label=f"{method} (n = {rows['n_models'].max()})")
        ax.fill_between(rows["step"], rows["cue_reliance_min"], rows["cue_reliance_max"], color=colour, alpha=0.15, linewidth=0)
    if cue_reliance == cue_reliance:  # not NaN: the study's cue models were measured
        ax.axhline(cue_reliance / 2, color="grey", linestyle="--", linewidth=1, label="half the cue model's")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set_xlabel("SGD steps of re-training on cue data")
    ax.set_ylabel(axis_label("cue_reliance"))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small", title="method (models)")
    fig.suptitle(f"{spec.get('name', 'study')}: does the cue come back? (bands: range over models)")
    return size.save(fig, file)


# ------------------------------------------------------------------------------------ importance
def importance_figure(importance: dict[str, dict[str, Any]], spec: dict, file: Path, size: Size) -> Path | None:
    """Horizontal bars of parameter importance, one panel per objective (or why it is unavailable)."""
    if not importance:
        return None
    fig = size.figure()
    axes = fig.subplots(1, len(importance), squeeze=False)[0]
    for ax, (metric, entry) in zip(axes, importance.items()):
        ax.set_title(f"{metric} ({entry['mode']}), {entry['n_trials']} trials")
        if entry["importances"]:
            names = list(entry["importances"])[::-1]  # largest on top
            ax.barh(names, [entry["importances"][n] for n in names], color="C0")
            ax.set_xlim(0, 1)
            ax.set_xlabel("importance (share of total, PED-ANOVA)")
            ax.set_ylabel("searched parameter")
            ax.grid(axis="x", alpha=0.3)
        else:
            ax.text(0.5, 0.5, entry["note"], ha="center", va="center", wrap=True, transform=ax.transAxes)
            ax.set_axis_off()
    fig.suptitle(f"{spec.get('name', 'study')}: which searched parameters mattered")
    return size.save(fig, file)
