"""Run or resume a study: write the spec, start or join Ray, run the three stages, reconcile.

Stages, each a Ray Tune experiment under ``<study>/tune/<stage>`` that an interrupted run restores:

1. ``base``: train the missing base models (content-addressed, shared by studies);
2. ``reference``: the base pair's rows (and its cue->clean path) and one row per baseline;
3. ``search``: Optuna proposes, Tune runs the fine-tuning trials.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from mmc_sweep.errors import InputError
from mmc_sweep.study.spec import StudySpec, dump_study, load_study, parse_study
from mmc_sweep.study.store import Store

import yaml

STAGES = ("base", "reference", "search")


@dataclass(frozen=True)
class RunOptions:
    """How (not what) to run: where results go and which Ray cluster runs the trials."""

    storage: str = "studies"
    address: str | None = None  # None: start a local Ray; "auto" or host:port: join a cluster
    verbose: bool = False  # Ray's own console output
    connect_timeout_s: float = 60.0
    optuna_storage: str | None = None  # an Optuna storage URL (sqlite:///..., postgresql://...); None: a journal in the study
    filesystem: object | None = None  # a pyarrow.fs.FileSystem that `storage` is a path on (Python API only)


@dataclass(frozen=True)
class StudyOutcome:
    exit_code: int
    study_dir: str
    completed: int
    failed: int


def check_study_name(store: Store, spec: StudySpec) -> None:
    """An existing study under this name must have the same spec (then the run resumes it)."""
    if not store.exists(spec.name, "study.yaml"):
        return
    existing = parse_study(yaml.safe_load(store.read_bytes(spec.name, "study.yaml")), store.uri_of(spec.name, "study.yaml"),
                           stored=True)
    if existing.hash != spec.hash:
        raise InputError(
            f"{store.uri_of(spec.name)}: a study named {spec.name!r} exists with another spec "
            f"(hash {existing.hash} vs {spec.hash}); pick another --name, or `resume` that study"
        )


def prepare_study_folder(store: Store, spec: StudySpec) -> None:
    """Write ``study.yaml`` (the resolved spec) unless the study already has it."""
    check_study_name(store, spec)
    if not store.exists(spec.name, "study.yaml"):
        store.write_bytes(dump_study(spec).encode(), spec.name, "study.yaml")


def connect_ray(options: RunOptions) -> None:
    """Start a local Ray or join ``options.address``; a cluster that does not answer is an error."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # rows_json would bloat CSV/TB logs
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not options.verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter is silent at verbose=0
    import optuna
    import ray

    if not options.verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        for name in ("ray", "ray.tune", "ray.train", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    address = options.address or os.environ.get("RAY_ADDRESS")
    if address and address not in ("auto", "local") and "://" not in address:
        _probe(address, options.connect_timeout_s)
    if ray.is_initialized():  # a notebook or a test session that started Ray itself
        return

    def give_up() -> None:  # ray.init can block inside C++ (where no Python signal reaches it)
        sys.stderr.write(f"error: --address {address}: no Ray cluster answered within {options.connect_timeout_s:.0f} s\n")
        sys.stderr.flush()
        os._exit(2)

    watchdog = threading.Timer(options.connect_timeout_s, give_up)
    watchdog.daemon = True
    if address:  # starting a local Ray does not hang; joining a cluster can
        watchdog.start()
    try:
        # "local": no address means a new local Ray, never a cluster found in /tmp/ray (that takes --address auto)
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=options.verbose,
                 logging_level=logging.INFO if options.verbose else logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError, getattr(ray.exceptions, "AuthenticationError", ConnectionError)) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        # Ray 2.60 sends its token to a cluster named by address only with RAY_AUTH_MODE=token
        hint = "" if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" else (
            "; a cluster with token authentication needs RAY_AUTH_MODE=token and its token "
            "(README: Running on a Ray cluster)")
        raise InputError(f"--address {address}: could not connect to Ray: {first}{hint}") from None
    finally:
        watchdog.cancel()


def _probe(address: str, timeout_s: float) -> None:
    """Fail fast when nothing listens at host:port (the usual typo), before ray.init retries for minutes."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--address {address}: expected 'auto' or host:port")
    try:
        socket.create_connection((host, int(port)), timeout=min(timeout_s, 10.0)).close()
    except OSError as err:
        raise InputError(f"--address {address}: no Ray cluster listens there ({err.strerror or err})") from None


def check_fits_a_node(spec: StudySpec) -> None:
    """A trial asking for more CPUs or GPUs than any node of the cluster has would wait forever."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for key, need, option in (("CPU", spec.resources.cpu, "--cpus-per-trial"), ("GPU", spec.resources.gpu, "--gpus-per-trial")):
        most = max((n.get(key, 0.0) for n in nodes), default=0.0)
        if need > most:
            raise InputError(f"resources.{key.lower()}: {need:g} {key}s per trial, but the largest node of the Ray "
                             f"cluster has {most:g}; lower it in the study file or with {option}")


def load_resumable(study_dir: str, filesystem=None) -> tuple[StudySpec, RunOptions]:
    """The spec and storage of an existing study folder (``resume``): a local path, a URI, or a path
    on ``filesystem`` (a ``pyarrow.fs.FileSystem``)."""
    folder = study_dir.rstrip("/")
    if "://" in folder or filesystem is not None:
        parent, name = folder.rsplit("/", 1) if "/" in folder else ("", folder)
        store = Store.open(parent, filesystem)
        if not store.exists(name, "study.yaml"):
            raise InputError(f"{study_dir}: not a study folder (no study.yaml)")
        spec = parse_study(yaml.safe_load(store.read_bytes(name, "study.yaml")), f"{study_dir}/study.yaml", stored=True)
        return spec, RunOptions(storage=parent, filesystem=filesystem)
    path = Path(folder).expanduser().resolve()
    if not (path / "study.yaml").is_file():
        raise InputError(f"{study_dir}: not a study folder (no study.yaml)")
    spec = load_study(path / "study.yaml", stored=True)  # a study from before a setting keeps its old meaning
    if spec.name != path.name:
        raise InputError(f"{path / 'study.yaml'}: name {spec.name!r} does not match the folder name {path.name!r}")
    return spec, RunOptions(storage=str(path.parent))


def run(spec: StudySpec, options: RunOptions, console: Console | None = None) -> StudyOutcome:
    """Run (or continue) a study to the end. Ray and Optuna are imported here, not at start-up."""
    from mmc_sweep.study.interrupt import INTERRUPTS
    from mmc_sweep.study.stages import run_stages

    console = console or Console(width=None if sys.stdout.isatty() else 160)  # logs: do not wrap at 80
    store = Store.open(options.storage, options.filesystem)
    check_study_name(store, spec)  # refused before Ray starts
    connect_ray(options)
    check_fits_a_node(spec)
    if not store.exists(spec.name, "study.yaml"):  # written once Ray is up: a failed connect leaves nothing
        store.write_bytes(dump_study(spec).encode(), spec.name, "study.yaml")
    from mmc_sweep.study.compaction import recover_study
    from mmc_sweep.study.lock import study_lock

    # a local or shared folder has one writer at a time; an object store has no lock (and no compaction)
    folder = None if store.local_root is None else store.local_root / spec.name
    with study_lock(folder) if folder else contextlib.nullcontext(), INTERRUPTS:  # Ctrl-C / SIGTERM: graceful, 130 / 143
        if folder:
            recover_study(folder)  # a compaction that died half-way is finished or undone
        return run_stages(spec, store, options, console)
