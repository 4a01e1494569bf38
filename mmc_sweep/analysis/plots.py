"""The ``plot`` command's work: choose the trials to draw, read only their path rows, write PNGs."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from mmc_sweep.analysis.figures import Size, history_figure, importance_figure, pareto_figure, path_figure
from mmc_sweep.analysis.load import Study, read_paths
from mmc_sweep.analysis.tables import DEFAULT_TOLERANCE_PP, completed, rank_search
from mmc_sweep.errors import InputError


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


def make_figures(study: Study, out_dir: Path, size: Size, trial_ids: Sequence[str] | None = None,
                 tolerance_pp: float = DEFAULT_TOLERANCE_PP, importance: bool = True) -> list[Path]:
    """Write the study's figures into ``out_dir``; return the files written (figures with nothing
    to draw, e.g. paths of a study without any, are skipped)."""
    trials = study.trials
    chosen = check_trials(trials, trial_ids) if trial_ids else default_trials(trials, tolerance_pp)
    out_dir.mkdir(parents=True, exist_ok=True)
    base_pair = list(trials.loc[trials["method"] == "base_clean", "trial_id"])
    paths = read_paths(study.folder, chosen + base_pair)
    written = [
        path_figure(paths, trials, chosen, "cue_to_ft", out_dir / "paths_cue_to_ft.png", size),
        path_figure(paths, trials, chosen, "ft_to_clean", out_dir / "paths_ft_to_clean.png", size),
        pareto_figure(trials, study.spec, out_dir / "pareto.png", size),
        history_figure(trials, study.spec, out_dir / "history.png", size),
    ]
    if importance:
        from mmc_sweep.study.importance import param_importances  # lazy: Optuna, in study/

        written.append(importance_figure(param_importances(trials, study.spec), study.spec,
                                         out_dir / "importance.png", size))
    return [f for f in written if f is not None]
