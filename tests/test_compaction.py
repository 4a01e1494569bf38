"""Compaction of a study's part files: same rows, fewer files, atomic, and readers see one table.

Studies here are the hand-made one of the analysis tests (known values, schemas that differ
between part files) and a small synthetic one; the crash tests SIGKILL a compaction (a forked
child) at every step of every table (the pairs command's too), and a trial's writer between its tables, then read the files
directly, as a glob reader and as mmc-sweep's readers do, without dropping duplicates.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import traceback
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from analysis_fixtures import write_study
from mmc_sweep.analysis.load import load_study, read_paths
from mmc_sweep.analysis.synthetic import write_synthetic_study
from mmc_sweep.cli import main
from mmc_sweep.results_layout import MARKER, TRIAL_IDS_KEY, is_visible_parquet, live_folder, pair_part_name
from mmc_sweep.study.faults import switch
from mmc_sweep.study.storage.compaction import compact_study
from mmc_sweep.study.storage.lock import study_lock
from mmc_sweep.study.storage.results import PAIR_TABLES
from mmc_sweep.study.storage.results import TABLES as RESULT_TABLES
from mmc_sweep.study.storage.results import finished_trials, part_ids, read_trial, read_trials, write_part, write_trial
from mmc_sweep.study.storage.store import Store

TABLES = ("trials", "paths", "history", "revival")
KEYS = {"pairs": ["model_a", "model_b", "kind", "view"], "layers": ["model_a", "model_b", "kind", "layer", "view"],
        "trials": ["trial_id"], "paths": ["trial_id", "path", "kind", "alpha", "view"], "history": ["trial_id", "epoch"],
        "revival": ["trial_id", "step"]}


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


STEPS = ("writing", "staged", "marked", "between", "swapped", "cleanup", "recover")  # kill_in_compaction's, in order
SWAPPED = ("between", "swapped", "cleanup", "recover")  # readers already see the compacted folder
TORN = "cbft_00001"  # the tiny study's trial without a trials row: its paths and history files stay parts
COMPACTED = "compacted-000001-000.parquet"
# every table x step, in both swap modes where the step exists in both; ``between`` is the two-rename
# swap's alone, and ``recover`` follows a death there (the recovering process dies before any swap)
ALL_TABLES = RESULT_TABLES + PAIR_TABLES  # in the order compact_study takes them
TORN_PAIR = "b--c--linear"  # the pairs command's torn pair: its layers part written, its pairs part not
KILLS = [(table, step, exchange) for table in ALL_TABLES for step in STEPS for exchange in (True, False)
         if exchange is False or step not in ("between", "recover")]


def compacted_names(table: str) -> list[str]:
    """A compacted table folder's visible files: one compacted file, and the torn trial's (or pair's) part file."""
    torn = {"trials": [], "pairs": [], "layers": [f"{TORN_PAIR}.parquet"]}.get(table, [f"{TORN}.parquet"])
    return torn + [COMPACTED]


def key_counts(files, table: str) -> Counter:
    """Rows per key across ``files``, read one by one and concatenated as a glob reader does: no dedup."""
    counts = Counter()
    for file in files:
        with pq.ParquetFile(file) as f:
            columns = f.read(columns=KEYS[table], use_threads=False).to_pydict()
        counts.update(zip(*(columns[k] for k in KEYS[table])))
    return counts


def sorted_rows(folder: Path, table: str) -> pa.Table:
    """Every row of a table folder's visible files, in key order, without file metadata."""
    tables = [pq.read_table(folder / n).replace_schema_metadata(None) for n in visible(folder)]
    return pa.concat_tables(tables).sort_by([(k, "ascending") for k in KEYS[table]])


def visible(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if is_visible_parquet(n))


def _pair_rows(a: str, b: str, kind: str, barrier: float, table: str) -> list[dict]:
    """A pair's rows of one kind: one per view (pairs) or per view and layer (layers)."""
    extra = [{"layer": layer} for layer in ("trunk.0", "head")] if table == "layers" else [{}]
    return [{"model_a": a, "model_b": b, "kind": kind, "view": view, "barrier_loss": barrier, **more}
            for view in ("clean", "cue") for more in extra]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A prebuilt tiny study (copied per test: cheaper than writing it) with one torn trial, and what
    every reader must see of it: each table's rows per key, its file names, its rows in key order."""
    folder = write_synthetic_study(tmp_path_factory.mktemp("tiny") / "s", n_trials=2, alphas=2)
    for path in (folder / "results").glob("*/*.parquet"):  # fewer files, faster cases: 3-4 a table is enough
        if path.stem not in ("base_cue_s0", "naive_ft_s0", "cbft_00000", TORN) or path.match(f"trials/{TORN}.*"):
            path.unlink()  # base_cue_s0 has no path rows; TORN has no trials row
    store = Store.open(str(folder.parent))
    for a, b in (("a", "b"), ("a", "c")):  # two pairs of the pairs command, and a torn one
        for table in PAIR_TABLES:
            write_part(store, "s", table, pair_part_name(a, b, "linear"), _pair_rows(a, b, "linear", 0.5, table), {})
    write_part(store, "s", "layers", TORN_PAIR, _pair_rows("b", "c", "linear", 9.0, "layers"), {})
    names = {t: visible(folder / "results" / t) for t in ALL_TABLES}
    counts = {t: key_counts([folder / "results" / t / n for n in names[t]], t) for t in ALL_TABLES}
    assert all(set(c.values()) == {1} for c in counts.values()) and f"{TORN}.parquet" in names["paths"]
    return folder, counts, names, {t: sorted_rows(folder / "results" / t, t) for t in ALL_TABLES}


def die_in_child(run, **points) -> None:
    """Run ``run()`` in a forked child with the fault switch set; it must die there by SIGKILL.
    (fork, not a subprocess: no second Python start-up per case.)"""
    pid = os.fork()
    if pid == 0:  # the child: whatever happens, never back into pytest
        try:
            os.environ.update(switch(**points))
            run()
            os._exit(0)  # the fault point was never reached
        except BaseException:
            os.write(2, traceback.format_exc().encode())  # fd 2: shown with the test's output
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"{points}: exit status {status:#x}"


@pytest.mark.parametrize("table, step, exchange", KILLS)
def test_a_compaction_killed_at_any_step_never_counts_a_row_twice(tiny, tmp_path, table, step, exchange):
    source, counts, names, rows = tiny
    folder = Path(shutil.copytree(source, tmp_path / "s"))
    results = folder / "results"
    if step == "recover":  # a compaction dies between its renames, then the one recovering from it dies too
        die_in_child(lambda: compact_study(folder, exchange=False), kill_in_compaction=f"{table}:between")
    die_in_child(lambda: compact_study(folder, exchange=exchange), kill_in_compaction=f"{table}:{step}")

    # tables are compacted one by one in ALL_TABLES order: those before the killed one are done,
    # those after it untouched, and the killed one's leftovers are what its step leaves
    staged, old = results / f".{table}.next", results / f".{table}.old"
    left = {"between": {staged, old}, "recover": {old}, "swapped": {staged if exchange else old},
            "cleanup": {staged if exchange else old}}.get(step, {staged})
    assert sorted(os.listdir(results)) == sorted({t for t in ALL_TABLES if (t, step) != (table, "between")}
                                                 | {p.name for p in left})
    if step in ("writing", "staged", "marked"):  # the new folder: the links to the torn trial's parts, and ...
        made = {"writing": f".{COMPACTED}.tmp", "staged": COMPACTED, "marked": COMPACTED}[step]
        assert sorted(os.listdir(staged)) == sorted(compacted_names(table)[:-1] + [made]
                                                    + ([MARKER] if step == "marked" else []))
    if step == "writing":  # torn: some of its bytes, no footer, under a name no reader opens
        assert (staged / made).stat().st_size > 4
        with pytest.raises(pa.ArrowInvalid):
            pq.read_metadata(staged / made)
    if step in ("swapped", "cleanup", "between"):  # the old folder: whole, or all but its first file
        assert sorted(os.listdir(old if step == "between" or not exchange else staged)) == \
            names[table][1 if step == "cleanup" else 0:]
    if step == "between":
        assert (staged / MARKER).is_file()
    for i, name in enumerate(ALL_TABLES):
        done = i < ALL_TABLES.index(table) or (name == table and step in SWAPPED)
        expected = compacted_names(name) if done else names[name]
        # a glob reader (pandas, pyarrow datasets, DuckDB on results/<table>/*.parquet): never a row twice;
        # every row, except in the instant between the two renames (no folder: nothing)
        files = sorted(glob.glob(str(results / name / "*.parquet")))
        globbed = key_counts(files, name)
        assert globbed == (Counter() if (name, step) == (table, "between") else counts[name]), name
        # mmc-sweep's own readers (live_folder: the complete new folder in that instant): every row once
        where = live_folder(results, name)
        assert visible(where) == expected, name
        ours = [str(where / n) for n in visible(where)]
        assert (globbed if ours == files else key_counts(ours, name)) == counts[name], name  # same files: same rows
    if step == "between":  # the analysis's reader, where it differs from a glob reader
        assert len(read_paths(folder)) == sum(counts["paths"].values())

    compact_study(folder, exchange=exchange)  # the next compaction (or run) first finishes or undoes the dead one
    assert sorted(os.listdir(results)) == sorted(ALL_TABLES)  # no .next, no .old
    for name in ALL_TABLES:  # one compacted file (and the torn trial's or pair's parts), no .tmp
        assert sorted(os.listdir(results / name)) == sorted(compacted_names(name) + [MARKER]), name
        assert key_counts(sorted(glob.glob(str(results / name / "*.parquet"))), name) == counts[name], name
    assert sorted_rows(results / table, table).equals(rows[table])  # and the killed table's values


@pytest.mark.parametrize("last", ["paths", "history"])
def test_a_trial_killed_between_its_table_writes_is_not_committed_and_is_written_again(tiny, tmp_path, last):
    """The commit protocol under a kill: a trial whose writer died after ``last`` stays uncommitted,
    a compaction leaves its files as parts, and writing it again replaces them and commits it."""
    source, counts, _, _ = tiny
    folder = Path(shutil.copytree(source, tmp_path / "s"))
    store, results = Store.open(str(tmp_path)), folder / "results"
    rows = read_trial(store, "s", "cbft_00000")
    payload = {t: [{**{k: v for k, v in r.items() if k != "study"}, "trial_id": "late"} for r in rows[t]]
               for t in RESULT_TABLES}
    # the dying write's values differ from the second one's: what is read at the end shows which one it is
    stale = {**payload, "paths": [{**r, "loss": -1.0} for r in payload["paths"]],
             "history": [{**r, "train_loss": -1.0} for r in payload["history"]]}
    die_in_child(lambda: write_trial(store, "s", stale, {"spec_hash": "feedfacecafe0001"}), kill_after_table=last)

    written = RESULT_TABLES[:RESULT_TABLES.index(last) + 1]
    assert [t for t in RESULT_TABLES if (results / t / "late.parquet").is_file()] == list(written)
    assert "late" not in finished_trials(store, "s")
    late = {t: Counter(tuple(r[k] for k in KEYS[t]) for r in payload[t]) for t in RESULT_TABLES}
    want = {t: counts[t] + (late[t] if t in written else Counter()) for t in RESULT_TABLES}
    compact_study(folder)
    for t in RESULT_TABLES:  # uncommitted: still a part file, in no compacted file's footer, each row once
        assert ((results / t / "late.parquet").is_file(), "late" in json.loads(
            pq.read_schema(results / t / COMPACTED).metadata[TRIAL_IDS_KEY])) == (t in written, False)
        assert key_counts(sorted(glob.glob(str(results / t / "*.parquet"))), t) == want[t], t

    assert write_trial(store, "s", payload, {"spec_hash": "feedfacecafe0001"}) == ["late"]
    assert "late" in finished_trials(store, "s")
    for t in RESULT_TABLES:  # the torn files replaced, not added to
        assert key_counts(sorted(glob.glob(str(results / t / "*.parquet"))), t) == counts[t] + late[t], t
    for t, column in (("paths", "loss"), ("history", "train_loss")):  # the second write's values, not the stale ones
        got = pq.read_table(results / t / "late.parquet").column(column).to_pylist()
        assert got == [r[column] for r in payload[t]] and -1.0 not in got, t
    compact_study(folder)  # committed now: merged like the others
    paths = results / "paths"
    assert visible(paths) == [f"{TORN}.parquet", "compacted-000002-000.parquet"]
    assert key_counts([paths / n for n in visible(paths)], "paths") == counts["paths"] + late["paths"]


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



def test_the_pairs_commands_tables_are_compacted_by_pair_and_a_rewritten_pair_replaces_its_rows(tmp_path):
    """pairs and layers hold a part per pair and kind; a pair's layers are final once its pairs part is
    written (the commit), and a pair written again after a compaction replaces its compacted rows."""
    folder = write_synthetic_study(tmp_path / "s", n_trials=2, alphas=3)
    store = Store.open(str(tmp_path))
    written = {("a", "b", "linear"): 0.5, ("a", "c", "linear"): 1.5, ("a", "b", "lmcp"): 0.25}
    for (a, b, kind), barrier in written.items():
        for table in ("layers", "pairs"):
            write_part(store, "s", table, pair_part_name(a, b, kind), _pair_rows(a, b, kind, barrier, table), {})
    torn = pair_part_name("b", "c", "linear")  # its layers written, its pairs part not (a run stopped between)
    write_part(store, "s", "layers", torn, _pair_rows("b", "c", "linear", 9.0, "layers"), {})

    done = {d.table: d for d in compact_study(folder) if d.table in ("pairs", "layers")}
    assert (done["pairs"].parts_merged, done["pairs"].files_after) == (3, 1)
    assert (done["layers"].parts_merged, done["layers"].files_after) == (3, 2)  # the torn pair's part stays
    assert sorted(p.name for p in (folder / "results" / "layers").glob("*.parquet")) == \
        ["b--c--linear.parquet", COMPACTED]
    pairs_ids = {pair_part_name(*key) for key in written}
    assert part_ids(store, "s", "pairs") == pairs_ids  # from the compacted file's footer
    assert part_ids(store, "s", "layers") == pairs_ids | {torn}
    rows = glob_table(folder, "pairs")
    assert len(rows) == 3 * 2 and sorted(rows["barrier_loss"]) == [0.25, 0.25, 0.5, 0.5, 1.5, 1.5]

    # a->b linear written again (its study rows were measured once more): until the next compaction a glob
    # reader sees both; the compaction keeps the part's rows and drops the compacted ones of that pair
    write_part(store, "s", "pairs", pair_part_name("a", "b", "linear"), _pair_rows("a", "b", "linear", 0.75, "pairs"), {})
    assert len(glob_table(folder, "pairs")) == 4 * 2
    compact_study(folder)
    rows = glob_table(folder, "pairs")
    assert sorted(rows["barrier_loss"]) == [0.25, 0.25, 0.75, 0.75, 1.5, 1.5]
    assert [p.name for p in (folder / "results" / "pairs").glob("*.parquet")] == ["compacted-000002-000.parquet"]
