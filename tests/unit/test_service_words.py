"""The services in the words an operator reads, from the breaker and the last calls."""

from __future__ import annotations

from gateway.core.call_stats import CallStats
from gateway.core.service_words import describe, outbox_words, queue_advice


def stats(*calls: tuple[float, bool]) -> CallStats:
    s = CallStats()
    for i, (duration, answered) in enumerate(calls):
        s.record(float(i), duration, answered, "" if answered else "HTTP 500")
    return s


def test_a_breaker_word_is_never_shown_alone():
    paused = describe("open", retry_in_s=11.2, opened_after=3, stats=stats(*[(0.1, False)] * 3),
                      deadline_s=0.5)
    assert (paused.state, paused.summary) == ("paused", "paused after 3 failures, "
                                                        "retrying in 12 s")
    assert describe("half_open", retry_in_s=0, opened_after=0, stats=None,
                    deadline_s=0.5).state == "paused"
    closed = describe("closed", retry_in_s=0, opened_after=0, stats=stats((0.02, True)),
                      deadline_s=0.5)
    assert closed.state == "online" and "closed" not in closed.summary
    assert closed.summary == "online, answers in 20 ms"


def test_slow_offline_and_disabled():
    slow = describe("closed", retry_in_s=0, opened_after=0, deadline_s=0.5,
                    stats=stats((0.3, True), (0.4, True), (0.35, True)))
    assert slow.state == "slow" and "350 ms" in slow.summary and "500 ms" in slow.summary
    offline = describe("closed", retry_in_s=0, opened_after=0, deadline_s=0.5,
                       stats=stats((0.02, True), (0.5, False), (0.5, False)))
    assert offline.state == "offline" and "2 failed calls" in offline.summary
    assert "HTTP 500" in offline.summary
    assert describe("closed", retry_in_s=0, opened_after=0, stats=None, deadline_s=1,
                    enabled=False).state == "disabled"


def test_queue_and_outbox_say_what_to_do():
    assert queue_advice(0, 0) == ""
    assert "sent by themselves" in queue_advice(3, 0)
    assert "refused" in queue_advice(0, 2) and "by hand" in queue_advice(0, 2)
    assert outbox_words(0, True, True) == "every event delivered to the broker"
    assert "wait for the broker" in outbox_words(5, True, False)
    assert outbox_words(5, False, False) == "telemetry is off"


def test_an_old_failure_with_nothing_asked_since_is_not_called_offline():
    """The backup is asked only while central fails: an hour after an outage its last call
    is still the failed one, and says nothing about it now."""
    s = stats((0.02, True), (0.5, False))  # the failure at t=1
    current = describe("closed", retry_in_s=0, opened_after=0, stats=s, deadline_s=0.5,
                       now=30.0)
    assert current.state == "offline"
    stale = describe("closed", retry_in_s=0, opened_after=0, stats=s, deadline_s=0.5,
                     now=1.0 + 3600)
    assert stale.state == "idle"
    assert stale.summary == ("not asked since its last call failed 60 min ago (it is asked "
                             "when it is needed)")
