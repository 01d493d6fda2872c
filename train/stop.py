"""Stop requests for a training run: SIGTERM/SIGINT, or a STOP file in the output folder (what the Train tab's Stop
button writes). Honoured whenever they arrive, also while the run is still starting: `python -m train` listens for
the signals before it imports anything heavy, and a STOP file that is already there counts."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

_signalled = threading.Event()


def listen_for_signals() -> None:
    """Turn SIGTERM/SIGINT into a stop request (a checkpoint first, then a clean exit). A second signal ends the
    process at once, for a user who really means it. Only the main thread can install handlers; elsewhere (a test,
    a UI worker) the STOP file still works."""
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _handle)
    except ValueError:
        pass


def _handle(signum: int, frame: Any) -> None:
    if _signalled.is_set():
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    _signalled.set()


class StopRequest:
    """Callable: has a stop been asked for (a signal, or `stop_file` exists)?"""

    def __init__(self, stop_file: Path) -> None:
        self.stop_file = stop_file

    def __call__(self) -> bool:
        return _signalled.is_set() or self.stop_file.exists()

    def consume(self) -> None:
        """The request was honoured: remove the STOP file so that resuming does not stop again at once."""
        self.stop_file.unlink(missing_ok=True)
