"""The ``analyze``, ``plot`` and ``compare`` subcommands (registered on the main parser by ``register``).

Handlers return the exit code: 0 for a report (an empty study included); bad input raises
:class:`~mmc_sweep.errors.InputError`, which the main CLI prints as one line with exit code 2.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from mmc_sweep.analysis import render
from mmc_sweep.analysis.load import fetch_study, load_study
from mmc_sweep.analysis.report import analyze_report, compare_report
from mmc_sweep.analysis.tables import DEFAULT_TOLERANCE_PP, DEFAULT_TOP, summary
from mmc_sweep.errors import InputError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=render.FORMATS, default="table",
                   help="table (rich, default) | markdown | csv | json (one object, for scripts)")
    p.add_argument("--tolerance", type=_non_negative_float, default=DEFAULT_TOLERANCE_PP, metavar="PP",
                   help="best search trials give up at most this many percentage points of clean accuracy "
                        f"(default {DEFAULT_TOLERANCE_PP:g})")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``analyze``, ``plot`` and ``compare`` to the main parser's subcommands."""
    p = sub.add_parser("analyze", help="summary, method table, Pareto front and parameter importances of a study",
                       description="Read a study's Parquet results (running, interrupted or finished) and print "
                                   "its summary, the paper's method table, the Pareto front and which parameters "
                                   "mattered.")
    p.add_argument("study_dir", metavar="STUDY_DIR", help="study folder (the one holding study.yaml), or its URI (s3://…)")
    _add_common(p)
    p.add_argument("--top", type=_positive_int, default=DEFAULT_TOP, metavar="K",
                   help=f"best search trials shown in the method table (default {DEFAULT_TOP})")
    p.add_argument("--section", choices=("all",) + render.SECTIONS, default="all",
                   help="print one section only (useful with --format csv)")
    p.add_argument("--no-importance", dest="importance", action="store_false",
                   help="skip the parameter importances (the only part that needs Optuna)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("plot", help="PNG figures: connectivity paths, Pareto scatter, history, importances",
                       description="Write the study's figures as PNG files and list them.")
    p.add_argument("study_dir", metavar="STUDY_DIR", help="study folder (the one holding study.yaml), or its URI (s3://…)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default STUDY_DIR/figures; NAME-figures here for a study at a URI)")
    p.add_argument("--trial", dest="trials", nargs="+", action="extend", default=None, metavar="ID",
                   help="trials whose paths to draw (default: the best search trial and each baseline)")
    p.add_argument("--width", type=_positive_int, default=1200, help="figure width, pixels (default 1200)")
    p.add_argument("--height", type=_positive_int, default=800, help="figure height, pixels (default 800)")
    p.add_argument("--dpi", type=_positive_int, default=100, help="dots per inch: text size at that pixel size")
    p.add_argument("--tolerance", type=_non_negative_float, default=DEFAULT_TOLERANCE_PP, metavar="PP",
                   help="as in analyze: picks the best search trial drawn by default")
    p.add_argument("--no-importance", dest="importance", action="store_false", help="skip the importance figure")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("compare", help="method tables of several studies side by side, with differences",
                       description="Align the method tables of two or more studies by method and show each "
                                   "study's values and its difference from the first study.")
    p.add_argument("study_dirs", metavar="STUDY_DIR", nargs="+", help="two or more study folders (or URIs)")
    _add_common(p)
    p.set_defaults(func=cmd_compare)


_COPIES = contextlib.ExitStack()  # local copies of studies at URIs, removed when the command ends


def _load(folder: str):
    """The study (one at a URI through a local copy), each damaged results file named on stderr in one
    line (the rest is read)."""
    local = folder
    if "://" in folder:
        local = fetch_study(folder, Path(_COPIES.enter_context(tempfile.TemporaryDirectory(prefix="mmc-sweep-"))))
    study = load_study(local, location=folder)
    for path in study.unreadable:
        where = path.replace(str(local), folder.partition("?")[0].rstrip("/"), 1)
        print(f"warning: {where}: not a readable Parquet file; skipped (restore it, or move it out of the study)",
              file=sys.stderr)
    return study


def with_local_copies(command):
    """``command(args)`` with the local copies it made removed afterwards."""
    def run(*args, **kwargs) -> int:
        with _COPIES:
            return command(*args, **kwargs)
    return run


@with_local_copies
def cmd_analyze(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    study = _load(args.study_dir)
    sections = render.SECTIONS if args.section == "all" else (args.section,)
    report = analyze_report(study, args.top, args.tolerance, importance=args.importance and "importance" in sections)
    lines = render.status_lines(report["summary"])
    if args.format == "json":
        report = {k: v for k, v in report.items() if k.partition("_")[0] in sections}  # efficiency_goal: efficiency
    render.emit(report, render.analyze_blocks(report, sections) if args.format != "json" else [], lines,
                args.format, out, raw_summary=report.get("summary"))
    return 0


@with_local_copies
def cmd_plot(args: argparse.Namespace) -> int:
    from mmc_sweep.analysis.figures import Size  # matplotlib only when plotting
    from mmc_sweep.analysis.plots import make_figures

    study = _load(args.study_dir)
    for line in render.status_lines(summary(study, args.tolerance)):
        print(line)
    if study.trials.empty:
        print("no figures written.")
        return 0
    default = Path(f"{study.name}-figures") if "://" in args.study_dir else Path(args.study_dir) / "figures"
    out_dir = args.out if args.out is not None else default
    files = make_figures(study, out_dir, Size(args.width, args.height, args.dpi), args.trials,
                         args.tolerance, args.importance)
    print(f"wrote {len(files)} figure(s), {args.width}x{args.height} px each:")
    for f in files:
        print(f"  {f}")
    return 0


@with_local_copies
def cmd_compare(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if len(args.study_dirs) < 2:
        raise InputError(f"compare: expected two or more study folders, got {len(args.study_dirs)}")
    studies = [_load(d) for d in args.study_dirs]
    report = compare_report(studies, args.tolerance)
    lines = [f"{s['label']}: {s['trials_missing']} trial(s) still missing"
             for s in report["studies"] if s["trials_missing"]]
    render.emit(report, render.compare_blocks(report), lines, args.format, out)
    return 0
