import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.backoff import BackoffSchedule, cached_schedule
from gateway.core.balancing import Balancer, BalancingPolicy, Candidate


def test_backoff_grows_caps_and_stops_after_retries():
    s = BackoffSchedule(initial_s=0.1, factor=2, max_delay_s=0.3, jitter=0, retries=3)
    assert [s.next_delay(n, 0, 0.5) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.3, None]


def test_backoff_respects_the_total_deadline():
    s = BackoffSchedule(initial_s=0.5, jitter=0, retries=None, deadline_s=1.0)
    assert s.next_delay(1, 0.4, 0) == 0.5
    assert s.next_delay(1, 0.6, 0) is None


@given(st.integers(1, 10_000), st.floats(0, 1))
def test_jitter_keeps_delay_within_bounds(n, r):
    s = BackoffSchedule(initial_s=0.05, max_delay_s=2, jitter=0.5, retries=None)
    d = s.next_delay(n, 0, r)
    assert d is not None and math.isfinite(d)
    assert 0.5 * s.base_delay(n) <= d <= s.base_delay(n) <= 2


def test_invalid_schedule_is_refused():
    with pytest.raises(ValueError, match="jitter"):
        BackoffSchedule(jitter=2)


def test_a_cached_schedule_is_made_once_and_refused_values_every_time():
    s = cached_schedule(0.1, 2.0, 0.3, 0.0, 3, math.inf)
    assert s is cached_schedule(0.1, 2.0, 0.3, 0.0, 3, math.inf)
    assert s == BackoffSchedule(initial_s=0.1, max_delay_s=0.3, jitter=0, retries=3)
    for _ in range(2):
        with pytest.raises(ValueError, match="retries"):
            cached_schedule(0.1, 2.0, 0.3, 0.0, -1, math.inf)


def test_round_robin_rotates_and_skips_open_instances():
    b = Balancer(BalancingPolicy.ROUND_ROBIN)
    c = [Candidate("a"), Candidate("b"), Candidate("c")]
    assert [b.choose(c) for _ in range(4)] == [0, 1, 2, 0]
    c[1] = Candidate("b", available=False)
    assert [b.choose(c) for _ in range(3)] == [2, 0, 2]
    assert b.choose([Candidate("x", available=False)]) is None
    assert b.choose([]) is None


def test_no_instance_available_leaves_the_rotation_where_it_was():
    b = Balancer("round_robin")
    c = [Candidate("a"), Candidate("b"), Candidate("c")]
    assert b.choose(c) == 0
    assert b.choose([Candidate(x.name, available=False) for x in c]) is None
    assert b.order([Candidate(x.name, available=False) for x in c]) == []
    assert b.choose(c) == 1


def test_least_outstanding_and_weighted_and_random():
    lo = Balancer("least_outstanding")
    assert lo.choose([Candidate("a", outstanding=3), Candidate("b", outstanding=1)]) == 1
    w = Balancer("weighted")
    c = [Candidate("a", weight=1), Candidate("b", weight=3)]
    picks = [w.choose(c, r / 100) for r in range(100)]
    assert picks.count(1) == 75
    r = Balancer("random")
    assert {r.choose(c, x) for x in (0.0, 0.49, 0.5, 0.99)} == {0, 1}


def test_failover_order_puts_the_choice_first():
    b = Balancer("round_robin")
    c = [Candidate("a"), Candidate("b", available=False), Candidate("c")]
    assert b.order(c) == [0, 2]
    assert b.order(c) == [2, 0]
    assert b.order([Candidate("only")]) == [0]
