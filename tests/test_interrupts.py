"""Ctrl-C and SIGTERM at every phase of a run end it with 130 / 143, one clear message and no
traceback, and leave a study that resumes (mmc_sweep/study/run/interrupt.py). Where each phase is tested:

* start-up (joining a cluster that never answers): here, in driver processes of their own;
* base training and the reference jobs: the grid study of test_study_run.py (Ctrl-C, then SIGTERM,
  then a resume that ends it);
* the search: test_optuna_record.py (SIGTERM, resumed on another machine) and test_study_resume.py
  (Ctrl-C twice: the second aborts at once);
* the final compaction and the summary: test_optuna_record.py::test_any_optuna_storage_url.

In-process phases use the fault point ``signal_at`` (the driver signals itself as the phase begins).
"""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from study_files import write_study

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # driver processes of their own: a hung connect ends one with os._exit
def test_a_hung_start_up_ends_at_the_connect_timeout_or_at_a_signal_with_nothing_written(tmp_path):
    """Three drivers join a head that never answers, at once: one is given up at --connect-timeout
    (exit 2), one gets Ctrl-C and one SIGTERM while they wait (130 and 143). Each says so in one line."""
    import signal
    import time

    spec_file = write_study(tmp_path, "silent")
    with socket.socket() as listener:  # accepts connections and never says a word, like a hung head node
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        drivers = {}
        for case, timeout_s in (("timeout", 1), ("INT", 60), ("TERM", 60)):
            drivers[case] = subprocess.Popen(
                [sys.executable, "run_study.py", "run", str(spec_file), "--storage", str(tmp_path / case),
                 "--address", address, "--connect-timeout", str(timeout_s)],
                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(_accepted(listener)) < 3 and time.monotonic() < deadline:
            pass  # every driver is past its imports and inside Ray's connect
        for case in ("INT", "TERM"):
            drivers[case].send_signal(getattr(signal, f"SIG{case}"))
        outputs = {case: proc.communicate(timeout=120) for case, proc in drivers.items()}
    lines = {case: (out + err).strip().splitlines() for case, (out, err) in outputs.items()}
    assert (drivers["timeout"].returncode, lines["timeout"]) == (2, [f"error: --address {address}: no Ray cluster answered within 1 s"])
    assert (drivers["INT"].returncode, lines["INT"]) == (130, ["interrupted while starting: nothing was written"]), lines
    assert (drivers["TERM"].returncode, lines["TERM"]) == (143, ["interrupted while starting: nothing was written"]), lines
    assert not any((tmp_path / case).exists() for case in drivers)


def _accepted(listener: socket.socket, peers: list = []) -> list:  # noqa: B006  (kept open: a closed socket is a refusal)
    listener.settimeout(0.2)
    try:
        peers.append(listener.accept()[0])
    except TimeoutError:
        pass
    return peers
