"""Checks of a study run that need the file system or the data, but no Ray.

They run after the study file is validated and before :func:`mmc_sweep.study.run.runner.run`: a run that
would fail later (in every trial, or once Ray is up) fails here instead, with one ``InputError`` line
naming the option or the file and key, and with nothing created or started. Nothing here writes.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from mmc_sweep.errors import InputError, first_line
from mmc_sweep.study.definition.folder import check_study_name
from mmc_sweep.study.definition.options import RunOptions
from mmc_sweep.study.definition.spec import StudySpec, n_clean_bounds
from mmc_sweep.study.storage.store import Store

# Optuna storage URLs accepted by --optuna-storage: SQLAlchemy URLs of the databases Optuna's RDB
# storage supports (a `+driver` may follow the name, e.g. postgresql+psycopg2)
OPTUNA_SCHEMES = ("sqlite", "postgresql", "mysql")


def preflight(spec: StudySpec, options: RunOptions, source: str) -> None:
    """Every check before a run of ``spec`` with ``options``; ``source`` names the study file in messages."""
    check_address(options.address)
    check_storage(options.storage)
    check_optuna_storage(options.optuna_storage)
    check_data(spec, source)
    check_study_name(Store.open(options.storage), spec)  # run() repeats it, which is cheap


# ---- options ----------------------------------------------------------------------------------

def check_address(address: str | None) -> None:
    """``--address`` (or ``RAY_ADDRESS``) has a form ``ray.init`` takes: auto, local, host:port, ray://host:port."""
    name = "--address"
    if address is None:
        address, name = os.environ.get("RAY_ADDRESS"), "RAY_ADDRESS"
    if not address or address in ("auto", "local"):
        return
    scheme, sep, rest = address.rpartition("://")
    if sep and scheme != "ray":
        raise InputError(f"{name}: expected 'auto', host:port or ray://host:port, got {address!r} (scheme {scheme!r})")
    host, _, port = (rest if sep else address).rpartition(":")
    if not host or any(c.isspace() or c in "/@" for c in host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"{name}: expected 'auto', host:port (port 1-65535) or ray://host:port, got {address!r}")


def check_storage(storage: str) -> None:
    """``--storage`` is a folder that exists or can be created, and can be written (a URI: its file
    system is known and its root is not a file)."""
    if "://" in storage:
        _check_uri_storage(storage)
        return
    problem = _unwritable_folder(Path(storage).expanduser())
    if problem:
        raise InputError(f"--storage: expected a folder that can be created and written, got {storage!r} ({problem})")


def _check_uri_storage(storage: str) -> None:
    import pyarrow.fs as pafs

    try:
        fs, root = pafs.FileSystem.from_uri(storage)
        is_file = fs.get_file_info(root).type == pafs.FileType.File
    except Exception as err:  # unknown scheme, bad bucket name, no credentials: pyarrow says which
        raise InputError(f"--storage: expected a folder or a pyarrow.fs URI (file://, s3://, gs://, ...), got {storage!r} "
                         f"({first_line(err)})") from None
    if is_file:
        raise InputError(f"--storage: expected a folder, got {storage!r} (a file)")


def _unwritable_folder(path: Path) -> str | None:
    """Why ``path`` cannot be used as a folder to write in (None: it can): it, or the nearest of its
    parents that exists, must be a folder this process may write in."""
    path = Path(os.path.abspath(path))
    if path.exists():
        if not path.is_dir():
            return "a file"
        return None if os.access(path, os.W_OK | os.X_OK) else "not writable"
    parent = next(p for p in path.parents if p.exists())
    if not parent.is_dir():
        return f"{parent} is a file"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"cannot create it: {parent} is not writable"


def hide_password(url: str) -> str:
    """A database URL as it may be printed: never with its password."""
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def check_optuna_storage(url: str | None) -> None:
    """``--optuna-storage`` is a database URL Optuna can open (sqlite, postgresql, mysql), its driver is
    installed, and a sqlite file's folder exists or can be created. The database is not contacted."""
    if url is None:
        return
    shown = hide_password(url)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme.split("+", 1)[0] not in OPTUNA_SCHEMES:
        raise InputError(f"--optuna-storage: expected a database URL sqlite:///FILE, postgresql://... or mysql://..., "
                         f"got {shown!r}")
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        parsed.get_dialect().import_dbapi()  # the driver the URL names (or its dialect's default)
    except ImportError as err:
        raise InputError(f"--optuna-storage: expected a URL whose database driver is installed, got {shown!r} "
                         f"({type(err).__name__}: {err})") from None
    except Exception as err:  # malformed URL, unknown +driver
        raise InputError(f"--optuna-storage: expected a valid SQLAlchemy URL, got {shown!r} ({err})") from None
    if scheme.startswith("sqlite"):
        _check_sqlite_file(parsed.database, shown)


def _check_sqlite_file(database: str | None, shown: str) -> None:
    if not database or database == ":memory:":  # trials run in other processes: they need a file
        raise InputError(f"--optuna-storage: expected sqlite:///FILE (a file, not an in-memory database), got {shown!r}")
    path = Path(database).expanduser()
    if path.is_dir():
        raise InputError(f"--optuna-storage: expected sqlite:///FILE, got {shown!r} ({path} is a folder)")
    problem = _unwritable_folder(path.parent)
    if problem:
        raise InputError(f"--optuna-storage: expected a sqlite file whose folder can be created and written, "
                         f"got {shown!r} ({path.parent}: {problem})")


# ---- data ---------------------------------------------------------------------------------------

def check_data(spec: StudySpec, source: str) -> None:
    """CIFAR studies: ``data.root`` holds the set, and every ``n_clean`` the study may use fits its pool
    (the generated sets are checked in the spec, where their size is known)."""
    if spec.data.embedded:
        return
    from mmc_sweep.data.cifar import check_data_root

    try:
        counts = check_data_root(spec.data)
    except ValueError as err:
        raise InputError(f"{source}: {err}") from None
    # class-balanced subsets: n_clean images fit for every seed when each class has ceil(n_clean / C)
    fits = len(counts) * int(counts.min())
    for key, largest in n_clean_bounds(spec):
        if largest > fits:
            raise InputError(f"{source}: {key}: expected at most {fits} clean images ({len(counts)} classes x "
                             f"{int(counts.min())} training images in the smallest class under data.root), got {largest}")
