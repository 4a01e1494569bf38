"""The test-only fault points: one switch, parsed in one place, read nowhere else (issue 18, item 4).
The faults themselves are exercised by test_interrupts, test_compaction and test_failures."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmc_sweep.study import faults

REPO = Path(__file__).resolve().parents[1]


def test_the_switch_sets_named_points(monkeypatch):
    monkeypatch.delenv(faults.ENV, raising=False)
    assert all(faults.fault(name) is None for name in faults.POINTS)  # outside tests: nothing fires
    monkeypatch.setenv(faults.ENV, " kill_after_table = history , worker_exit_epoch=2,")
    assert faults.active() == {"kill_after_table": "history", "worker_exit_epoch": "2"}
    assert faults.fault("kill_in_compaction") is None
    faults.kill_if("kill_after_table", "trials")  # another value: this process lives on


def test_switch_builds_what_active_reads():
    env = faults.switch(kill_in_compaction="between", worker_exit_epoch=3)
    assert faults.active(env) == {"kill_in_compaction": "between", "worker_exit_epoch": "3"}


@pytest.mark.parametrize("value", ["kill_after_tabel=history", "worker_exit_epoch", "=2"])
def test_a_misspelt_point_is_an_error_not_a_fault_that_never_fires(value):
    with pytest.raises(ValueError, match=faults.ENV):
        faults.active({faults.ENV: value})


def test_unknown_points_are_refused_where_they_are_read():
    with pytest.raises(KeyError):
        faults.fault("kill_somewhere")
    with pytest.raises(KeyError):
        faults.switch(kill_somewhere=1)


def test_every_point_is_read_in_the_package_and_the_switch_only_by_faults():
    sources = {p: p.read_text() for p in (REPO / "mmc_sweep").rglob("*.py")}
    faults_module = REPO / "mmc_sweep" / "study" / "faults.py"
    readers = sorted(str(p.relative_to(REPO)) for p, text in sources.items() if "MMC_SWEEP_FAULT" in text and p != faults_module)
    assert not readers, readers
    for name in faults.POINTS:  # a point that no code reads is a fault that tests nothing
        assert any(f'"{name}"' in text for p, text in sources.items() if p != faults_module), name
