"""Which of a session's runs a Stop ends: every run whose button was clicked before the Stop, wherever it is.

A run can be in three places when its Stop arrives: running (its steps check the Stop), waiting in Gradio's queue
(Gradio's `cancels=` removes it), or not yet at the server at all. The last is the gap: the browser sends a run's
request only after uploading its pictures, so a Stop pressed in the first second can arrive first. Then there is
nothing to cancel, the Stop answered "Nothing is running." and the run came in afterwards, ran and saved.

So each run button also sends, at the click and before any upload, a small unqueued event that `clicked` records.
A run, when it begins, takes as its click the session's last one at or before the time Gradio queued it; it is
stopped once a Stop of the session is newer than that click. A run clicked after the Stop is not touched.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_SESSIONS = 4096  # sessions whose clicks are kept (a few floats each); anyone can send clicks over HTTP
CLICKS_KEPT = 8  # per session: the runs clicked in a row faster than their requests arrive
PENDING_SECONDS = 30.0  # a click this recent with no run begun since is a run on its way (for Stop's message)


@dataclass
class _Session:
    clicks: deque[float] = field(default_factory=lambda: deque(maxlen=CLICKS_KEPT))
    stopped_at: float = float("-inf")
    last_begun_click: float = float("-inf")


class StopLedger:
    """Per session: when its run buttons were clicked, when its Stop was pressed, and which click each run that
    began answers. Times are `time.monotonic()`, the clock of Gradio's `Event.enqueue_time`."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._max_sessions = max_sessions
        self._lock = threading.Lock()

    def _session(self, session: str) -> _Session:
        found = self._sessions.pop(session, None) or _Session()
        self._sessions[session] = found  # newest last; the oldest forgotten past the bound
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)
        return found

    def clicked(self, session: str) -> None:
        """A run button of `session` was clicked (its run's request may still be on its way)."""
        with self._lock:
            self._session(session).clicks.append(time.monotonic())

    def begin(self, session: str, enqueued: float | None = None) -> Callable[[], bool]:
        """A run of `session` begins; `enqueued` is when Gradio queued it (None: now). Returns its check: True
        once a Stop of the session came after the click this run answers."""
        enqueued = time.monotonic() if enqueued is None else enqueued
        with self._lock:
            state = self._session(session)
            click = max((c for c in state.clicks if c <= enqueued), default=enqueued)
            state.last_begun_click = max(state.last_begun_click, click)
        return lambda: state.stopped_at >= click

    def stop(self, session: str) -> bool:
        """Stop every run of `session` clicked until now. True when one was clicked and has not begun yet."""
        now = time.monotonic()
        with self._lock:
            state = self._session(session)
            state.stopped_at = now
            last = state.clicks[-1] if state.clicks else float("-inf")
            return last > state.last_begun_click and now - last < PENDING_SECONDS
