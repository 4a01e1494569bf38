"""Read a study folder: the resolved spec (``study.yaml``) and its finished Parquet files.

Only finished files are read: the harness writes ``.<name>`` and renames it into place, and names
starting with ``.`` or ``_`` are skipped, so a running study can be read at any time. A table folder
holds per-trial part files and compacted files (``mmc_sweep.results_layout``); both are read as one
table. Until a study is compacted the cost is opening files (~1 ms of CPU each, ~2.5 ms with the
~250 columns the barriers of three path kinds give: mostly parsing the footer, which pyarrow does
without the GIL), not decoding rows: files are read in a small thread pool (2 threads: 1.6-1.8x
faster on 2 cores than one after another). A compaction that swaps a folder while it is read
makes a listed file vanish: the read starts again. Only the columns the analysis uses
are read (barriers: loss and accuracy of the study's path kinds only), and schemas are unified so
a column missing from, or all-null in, some files is kept. Old studies lack the newer columns
(other path kinds, the invariance metrics of path rows): they are read as nulls.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml

from mmc_sweep.analysis.columns import VIEWS, barrier_columns
from mmc_sweep.analysis.spec import objectives, path_kinds
from mmc_sweep.config import INVARIANCE_METRICS  # of every path point, since there are path kinds
from mmc_sweep.errors import InputError, first_line
from mmc_sweep.results_layout import file_trial_ids, is_compacted, is_visible_parquet, live_folder, spec_hashes_in

# Columns every trials frame has after loading (missing ones are added as nulls).
ID_COLUMNS = ("trial_id", "role", "status", "method", "base_seed")
INFO_COLUMNS = ("error", "device", "duration_s", "finished_at")
METRIC_COLUMNS = tuple(f"acc_{v}" for v in VIEWS) + ("cue_reliance", "revival_steps", "revival_auc")
# views_cue: which views a path was evaluated on (full | train; null in studies from before paths.views_cue)
PATH_COLUMNS = ("trial_id", "path", "kind", "bn_reset", "views_cue", "alpha", "view", "loss", "acc") + INVARIANCE_METRICS
_THREADS = 2  # footers and path rows are decoded without the GIL: a second thread pays off


@dataclass(frozen=True, eq=False)  # eq=False: comparing DataFrames has no single truth value
class Study:
    """A study as the analysis sees it. ``trials`` has one row per finished trial, every status."""

    folder: Path  # where it is read from (a local copy for a study at a URI: see fetch_study)
    spec: dict[str, Any]
    trials: pd.DataFrame
    spec_hashes: tuple[str, ...]  # distinct spec hashes of the trials files (``mmc_sweep.spec_hash``)
    path_trial_ids: frozenset[str]  # trials whose paths part file is written
    unreadable: tuple[str, ...]  # part files that could not be read (named, then skipped)
    location: str = ""  # the folder or URI as the user gave it (tables and labels show it)

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or self.folder.name)


def fetch_study(uri: str, into: Path) -> Path:
    """A local copy of a study kept at a ``pyarrow.fs`` URI (``s3://bucket/studies/NAME?endpoint_override=…``):
    its ``study.yaml`` and ``results/`` (one request per file: the Parquet files are small and read whole
    anyway). Returns the copy's folder, ``into/NAME``."""
    try:
        fs, root = pafs.FileSystem.from_uri(uri)
    except (OSError, pa.ArrowException, ValueError) as err:
        raise InputError(f"{uri}: cannot open this URI ({first_line(err)})") from None
    root = root.rstrip("/")
    local = into / root.rsplit("/", 1)[-1]
    local.mkdir(parents=True)
    try:
        if fs.get_file_info(f"{root}/study.yaml").type != pafs.FileType.File:
            raise InputError(f"{uri}: not a study folder (no study.yaml); expected <storage>/<study>/study.yaml")
        pafs.copy_files(f"{root}/study.yaml", str(local / "study.yaml"), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())
        if fs.get_file_info(f"{root}/results").type == pafs.FileType.Directory:
            pafs.copy_files(f"{root}/results", str(local / "results"), source_filesystem=fs,
                            destination_filesystem=pafs.LocalFileSystem())
    except OSError as err:  # the store refused or is unreachable
        raise InputError(f"{uri}: cannot read the study ({first_line(err)})") from None
    return local


def table_files(folder: Path, table: str) -> list[Path]:
    """Finished files (part and compacted) of one table of a study folder, sorted; none if the table
    does not exist yet."""
    where = live_folder(folder / "results", table)
    if not where.is_dir():
        return []
    return sorted(where / n for n in os.listdir(where) if is_visible_parquet(n))


def read_spec(folder: Path) -> dict[str, Any]:
    """``study.yaml`` as a dict; :class:`InputError` if the folder is not a study."""
    spec_file = folder / "study.yaml"
    if not spec_file.is_file():
        what = "folder does not exist" if not folder.exists() else "no study.yaml"
        raise InputError(f"{folder}: not a study folder ({what}); expected <storage>/<study>/study.yaml")
    try:
        spec = yaml.safe_load(spec_file.read_text())
    except yaml.YAMLError as err:
        raise InputError(f"{spec_file}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise InputError(f"{spec_file}: expected a mapping of study settings, got {type(spec).__name__}")
    return spec


def study_barrier_columns(spec: dict[str, Any]) -> tuple[str, ...]:
    """Barrier columns the analysis reads: loss (nats) and accuracy (fraction) barriers of every
    path and view, for the path kinds the study measures (the mid-point variants stay on disk)."""
    return barrier_columns(path_kinds(spec))


def _trials_column_wanted(spec: dict[str, Any]) -> Callable[[str], bool]:
    """Columns the analysis uses: identity, parameters, metrics, barriers, objectives."""
    keep = set(ID_COLUMNS + INFO_COLUMNS + METRIC_COLUMNS + study_barrier_columns(spec))
    keep |= {o.metric for o in objectives(spec)}
    return lambda name: name in keep or name.startswith("param_")


def _read_one(path: Path, wanted: Callable[[str], bool] | None) -> tuple[pa.Table | None, list[str]]:
    try:
        pf = pq.ParquetFile(path, memory_map=True)
        schema = pf.schema_arrow
        columns = None if wanted is None else [c for c in schema.names if wanted(c)]
        # One-row files: threads inside a file only add overhead; pandas metadata is not needed.
        table = pf.read(columns=columns, use_threads=False, use_pandas_metadata=False)
    except (OSError, pa.ArrowException):  # a damaged file: reported by name, the rest is still read
        if not path.exists():  # gone (a compaction swapped the folder), not damaged: the caller reads again
            raise FileNotFoundError(path) from None
        return None, []
    return table, spec_hashes_in(schema.metadata)


def read_parts(files: Iterable[Path], wanted: Callable[[str], bool] | None = None, threads: int = 1,
               ) -> tuple[pa.Table | None, list[str], list[Path]]:
    """Concatenate files (schemas unified, nulls promoted); also their spec hashes and unreadable files.
    Raises FileNotFoundError when a file vanished since it was listed."""
    files = list(files)
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda f: _read_one(f, wanted), files))
    else:
        results = [_read_one(f, wanted) for f in files]
    tables = [t for t, _ in results if t is not None]
    bad = [f for f, (t, _) in zip(files, results) if t is None]
    hashes = [h for _, file_hashes in results for h in file_hashes]
    if not tables:
        return None, hashes, bad
    return pa.concat_tables(tables, promote_options="permissive"), hashes, bad


def _normalise_trials(table: pa.Table | None, barriers: tuple[str, ...]) -> pd.DataFrame:
    """Trials as pandas, with every column the analysis relies on present (nulls where missing)."""
    df = pd.DataFrame() if table is None else table.to_pandas()
    numeric = METRIC_COLUMNS + barriers + ("duration_s",)
    missing = {c: None if c in ID_COLUMNS + ("error", "device", "finished_at") else float("nan")
               for c in ID_COLUMNS + INFO_COLUMNS + numeric if c not in df.columns}
    if missing:  # one concat, not one insert per column: an old study lacks dozens of barrier columns
        df = pd.concat([df, pd.DataFrame(missing, index=df.index)], axis=1)
    for col in numeric:
        if df[col].dtype != "float64":  # e.g. a column null in every file is read as null type
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["finished_at"] = pd.to_datetime(df["finished_at"], utc=True, errors="coerce")
    # A trial written twice replaces its part file, so ids are unique; keep the latest row anyway.
    df = df.sort_values(["finished_at", "trial_id"], na_position="first", kind="stable")
    return df.drop_duplicates("trial_id", keep="last").reset_index(drop=True)


def _again_if_swapped(read: Callable[[], Any]) -> Any:
    """``read()``, started again when a compaction swapped a table folder under it (a listed file is gone)."""
    for _ in range(4):
        try:
            return read()
        except FileNotFoundError:
            continue
    return read()


def load_study(folder: str | Path, location: str | None = None) -> Study:
    """Read a study folder (running, interrupted, finished or still empty); ``location``: what to call
    it (default: the folder)."""
    folder = Path(folder)
    spec = read_spec(folder)

    def read() -> Study:
        table, hashes, bad = read_parts(table_files(folder, "trials"), _trials_column_wanted(spec), threads=_THREADS)
        return Study(
            folder=folder,
            spec=spec,
            trials=_normalise_trials(table, study_barrier_columns(spec)),
            spec_hashes=tuple(sorted(set(hashes))),
            path_trial_ids=frozenset(t for f in table_files(folder, "paths") for t in file_trial_ids(f)),
            unreadable=tuple(str(f) for f in bad),
            location=location or str(folder),
        )

    return _again_if_swapped(read)


def read_table(folder: str | Path, name: str, columns: Sequence[str]) -> pd.DataFrame:
    """Every row of a results table other than ``trials`` and ``paths`` (``revival``, ...) with
    ``columns`` (null where a file lacks one); an empty frame with them when the study has none."""
    def read() -> pd.DataFrame:
        table = read_parts(table_files(Path(folder), name), threads=_THREADS)[0]
        df = pd.DataFrame(columns=list(columns)) if table is None else table.to_pandas()
        return df.reindex(columns=list(columns))

    return _again_if_swapped(read)


def read_paths(folder: str | Path, trial_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Path rows of some trials (all when ``trial_ids`` is None), as pandas.

    Only the files holding those trials are opened (a part file by its name, a compacted file by the
    trial ids in its footer), and a compacted file is read filtered to them.
    """
    return _again_if_swapped(lambda: _read_paths(Path(folder), None if trial_ids is None else set(trial_ids)))


def _read_paths(folder: Path, wanted: set[str] | None) -> pd.DataFrame:
    files = table_files(folder, "paths")
    if wanted is None:
        return _paths_frame(read_parts(files, threads=_THREADS)[0])
    parts = [f for f in files if not is_compacted(f.name) and f.stem in wanted]
    tables = [t for t in (read_parts(parts, threads=_THREADS)[0],) if t is not None]
    tables += [pq.read_table(f, filters=ds.field("trial_id").isin(sorted(wanted)))
               for f in files if is_compacted(f.name) and wanted.intersection(file_trial_ids(f))]
    return _paths_frame(pa.concat_tables(tables, promote_options="permissive") if tables else None)


def _paths_frame(table: pa.Table | None) -> pd.DataFrame:
    """Path rows with every column of :data:`PATH_COLUMNS`: a missing or null ``kind`` is ``linear``
    (the only kind before there were several: rows of old part files, also once compacted with
    newer ones), missing invariance metrics are null."""
    numeric = ("alpha", "loss", "acc") + INVARIANCE_METRICS
    if table is None or table.num_rows == 0:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c in numeric else "object") for c in PATH_COLUMNS})
    df = table.to_pandas()
    for col in PATH_COLUMNS:
        if col not in df.columns:
            df[col] = "linear" if col == "kind" else float("nan") if col in numeric else None
    df["kind"] = df["kind"].fillna("linear")
    for col in INVARIANCE_METRICS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    return df
