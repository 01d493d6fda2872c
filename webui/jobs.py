"""Is anybody still waiting for this event's result? The check a long request polls between steps.

Gradio runs a queued event's function in a worker thread. When the visitor cancels it (`job.cancel()` in
gradio_client, the Stop button's `cancels=`) Gradio cancels the asyncio task and frees the queue slot at once, and
when the page is closed it marks the event dead; neither can stop the thread, which would run to its end and hold
the accelerator while the next visitor's job starts. So our functions ask, between denoising steps and before
they start: is this event still one of the queue's live jobs?

This reads the queue's `active_jobs` and its waiting events (gradio 6.31, pinned in requirements.txt);
tests/test_public_attacks.py cancels and disconnects real clients and tests/test_live.py queues strokes over HTTP (the
slow tier, which CI runs), so an upgrade that changes them fails there, not in production; a queue without
`active_jobs` is an error here, never a silent "still wanted".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradio.context import LocalContext

from .stops import StopLedger


def event_still_wanted() -> Callable[[], bool]:
    """A check for the current event, to call from inside an event function: it answers False once the event was
    cancelled or its client went away. Outside a queued event (a direct Python call) it always answers True."""
    blocks = LocalContext.blocks.get(None)
    event_id = LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    if queue is None or not event_id:
        return lambda: True

    queue.active_jobs  # noqa: B018 - an AttributeError at once if Gradio renamed it

    def wanted() -> bool:
        for job in list(queue.active_jobs):
            for event in job or ():
                if event._id == event_id:
                    return bool(event.alive)
        return False  # no longer an active job: cancelled (its task ended) or already finished

    return wanted


def stop_requested() -> Callable[[], bool]:
    """The opposite of `event_still_wanted`, in the shape the library's `should_stop` arguments take."""
    wanted = event_still_wanted()
    return lambda: not wanted()


def newer_event_waiting() -> Callable[[], bool]:
    """A check for the current event: True once the queue holds a newer call of the same function from the same
    session (a live frame made stale by the next stroke). It reads the queue, not a counter the page keeps, so a
    client calling the event by index is held to it too. Outside a queued event it always answers False."""
    queue, mine = _current_event()
    if mine is None:
        return lambda: False

    def newer() -> bool:
        for waiting in list(queue.event_queue_per_concurrency_id.values()):
            for event in list(waiting.queue):
                if event.session_hash == mine.session_hash and event.fn is mine.fn and \
                        event.enqueue_time > mine.enqueue_time and event.alive:
                    return True
        return False

    return newer


def event_enqueue_time() -> float | None:
    """When Gradio queued the current event (`time.monotonic()`), or None outside a queued event."""
    _, mine = _current_event()
    return None if mine is None else mine.enqueue_time


def _current_event() -> tuple[Any, Any]:
    """(Gradio's queue, the current event in it), or (queue or None, None) outside a queued event."""
    blocks = LocalContext.blocks.get(None)
    event_id = LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    if queue is None or not event_id:
        return queue, None
    return queue, next((event for job in list(queue.active_jobs) for event in job or () if event._id == event_id),
                       None)


def run_stop_check(ledger: StopLedger, key: str, token: Any = None) -> Callable[[], bool]:
    """The check of a run started by a button: its event cancelled or its page gone (`stop_requested`), or a Stop
    of `key` (its session and tab) pressed after the click whose `token` the run carries, even one that reached the
    server before the run's own request did (webui/stops.py)."""
    cancelled = stop_requested()
    stopped = ledger.begin(key, token, event_enqueue_time())
    return lambda: cancelled() or stopped()
