"""Which searched parameters mattered for each objective: Optuna's parameter importances.

It lives in ``study/search/`` because it uses Optuna (importances are Optuna's own algorithm), which
DESIGN keeps out of the core and the analysis; the analysis imports it lazily, only when asked for
importances, and it reads nothing but the Parquet rows it is given. The Optuna study is rebuilt
in memory from those rows: one study holding the completed search trials, one value per objective, with the
distributions of ``search.space``. The evaluator is PED-ANOVA (Optuna's default in 5.0; it needs
no scikit-learn): it ranks parameters by how much the best trials' values of a parameter differ
from those of all trials, computed for each objective in turn.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import pandas as pd

from mmc_sweep.analysis.pareto import metric_column
from mmc_sweep.analysis.spec import objectives, search_space
from mmc_sweep.analysis.tables import completed

EVALUATOR = "PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator)"


def _python(value: Any) -> Any:
    """Plain Python scalar (Optuna checks parameter values against the distribution's types)."""
    return value.item() if hasattr(value, "item") else value


def _cast(dist: Any, value: Any) -> Any:
    """A recorded value in the type its distribution expects (ints come back as floats beside nulls)."""
    from optuna.distributions import FloatDistribution, IntDistribution

    if isinstance(dist, IntDistribution):
        return int(round(float(value)))
    return float(value) if isinstance(dist, FloatDistribution) else _python(value)


def _distribution(spec: dict[str, Any], values: pd.Series) -> Any:
    """The Optuna distribution of a searched parameter, widened to cover every recorded value."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    kind = str(spec.get("type", "float")).lower()
    if kind.startswith("cat"):
        choices = list(spec.get("choices") or [])
        choices += [v for v in dict.fromkeys(map(_python, values)) if v not in choices]
        return CategoricalDistribution(choices)
    low = min(float(spec.get("low", values.min())), float(values.min()))
    high = max(float(spec.get("high", values.max())), float(values.max()))
    log = bool(spec.get("log", False))
    if kind.startswith("int"):
        return IntDistribution(int(math.floor(low)), int(math.ceil(high)), log=log)
    return FloatDistribution(float(low), float(high), log=log)


def param_importances(trials: pd.DataFrame, spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per objective: ``{mode, n_trials, evaluator, importances: {param: share}, note}``.

    Trials used: completed search trials with a value for every objective the trials table has.
    ``importances`` (shares summing to 1, largest first) is empty and ``note`` says why when fewer
    than 2 such trials exist or no searched parameter takes two different values among them.
    """
    search = completed(trials)
    search = search[search["role"] == "search"]
    space = search_space(spec)
    objs = objectives(spec)
    cols = {o.metric: metric_column(search, o.metric) for o in objs}
    present = [o for o in objs if cols[o.metric] in search.columns]
    rows = search.dropna(subset=[cols[o.metric] for o in present]) if present else search.iloc[0:0]
    params = [p for p in space if f"param_{p}" in rows.columns and rows[f"param_{p}"].notna().all()
              and rows[f"param_{p}"].nunique() > 1]
    found: list[dict[str, float]] = [{} for _ in present]
    failure = None
    if len(rows) >= 2 and params and present:
        try:
            found = _evaluate(rows, [(cols[o.metric], o.mode) for o in present], {p: space[p] for p in params})
        except ValueError as err:  # e.g. a log-scale range that reaches 0 in a hand-edited spec
            failure = f"unavailable: {err}"
    out: dict[str, dict[str, Any]] = {}
    for o in objs:
        entry: dict[str, Any] = {"mode": o.mode, "n_trials": int(len(rows)) if o in present else 0,
                                 "evaluator": EVALUATOR, "importances": {}, "note": None}
        if o not in present:
            entry["note"] = f"unavailable: the trials table has no column {o.metric}"
        elif len(rows) < 2:
            entry["note"] = f"unavailable: {len(rows)} completed search trial(s) with every objective, need >= 2"
        elif not params:
            entry["note"] = "unavailable: no searched parameter takes two different values"
        elif failure:
            entry["note"] = failure
        else:
            entry["importances"] = found[present.index(o)]
        out[o.metric] = entry
    return out


def _evaluate(rows: pd.DataFrame, targets: list[tuple[str, str]],
              space: dict[str, dict[str, Any]]) -> list[dict[str, float]]:
    """Importances for each (column, mode) target, from one in-memory study holding every row."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {p: _distribution(s, rows[f"param_{p}"]) for p, s in space.items()}
    # PED-ANOVA explains low values, so maximised objectives are negated; every direction is "minimize".
    signs = [-1.0 if mode == "max" else 1.0 for _, mode in targets]
    study = optuna.create_study(directions=["minimize"] * len(targets))
    param_cols = [f"param_{p}" for p in space]
    value_cols = [col for col, _ in targets]
    study.add_trials([
        optuna.trial.create_trial(
            params={p: _cast(dists[p], v) for p, v in zip(space, row[:len(space)])},
            distributions=dists,
            values=[sign * float(v) for sign, v in zip(signs, row[len(space):])],
        )
        for row in rows[param_cols + value_cols].itertuples(index=False, name=None)
    ])
    results = []
    with warnings.catch_warnings():  # experimental-feature and "low target" notices: both handled
        warnings.simplefilter("ignore")
        for i in range(len(targets)):
            result = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), target=lambda t, i=i: t.values[i])
            # A degenerate target (all values equal) can give NaN shares: report those as 0.
            shares = {p: float(v) if math.isfinite(v) else 0.0 for p, v in result.items()}
            results.append(dict(sorted(shares.items(), key=lambda kv: -kv[1])))
    return results
