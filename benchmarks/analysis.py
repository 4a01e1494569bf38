"""How long ``analyze`` takes on a large study: ~1,000,000 path rows, 2,005 trials.

Builds a synthetic study (``mmc_sweep.analysis.synthetic``) in a temporary folder: 2 base models,
3 baselines and 2,000 CBFT search trials, each with its own trials/paths/history part files as the
harness writes them, 63 alphas x 4 views x 2 paths per trial = 1,009,764 path rows. Then it times
the ``analyze`` command in-process (imports done first, as start-up): reading every trials part
file, listing the paths part files (analyze needs no path rows: barriers are columns of the trials
rows), the summary, the method table and the Pareto front, printed as rich tables into a string.
The run with parameter importances (Optuna) and reading every path row are timed and printed too.

Run: ``python benchmarks/analysis.py``. The last line is ``analyze_seconds=<seconds>``: the first
run without importances (target <= 2 s on 2 cores).
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mmc_sweep.analysis.cli import cmd_analyze  # noqa: E402
from mmc_sweep.analysis.load import read_paths  # noqa: E402
from mmc_sweep.analysis.synthetic import VIEWS, write_synthetic_study  # noqa: E402


def time_analyze(folder: Path, importance: bool) -> tuple[float, str]:
    args = argparse.Namespace(study_dir=str(folder), format="table", top=3, tolerance=2.0, section="all",
                              importance=importance)
    out = io.StringIO()
    start = time.perf_counter()
    cmd_analyze(args, out)
    return time.perf_counter() - start, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000, help="search trials (default 2000)")
    parser.add_argument("--alphas", type=int, default=63, help="points per path (default 63)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mmc_analysis_bench_") as tmp:
        folder = write_synthetic_study(Path(tmp) / "bench", n_trials=opts.trials, alphas=opts.alphas)
        path_rows = (2 * (opts.trials + 3) + 1) * opts.alphas * len(VIEWS)
        import optuna  # noqa: F401  # import cost is start-up, like pandas/pyarrow: not timed

        # Every run finds the files in the OS page cache (just written): this times parsing, not the disk.
        first, text = time_analyze(folder, importance=False)
        with_importance, _ = time_analyze(folder, importance=True)
        again, _ = time_analyze(folder, importance=False)
        start = time.perf_counter()
        n_read = len(read_paths(folder))  # what a script reading every curve pays (analyze does not)
        all_paths = time.perf_counter() - start
    assert "Methods" in text and "Pareto front" in text
    print(f"study: {opts.trials + 5} trials, {path_rows} path rows")
    print(f"analyze --no-importance, first run:  {first:.3f} s")
    print(f"analyze (with importances):          {with_importance:.3f} s")
    print(f"analyze --no-importance, again:       {again:.3f} s")
    print(f"read all {n_read} path rows (not part of analyze): {all_paths:.3f} s")
    print("analyze_seconds = first run of analyze --no-importance: load + summary + method table + Pareto "
          "front, printed; importances excluded (timed above)")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (other processes slow this down)")
    print(f"analyze_seconds={first:.3f}")


if __name__ == "__main__":
    main()
