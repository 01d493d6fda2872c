"""A Stop ends every run of its session clicked before it: running, waiting, or not yet arrived (webui/stops.py)."""

import time

from webui.stops import StopLedger


def test_a_stop_that_arrives_before_its_run_stops_that_run_when_it_begins():
    ledger = StopLedger()
    ledger.clicked("a")
    assert ledger.stop("a") is True  # clicked, not begun: on its way
    stopped = ledger.begin("a", enqueued=time.monotonic())  # the run's request arrives after the Stop
    assert stopped()


def test_a_run_clicked_after_the_stop_and_another_session_are_not_touched():
    ledger = StopLedger()
    ledger.clicked("a")
    first = ledger.begin("a")
    assert ledger.stop("a") is False  # the run began: nothing on its way
    assert first()
    time.sleep(0.001)
    ledger.clicked("a")
    second = ledger.begin("a")
    other = ledger.begin("b")
    assert not second() and not other()
    assert ledger.stop("b") is False and not second()


def test_a_run_stopped_while_it_runs_and_one_waiting_in_the_queue():
    ledger = StopLedger()
    ledger.clicked("a")
    queued_at = time.monotonic()
    time.sleep(0.001)
    running = ledger.begin("a")
    assert not running()
    ledger.clicked("a")  # a second click whose run waits in the queue
    ledger.stop("a")
    waiting = ledger.begin("a", enqueued=queued_at + 1)  # it was queued after its click, before it began
    assert running() and waiting()


def test_the_ledger_keeps_a_bounded_number_of_sessions():
    ledger = StopLedger(max_sessions=3)
    for n in range(10):
        ledger.clicked(f"s{n}")
    assert len(ledger._sessions) == 3

