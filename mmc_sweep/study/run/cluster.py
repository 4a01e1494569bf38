"""Ray for a study's driver: start a local Ray or join a cluster (with a deadline), and check that
a trial's resources fit one of its nodes."""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import tempfile
import threading

from mmc_sweep.errors import InputError, first_line
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

    # Joining a cluster, Ray's C++ core logs every retry on fd 2 (twenty lines before a cluster that
    # refuses the token is given up): held in a file and written out only if the connection succeeds.
    # (A local Ray is not held: the processes it starts would inherit the file.)
    held = _StderrHeld() if address and not options.verbose else None

    def give_up() -> None:  # ray.init can block inside C++ (where no Python signal reaches it)
        line = f"error: --address {address}: no Ray cluster answered within {options.connect_timeout_s:.0f} s\n"
        os.write(held.original if held else sys.stderr.fileno(), line.encode())
        os._exit(2)

    watchdog = threading.Timer(options.connect_timeout_s, give_up)
    watchdog.daemon = True
    signals = None
    if address:  # starting a local Ray does not hang; joining a cluster can
        watchdog.start()
        if threading.current_thread() is threading.main_thread():  # (the wakeup fd is the main thread's)
            signals = _SignalsWhileJoining(held.original if held else sys.stderr.fileno())
    connected = False
    try:
        # "local": no address means a new local Ray, never a cluster found in /tmp/ray (that takes --address auto)
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=options.verbose,
                 logging_level=logging.INFO if options.verbose else logging.ERROR)
        connected = True
    except (ConnectionError, RuntimeError, ValueError, getattr(ray.exceptions, "AuthenticationError", ConnectionError)) as err:
        # Ray 2.60 sends its token to a cluster named by address only with RAY_AUTH_MODE=token
        hint = "" if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" else (
            "; a cluster with token authentication needs RAY_AUTH_MODE=token and its token "
            "(README: Running on a Ray cluster)")
        raise InputError(f"--address {address}: could not connect to Ray: {first_line(err)}{hint}") from None
    finally:
        watchdog.cancel()
        if signals:
            signals.close()
        if held:
            held.release(replay=connected)


class _SignalsWhileJoining:
    """Joining a cluster, ``ray.init`` can block inside C++ for half a minute (a head that accepts and never
    answers), where no Python signal handler runs. Python's C-level handler still writes each signal's
    number to the wakeup fd: a thread reading it ends the run at once on Ctrl-C or SIGTERM (nothing is
    written before Ray is up), with the line and exit code a signal at start-up always gives."""

    def __init__(self, out_fd: int) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(out_fd,), daemon=True).start()

    def _watch(self, out_fd: int) -> None:
        while data := os.read(self._read, 1):  # b"": closed, joining is over
            if data[0] in (signal.SIGINT, signal.SIGTERM):
                from mmc_sweep.study.run.interrupt import INTERRUPTS, START_UP_INTERRUPTED

                if not INTERRUPTS.claim_start_up_report():  # the main thread got there first, and says so
                    break
                os.write(out_fd, START_UP_INTERRUPTED.encode() + b"\n")
                os._exit(128 + data[0])
        os.close(self._read)

    def close(self) -> None:
        signal.set_wakeup_fd(self._previous)
        os.close(self._write)


class _StderrHeld:
    """fd 2 pointed at a temporary file until :meth:`release`; ``original`` is the real stderr meanwhile."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self.file = tempfile.TemporaryFile()
        self.original = os.dup(2)
        os.dup2(self.file.fileno(), 2)

    def release(self, replay: bool) -> None:
        """Restore fd 2; with ``replay``, write what was held to it."""
        sys.stderr.flush()
        os.dup2(self.original, 2)
        os.close(self.original)
        if replay:
            self.file.seek(0)
            os.write(2, self.file.read())
        self.file.close()


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
