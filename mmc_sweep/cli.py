"""Command line: argument parsing, rich output and exit codes (0 ok, 1 study failed or storage full, 2 bad input)."""
from __future__ import annotations

import argparse
import re
import sys

from rich.console import Console
from rich.text import Text

from mmc_sweep.errors import InputError, StorageFull


def print_error(message: str) -> None:
    """One line on stderr, verbatim: a Text, never rich markup, so a path holding ``[...]`` or
    ``:name:`` prints as it is; a stray line break is folded so the error stays one line."""
    line = " ".join(part.strip() for part in message.splitlines()) or message
    Console(stderr=True, soft_wrap=True, highlight=False).print(Text.assemble(("error:", "bold red"), " ", line))


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (no usage block); exit code 2 as before.
    Subcommand parsers are made from the same class."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = re.sub(r"^argument ([^:]+): ", r"\1: ", message)  # "argument --seed: ..." -> "--seed: ..."
        print_error(f"{message} (see {self.prog} --help)")
        self.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
        print_error(str(err))
        return 2
    except StorageFull as err:  # outside Tune's loop (inside it, the run stops gracefully and says so)
        print_error(str(err))
        return 1
