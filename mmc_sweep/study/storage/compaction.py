"""Compaction: merge a study's per-trial part files (and the pairs command's per-pair ones) into a few
large Parquet files, atomically.

A large study writes one part file per trial and table; opening thousands of one-row files is
what reading it costs. Compaction builds a new table folder next to the live one — compacted files
holding the committed trials' rows, plus hard links to what it leaves alone (big compacted files
from earlier compactions, part files of trials not committed yet) — and swaps it in with one
rename. Readers therefore see either the old folder or the new one, never a row twice or a row
missing (``mmc_sweep.results_layout``). Only one process compacts a study at a time: the driver
(which holds the study lock while it runs) or ``run_study.py compact`` (which takes it).

Local and shared POSIX folders only: object stores have no atomic rename, so studies kept at a
``pyarrow.fs`` URI keep their part files.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmc_sweep.results_layout import (COMPACTED_PREFIX, MARKER, SPEC_HASH_KEY, SPEC_HASHES_KEY, TRIAL_IDS_KEY,
                                      is_compacted, is_visible_parquet, row_ids, spec_hashes_in, staging_folder,
                                      trial_ids_in)
from mmc_sweep.study.faults import kill_if
from mmc_sweep.study.storage.lock import study_lock
from mmc_sweep.study.storage.results import COMMIT_TABLES, PAIR_TABLES, TABLES, finished_trials, part_ids
from mmc_sweep.study.storage.store import Store

ROWS_PER_FILE = 1_000_000  # path rows: ~120 MB in memory while written, ~25 MB on disk
ROW_GROUP_ROWS = 131_072  # row groups, not files, are what a filtered read skips
READ_CHUNK = 256  # part files read at once (two threads)
_GENERATION = re.compile(rf"^{COMPACTED_PREFIX}(\d+)-")


@dataclass(frozen=True)
class TableCompaction:
    table: str
    files_before: int  # visible Parquet files of the table folder
    files_after: int
    parts_merged: int  # part files whose rows went into a compacted file
    rows_written: int
    seconds: float


@dataclass(frozen=True)
class _Input:
    path: Path
    ids: frozenset[str]  # trials it holds
    dropped: frozenset[str]  # trials of it that a newer part file replaces


def recover(results: Path, table: str) -> None:
    """Finish or undo a compaction that died: the live folder is always complete, leftovers go.

    A complete new folder without a live one (died between the two renames of the fallback swap)
    is put in place; an old folder without either is put back. Safe to die anywhere in here too:
    the next call finds a live folder and only leftovers to remove.
    """
    live, staged, old = results / table, staging_folder(results, table), results / f".{table}.old"
    if not live.exists():
        if (staged / MARKER).is_file():
            os.rename(staged, live)
        elif old.is_dir():
            os.rename(old, live)
        kill_if("kill_in_compaction", f"{table}:recover")  # tests: a recovery that dies before its cleanup
    for leftover in (staged, old):
        if leftover.exists():
            shutil.rmtree(leftover)


def recover_study(study_dir: Path) -> None:
    for table in TABLES + PAIR_TABLES:
        recover(Path(study_dir) / "results", table)


@contextmanager
def held_study(study_dir: Path | None) -> Iterator[None]:
    """Hold the study's lock (one writer at a time), a compaction that died half-way finished or undone
    first; nothing to hold for a study in an object store (``None``: no lock and no compaction there)."""
    if study_dir is None:
        yield
        return
    with study_lock(study_dir):
        recover_study(study_dir)
        yield


def compact_study(study_dir: Path, exchange: bool = True) -> list[TableCompaction]:
    """Compact every table of a study folder; returns what was done (tables with nothing to do left out).
    The caller holds the study lock (``mmc_sweep.study.storage.lock``).

    ``exchange=False`` uses the two-rename swap that file systems without ``RENAME_EXCHANGE`` get.
    """
    study_dir = Path(study_dir)
    results = study_dir / "results"
    recover_study(study_dir)
    # trials whose `trials` row is written: their other tables' rows are final (the commit protocol)
    store = Store.open(str(study_dir.parent))
    committed = finished_trials(store, study_dir.name)
    done = [_compact_table(results, table, committed, exchange) for table in TABLES]
    # the pairs command's tables: a pair's layers rows are final once its pairs part is written
    pairs = part_ids(store, study_dir.name, PAIR_TABLES[-1])
    done += [_compact_table(results, table, pairs, exchange) for table in PAIR_TABLES]
    return [d for d in done if d is not None]


def _compact_table(results: Path, table: str, committed: set[str], exchange: bool) -> TableCompaction | None:
    start = time.perf_counter()
    live = results / table
    if not live.is_dir():
        return None
    names = sorted(n for n in os.listdir(live) if is_visible_parquet(n))
    parts = [n for n in names if not is_compacted(n)]
    merged = [n for n in parts if table in COMMIT_TABLES or n.removesuffix(".parquet") in committed]
    replaced = {n.removesuffix(".parquet") for n in merged}
    keep, rewrite = [n for n in parts if n not in merged], []  # uncommitted parts stay parts
    for name in (n for n in names if is_compacted(n)):
        with pq.ParquetFile(live / name) as f:
            ids, rows = frozenset(trial_ids_in(name, f.schema_arrow.metadata)), f.metadata.num_rows
        if ids & replaced or rows < ROWS_PER_FILE // 2:  # small, or holds trials written again since: merged again
            rewrite.append(_Input(live / name, ids, ids & replaced))
        else:
            keep.append(name)
    if not merged and len(rewrite) <= 1:
        return None
    inputs = rewrite + [_Input(live / n, frozenset({n.removesuffix(".parquet")}), frozenset()) for n in merged]
    staged = staging_folder(results, table)
    staged.mkdir()
    for name in keep:
        _link(live / name, staged / name)
    generation = 1 + max((int(m.group(1)) for n in names if (m := _GENERATION.match(n))), default=0)
    rows, files = _write_compacted(inputs, table, staged, generation)
    kill_if("kill_in_compaction", f"{table}:staged")  # tests: every file written, the folder not marked complete
    (staged / MARKER).write_text(json.dumps({"generation": generation, "parts_merged": len(merged),
                                             "compacted_files_written": files, "rows_written": rows,
                                             "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    kill_if("kill_in_compaction", f"{table}:marked")  # tests: complete and marked, not swapped in
    old = _swap(results, table, exchange)
    kill_if("kill_in_compaction", f"{table}:swapped")  # tests: swapped in, the old content still all there
    _remove(old, table)
    return TableCompaction(table, len(names), len(keep) + files, len(merged), rows, time.perf_counter() - start)


def _remove(folder: Path, table: str) -> None:
    """``shutil.rmtree``, an entry at a time: a death part-way leaves a folder that is neither the
    old one nor gone, as a kill inside rmtree would (the tests' kill lands exactly there)."""
    for name in sorted(os.listdir(folder)):
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        kill_if("kill_in_compaction", f"{table}:cleanup")  # tests: one file of the old folder removed
    os.rmdir(folder)


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # same bytes, no copy: the old folder's name for it goes with the old folder
    except OSError:
        shutil.copy2(source, target)


def _swap(results: Path, table: str, exchange: bool) -> Path:
    """Put the staged folder in place of the live one; returns where the old content now is."""
    live, staged = results / table, staging_folder(results, table)
    if exchange and _rename_exchange(staged, live):
        return staged  # one atomic step: the two folders traded names
    old = results / f".{table}.old"
    os.rename(live, old)
    kill_if("kill_in_compaction", f"{table}:between")  # readers take the marked staged folder; recover() ends this
    os.rename(staged, live)
    return old


def _rename_exchange(a: Path, b: Path) -> bool:
    """Linux ``renameat2(RENAME_EXCHANGE)``: swap two paths atomically. False where unsupported (NFS, macOS)."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _read(item: _Input) -> tuple[pa.Table, dict]:
    """One input's rows (minus the replaced trials) and its footer metadata."""
    with pq.ParquetFile(item.path) as f:
        table, metadata = f.read(use_threads=False), f.schema_arrow.metadata or {}
    if item.dropped:
        table = table.filter(pc.invert(pc.is_in(row_ids(table), pa.array(sorted(item.dropped)))))
    return table, metadata


def _aligned(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in its order (missing ones null)."""
    if table.schema.remove_metadata().equals(schema):  # the usual case: every part has the table's schema
        return table
    have = dict(zip(table.column_names, table.columns))
    return pa.Table.from_arrays([have[f.name].cast(f.type) if f.name in have else pa.nulls(table.num_rows, f.type)
                                 for f in schema], schema=schema)


def _write_compacted(inputs: list[_Input], table: str, folder: Path, generation: int) -> tuple[int, int]:
    """Write the inputs' rows, whole inputs in order, into ``compacted-<generation>-<k>.parquet``
    files of about :data:`ROWS_PER_FILE` rows; returns (rows written, files written).

    A file's rows are gathered in memory before it is written, since its footer must name its
    trials and spec hashes: at most ~:data:`ROWS_PER_FILE` rows (~120 MB of path rows) at a time.
    """
    pending: list[tuple[_Input, pa.Table, dict]] = []
    rows = files = pending_rows = 0

    def write() -> None:
        nonlocal rows, files, pending_rows
        # the columns of its inputs, no more: a column an older writer lacked is null in its rows
        schema = pa.unify_schemas([t.schema.remove_metadata() for _, t, _ in pending], promote_options="permissive")
        hashes = sorted(set().union(*(spec_hashes_in(m) for _, _, m in pending)))
        keys = {k: v for _, _, m in pending for k, v in m.items()
                if k.startswith(b"mmc_sweep.") and k not in (SPEC_HASH_KEY, SPEC_HASHES_KEY, TRIAL_IDS_KEY)}
        keys[TRIAL_IDS_KEY] = json.dumps(sorted(set().union(*(i.ids - i.dropped for i, _, _ in pending)))).encode()
        keys[SPEC_HASHES_KEY] = json.dumps(hashes).encode()
        if len(hashes) == 1:  # where readers of part files look for it
            keys[SPEC_HASH_KEY] = hashes[0].encode()
        merged = pa.concat_tables([_aligned(t, schema) for _, t, _ in pending]).replace_schema_metadata(keys)
        path = folder / f"{COMPACTED_PREFIX}{generation:06d}-{files:03d}.parquet"
        tmp = folder / f".{path.name}.tmp"
        with pq.ParquetWriter(tmp, merged.schema) as writer:  # what pq.write_table does, with a place to die in
            writer.write_table(merged, row_group_size=ROW_GROUP_ROWS)
            # tests: the row groups are in the file, its footer (written on close) is not: the torn,
            # unreadable file a death mid-write leaves, under the temporary name readers skip
            kill_if("kill_in_compaction", f"{table}:writing")
        os.replace(tmp, path)
        rows, files = rows + merged.num_rows, files + 1
        pending.clear()
        pending_rows = 0

    with ThreadPoolExecutor(2) as pool:  # footers and pages decode without the GIL
        for start in range(0, len(inputs), READ_CHUNK):
            chunk = inputs[start:start + READ_CHUNK]
            for item, (data, metadata) in zip(chunk, pool.map(_read, chunk)):
                pending.append((item, data, metadata))
                pending_rows += data.num_rows
                if pending_rows >= ROWS_PER_FILE:
                    write()
    if pending:
        write()
    return rows, files
