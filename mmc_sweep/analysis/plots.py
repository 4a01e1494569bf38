"""The ``plot`` command's work: choose the trials and pairs to draw, read only their path rows, write PNGs.

Connectivity figures (``connectivity_<path>.png``, every path kind of one pair side by side): the
base pair of the first base seed, the control pair when the study has one, and, when the study
measures more than one path kind, the ``cue_to_ft`` path of the first drawn trial (by default the
best search trial).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from mmc_sweep.analysis.efficiency import efficiency_table
from mmc_sweep.analysis.figures import (Size, connectivity_figure, efficiency_figure, history_figure, importance_figure,
                                        pair_title, pareto_figure, path_figure, revival_figure)
from mmc_sweep.analysis.load import Study, read_paths
from mmc_sweep.analysis.map_figures import layers_figure, pairs_figure
from mmc_sweep.analysis.maps import CUE_VIEW, control_barriers, read_layers, read_pairs
from mmc_sweep.analysis.mechanisms import same_mechanism_scale
from mmc_sweep.analysis.report import study_revival
from mmc_sweep.analysis.revival import cue_model_reliance, revival_curves
from mmc_sweep.analysis.spec import base_seeds, path_kinds
from mmc_sweep.analysis.tables import CONTROL_METHOD, DEFAULT_TOLERANCE_PP, completed, rank_search
from mmc_sweep.errors import InputError


@dataclass(frozen=True)
class Pair:
    """One connectivity figure: the path rows of ``trial_id`` on ``path``, its title and file name."""

    trial_id: str
    path: str
    title: str
    file: str


def default_trials(trials: pd.DataFrame, tolerance_pp: float = DEFAULT_TOLERANCE_PP) -> list[str]:
    """The best search trial (see :func:`~mmc_sweep.analysis.tables.best_rule`) and one trial of each
    baseline, from the best trial's base seed when there is one."""
    best = rank_search(trials, tolerance_pp).head(1)
    chosen = list(best["trial_id"])
    seed = best["base_seed"].iloc[0] if len(best) else None
    baselines = completed(trials)
    baselines = baselines[baselines["role"] == "baseline"].sort_values("trial_id")
    for _, rows in baselines.groupby("method", sort=True):
        same_seed = rows[rows["base_seed"] == seed]
        chosen.append(str((same_seed if len(same_seed) else rows)["trial_id"].iloc[0]))
    return chosen


def check_trials(trials: pd.DataFrame, ids: Sequence[str]) -> list[str]:
    """``ids`` if all are trials of the study, else :class:`InputError` naming the unknown ones."""
    known = set(trials["trial_id"])
    unknown = [t for t in ids if t not in known]
    if unknown:
        sample = ", ".join(sorted(known)[:5]) + (", ..." if len(known) > 5 else "")
        raise InputError(f"--trial: unknown trial id(s) {', '.join(unknown)}; this study has {sample or 'none'}")
    return list(dict.fromkeys(ids))


def _seed(value) -> object:
    """A base seed as written in the spec (pandas reads the column as float when a row has none)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _first_by_seed(rows: pd.DataFrame, seeds: list) -> pd.Series | None:
    """The row of the first base seed the spec lists (else the lowest seed), None without rows."""
    if rows.empty:
        return None
    key = pd.DataFrame({"rank": rows["base_seed"].map({s: i for i, s in enumerate(seeds)}).fillna(len(seeds)),
                        "seed": rows["base_seed"], "id": rows["trial_id"]})
    return rows.loc[key.sort_values(["rank", "seed", "id"]).index[0]]


def _pair(trial_id: str, path: str, who: str, ends: tuple[str, str]) -> Pair:
    return Pair(trial_id, path, pair_title(path, f"{who} ({trial_id})", ends), f"connectivity_{path}.png")


def connectivity_pairs(trials: pd.DataFrame, spec: dict, chosen: Sequence[str]) -> list[Pair]:
    """The pairs drawn as connectivity figures (see the module docstring)."""
    done, seeds = completed(trials), base_seeds(spec)
    base_rows = done[done["role"] == "base"]
    pairs = []
    base = _first_by_seed(base_rows[base_rows["method"] == "base_clean"], seeds)
    if base is not None:
        s = _seed(base["base_seed"])
        pairs.append(_pair(base["trial_id"], "cue_to_clean", f"base pair, seed {s}",
                           (f"cue model (seed {s})", f"clean reference (seed {s})")))
    control = _first_by_seed(base_rows[base_rows["method"] == CONTROL_METHOD], seeds)
    if control is not None:
        a = _seed(control["base_seed"])
        b = seeds[seeds.index(a) + 1] if a in seeds[:-1] else "the next base seed"
        pairs.append(_pair(control["trial_id"], "clean_to_clean", "control pair, clean references of two seeds",
                           (f"clean reference (seed {a})", f"clean reference (seed {b})")))
    if len(path_kinds(spec)) > 1 and chosen:
        row = trials.set_index("trial_id").loc[chosen[0]]
        pairs.append(_pair(chosen[0], "cue_to_ft", str(row["method"]),
                           (f"cue model (seed {_seed(row['base_seed'])})", "fine-tuned model")))
    return pairs


LAYER_PANELS = 6  # pairs x kinds drawn in layers.png


def map_figures(study: Study, out_dir: Path, size: Size) -> list[Path | None]:
    """``pairs.png`` (the barrier matrices with their mechanism groups) and ``layers.png`` (layer-wise
    barriers), when ``run_study.py pairs`` measured them."""
    pairs = read_pairs(study)
    control = control_barriers(pairs, study.trials)
    name = study.spec.get("name", "study")
    scale = same_mechanism_scale(control.get(("linear", CUE_VIEW)))
    layers = read_layers(study)
    panels = layers[["model_a", "model_b", "kind"]].drop_duplicates()
    title = f"{name}: which layers carry the difference"
    if len(panels) > LAYER_PANELS:  # readable panels: the pairs whose layers differ most on the cue view
        cue = layers[layers["view"] == CUE_VIEW].groupby(["model_a", "model_b", "kind"])["barrier_loss"].max()
        keep = set(cue.sort_values(ascending=False, kind="stable").index[:LAYER_PANELS])
        layers = layers[[k in keep for k in zip(layers["model_a"], layers["model_b"], layers["kind"])]]
        title += f" (the {LAYER_PANELS} of {len(panels)} pairs x kinds with the largest on {CUE_VIEW})"
    return [pairs_figure(pairs, {}, control, f"{name}: loss barriers between its models", out_dir / "pairs.png", size),
            layers_figure(layers, title, out_dir / "layers.png", size, scale=scale, scale_view=CUE_VIEW)]


def make_figures(study: Study, out_dir: Path, size: Size, trial_ids: Sequence[str] | None = None,
                 tolerance_pp: float = DEFAULT_TOLERANCE_PP, importance: bool = True) -> list[Path]:
    """Write the study's figures into ``out_dir``; return the files written (figures with nothing
    to draw, e.g. paths of a study without any, are skipped)."""
    trials = study.trials
    chosen = check_trials(trials, trial_ids) if trial_ids else default_trials(trials, tolerance_pp)
    out_dir.mkdir(parents=True, exist_ok=True)
    base_pair = list(trials.loc[trials["method"] == "base_clean", "trial_id"])
    pairs = connectivity_pairs(trials, study.spec, chosen)
    paths = read_paths(study.folder, list(dict.fromkeys(chosen + base_pair + [p.trial_id for p in pairs])))
    written = [
        path_figure(paths, trials, chosen, "cue_to_ft", out_dir / "paths_cue_to_ft.png", size),
        path_figure(paths, trials, chosen, "ft_to_clean", out_dir / "paths_ft_to_clean.png", size),
        *(connectivity_figure(paths[(paths["trial_id"] == p.trial_id) & (paths["path"] == p.path)], p.title,
                              out_dir / p.file, size) for p in pairs),
        pareto_figure(trials, study.spec, out_dir / "pareto.png", size),
        history_figure(trials, study.spec, out_dir / "history.png", size),
        efficiency_figure(efficiency_table(trials), study.spec, out_dir / "efficiency.png", size),
        revival_figure(revival_curves(trials, study_revival(study)), cue_model_reliance(trials), study.spec,
                       out_dir / "revival.png", size),
        *map_figures(study, out_dir, size),
    ]
    if importance:
        from mmc_sweep.study.search.importance import param_importances  # lazy: Optuna, in study/search/

        written.append(importance_figure(param_importances(trials, study.spec), study.spec,
                                         out_dir / "importance.png", size))
    return [f for f in written if f is not None]
