"""Stop requests for a training run: SIGTERM/SIGINT, or a STOP file in the output folder (what the Train tab's Stop
button writes). Honoured whenever they arrive, also while the run is still starting: `python -m train` listens for
the signals before it imports anything heavy, and a STOP file that is already there counts."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_signalled = threading.Event()
_previous: dict[int, Any] = {}  # the handlers ours replaced, restored by `stop_listening`


def listen_for_signals() -> bool:
    """Turn SIGTERM/SIGINT into a stop request (a checkpoint first, then a clean exit); a second signal ends the
    process at once, for a user who really means it. True when this call installed the handlers (then the caller
    restores them with `stop_listening`); False when they were already ours (a signal that arrived meanwhile still
    counts) or this is not the main thread (there the STOP file still works)."""
    if signal.getsignal(signal.SIGTERM) is _handle:
        return False
    try:
        previous = {sig: signal.signal(sig, _handle) for sig in SIGNALS}
    except ValueError:  # not the main thread
        return False
    _previous.update(previous)
    _signalled.clear()  # a new listener: an old run's signal is not this run's
    return True


def stop_listening() -> None:
    """Put back the handlers `listen_for_signals` replaced (a notebook's Ctrl-C works as before)."""
    try:
        for sig, handler in _previous.items():
            signal.signal(sig, handler)
    except ValueError:
        return
    _previous.clear()


def _handle(signum: int, frame: Any) -> None:
    if _signalled.is_set():
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    _signalled.set()


class StopRequest:
    """Callable: has a stop been asked for (a signal, or `stop_file` exists)? Listens for the signals from its
    creation until `release()`."""

    def __init__(self, stop_file: Path) -> None:
        self.stop_file = stop_file
        self._owns_signals = listen_for_signals()

    def __call__(self) -> bool:
        return _signalled.is_set() or self.stop_file.exists()

    def consume(self) -> None:
        """The request was honoured: remove the STOP file so that resuming does not stop again at once."""
        self.stop_file.unlink(missing_ok=True)

    def release(self) -> None:
        """The run is over: restore the signal handlers this request installed."""
        if self._owns_signals:
            stop_listening()
            self._owns_signals = False
