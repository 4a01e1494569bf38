"""Subcommands ``run``, ``resume``, ``pairs``, ``compact`` and ``status``. Ray and Optuna load only when a study runs."""
from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mmc_sweep.errors import InputError

DEFAULT_MODELS = "base,baselines,top:5"  # what `pairs` measures without --models
DEFAULT_STUDY = Path(__file__).resolve().parents[2] / "search_spaces" / "quickstart.yaml"


def _number(kind: type, minimum: float, strict: bool = False):
    """An argparse type: a finite ``kind`` (int or float) >= ``minimum`` (> with ``strict``)."""
    expected = f"{'an integer' if kind is int else 'a number'} {'>' if strict else '>='} {minimum:g}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="join this Ray cluster ('auto', host:port); default: RAY_ADDRESS or a local Ray")
    p.add_argument("--verbose", action="store_true", help="show Ray's own console output and logs")
    p.add_argument("--connect-timeout", type=_number(float, 0, strict=True), default=60.0, metavar="S",
                   help="seconds to wait for the Ray cluster (default 60)")
    p.add_argument("--max-failures", type=_number(int, 0), metavar="N",
                   help="restarts of a trial whose worker died, from its last epoch checkpoint (default: the file's "
                        "failure.max_failures, 3)")
    p.add_argument("--optuna-storage", metavar="URL",
                   help="keep Optuna's record in this database (sqlite:///FILE, or postgresql://USER@HOST:PORT/DB "
                        "with the psycopg driver: pip install -e '.[postgresql]') instead of the journal in the study folder")


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a study file (resumes it when the same study exists)",
                         description="Run a study: base models, reference rows, then the Optuna search on Ray Tune.")
    run.add_argument("file", nargs="?", default=str(DEFAULT_STUDY), help="study YAML (default: search_spaces/quickstart.yaml)")
    run.add_argument("--name", help="study name (default: the file's `name`)")
    run.add_argument("--storage", default="studies", help="storage root: a folder (shared on a cluster) or a pyarrow.fs URI (default ./studies)")
    run.add_argument("--num-samples", type=_number(int, 1), help="search trials")
    run.add_argument("--cpus-per-trial", type=_number(float, 0, strict=True), help="CPUs per trial (torch threads)")
    run.add_argument("--gpus-per-trial", type=_number(float, 0), help="GPUs per trial; fractions share a GPU (0.25 = four trials)")
    run.add_argument("--max-concurrent", type=_number(int, 0), help="search trials running at once (0: as resources allow)")
    run.add_argument("--seed", type=_number(int, 0), help="sampler seed")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a setting of the file, validated like the file (repeatable): --set data.root=/data "
                          "--set finetune.lr=0.01")
    run.add_argument("--smoke", action="store_true",
                     help="run the study tiny (a few hundred images, two epochs, three trials) as <name>_smoke: "
                          "try a preset on a laptop before sending it to a cluster")
    _add_run_options(run)
    run.set_defaults(func=cmd_run)

    resume = sub.add_parser("resume", help="continue an interrupted study", description="Continue an interrupted study where it stopped.")
    resume.add_argument("study_dir", help="the study folder (<storage>/<name>)")
    _add_run_options(resume)
    resume.set_defaults(func=cmd_resume)

    compact = sub.add_parser("compact", help="merge a study's part files into a few large Parquet files",
                             description="Merge a study's per-trial part files into a few large Parquet files, "
                                         "atomically (a study compacts itself when its experiment ends; this is for "
                                         "interrupted studies and studies written before compaction existed).")
    compact.add_argument("study_dir", help="the study folder (<storage>/<name>), on a local or mounted file system")
    compact.set_defaults(func=cmd_compact)

    pairs = sub.add_parser("pairs", help="the connectivity matrix among many models of a study",
                           description="Measure the paths between every pair of the chosen models of a study (each "
                                       "pair a Ray Tune trial) into its `pairs` table (and `layers` with --layers); "
                                       "pairs written before, or measured by another study, are not measured again.")
    pairs.add_argument("study_dir", help="the study folder (<storage>/<name>)")
    pairs.add_argument("--models", default=DEFAULT_MODELS,
                       help="comma-separated: base (every cue model and clean reference), baselines, top:K (the K best "
                            "search trials), or trial ids (default: base,baselines,top:5)")
    pairs.add_argument("--kinds", default="linear", help="path kinds, comma-separated: linear, lmcp, qmc (default linear)")
    pairs.add_argument("--layers", metavar="all|NAMES",
                       help="also each layer's barrier with only that layer interpolated: all, or layer names, comma-separated")
    pairs.add_argument("--address", help="join this Ray cluster ('auto', host:port); default: RAY_ADDRESS or a local Ray")
    pairs.add_argument("--verbose", action="store_true", help="show Ray's own console output and logs")
    pairs.add_argument("--connect-timeout", type=_number(float, 0, strict=True), default=60.0, metavar="S",
                       help="seconds to wait for the Ray cluster (default 60)")
    pairs.set_defaults(func=cmd_pairs)

    status = sub.add_parser("status", help="what a study has done so far",
                            description="What a study has done, part by part (base models stored; base pairs, control "
                                        "pairs, baselines and search trials written, by status), against what it will do.")
    status.add_argument("study_dir", help="the study folder (<storage>/<name>)")
    status.add_argument("--format", choices=("table", "json"), default="table", help="a table (default) or JSON for scripts")
    status.set_defaults(func=cmd_status)


# command-line attribute -> (option, section of the spec or None for a top-level field, field)
_OVERRIDES = {
    "name": ("--name", None, "name"),
    "num_samples": ("--num-samples", "search", "num_samples"),
    "max_concurrent": ("--max-concurrent", "search", "max_concurrent"),
    "seed": ("--seed", "search", "seed"),
    "cpus_per_trial": ("--cpus-per-trial", "resources", "cpu"),
    "gpus_per_trial": ("--gpus-per-trial", "resources", "gpu"),
    "max_failures": ("--max-failures", "failure", "max_failures"),
}


def _overrides(args: argparse.Namespace, spec):
    """``spec`` with the options given on the command line on top; a value the spec refuses names the option."""
    for attr, (option, section, field) in _OVERRIDES.items():
        value = getattr(args, attr, None)  # resume has only some of them
        if value is None:
            continue
        try:
            if section is None:
                spec = dataclasses.replace(spec, **{field: value})
            else:
                spec = dataclasses.replace(spec, **{section: dataclasses.replace(getattr(spec, section), **{field: value})})
        except ValueError as err:  # "search.num_samples: expected ..." -> "--num-samples: expected ..."
            raise InputError(f"{option}: {str(err).split(': ', 1)[-1]}") from None
    return spec


def cmd_run(args: argparse.Namespace) -> int:
    from mmc_sweep.study.definition.options import RunOptions
    from mmc_sweep.study.definition.overrides import apply_sets, smoke
    from mmc_sweep.study.definition.preflight import preflight
    from mmc_sweep.study.definition.spec import read_study_file
    from mmc_sweep.study.run.runner import run

    spec = _overrides(args, apply_sets(read_study_file(args.file), args.set, args.file))
    if args.smoke:
        spec = smoke(spec)
    options = RunOptions(storage=args.storage, address=args.address, verbose=args.verbose,
                         connect_timeout_s=args.connect_timeout, optuna_storage=args.optuna_storage)
    preflight(spec, options, source=args.file)
    return run(spec, options).exit_code


def cmd_resume(args: argparse.Namespace) -> int:
    from mmc_sweep.study.definition.folder import load_resumable
    from mmc_sweep.study.definition.preflight import preflight
    from mmc_sweep.study.run.runner import run

    spec, options = load_resumable(args.study_dir)
    spec = _overrides(args, spec)
    options = dataclasses.replace(options, address=args.address, verbose=args.verbose, connect_timeout_s=args.connect_timeout,
                                  optuna_storage=args.optuna_storage or options.optuna_storage)
    preflight(spec, options, source=f"{args.study_dir.rstrip('/')}/study.yaml")
    return run(spec, options).exit_code


def cmd_pairs(args: argparse.Namespace) -> int:
    from mmc_sweep.study.definition.options import RunOptions
    from mmc_sweep.study.pairs.driver import run_pairs

    options = RunOptions(address=args.address, verbose=args.verbose, connect_timeout_s=args.connect_timeout)
    return run_pairs(args.study_dir, args.models, args.kinds, args.layers, options)


def cmd_compact(args: argparse.Namespace) -> int:
    from mmc_sweep.study.storage.compaction import compact_study
    from mmc_sweep.study.storage.lock import study_lock
    from mmc_sweep.study.storage.results import check_results_readable
    from mmc_sweep.study.storage.store import Store

    if "://" in args.study_dir:
        raise InputError(f"{args.study_dir}: compaction needs a local or mounted folder (an object store has no "
                         "atomic rename); the part files there are complete as they are")
    folder = Path(args.study_dir).expanduser().resolve()
    if not (folder / "study.yaml").is_file():
        raise InputError(f"{args.study_dir}: not a study folder (no study.yaml)")
    check_results_readable(Store.open(str(folder.parent)), folder.name)  # never merges a damaged file away
    with study_lock(folder):
        done = compact_study(folder)
    console = Console()
    if not done:
        console.print(f"{folder}: nothing to compact", soft_wrap=True, markup=False, highlight=False)
        return 0
    table = Table(title=f"compacted {folder}")
    for column in ("table", "files before", "files after", "part files merged", "rows written", "seconds"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for d in done:
        table.add_row(d.table, str(d.files_before), str(d.files_after), str(d.parts_merged), str(d.rows_written), f"{d.seconds:.2f}")
    console.print(table)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from mmc_sweep.study.definition.folder import load_resumable
    from mmc_sweep.study.pairs.driver import pairs_per_kind
    from mmc_sweep.study.run.jobs import EXPERIMENT, study_status
    from mmc_sweep.study.storage.results import check_results_readable
    from mmc_sweep.study.storage.store import Store

    spec, options = load_resumable(args.study_dir)
    store = Store.open(options.storage)
    check_results_readable(store, spec.name)
    parts = study_status(spec, store)
    pairs = pairs_per_kind(store, spec.name)  # measured on demand (the pairs command): no expected count
    on_disk = store.exists(spec.name, "tune", EXPERIMENT)
    if args.format == "json":
        print(json.dumps({"study": spec.name, "hash": spec.hash, "parts": parts, "pairs": pairs,
                          "tune_experiment": on_disk, "results": store.uri_of(spec.name, "results")}))
        return 0
    table = Table(title=f"study {spec.name} ({spec.hash})")
    columns = ("part", "completed", "failed", "pruned", "expected", "missing")
    for column in columns:
        table.add_column(column, justify="left" if column == "part" else "right")
    for part in parts:
        table.add_row(*(str(part[c]) for c in columns))
    console = Console()
    console.print(table)
    if pairs:
        counts = ", ".join(f"{kind} {n}" for kind, n in pairs.items())
        console.print(f"pairs measured by `run_study.py pairs`: {sum(pairs.values())} ({counts})", markup=False)
    console.print(f"Tune experiment on disk: {'yes' if on_disk else 'none yet'}; results: {store.uri_of(spec.name, 'results')}")
    return 0
