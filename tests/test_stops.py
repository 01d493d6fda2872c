"""A Stop ends every run of its session and tab clicked before it: running, waiting, or not yet arrived
(webui/stops.py)."""

import math
import time

from webui.stops import StopLedger, stop_key


def test_a_stop_that_arrives_before_its_run_stops_that_run_when_it_begins():
    ledger = StopLedger()
    token = ledger.clicked("a")
    assert ledger.stop("a") is True  # clicked, not begun: on its way
    assert ledger.begin("a", token, enqueued=time.monotonic())()  # the run's request came after the Stop


def test_click_stop_click_stops_the_first_run_and_not_the_second_whatever_order_they_arrive_in():
    ledger = StopLedger()
    first = ledger.clicked("a")
    ledger.stop("a")
    time.sleep(0.001)
    second = ledger.clicked("a")
    later = time.monotonic()
    runs_second = ledger.begin("a", second, enqueued=later)  # the second run's request overtook the first's
    runs_first = ledger.begin("a", first, enqueued=later + 1)
    assert runs_first() and not runs_second()


def test_a_run_that_began_is_stopped_and_the_next_click_is_not():
    ledger = StopLedger()
    running = ledger.begin("a", ledger.clicked("a"))
    assert not running()
    assert ledger.stop("a") is False  # nothing on its way: the run had begun
    assert running()
    time.sleep(0.001)
    assert not ledger.begin("a", ledger.clicked("a"))()


def test_each_session_and_tab_has_its_own_stop():
    ledger = StopLedger()
    generate = ledger.begin(stop_key("s", "generate"), ledger.clicked(stop_key("s", "generate")))
    edit = ledger.begin(stop_key("s", "edit"), ledger.clicked(stop_key("s", "edit")))
    other = ledger.begin(stop_key("t", "generate"), ledger.clicked(stop_key("t", "generate")))
    ledger.stop(stop_key("s", "generate"))
    assert generate() and not edit() and not other()


def test_a_caller_without_a_token_is_judged_by_when_it_was_queued():
    ledger = StopLedger()
    queued = time.monotonic()
    time.sleep(0.001)
    ledger.stop("a")
    assert ledger.begin("a", None, enqueued=queued)()  # queued before the Stop
    assert not ledger.begin("a", "not a token", enqueued=time.monotonic() + 1)()


def test_a_token_from_the_future_or_not_finite_cannot_make_a_run_unstoppable():
    ledger = StopLedger()
    forged = ledger.begin("a", time.monotonic() + 3600)
    nan = ledger.begin("a", math.nan)
    infinite = ledger.begin("a", math.inf)
    time.sleep(0.001)
    ledger.stop("a")
    assert forged() and nan() and infinite()


def test_the_ledger_keeps_a_bounded_number_of_sessions_the_newest():
    ledger = StopLedger(max_sessions=3)
    for n in range(10):
        ledger.clicked(f"s{n}")
    assert list(ledger._sessions) == ["s7", "s8", "s9"]
