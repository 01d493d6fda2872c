"""Which runs a Stop ends: every run of its session and tab whose button was clicked before it, wherever the run is.

A run can be in three places when its Stop arrives: running (its steps check the Stop), waiting in Gradio's queue
(Gradio's `cancels=` removes it), or not yet at the server at all. The last is the gap: the browser sends a run's
request only after uploading its pictures, so a Stop pressed in the first second can arrive first. Then there was
nothing to cancel, the Stop answered "Nothing is running." and the run came in afterwards, ran and saved.

So a run button's click is an unqueued event of its own (`clicked`), which returns a token, the click's time; the run
is chained after it (`.then`), carries the token as an input, and is stopped once a Stop of the same session and tab
is newer than its click. The chain orders the two in the browser: the click is on record before the run's request is
sent, and a run clicked after a Stop carries a newer token. A caller without a token (the API, a script calling the
event by index) is judged by the time Gradio queued it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_SESSIONS = 4096  # (session, tab) pairs kept, a few floats each; anyone can send clicks over HTTP
PENDING_SECONDS = 30.0  # a click this recent with no run begun since is a run on its way (for Stop's message)


@dataclass
class _Session:
    last_click: float = -math.inf
    stopped_at: float = -math.inf
    last_begun_click: float = -math.inf


class StopLedger:
    """Per key (a session and a tab): its last click, its last Stop, and the newest click a run began for. Times are
    `time.monotonic()`, the clock of Gradio's `Event.enqueue_time`."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._max_sessions = max_sessions
        self._lock = threading.Lock()

    def _session(self, key: str) -> _Session:
        found = self._sessions.pop(key, None) or _Session()
        self._sessions[key] = found  # newest last; the oldest forgotten past the bound
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)
        return found

    def clicked(self, key: str) -> float:
        """A run button was clicked: its token (the click's time), for the run to carry."""
        now = time.monotonic()
        with self._lock:
            self._session(key).last_click = now
        return now

    def begin(self, key: str, token: Any = None, enqueued: float | None = None) -> Callable[[], bool]:
        """A run begins. `token`: what its click returned (anything else, e.g. from a caller without a click:
        `enqueued`, when Gradio queued it, else now). Returns its check: True once a Stop of `key` came after it."""
        now = time.monotonic()
        if isinstance(token, (int, float)) and not isinstance(token, bool) and math.isfinite(token):
            mark = min(float(token), now)  # a token from the future would make the run unstoppable: clamped
        else:
            mark = now if enqueued is None else enqueued
        with self._lock:
            state = self._session(key)
            state.last_begun_click = max(state.last_begun_click, mark)
        return lambda: state.stopped_at >= mark

    def stop(self, key: str) -> bool:
        """Stop every run of `key` clicked until now. True when one was clicked recently and has not begun yet."""
        now = time.monotonic()
        with self._lock:
            state = self._session(key)
            state.stopped_at = now
            return state.last_click > state.last_begun_click and now - state.last_click < PENDING_SECONDS


def stop_key(session: str, scope: str) -> str:
    """The ledger's key of a session's runs in one tab (`scope`): a Stop ends its own tab's runs."""
    return f"{scope}:{session}"
