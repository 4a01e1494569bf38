"""The results' real clients on a finished study: DuckDB reading its Parquet tables, and
optuna-dashboard serving its Optuna journal over HTTP.

Both are optional (the ``test`` extra installs them); without them these tests are skipped.
The study is the session's ``first_study`` (tests/conftest.py): four completed random-search
trials, one baseline and the base models.
"""
from __future__ import annotations

import glob
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from extras import require
from ports import free_port

README = Path(__file__).resolve().parent.parent / "docs" / "analysis.md"  # where the DuckDB query is shown
TOLERANCE = 1e-12


def _files(folder: Path, table: str) -> list[str]:
    """A finished study's part (or compacted) files of one table, as README's readers glob them."""
    files = sorted(glob.glob(str(folder / "results" / table / "*.parquet")))
    assert files, f"no Parquet files under {folder / 'results' / table}"
    return files


def _pandas(folder: Path, table: str) -> pd.DataFrame:
    return pd.concat(map(pd.read_parquet, _files(folder, table)), ignore_index=True)


def _same(a, b) -> bool:
    """Equal within TOLERANCE; a SQL NULL (None) matches pandas' NaN and nothing else."""
    a_missing = a is None or (isinstance(a, float) and math.isnan(a))
    b_missing = b is None or (isinstance(b, float) and math.isnan(b))
    if a_missing or b_missing:
        return a_missing and b_missing
    return math.isclose(float(a), float(b), rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def _readme_duckdb_query() -> str:
    """The README's DuckDB query (the ```sql block that calls read_parquet)."""
    blocks = [b for b in re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.S) if "read_parquet(" in b]
    assert len(blocks) == 1, f"expected one DuckDB query in docs/analysis.md, found {len(blocks)}"
    return blocks[0]


def _on_study(query: str, folder: Path) -> str:
    """``query`` reading ``folder``'s tables instead of the README's example study."""
    pattern = r"read_parquet\('[^']*/results/(\w+)/\*\.parquet'"
    assert re.search(pattern, query), f"README's DuckDB query does not read results/<table>/*.parquet:\n{query}"
    return re.sub(pattern, lambda m: f"read_parquet('{folder.as_posix()}/results/{m.group(1)}/*.parquet'", query)


@pytest.fixture(scope="module")
def study_folder(first_study) -> Path:
    code, store = first_study
    assert code == 0
    return store / "first"


def test_readme_duckdb_query_matches_pandas(study_folder):
    duckdb = require("duckdb")
    readme_query = _readme_duckdb_query()
    averaged = dict(re.findall(r"avg\((\w+)\)\s+AS\s+(\w+)", readme_query, flags=re.I))  # column -> alias
    assert {"acc_clean", "cue_reliance"} <= set(averaged), readme_query
    counted = re.search(r"count\(\*\)\s+AS\s+(\w+)", readme_query, flags=re.I).group(1)

    con = duckdb.connect()
    try:
        cursor = con.execute(_on_study(readme_query, study_folder))
        names = [d[0] for d in cursor.description]
        got = [dict(zip(names, row)) for row in cursor.fetchall()]
    finally:
        con.close()

    trials = _pandas(study_folder, "trials")
    done = trials[trials.status == "completed"]
    expected = done.groupby("method")[list(averaged)].mean()
    counts = done.groupby("method").size()

    assert sorted(r["method"] for r in got) == sorted(expected.index)
    assert {"base_cue", "base_clean", "naive_ft", "cbft"} <= {r["method"] for r in got}
    for row in got:
        method = row["method"]
        assert row[counted] == counts[method], method
        for column, alias in averaged.items():
            assert _same(row[alias], expected.at[method, column]), (method, column, row[alias], expected.at[method, column])
    assert next(r[counted] for r in got if r["method"] == "cbft") == 4  # the study's four completed search trials
    # ORDER BY cue_reliance (ties between methods are possible: accuracies are multiples of 1/100)
    reliance = [r[averaged["cue_reliance"]] for r in got]
    assert reliance == sorted(reliance)


BARRIERS = """
WITH p AS (
    SELECT trial_id, kind, path, view, alpha, loss,
           first_value(loss) OVER w AS first_loss, last_value(loss) OVER w AS last_loss
    FROM read_parquet('{folder}/results/paths/*.parquet', union_by_name = true)
    WINDOW w AS (PARTITION BY trial_id, kind, path, view ORDER BY alpha
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
)
SELECT trial_id, kind, path, view, count(*) AS n, max(loss) AS max_loss,
       max(loss - ((1 - alpha) * first_loss + alpha * last_loss)) AS barrier
FROM p
GROUP BY trial_id, kind, path, view
ORDER BY trial_id, kind, path, view
"""


def test_duckdb_path_barriers_match_pandas_and_the_trials_table(study_folder):
    """Per trial, path kind, path and view: rows, the highest loss and the loss barrier (the straight
    line between the endpoints) computed by DuckDB from `paths`, against pandas on the same files
    and against the `barrier_loss_*` column the harness wrote into the trial's `trials` row."""
    duckdb = require("duckdb")
    con = duckdb.connect()
    try:
        cursor = con.execute(BARRIERS.format(folder=study_folder.as_posix()))
        names = [d[0] for d in cursor.description]
        got = {tuple(row[:4]): dict(zip(names, row)) for row in cursor.fetchall()}
    finally:
        con.close()

    paths = _pandas(study_folder, "paths")
    expected = {}
    for key, group in paths.groupby(["trial_id", "kind", "path", "view"]):
        c = group.sort_values("alpha")
        line = (1 - c.alpha) * c.loss.iloc[0] + c.alpha * c.loss.iloc[-1]
        expected[key] = {"n": len(c), "max_loss": c.loss.max(), "barrier": (c.loss - line).max()}
    assert set(got) == set(expected)

    trials = _pandas(study_folder, "trials").set_index("trial_id")
    search = trials.index[(trials.role == "search") & (trials.status == "completed")]
    assert len(search) == 4
    for trial_id in search:  # two paths x four views of the straight line, three alphas each
        assert sorted((k[2], k[3], got[k]["n"]) for k in got if k[0] == trial_id and k[1] == "linear") == sorted(
            (p, v, 3) for p in ("cue_to_ft", "ft_to_clean") for v in ("clean", "cue", "rand_cue", "rand_img"))
    for key, row in got.items():
        trial_id, kind, path, view = key
        assert row["n"] == expected[key]["n"], key
        assert _same(row["max_loss"], expected[key]["max_loss"]), (key, row["max_loss"], expected[key]["max_loss"])
        assert _same(row["barrier"], expected[key]["barrier"]), (key, row["barrier"], expected[key]["barrier"])
        column = f"barrier_loss_{path}_{view}" if kind == "linear" else f"barrier_loss_{kind}_{path}_{view}"
        assert _same(row["barrier"], trials.at[trial_id, column]), (key, row["barrier"], trials.at[trial_id, column])


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _dashboard_command() -> list[str]:
    script = Path(sys.executable).parent / "optuna-dashboard"  # the installed console script
    if script.is_file():
        return [str(script)]
    found = shutil.which("optuna-dashboard")
    return [found] if found else [sys.executable, "-c", "from optuna_dashboard._cli import main; main()"]


@pytest.fixture
def dashboard(study_folder, tmp_path):
    """``optuna-dashboard <study>/optuna.journal`` in its own process; yields its base URL."""
    require("optuna_dashboard")
    journal = study_folder / "optuna.journal"
    assert journal.is_file()
    port = free_port()
    log = tmp_path / "dashboard.log"
    with open(log, "wb") as out:  # a file, not a pipe: the server logs every request
        proc = subprocess.Popen(_dashboard_command() + [str(journal), "--host", "127.0.0.1", "--port", str(port),
                                                        "--server", "wsgiref", "--quiet"],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"optuna-dashboard exited with {proc.returncode}:\n{log.read_text()}")
            try:
                _get(f"{url}/api/meta")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"optuna-dashboard did not answer on {url} within 60 s:\n{log.read_text()}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _search_rows(folder: Path) -> dict[str, dict]:
    """Completed search trials' rows by trial id, read file by file (each file keeps its column
    types: an int parameter stays an int)."""
    rows = [r for f in _files(folder, "trials") for r in pq.read_table(f).to_pylist()]
    ids = [r["trial_id"] for r in rows]
    assert len(ids) == len(set(ids)), ids  # every trial once, in a part file or a compacted file
    return {r["trial_id"]: r for r in rows if r["role"] == "search" and r["status"] == "completed"}


def test_optuna_dashboard_lists_every_completed_search_trial(study_folder, dashboard):
    spec = yaml.safe_load((study_folder / "study.yaml").read_text())
    objectives = [o["metric"] for o in spec["search"]["objectives"]]
    directions = ["maximize" if o["mode"] == "max" else "minimize" for o in spec["search"]["objectives"]]
    searched = set(spec["search"]["space"])

    studies = _get(f"{dashboard}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["first"]
    summary = studies[0]
    assert summary["directions"] == directions
    owner = {a["key"]: a["value"] for a in summary["user_attrs"]}["mmc_sweep_study"]
    assert Path(owner).resolve() == study_folder.resolve()

    detail = _get(f"{dashboard}/api/studies/{summary['study_id']}")
    assert detail["name"] == "first"
    completed = [t for t in detail["trials"] if t["state"] == "Complete"]
    rows = _search_rows(study_folder)
    assert len(rows) == 4
    assert len(completed) == len(rows)
    by_id = {}
    for trial in completed:
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        by_id[attrs["tune_trial_id"]] = trial
    assert set(by_id) == set(rows)  # every completed search trial, each once

    for trial_id, trial in by_id.items():
        row = rows[trial_id]
        params = {p["name"]: p for p in trial["params"]}
        assert set(params) == searched, trial_id
        for name, p in params.items():
            value = row[f"param_{name}"]
            assert p["param_external_value"] == str(value), (trial_id, name, p, value)
            if p["distribution"]["type"] in ("FloatDistribution", "IntDistribution"):
                assert p["param_internal_value"] == float(value), (trial_id, name, p, value)
        assert trial["values"] == [row[m] for m in objectives], (trial_id, trial["values"])
