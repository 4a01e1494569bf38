"""Ctrl-C and SIGTERM at every phase of a run: the first stops the study, a second aborts at once.

* Starting (the checks, Ray start-up, before the study's folder is written): the run ends at once
  with nothing written (:class:`StartUpInterrupted` unwinds it).
* In the experiment: Ray Tune's own graceful stop. It saves the experiment with the running trials
  still marked running (they keep their last epoch checkpoint and resume from it), then stops their
  workers. We take SIGINT from Tune (``TUNE_DISABLE_SIGINT_HANDLER``) and trigger its stop with
  SIGUSR1, the signal Tune listens to during ``fit``; SIGTERM, which Tune ignores, is handled the
  same way. Nothing is reported to Optuna for a stopped trial, so the journal never marks it FAIL.
* After it (compaction, the summary): that step finishes (each is atomic or only prints), then the
  run ends. Every phase ends with 130 after SIGINT and 143 after SIGTERM; ``resume`` goes on.

A study that cannot go on (its storage is full) stops itself the same way (:meth:`Interrupts.fail`)
and ends with exit code 1 and the reason.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator

from mmc_sweep.study.faults import fault

START_UP_INTERRUPTED = "interrupted while starting: nothing was written"

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PHASES = ("start", "base", "reference", "search", "compaction", "summary")  # where a test may signal (signal_at)


class StartUpInterrupted(BaseException):
    """A signal while the run was starting: nothing was written. (A BaseException, as KeyboardInterrupt
    is: Ray's start-up code must not catch it as an error and go on.)"""


class Interrupts:
    def __init__(self) -> None:
        self.received: int | None = None  # the first signal's number
        self.failure: str | None = None  # why the study stopped itself (a full storage): it then exits 1
        self.starting = False  # before the study's folder is written: a signal unwinds the run
        self.in_tune = False  # inside Tuner.fit
        self._stop_pending = False  # Tune's stop asked for before Tune listened for it
        self._previous: dict[int, object] = {}
        self._start_up_reported = threading.Lock()  # held once the start-up interrupt is reported

    def __enter__(self) -> "Interrupts":
        self.received, self.starting, self.in_tune, self._stop_pending, self._previous = None, True, False, False, {}
        self.failure = None
        self._start_up_reported = threading.Lock()
        if threading.current_thread() is threading.main_thread():  # elsewhere signals cannot be caught
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
            self._previous = {s: signal.signal(s, self._handle) for s in _SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:  # the second: abort now, leaving what is written
            sys.stderr.write("\naborted\n")
            os._exit(128 + signum)
        self.received = signum
        if self.starting:
            raise StartUpInterrupted(signum)
        sys.stderr.write(f"\n{signal.Signals(signum).name}: stopping the study; running trials keep their last "
                         f"epoch checkpoint (press Ctrl-C again to abort at once)\n")
        sys.stderr.flush()
        if self.in_tune:
            self.stop_tune()

    @contextlib.contextmanager
    def around_ray_start(self) -> Iterator[None]:
        """``ray.init`` puts in its own SIGTERM handler (``sys.exit(15)``): a SIGTERM while it runs is taken
        as ours (nothing written yet), and ours is put back after it."""
        try:
            yield
        except SystemExit as exit_:
            if exit_.code != signal.SIGTERM or not self.starting:
                raise
            self.received = signal.SIGTERM
            raise StartUpInterrupted(signal.SIGTERM) from None
        finally:
            if self._previous:  # ours were installed (the main thread)
                signal.signal(signal.SIGTERM, self._handle)

    def claim_start_up_report(self) -> bool:
        """True for the one caller that reports an interrupted start-up: the main thread, or the watcher
        thread of a blocked ``ray.init`` (:mod:`~mmc_sweep.study.run.cluster`), whichever comes first."""
        return self._start_up_reported.acquire(blocking=False)

    def report_start_up(self, console) -> None:
        """Print the one line of an interrupted start-up, unless the watcher of a blocked ``ray.init`` printed it."""
        if self.claim_start_up_report():
            console.print(START_UP_INTERRUPTED, markup=False, highlight=False)

    @property
    def stopping(self) -> bool:
        """A signal came, or the study stopped itself: running trials keep their checkpoints and resume later."""
        return self.received is not None or self.failure is not None

    def fail(self, message: str) -> None:
        """Stop the study as a first signal would (Tune's graceful stop), because of ``message``
        (one line); the run ends with exit code 1 and it."""
        if self.failure is None and self.received is None:
            self.failure = message
            if self.in_tune:
                self.stop_tune()

    def stop_tune(self) -> None:
        """Trigger Tune's graceful stop, or (Tune not listening yet: SIGUSR1's default would kill the
        process) leave it for :meth:`on_tune_step`."""
        if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
            self._stop_pending = True
        else:
            self._stop_pending = False
            os.kill(os.getpid(), signal.SIGUSR1)

    def on_tune_step(self) -> None:
        """Called at each step of Tune's loop (Tune listens by then)."""
        if self._stop_pending:
            self.stop_tune()

    def fault_point(self, phase: str) -> None:
        """Test-only (fault point ``signal_at=PHASE:INT|TERM``): this process signals itself as ``phase``
        begins, unless it is already stopping."""
        assert phase in PHASES, phase
        value = fault("signal_at")
        if value and self.received is None and value.partition(":")[0] == phase:
            os.kill(os.getpid(), signal.Signals["SIG" + value.partition(":")[2]])

    @property
    def exit_code(self) -> int:
        """130 after SIGINT, 143 after SIGTERM (the shell's 128 + signal number)."""
        return 128 + (self.received or 0)


INTERRUPTS = Interrupts()  # one per driver process: the run, the stages and the results sink consult it
