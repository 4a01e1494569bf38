"""Names of the trials table's barrier columns and how tables print them.

A barrier column is ``<type>_<path>_<view>`` for the straight line (``linear``, the name studies
have always used) and ``<type>_<kind>_<path>_<view>`` for the other path kinds, e.g.
``barrier_loss_lmcp_cue_to_ft_cue`` (:func:`mmc_sweep.config.barrier_metric`, torch-free: the
analysis commands need not pay torch's import time).
"""
from __future__ import annotations

from typing import Iterable

from mmc_sweep.config import BARRIER_TYPES, VIEWS  # noqa: F401  (re-exported for the analysis modules)
from mmc_sweep.config import PATH_KINDS as KINDS, PATH_NAMES as PATHS, barrier_metric as barrier_column  # noqa: F401

KIND_LABELS = {"linear": "LMC", "lmcp": "LMCP", "qmc": "QMC"}
# Loss barriers are in nats, accuracy barriers in fraction; the printed label says which one it is.
_TYPE_PREFIX = {"barrier_loss": "", "barrier_acc": "acc ", "barrier_mid_loss": "mid ", "barrier_mid_acc": "mid acc "}


def barrier_columns(kinds: Iterable[str], types: Iterable[str] = ("barrier_loss", "barrier_acc"),
                    paths: Iterable[str] = PATHS, views: Iterable[str] = VIEWS) -> tuple[str, ...]:
    """Every barrier column of ``kinds`` x ``paths`` x ``views`` x ``types``, kind-major."""
    return tuple(barrier_column(t, k, p, v) for k in kinds for p in paths for v in views for t in types)


def parse_barrier_column(name: str) -> tuple[str, str, str, str] | None:
    """``(type, kind, path, view)`` of a barrier column name; None for any other name."""
    for barrier_type in sorted(BARRIER_TYPES, key=len, reverse=True):  # barrier_mid_loss before barrier_loss...
        if name.startswith(barrier_type + "_"):
            rest = name[len(barrier_type) + 1:]
            break
    else:
        return None
    view = next((v for v in sorted(VIEWS, key=len, reverse=True) if rest.endswith("_" + v)), None)
    if view is None:
        return None
    rest = rest[: -len(view) - 1]
    path = next((p for p in PATHS if rest == p or rest.endswith("_" + p)), None)
    if path is None:
        return None
    kind = rest[: -len(path)].rstrip("_") or "linear"
    return barrier_type, kind, path, view


def path_label(path: str) -> str:
    """``cue_to_ft`` -> ``cue→ft``."""
    return path.replace("_to_", "→")


def barrier_label(name: str) -> str | None:
    """Printed header of a barrier column: ``cue→ft @cue`` (linear), ``cue→ft @cue (lmcp)``,
    ``acc cue→ft @cue (qmc)``; None if ``name`` is not a barrier column."""
    parsed = parse_barrier_column(name)
    if parsed is None:
        return None
    barrier_type, kind, path, view = parsed
    suffix = "" if kind == "linear" else f" ({kind})"
    return f"{_TYPE_PREFIX[barrier_type]}{path_label(path)} @{view}{suffix}"


def ordered_kinds(kinds: Iterable[str]) -> list[str]:
    """Distinct kinds in the given order, except that ``linear`` (the paper's LMC) comes first."""
    unique = list(dict.fromkeys(str(k) for k in kinds))
    return (["linear"] if "linear" in unique else []) + [k for k in unique if k != "linear"]
