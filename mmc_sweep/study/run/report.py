"""The short end-of-run report: the Pareto-optimal search trials and where the results are."""
from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from mmc_sweep.analysis.pareto import non_dominated
from mmc_sweep.analysis.tables import views_convention
from mmc_sweep.config import to_dict
from mmc_sweep.study.definition.spec import StudySpec
from mmc_sweep.study.storage.results import read_trials
from mmc_sweep.study.storage.store import Store


def pareto_rows(spec: StudySpec, rows: list[dict]) -> list[dict]:
    """Completed search trials that no other completed search trial beats on every objective."""
    done = [r for r in rows if r["role"] == "search" and r["status"] == "completed"
            and all(r.get(o.metric) is not None for o in spec.search.objectives)]
    if not done:
        return []
    scores = np.array([[r[o.metric] if o.mode == "max" else -r[o.metric] for o in spec.search.objectives] for r in done])
    return [r for r, keep in zip(done, non_dominated(scores)) if keep]


def print_summary(spec: StudySpec, store: Store, console: Console) -> None:
    rows = read_trials(store, spec.name).to_pylist()
    search = [r for r in rows if r["role"] == "search"]
    counts = {s: sum(r["status"] == s for r in search) for s in ("completed", "failed", "pruned")}
    console.print(f"search trials: {counts['completed']} completed, {counts['failed']} failed, {counts['pruned']} pruned")
    front = pareto_rows(spec, rows)
    if front:
        searched = [p.name for p in spec.search.space]
        table = Table(title=f"Pareto-optimal trials ({', '.join(f'{o.metric} {o.mode}' for o in spec.search.objectives)})",
                      caption=views_convention(to_dict(spec)))
        for column in ["trial", *[o.metric for o in spec.search.objectives], "acc_clean", *searched]:
            table.add_column(column, justify="left" if column == "trial" else "right")
        for r in sorted(front, key=lambda r: r[spec.search.objectives[0].metric], reverse=spec.search.objectives[0].mode == "max"):
            values = [r[o.metric] for o in spec.search.objectives] + [r["acc_clean"]]
            params = [r.get(f"param_{n}", r.get(n)) for n in searched]
            table.add_row(r["trial_id"], *(f"{v:.4f}" for v in values), *(_fmt(v) for v in params))
        console.print(table)
    tables = "trials,paths,history" + (",revival" if spec.revival.steps else "")
    console.print(f"results: {store.uri_of(spec.name, 'results')}/{{{tables}}}/*.parquet")
    if store.local_root is not None:  # the analysis commands read local (or mounted) folders
        console.print(f"analyse: python run_study.py analyze {store.local_root / spec.name}")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
