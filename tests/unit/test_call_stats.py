"""The last calls of a service, kept for the page's words."""

from __future__ import annotations

from gateway.core.call_stats import Call, CallStats


def test_the_last_calls_are_kept_oldest_first_as_records():
    s = CallStats(keep=3)
    assert (s.calls, s.median_ms(), s.last_answered()) == ([], None, None)
    s.record(1.0, 0.010, True)
    s.record(2.0, 0.500, False, "HTTP 500")
    s.record(3.0, 0.030, True)
    s.record(4.0, 0.800, False, "timeout")
    assert s.calls == [Call(2.0, 0.5, False, "HTTP 500"), Call(3.0, 0.03, True),
                       Call(4.0, 0.8, False, "timeout")]
    assert s.calls[-1].at == 4.0
    assert (s.failures_in_a_row, s.last_error, s.last_answered()) == (1, "timeout", False)
    assert s.median_ms() == 30.0  # of the answered calls only


def test_an_answer_ends_the_run_of_failures_and_keeps_the_last_error():
    s = CallStats()
    for t in range(3):
        s.record(float(t), 0.5, False, f"error {t}")
    assert s.failures_in_a_row == 3
    s.record(3.0, 0.02, True)
    assert (s.failures_in_a_row, s.last_error, s.last_answered()) == (0, "error 2", True)
