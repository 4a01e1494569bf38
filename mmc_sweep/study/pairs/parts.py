"""A pair's part files in the study's ``pairs`` and ``layers`` tables: one per pair and path kind, named
by both model ids and the kind, which is how a run (and ``status``) tells what is written."""
from __future__ import annotations

from collections import Counter

from mmc_sweep.results_layout import is_visible_parquet
from mmc_sweep.study.storage.store import Store

SEPARATOR = "--"  # never inside a model id (trial ids, base_<kind>_s<seed>) or a path kind


def part_name(a: str, b: str, kind: str) -> str:
    return f"{a}{SEPARATOR}{b}{SEPARATOR}{kind}"


def written_parts(store: Store, study: str, table: str = "pairs") -> set[str]:
    """Part names (no suffix) of ``table``'s files: one listing, not a request per pair."""
    return {n.removesuffix(".parquet") for n in store.list(study, "results", table) if is_visible_parquet(n)}


def pairs_per_kind(store: Store, study: str) -> dict[str, int]:
    """Pairs written to the study's ``pairs`` table, per path kind (``status``)."""
    return dict(sorted(Counter(name.rsplit(SEPARATOR, 1)[-1] for name in written_parts(store, study)).items()))
