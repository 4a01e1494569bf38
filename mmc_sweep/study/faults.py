"""Test-only fault points: the named places where a test makes the harness die on purpose.

One switch turns them on, the environment variable ``MMC_SWEEP_FAULTS``: comma-separated
``point=value`` items, e.g. ``MMC_SWEEP_FAULTS="kill_after_table=history,worker_exit_epoch=2"``.
Outside tests it is unset and every point reads ``None``. The code reads a point with :func:`fault`
(or :func:`kill_if`) exactly where its fault is injected; a point this module does not list is an
error, so a misspelt fault fails its test instead of testing nothing.
"""
from __future__ import annotations

import os
import signal
from typing import Mapping

ENV = "MMC_SWEEP_FAULTS"

# every fault point and what its value means (one line each)
POINTS = {
    "kill_after_table": "the driver SIGKILLs itself right after writing this table (paths, history or trials) of a trial",
    "kill_in_compaction": "a compacting process SIGKILLs itself at TABLE:STEP: writing (a compacted file half-written), "
                          "staged, marked, between (two-rename swap), swapped, cleanup (old folder partly removed), recover",
    "kill_between_ask_and_tag": "the driver SIGKILLs itself after its Nth Optuna ask, before the trial is tagged with its "
                                "Tune trial (N counts this driver's asks)",
    "disk_full_after": "the driver's storage is full after N more writes: every later write of the study's store in "
                       "this process fails with ENOSPC (N counts from when the switch was set)",
    "worker_disk_full_after": "each trial worker's storage is full after its first N writes (as disk_full_after, in "
                              "the workers; read on the driver and passed to the trials)",
    "worker_exit_epoch": "each fine-tuning trial's worker exits hard once, at the start of this epoch's report "
                         "(read on the driver and passed to the trials: workers may not share its environment)",
    "signal_at": "the driver sends itself SIGINT or SIGTERM as a phase begins: PHASE:INT or PHASE:TERM, PHASE one of "
                 "start (Ray up, nothing written), base, reference, search (a first epoch result), compaction, summary",
    "nan_metric": "each fine-tuning trial's final loss on this view (clean, cue, rand_cue or rand_img) is NaN "
                  "(read on the driver and passed to the trials)",
}


def active(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The points the switch in ``environ`` (default: this process's environment) sets, with their
    values (empty outside tests)."""
    text = (os.environ if environ is None else environ).get(ENV, "")
    points: dict[str, str] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or name not in POINTS:
            raise ValueError(f"{ENV}={text!r}: {item!r} is not POINT=VALUE with a POINT of {', '.join(POINTS)}")
        points[name] = value
    return points


def fault(name: str) -> str | None:
    """The value the switch gives point ``name``, or None where it is not set. Read per call (not
    cached): a test sets the switch after this module is imported."""
    if name not in POINTS:
        raise KeyError(f"{name!r} is not a fault point ({', '.join(POINTS)})")
    return active().get(name)


def kill_if(name: str, value: str) -> None:
    """SIGKILL this process when point ``name`` is set to ``value``: a hard death (no cleanup, no
    atexit, no flushed buffers), like a machine that loses power or the OOM killer."""
    if fault(name) == value:
        os.kill(os.getpid(), signal.SIGKILL)


_PASSES: dict[str, tuple[str | None, int]] = {}  # point -> (the switch's text, times passed since it was set)


def nth_pass(name: str) -> tuple[int, int] | None:
    """Test-only, for points whose value N counts passes: (how often this process passed point
    ``name``, this call included, since the switch (its whole text) was set; N), or None when unset."""
    text, value = os.environ.get(ENV), fault(name)
    if value is None:
        _PASSES.pop(name, None)
        return None
    switch_text, count = _PASSES.get(name, (None, 0))
    count = count + 1 if switch_text == text else 1
    _PASSES[name] = (text, count)
    return count, int(value)


def kill_at_pass(name: str) -> None:
    """SIGKILL this process (as :func:`kill_if`) at its Nth pass of point ``name``."""
    passed = nth_pass(name)
    if passed is not None and passed[0] == passed[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def switch(**points: object) -> dict[str, str]:
    """The environment entry that sets ``points`` (for tests): ``switch(worker_exit_epoch=3)`` ->
    ``{"MMC_SWEEP_FAULTS": "worker_exit_epoch=3"}``."""
    unknown = set(points) - set(POINTS)
    if unknown:
        raise KeyError(f"not fault points: {sorted(unknown)} ({', '.join(POINTS)})")
    return {ENV: ",".join(f"{name}={value}" for name, value in points.items())}
