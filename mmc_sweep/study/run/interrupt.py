"""Ctrl-C and SIGTERM: the first stops the study gracefully, a second aborts at once.

Graceful means Ray Tune's own stop: it saves the experiment with the running trials still marked
running (they keep their last epoch checkpoint and resume from it), then stops their workers. We
take SIGINT from Tune (``TUNE_DISABLE_SIGINT_HANDLER``) and trigger its stop with SIGUSR1, the
signal Tune always listens to during ``fit``; SIGTERM, which Tune ignores, is handled the same way.
Nothing is reported to Optuna for a stopped trial, so the journal never marks it FAIL.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    def __init__(self) -> None:
        self.received: int | None = None  # the first signal's number
        self.in_tune = False  # inside Tuner.fit: Tune's SIGUSR1 handler is installed
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "Interrupts":
        self.received, self.in_tune, self._previous = None, False, {}
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
        sys.stderr.write(f"\n{signal.Signals(signum).name}: stopping the study; running trials keep their last "
                         f"epoch checkpoint (press Ctrl-C again to abort at once)\n")
        sys.stderr.flush()
        if self.in_tune:
            os.kill(os.getpid(), signal.SIGUSR1)

    @property
    def exit_code(self) -> int:
        """130 after SIGINT, 143 after SIGTERM (the shell's 128 + signal number)."""
        return 128 + (self.received or 0)


INTERRUPTS = Interrupts()  # one per driver process: the stages and the results sink consult it
