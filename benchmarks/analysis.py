"""How long ``analyze`` takes on a large study, before and after compaction: 2,005 and 20,005 trials.

Builds a synthetic study (``mmc_sweep.analysis.synthetic``) in a temporary folder: 2 base models,
3 baselines and 2,000 CBFT search trials, each with its own trials/paths/history part files as the
harness writes them, 63 alphas x 4 views x 2 paths per trial = 1,009,764 path rows. It times the
``analyze`` command in-process (imports done first, as start-up) on the part files, then compacts
the study (``run_study.py compact``'s code: every table merged into a few large files) and times
``analyze`` again: reading the trials, the trial ids of the paths (from compacted footers), the
summary, the method table and the Pareto front, printed as rich tables into a string. The run with
parameter importances (Optuna) and reading every path row are timed and printed too. Then the same
for 20,000 search trials (10,080,144 path rows; writing its 60,015 part files takes minutes).

Run: ``python benchmarks/analysis.py`` (``--large 0`` skips the 20,000-trial study). The last line is
``analyze_seconds=<seconds>``: the first run of analyze without importances on the compacted
2,005-trial study (target <= 0.5 s on 2 cores).
"""
from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from mmc_sweep.analysis.cli import cmd_analyze  # noqa: E402
from mmc_sweep.analysis.load import read_paths, table_files  # noqa: E402
from mmc_sweep.analysis.synthetic import write_synthetic_study  # noqa: E402


def time_analyze(folder: Path, importance: bool) -> tuple[float, str]:
    args = argparse.Namespace(study_dir=str(folder), format="table", top=3, tolerance=2.0, section="all",
                              importance=importance)
    out = io.StringIO()
    start = time.perf_counter()
    cmd_analyze(args, out)
    return time.perf_counter() - start, out.getvalue()


def measure(trials: int, alphas: int, root: Path) -> dict[str, float]:
    """Write a synthetic study, time analyze on its part files, compact it, time analyze again."""
    start = time.perf_counter()
    folder = write_synthetic_study(root / f"bench_{trials}", n_trials=trials, alphas=alphas)
    out = {"write": time.perf_counter() - start}
    # Every run finds the files in the OS page cache (just written): this times parsing, not the disk.
    out["parts"], _ = time_analyze(folder, importance=False)
    out["files_before"] = sum(len(table_files(folder, t)) for t in ("trials", "paths", "history"))
    # in its own process, as the driver or `run_study.py compact` does it: the memory it churns
    # through (GBs at 20,000 trials) is handed back before analyze runs, as it would be for a user
    start = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "run_study.py"), "compact", str(folder)], check=True,
                   stdout=subprocess.DEVNULL)
    out["compact"] = time.perf_counter() - start
    out["files_after"] = sum(len(table_files(folder, t)) for t in ("trials", "paths", "history"))
    out["compacted"], text = time_analyze(folder, importance=False)
    assert "Methods" in text and "Pareto front" in text
    out["importance"], _ = time_analyze(folder, importance=True)
    out["again"], _ = time_analyze(folder, importance=False)
    start = time.perf_counter()
    out["path_rows"] = len(read_paths(folder))  # what a script reading every curve pays (analyze does not)
    out["all_paths"] = time.perf_counter() - start
    return out


def report(trials: int, m: dict[str, float]) -> None:
    print(f"study: {trials + 5} trials, {m['path_rows']} path rows (written in {m['write']:.0f} s)")
    print(f"  analyze on part files:                 {m['parts']:.3f} s")
    print(f"  run_study.py compact, {m['files_before']:.0f} -> {m['files_after']:.0f} files (its own process, "
          f"start-up included): {m['compact']:.1f} s")
    print(f"  analyze after compaction, first run:   {m['compacted']:.3f} s")
    print(f"  analyze after compaction, again:       {m['again']:.3f} s")
    print(f"  analyze with importances:              {m['importance']:.3f} s")
    print(f"  read all path rows (not part of analyze): {m['all_paths']:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000, help="search trials (default 2000)")
    parser.add_argument("--large", type=int, default=20000, help="search trials of the large study (default 20000; 0: skip)")
    parser.add_argument("--alphas", type=int, default=63, help="points per path (default 63)")
    opts = parser.parse_args()
    import optuna  # noqa: F401  # import cost is start-up, like pandas/pyarrow: not timed

    with tempfile.TemporaryDirectory(prefix="mmc_analysis_bench_") as tmp:
        small = measure(opts.trials, opts.alphas, Path(tmp))
        report(opts.trials, small)
        if opts.large:
            report(opts.large, measure(opts.large, opts.alphas, Path(tmp)))
    print("analyze_seconds = first run of analyze --no-importance after compaction on the "
          f"{opts.trials + 5}-trial study: load + summary + method table + Pareto front, printed")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (other processes slow this down)")
    print(f"analyze_seconds={small['compacted']:.3f}")


if __name__ == "__main__":
    main()
