"""One process at a time writes a study: its driver, or ``compact``.

An advisory ``flock`` on ``<study>/.lock``: the kernel drops it when the holder dies, even by
SIGKILL, so a crashed driver never leaves the study locked. Local and shared POSIX folders only
(studies at a ``pyarrow.fs`` URI are not locked).
"""
from __future__ import annotations

import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mmc_sweep.errors import InputError

LOCK_FILE = ".lock"


def _in_use(folder: Path, holder: str) -> InputError:
    return InputError(f"{folder}: the study is in use by another process ({holder.strip() or 'unknown'}); "
                      "wait for it to finish, or stop it first")


def check_not_in_use(folder: Path) -> None:
    """Raise :class:`InputError` when another process holds the study's lock; creates and takes nothing
    (a driver asks before Ray starts, so a second driver is refused with nothing written)."""
    try:
        f = open(folder / LOCK_FILE)
    except FileNotFoundError:  # never locked: a new study
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(folder, f.read()) from None
        fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def study_lock(folder: Path) -> Iterator[None]:
    """Hold the study's lock, or raise :class:`InputError` naming the process that holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise _in_use(folder, f.read()) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
