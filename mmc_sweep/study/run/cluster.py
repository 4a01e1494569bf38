"""Ray for a study's driver: start a local Ray or join a cluster (with a deadline), and check that
a trial's resources fit one of its nodes."""
from __future__ import annotations

import logging
import os
import socket
import sys
import threading

from mmc_sweep.errors import InputError
from mmc_sweep.study.definition.options import RunOptions
from mmc_sweep.study.definition.spec import StudySpec


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
