#!/usr/bin/env python
"""Benchmark: where the quickstart's time goes.

Runs the README's main job, ``python run_study.py`` (here ``run --storage <a new folder>``) (search_spaces/quickstart.yaml: base models,
base pair and baselines, 12 search trials), in a fresh process on a fresh storage folder, as a
newcomer would, and reads the ``phase seconds:`` line it prints at its end. ``startup`` is what the
phases do not cover: the interpreter, imports, checking the study, and Ray's shutdown at exit.
Last line:

    quickstart_s=<wall of the whole command> ray_start_s=<x> base_s=<base models> search_s=<search trials>
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as storage:
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "run_study.py", "run", "--storage", storage], cwd=REPO, env=env,
                             capture_output=True, text=True)
        wall = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"the quickstart failed (exit {run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    line = next((l for l in run.stdout.splitlines() if l.startswith("phase seconds:")), None)
    if line is None:
        sys.exit("the quickstart printed no 'phase seconds:' line")
    phases = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}
    phases["startup"] = wall - sum(phases.values())
    best = re.search(r"acc_rand_cue.*", run.stdout)
    print(f"quickstart {wall:.1f} s: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()))
    if best:
        print(f"summary line: {best.group(0).strip()}")
    print(f"quickstart_s={wall:.1f} ray_start_s={phases['ray_start']:.1f} base_s={phases['base']:.1f} "
          f"search_s={phases['search']:.1f}")


if __name__ == "__main__":
    main()
