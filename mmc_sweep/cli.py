"""Command line: argument parsing, rich output and exit codes (0 ok, 1 study failed, 2 bad input)."""
from __future__ import annotations

import argparse
import sys

from rich.console import Console

from mmc_sweep.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_study.py",
        description="Mechanistic mode connectivity studies: run, resume and analyse sweeps.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from mmc_sweep.analysis.cli import register as register_analysis
    from mmc_sweep.study.cli import register as register_study

    register_study(sub)
    register_analysis(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # the default job: the quickstart study into ./studies
        args = parser.parse_args(["run", *argv])
    try:
        return int(args.func(args))
    except InputError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        return 2
