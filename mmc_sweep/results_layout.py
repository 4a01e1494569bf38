"""How a results table folder is laid out: per-trial part files and compacted files, side by side.

``results/<table>/`` holds ``<trial_id>.parquet`` part files (one trial each, written by the driver
as trials finish) and, once compacted, ``compacted-<generation>-<k>.parquet`` files holding many
trials each. A trial is in exactly one of them, so globbing ``*.parquet`` (pandas, pyarrow datasets,
DuckDB) reads every row once. A compacted file names its trials in its footer
(:data:`TRIAL_IDS_KEY`, a JSON list), so which trials a folder holds is known without reading rows.
The ``pairs`` and ``layers`` tables (``run_study.py pairs``) are laid out the same way, with a pair and
path kind (:func:`pair_part_name`) where the other tables have a trial.

Compaction swaps a whole table folder for a new one in one rename (``mmc_sweep.study.storage.compaction``).
Where the file system cannot exchange two folders atomically, it renames the live folder away and
the new one in: a crash between the two leaves no live folder but a complete ``.<table>.next``
(marked by :data:`MARKER`), which readers take instead and the next run puts in place.

Plain pyarrow: used by the harness (``mmc_sweep.study``) and the analysis alike.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

COMPACTED_PREFIX = "compacted-"
TRIAL_IDS_KEY = b"mmc_sweep.trial_ids"  # compacted files: JSON list of the trial ids they hold
SPEC_HASH_KEY = b"mmc_sweep.spec_hash"  # part files: the spec hash; compacted files: when all agree
SPEC_HASHES_KEY = b"mmc_sweep.spec_hashes"  # compacted files: JSON list of the distinct spec hashes
MARKER = "_compaction.json"  # written last into a new table folder: it is complete
PAIR_SEPARATOR = "--"  # never inside a model id (trial ids, base_<kind>_s<seed>) or a path kind


def pair_part_name(a: str, b: str, kind: str) -> str:
    """The part name (file stem, and id in a compacted footer) of a pair's rows of one path kind."""
    return f"{a}{PAIR_SEPARATOR}{b}{PAIR_SEPARATOR}{kind}"


def row_ids(table: pa.Table) -> pa.Array:
    """The part name each row belongs to: its ``trial_id``, or for pairs and layers its pair and kind."""
    if "trial_id" in table.column_names:
        return table.column("trial_id")
    return pc.binary_join_element_wise(table.column("model_a"), table.column("model_b"), table.column("kind"),
                                       PAIR_SEPARATOR)


def is_compacted(name: str) -> bool:
    return name.startswith(COMPACTED_PREFIX)


def is_visible_parquet(name: str) -> bool:
    """A finished file readers count (temporary files start with ``.``, Parquet skips ``_``)."""
    return name.endswith(".parquet") and not name.startswith((".", "_"))


def staging_folder(results: Path, table: str) -> Path:
    return results / f".{table}.next"


def live_folder(results: Path, table: str) -> Path:
    """The table's folder; during the instant between the two renames of a compaction on a file
    system without an atomic exchange (or after a crash there), the complete new folder."""
    live = results / table
    staged = staging_folder(results, table)
    if not live.exists() and (staged / MARKER).is_file():
        return staged
    return live


def trial_ids_in(name: str, metadata: dict[bytes, bytes] | None) -> list[str]:
    """Trials a file of a table folder holds: a part file's stem, or a compacted file's footer list."""
    if not is_compacted(name):
        return [name.removesuffix(".parquet")]
    return json.loads((metadata or {}).get(TRIAL_IDS_KEY, b"[]"))


def spec_hashes_in(metadata: dict[bytes, bytes] | None) -> list[str]:
    """Spec hashes of the rows of a file (a part file has one, a compacted file a list)."""
    metadata = metadata or {}
    if SPEC_HASHES_KEY in metadata:
        return json.loads(metadata[SPEC_HASHES_KEY])
    return [metadata[SPEC_HASH_KEY].decode(errors="replace")] if SPEC_HASH_KEY in metadata else []


def file_trial_ids(path: Path) -> list[str]:
    """Trials of one file of a local table folder (reads a compacted file's footer only)."""
    if not is_compacted(path.name):
        return trial_ids_in(path.name, None)
    return trial_ids_in(path.name, pq.read_schema(path).metadata)
