import copy

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.breaker import Breaker, BreakerPolicy, CircuitState


def test_opens_after_consecutive_failures_and_half_opens_on_time():
    b = Breaker("central", BreakerPolicy(failure_threshold=3, reset_timeout_s=10))
    for t in range(2):
        assert b.allow(t)
        assert b.record_failure(t) is None
    assert b.allow(2)
    tr = b.record_failure(2)
    assert tr is not None and tr.to_state is CircuitState.OPEN
    assert not b.allow(11.9)
    assert b.current_state(12.0) is CircuitState.HALF_OPEN
    assert b.allow(12.0)  # the probe
    assert not b.allow(12.1)  # budget of one probe spent
    tr = b.record_success(12.2)
    assert tr is not None and tr.to_state is CircuitState.CLOSED
    states = [(x.from_state, x.to_state) for x in b.take_transitions()]
    assert states == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert b.take_transitions() == []


def test_failed_probe_reopens_for_another_full_timeout():
    b = Breaker("c", BreakerPolicy(failure_threshold=1, reset_timeout_s=5))
    b.record_failure(0)
    assert b.allow(5)
    b.record_failure(5.5)
    assert b.state is CircuitState.OPEN
    assert not b.allow(10.4)
    assert b.allow(10.5)


def test_failure_rate_window_opens_without_consecutive_failures():
    b = Breaker("c", BreakerPolicy(failure_threshold=100, failure_rate=0.5, min_calls=6,
                                   window_s=10))
    for t in range(5):
        (b.record_failure if t % 2 else b.record_success)(t)
    assert b.state is CircuitState.CLOSED  # 5 calls: below min_calls
    b.record_failure(5)  # 3 of 6 failed
    assert b.state is CircuitState.OPEN


def test_old_calls_leave_the_window():
    b = Breaker("c", BreakerPolicy(failure_threshold=100, failure_rate=0.5, min_calls=4,
                                   window_s=10))
    for t in range(3):
        b.record_failure(t)
    for t in range(20, 23):
        b.record_success(t)
    b.record_failure(23)  # 1 of 4 in the window
    assert b.state is CircuitState.CLOSED


def test_unreported_probes_do_not_wedge_half_open():
    b = Breaker("c", BreakerPolicy(failure_threshold=1, reset_timeout_s=5))
    b.record_failure(0)
    assert b.allow(5)  # a probe that is never reported (cancelled)
    assert not b.allow(9)
    assert b.allow(10.1)  # a new episode


@given(
    probes=st.integers(1, 4),
    ops=st.lists(st.tuples(st.sampled_from(["allow", "ok", "fail"]),
                           st.floats(0, 3, allow_nan=False)), max_size=80),
)
def test_half_open_never_admits_more_than_its_probe_budget(probes, ops):
    policy = BreakerPolicy(failure_threshold=2, reset_timeout_s=5, half_open_probes=probes,
                           half_open_successes=1)
    b = Breaker("c", policy)
    now = 0.0
    admitted_in_episode = 0
    episode = None
    for op, dt in ops:
        now += dt
        if op == "allow":
            before = len(b.transitions)
            allowed = b.allow(now)
            new = list(b.transitions)[before:] if before < 100 else []
            if any(t.to_state is CircuitState.HALF_OPEN for t in new):
                episode, admitted_in_episode = now, 0
            if allowed and b.state is CircuitState.HALF_OPEN:
                admitted_in_episode += 1
                assert admitted_in_episode <= probes, (episode, admitted_in_episode)
            if b.state is CircuitState.OPEN:
                assert not allowed
        elif op == "ok":
            b.record_success(now)
        else:
            b.record_failure(now)



@given(st.lists(st.tuples(st.sampled_from(["allow", "ok", "fail"]),
                          st.floats(min_value=0.0, max_value=3.0)), max_size=40))
def test_wait_s_says_exactly_when_allow_would_admit_a_call(ops):
    """``wait_s`` is what the offline sync holds off by: 0 exactly when ``allow`` would
    admit a call now, and after that many seconds ``allow`` does."""
    b = Breaker("c", BreakerPolicy(failure_threshold=2, reset_timeout_s=4, half_open_probes=1))
    now = 0.0
    for op, dt in ops:
        now += dt
        if op == "allow":
            b.allow(now)
        elif op == "ok":
            b.record_success(now)
        else:
            b.record_failure(now)
    wait = b.wait_s(now)
    assert copy.deepcopy(b).allow(now) == (wait == 0)
    if wait > 0:
        assert not copy.deepcopy(b).allow(now + wait * 0.99)
    assert b.allow(now + wait)
