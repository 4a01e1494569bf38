"""Subcommands ``run``, ``resume`` and ``status``. Ray and Optuna load only when a study runs."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mmc_sweep.errors import InputError

DEFAULT_STUDY = Path(__file__).resolve().parents[2] / "search_spaces" / "quickstart.yaml"


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value < 0 or (kind is int and value == 0):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="join this Ray cluster ('auto', host:port); default: RAY_ADDRESS or a local Ray")
    p.add_argument("--verbose", action="store_true", help="show Ray's own console output and logs")
    p.add_argument("--connect-timeout", type=_positive(float), default=60.0, metavar="S", help="seconds to wait for the Ray cluster (default 60)")


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a study file (resumes it when the same study exists)",
                         description="Run a study: base models, reference rows, then the Optuna search on Ray Tune.")
    run.add_argument("file", nargs="?", default=str(DEFAULT_STUDY), help="study YAML (default: search_spaces/quickstart.yaml)")
    run.add_argument("--name", help="study name (default: the file's `name`)")
    run.add_argument("--storage", default="studies", help="storage root: a folder (shared on a cluster) or a pyarrow.fs URI (default ./studies)")
    run.add_argument("--num-samples", type=_positive(int), help="search trials")
    run.add_argument("--cpus-per-trial", type=_positive(float), help="CPUs per trial (torch threads)")
    run.add_argument("--gpus-per-trial", type=_positive(float), help="GPUs per trial; fractions share a GPU (0.25 = four trials)")
    run.add_argument("--max-concurrent", type=_positive(int), help="search trials running at once")
    run.add_argument("--seed", type=int, help="sampler seed")
    _add_run_options(run)
    run.set_defaults(func=cmd_run)

    resume = sub.add_parser("resume", help="continue an interrupted study", description="Continue an interrupted study where it stopped.")
    resume.add_argument("study_dir", help="the study folder (<storage>/<name>)")
    _add_run_options(resume)
    resume.set_defaults(func=cmd_resume)

    status = sub.add_parser("status", help="what a study has done so far", description="Trials written so far, by role and status.")
    status.add_argument("study_dir", help="the study folder (<storage>/<name>)")
    status.set_defaults(func=cmd_status)


def _overrides(args: argparse.Namespace, spec):
    search = spec.search
    if args.num_samples is not None:
        search = dataclasses.replace(search, num_samples=args.num_samples)
    if args.max_concurrent is not None:
        search = dataclasses.replace(search, max_concurrent=args.max_concurrent)
    if args.seed is not None:
        search = dataclasses.replace(search, seed=args.seed)
    resources = spec.resources
    if args.cpus_per_trial is not None:
        resources = dataclasses.replace(resources, cpu=args.cpus_per_trial)
    if args.gpus_per_trial is not None:
        resources = dataclasses.replace(resources, gpu=args.gpus_per_trial)
    try:
        return dataclasses.replace(spec, name=args.name or spec.name, search=search, resources=resources)
    except ValueError as err:
        raise InputError(f"command line: {err}") from None


def cmd_run(args: argparse.Namespace) -> int:
    from mmc_sweep.study.runner import RunOptions, run
    from mmc_sweep.study.spec import load_study

    spec = _overrides(args, load_study(args.file))
    options = RunOptions(storage=args.storage, address=args.address, verbose=args.verbose, connect_timeout_s=args.connect_timeout)
    return run(spec, options).exit_code


def cmd_resume(args: argparse.Namespace) -> int:
    from mmc_sweep.study.runner import load_resumable, run

    spec, options = load_resumable(args.study_dir)
    options = dataclasses.replace(options, address=args.address, verbose=args.verbose, connect_timeout_s=args.connect_timeout)
    return run(spec, options).exit_code


def cmd_status(args: argparse.Namespace) -> int:
    from mmc_sweep.study.results import read_trials
    from mmc_sweep.study.runner import load_resumable
    from mmc_sweep.study.stages import reference_jobs, search_samples
    from mmc_sweep.study.store import Store

    spec, options = load_resumable(args.study_dir)
    store = Store.open(options.storage)
    rows = read_trials(store, spec.name).to_pylist()
    expected = {"base": 2 * len(spec.base.seeds), "baseline": len(reference_jobs(spec)) - len(spec.base.seeds),
                "search": search_samples(spec)}
    table = Table(title=f"study {spec.name} ({spec.hash})")
    for column in ("role", "completed", "failed", "pruned", "expected", "missing"):
        table.add_column(column, justify="left" if column == "role" else "right")
    for role, want in expected.items():
        mine = [r for r in rows if r["role"] == role]
        counts = [sum(r["status"] == s for r in mine) for s in ("completed", "failed", "pruned")]
        table.add_row(role, *map(str, counts), str(want), str(max(0, want - len(mine))))
    console = Console()
    console.print(table)
    stages = [s for s in ("base", "reference", "search") if store.exists(spec.name, "tune", s)]
    console.print(f"Tune experiments on disk: {', '.join(stages) or 'none'}; results: {store.uri_of(spec.name, 'results')}")
    return 0
