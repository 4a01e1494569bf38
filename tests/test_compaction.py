"""Compaction of a study's part files: same rows, fewer files, atomic, and readers see one table.

Studies here are the hand-made one of the analysis tests (known values, schemas that differ
between part files) and a small synthetic one; the crash tests kill a real ``compact`` process
with SIGKILL at each step and read the folder as every reader would.
"""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from analysis_fixtures import write_study
from mmc_sweep.analysis.load import load_study, read_paths
from mmc_sweep.analysis.synthetic import write_synthetic_study
from mmc_sweep.cli import main
from mmc_sweep.results_layout import MARKER, TRIAL_IDS_KEY
from mmc_sweep.study.faults import switch
from mmc_sweep.study.storage.compaction import compact_study
from mmc_sweep.study.storage.lock import study_lock
from mmc_sweep.study.storage.results import finished_trials, read_trial, read_trials, write_trial
from mmc_sweep.study.storage.store import Store

REPO = Path(__file__).resolve().parents[1]
TABLES = ("trials", "paths", "history")
KEYS = {"trials": ["trial_id"], "paths": ["trial_id", "path", "kind", "alpha", "view"], "history": ["trial_id", "epoch"]}


def glob_table(folder: Path, table: str) -> pd.DataFrame:
    """What the README's pandas snippet reads: every visible Parquet file of the table folder."""
    files = sorted(glob.glob(str(folder / "results" / table / "*.parquet")))
    return pd.concat(map(pd.read_parquet, files), ignore_index=True) if files else pd.DataFrame()


def snapshot(folder: Path) -> dict[str, pd.DataFrame]:
    """Every table's rows, sorted by their key, with columns in one order (for comparisons)."""
    out = {}
    for table in TABLES:
        df = glob_table(folder, table)
        if df.empty:
            continue
        df = df.astype(object).where(df.notna(), None)  # a column null in one part file is typed in another
        out[table] = df[sorted(df.columns)].sort_values(KEYS[table]).reset_index(drop=True)
    return out


def assert_same_rows(before: dict[str, pd.DataFrame], folder: Path) -> None:
    after = snapshot(folder)
    assert set(after) == set(before)
    for table, df in before.items():
        got = after[table]
        assert not got.duplicated(KEYS[table]).any(), f"{table}: a row counted twice"
        pd.testing.assert_frame_equal(got[df.columns], df, obj=table)


def analyze_json(folder: Path, capsys) -> dict:
    assert main(["analyze", str(folder), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    report["summary"].pop("study_dir", None)
    return report


def test_compact_keeps_every_row_and_every_analysis_number(tmp_path, capsys):
    folder = write_study(tmp_path / "handmade")
    before, report = snapshot(folder), analyze_json(folder, capsys)
    parts = {t: len(list((folder / "results" / t).glob("*.parquet"))) for t in ("trials", "paths")}
    assert parts["trials"] > 5

    assert main(["compact", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "trials" in out and "paths" in out
    for table in ("trials", "paths"):
        names = sorted(p.name for p in (folder / "results" / table).iterdir())
        assert names == [MARKER, "compacted-000001-000.parquet"], names
        assert json.loads((folder / "results" / table / MARKER).read_text())["parts_merged"] == parts[table]
    assert_same_rows(before, folder)
    assert analyze_json(folder, capsys) == report  # tables, Pareto front, importances: unchanged
    assert main(["compact", str(folder)]) == 0 and "nothing to compact" in capsys.readouterr().out


def test_readers_see_compacted_and_new_part_files_as_one_table(tmp_path):
    folder = write_synthetic_study(tmp_path / "s", n_trials=12, alphas=5)
    store = Store.open(str(tmp_path))
    ids = finished_trials(store, "s")
    one = sorted(ids)[7]
    rows_of_one = read_trial(store, "s", one)
    compact_study(folder)
    compacted = folder / "results" / "paths" / "compacted-000001-000.parquet"
    assert sorted(json.loads(pq.read_schema(compacted).metadata[TRIAL_IDS_KEY])) == sorted(ids - {"base_cue_s0"})
    assert finished_trials(store, "s") == ids
    assert read_trial(store, "s", one) == rows_of_one  # reuse of a compacted trial finds its rows
    assert set(read_paths(folder, [one])["trial_id"]) == {one}
    assert len(read_paths(folder, [one])) == len(rows_of_one["paths"]) == 2 * 5 * 4

    # a trial written after the compaction: a part file next to the compacted one
    path_rows = len(glob_table(folder, "paths"))
    assert path_rows == 40 * 15 + 20  # 3 baselines and 12 search trials, the base pair's one path
    new = {**rows_of_one, "trials": [{**r, "trial_id": "late"} for r in rows_of_one["trials"]],
           "paths": [{**r, "trial_id": "late"} for r in rows_of_one["paths"]], "history": []}
    new = {t: [{k: v for k, v in r.items() if k != "study"} for r in rows] for t, rows in new.items()}
    assert write_trial(store, "s", new, {"spec_hash": "feedfacecafe0001"}) == ["late"]
    assert finished_trials(store, "s") == ids | {"late"}
    assert len(read_trials(store, "s")) == len(ids) + 1
    assert len(glob_table(folder, "paths")) == path_rows + 40
    assert set(load_study(folder).path_trial_ids) == (ids - {"base_cue_s0"}) | {"late"}
    # a committed trial is final: written again (Tune reran it), nothing is added or replaced
    assert write_trial(store, "s", {"trials": [{**new["trials"][0], "acc_clean": 0.0}]}, {}) == ["late"]
    assert read_trial(store, "s", "late")["trials"][0]["acc_clean"] == new["trials"][0]["acc_clean"]

    before = snapshot(folder)
    (done,) = [d for d in compact_study(folder) if d.table == "paths"]
    assert (done.parts_merged, done.files_after) == (1, 1)  # the small compacted file is merged again
    assert sorted(p.name for p in (folder / "results" / "paths").glob("*.parquet")) == ["compacted-000002-000.parquet"]
    assert_same_rows(before, folder)


def test_uncommitted_rows_stay_part_files(tmp_path):
    """A torn trial (paths written, the driver died before its trials row) is not compacted: resume
    may write it again, replacing its part file."""
    folder = write_synthetic_study(tmp_path / "s", n_trials=4, alphas=3)
    torn = folder / "results" / "paths" / "cbft_00002.parquet"
    (folder / "results" / "trials" / "cbft_00002.parquet").unlink()
    before = snapshot(folder)
    compact_study(folder)
    assert torn.is_file() and torn.stat().st_nlink == 1  # linked into the new folder, the old name gone
    assert "cbft_00002" not in json.loads(pq.read_schema(
        folder / "results" / "paths" / "compacted-000001-000.parquet").metadata[TRIAL_IDS_KEY])
    assert_same_rows(before, folder)


def _compact_killed_at(folder: Path, point: str, exchange: bool) -> subprocess.CompletedProcess:
    code = f"from mmc_sweep.study.storage.compaction import compact_study; compact_study({str(folder)!r}, exchange={exchange})"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, **switch(kill_in_compaction=point)},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("point, exchange", [("staged", True), ("swapped", True), ("between", False), ("swapped", False)])
def test_a_compaction_killed_half_way_never_counts_a_row_twice(tmp_path, point, exchange):
    folder = write_synthetic_study(tmp_path / "s", n_trials=6, alphas=3)
    before, study = snapshot(folder), load_study(folder)
    result = _compact_killed_at(folder, point, exchange)
    assert result.returncode == -signal.SIGKILL, result.stderr

    # tables are compacted one by one, paths first: the kill came during the paths table's turn
    if point == "between":  # no live folder for an instant: the glob readers see no rows, never twice ...
        assert not (folder / "results" / "paths").exists()
        assert glob_table(folder, "paths").empty
    else:  # ... otherwise either the parts (killed before the swap) or the compacted files (after it)
        compacted = point == "swapped"
        assert bool(list((folder / "results" / "paths").glob("compacted-*"))) == compacted
        assert_same_rows(before, folder)
    # mmc-sweep's own readers see every row once at every point (they take a complete new folder)
    pd.testing.assert_frame_equal(load_study(folder).trials, study.trials)
    assert len(read_paths(folder)) == len(before["paths"])

    compact_study(folder)  # the next compaction (or run) first finishes or undoes the dead one
    assert_same_rows(before, folder)
    assert sorted(p.name for p in (folder / "results").iterdir()) == sorted(TABLES)  # no leftovers
    assert all([p.name for p in (folder / "results" / t).glob("*.parquet")] == ["compacted-000001-000.parquet"]
               for t in TABLES)


def test_compact_refuses_a_study_in_use_and_bad_folders(tmp_path, capsys):
    folder = write_study(tmp_path / "busy", ["base_cue_0", "cbft_1"])
    before = sorted(p.name for p in (folder / "results" / "trials").iterdir())
    with study_lock(folder):  # as a running driver holds it
        assert main(["compact", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "in use by another process" in err and "pid" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in (folder / "results" / "trials").iterdir()) == before
    assert main(["compact", str(tmp_path / "nope")]) == 2
    assert "not a study folder" in capsys.readouterr().err
    assert main(["compact", "s3://bucket/studies/x"]) == 2
    assert "object store" in capsys.readouterr().err


def test_an_old_part_file_without_newer_columns_is_compacted_with_nulls(tmp_path):
    folder = write_synthetic_study(tmp_path / "s", n_trials=3, alphas=3)
    part = folder / "results" / "paths" / "cbft_00001.parquet"
    pq.write_table(pq.read_table(part).drop_columns(["kind"]), part)  # as a study from before path kinds
    compact_study(folder)
    paths = ds.dataset(str(folder / "results" / "paths"), format="parquet").to_table().to_pandas()
    assert paths.loc[paths.trial_id == "cbft_00001", "kind"].isna().all()
    assert (paths.loc[paths.trial_id != "cbft_00001", "kind"] == "linear").all()
    assert set(read_paths(folder, ["cbft_00001"])["kind"]) == {"linear"}  # the loader's reading of a null kind

