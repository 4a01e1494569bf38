"""The study summary and the paper's method table, computed from the trials rows with pandas.

Method table: one row per model kind, labelled by the trials' ``method`` values: the base models
(``base_cue``, ``base_clean``), each baseline (averaged over base seeds when there are several) and
the best search trials (and, when the search drew several base seeds, the best trial of each
seed averaged: ``<method> (best per seed)``). "Best" is :func:`best_rule`: among completed search trials whose clean
accuracy is within ``tolerance_pp`` percentage points of the best clean accuracy, the lowest cue
reliance (ties: higher clean accuracy, then trial id). Its loss barriers come in four columns per
path kind the study measures (:func:`method_barriers`); the control pair (``control_clean``) is a
pair, not a model, and has no row here (``connectivity`` shows it).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from mmc_sweep.analysis.columns import barrier_column, barrier_columns
from mmc_sweep.analysis.load import Study
from mmc_sweep.analysis.seeds import HI, LO, interval
from mmc_sweep.analysis.spec import baseline_methods, expected_rows, objectives, path_kinds

DEFAULT_TOLERANCE_PP = 2.0  # percentage points of clean accuracy a "best" trial may give up
DEFAULT_TOP = 3  # best search trials shown in the method table
METRICS = ("acc_clean", "acc_cue", "acc_rand_cue", "acc_rand_img", "cue_reliance", "n_clean")
ID_COLUMNS = ("method", "role", "trial_id", "n_models")
BASE_METHODS = ("base_cue", "base_clean")
CONTROL_METHOD = "control_clean"  # role base: the control pair, clean references of two base seeds
ROLES = ("base", "baseline", "search")
BEST_PER_SEED = "(best per seed)"  # method-table row of a search over base seeds: each seed's best trial, averaged
STATUSES = ("completed", "failed", "pruned")


def best_rule(tolerance_pp: float = DEFAULT_TOLERANCE_PP) -> str:
    """The selection rule of the best search trials, in words (printed with every method table)."""
    return (
        f"best search trials: lowest cue_reliance among completed search trials whose acc_clean is within "
        f"{tolerance_pp:g} pp of the best acc_clean (ties: higher acc_clean, then trial id)"
    )


def completed(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["status"] == "completed"]


def with_n_clean(trials: pd.DataFrame) -> pd.DataFrame:
    """``n_clean`` column (clean images the method saw) from ``param_n_clean``; null for base models."""
    out = trials.copy()
    out["n_clean"] = pd.to_numeric(trials["param_n_clean"], errors="coerce") if "param_n_clean" in trials else np.nan
    return out


def within_tolerance(acc_clean: pd.Series, tolerance_pp: float) -> pd.Series:
    """Which clean accuracies are within ``tolerance_pp`` percentage points of the best of them (1e-9
    absorbs float noise: one exactly ``tolerance_pp`` below the best still qualifies)."""
    return acc_clean >= acc_clean.max() - tolerance_pp / 100.0 - 1e-9


def rank_search(trials: pd.DataFrame, tolerance_pp: float = DEFAULT_TOLERANCE_PP) -> pd.DataFrame:
    """Completed search trials, best first by :func:`best_rule`; column ``within_tolerance`` added."""
    s = completed(trials)
    s = s[(s["role"] == "search") & s["acc_clean"].notna() & s["cue_reliance"].notna()].copy()
    if s.empty:
        s["within_tolerance"] = pd.Series(dtype=bool)
        return s
    s["within_tolerance"] = within_tolerance(s["acc_clean"], tolerance_pp)
    s["_neg_acc"] = -s["acc_clean"]
    s = s.sort_values(["within_tolerance", "cue_reliance", "_neg_acc", "trial_id"],
                      ascending=[False, True, True, True], kind="stable")
    return s.drop(columns="_neg_acc").reset_index(drop=True)


def method_barriers(kinds: Sequence[str]) -> tuple[str, ...]:
    """The method table's barrier columns: loss barriers (nats) of ``cue_to_ft`` and ``ft_to_clean``
    on the cue and clean views, four per path kind, e.g. ``barrier_loss_cue_to_ft_cue`` (linear)
    then ``barrier_loss_lmcp_cue_to_ft_cue``."""
    return barrier_columns(kinds, ("barrier_loss",), ("cue_to_ft", "ft_to_clean"), ("cue", "clean"))


def method_columns(kinds: Sequence[str], extra: Sequence[str] = ()) -> tuple[str, ...]:
    """Identity, metrics (then the ``extra`` ones) and barriers, then the seed interval of each."""
    values = METRICS + tuple(extra) + method_barriers(kinds)
    return ID_COLUMNS + values + tuple(c + end for c in values for end in (LO, HI))


def mean_row(method: str, role: str, rows: pd.DataFrame, columns: Sequence[str]) -> dict:
    """One table row: the mean over ``rows`` (models of one kind, e.g. one per base seed) of ``columns``,
    null where no row has a value (or the column was not read); then each column's seed interval
    (``<column>_lo``, ``<column>_hi``: :func:`~mmc_sweep.analysis.seeds.interval`, null below two models)."""
    out: dict = {"method": method, "role": role, "trial_id": ",".join(sorted(map(str, rows["trial_id"]))),
                 "n_models": int(len(rows))}
    present = [col for col in columns if col in rows and rows[col].notna().any()]
    for col in columns:
        out[col] = float(rows[col].mean()) if col in present else np.nan
    for col in columns:
        out[col + LO], out[col + HI] = interval(rows[col].tolist()) if col in present else (np.nan, np.nan)
    return out


def model_groups(trials: pd.DataFrame, spec: dict, top: int = DEFAULT_TOP,
                 tolerance_pp: float = DEFAULT_TOLERANCE_PP) -> list[tuple[str, str, pd.DataFrame]]:
    """The method table's rows before averaging: ``(method, role, completed trials rows)`` for the
    base models, each baseline (in spec order, then others by name) and the ``top`` best search trials."""
    done = with_n_clean(completed(trials))
    groups = [(m, "base", done[(done["role"] == "base") & (done["method"] == m)]) for m in BASE_METHODS]
    baselines = done[done["role"] == "baseline"]
    listed = baseline_methods(spec)
    order = listed + sorted(set(baselines["method"].dropna()) - set(listed))
    groups += [(m, "baseline", baselines[baselines["method"] == m]) for m in order]
    ranked = rank_search(done, tolerance_pp)
    best = ranked.head(max(top, 0))
    groups += [(str(best["method"].iloc[i]), "search", best.iloc[[i]]) for i in range(len(best))]
    if "base_seed" in ranked and ranked["base_seed"].nunique() > 1:  # a search over base seeds: one draw each
        per_seed = pd.concat([rank_search(rows, tolerance_pp).head(1) for _, rows in ranked.groupby("base_seed")])
        groups.append((f"{per_seed['method'].iloc[0]} {BEST_PER_SEED}", "search", per_seed))
    return [g for g in groups if len(g[2])]


def _base_pair_as_cue_to_ft(rows: pd.DataFrame, kinds: Sequence[str]) -> pd.DataFrame:
    """``base_clean`` rows whose ``cue_to_ft`` loss barriers are their ``cue_to_clean`` ones, per kind."""
    names = {barrier_column("barrier_loss", k, "cue_to_ft", v): barrier_column("barrier_loss", k, "cue_to_clean", v)
             for k in kinds for v in ("cue", "clean")}
    return rows.assign(**{ft: rows.get(clean) for ft, clean in names.items()})


def method_table(trials: pd.DataFrame, spec: dict, top: int = DEFAULT_TOP,
                 tolerance_pp: float = DEFAULT_TOLERANCE_PP, kinds: Sequence[str] | None = None,
                 extra: Sequence[str] = ()) -> pd.DataFrame:
    """The paper's method table (columns :func:`method_columns`), completed trials only.

    ``kinds``: the path kinds whose barriers are shown (default: the study's, ``linear`` first).
    ``extra``: more trial columns averaged the same way (``compare``: ``revival_auc``).
    ``base_clean`` is the fine-tuned end of the base pair, so its ``cue_to_ft`` barriers are the
    base pair's ``cue_to_clean`` path of the same kind; its ``ft_to_clean`` (a path to itself) and
    both of ``base_cue``'s paths are not measured and stay null.
    """
    kinds = path_kinds(spec) if kinds is None else list(kinds)
    rows = []
    for method, role, sel in model_groups(trials, spec, top, tolerance_pp):
        if method == "base_clean":
            sel = _base_pair_as_cue_to_ft(sel, kinds)
        rows.append(mean_row(method, role, sel, METRICS + tuple(extra) + method_barriers(kinds)))
    return pd.DataFrame(rows, columns=list(method_columns(kinds, extra)))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def summary(study: Study, tolerance_pp: float = DEFAULT_TOLERANCE_PP) -> dict:
    """Name, spec hash, trial counts by status and role, what is still missing, compute time, devices."""
    t = study.trials
    present = {role: int((t["role"] == role).sum()) for role in ROLES}
    expected = expected_rows(study.spec)
    missing = {role: max(0, expected[role] - present[role]) for role in ROLES}
    # Completed models should have path curves; the cue model is an endpoint and has none of its own.
    needs_paths = completed(t)[completed(t)["method"] != "base_cue"]["trial_id"]
    seconds = float(t["duration_s"].sum(min_count=1)) if len(t) else 0.0
    seconds = 0.0 if np.isnan(seconds) else seconds
    devices = sorted({str(d) for d in t["device"].dropna()})
    out = {
        "study": study.name,
        "folder": study.location,
        "spec_hash": ", ".join(study.spec_hashes) if study.spec_hashes else None,
        "spec_hash_consistent": len(study.spec_hashes) <= 1,
        "trials_finished": int(len(t)),
        **{f"trials_{s}": int((t["status"] == s).sum()) for s in STATUSES},
        **{f"{role}_finished": present[role] for role in ROLES},
        **{f"{role}_expected": expected[role] for role in ROLES},
        "trials_missing": int(sum(missing.values())),
        "trials_without_paths": int((~needs_paths.isin(study.path_trial_ids)).sum()),
        "unreadable_part_files": len(study.unreadable),
        "compute_seconds": seconds,
        "compute_time": _duration(seconds),
        "devices": ", ".join(devices) if devices else None,
        "objectives": ", ".join(o.label for o in objectives(study.spec)),
        "path_kinds": ", ".join(path_kinds(study.spec)),
        "best_rule": best_rule(tolerance_pp),
        "views": views_convention(study.spec),
        "path_views": path_views_convention(study.spec),
        "pairing": pairing_text(study.spec),
    }
    return out


def pairing_text(spec: dict) -> str:
    """How each seed's clean reference relates to its cue models (``base.pairing``; a study from before
    the setting had twins: ``shared``)."""
    pairing = (spec.get("base") or {}).get("pairing", "shared")
    if pairing == "independent":
        return "independent: each clean reference has its own initialisation and batch order"
    return "shared: each clean reference starts from its cue models' initialisation and batch order (twins)"


def path_views_convention(spec: dict) -> str:
    """Which views the paths (barriers, path curves) were evaluated on (paths.views_cue, resolved)."""
    chosen = (spec.get("paths") or {}).get("views_cue", "data")
    if chosen == "data":
        return f"paths on the tables' views ({views_convention(spec)})"
    return f"paths on their own views (paths.views_cue: {chosen}): {views_convention(spec, chosen)}"


def views_convention(spec: dict, views_cue: str | None = None) -> str:
    """Which test images of the cue, rand_cue and rand_img views carry a cue (``views_cue``, default data.views_cue)."""
    data = spec.get("data") or {}
    if (views_cue or data.get("views_cue", "full")) == "train":
        return (f"views cued at the training proportion: {data.get('cue_proportion')} of the cue / rand_cue / "
                f"rand_img test images carry a cue (the reference's convention)")
    return "views fully cued: every cue / rand_cue / rand_img test image carries a cue"
