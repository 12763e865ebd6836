"""One step's calls through the service chain, with a fake clock: what it keeps per service
across calls (the breaker, the call statistics) and the backoff it waits within the step's
deadline, the decision's deadline included."""

from __future__ import annotations

import random
from typing import Any

import pytest

from gateway.core.breaker import BreakerPolicy
from gateway.core.errors import TransientError
from gateway.core.saga import StepKind, StepSpec
from gateway.sagas.chain import CallScope, ServiceChain
from gateway.sagas.policy import Attempt, StepPolicy
from gateway.services.base import ServiceRegistry
from gateway.store import Store

STEP = StepSpec("create_entry_record", "svc", "create_entry_record", StepKind.REMOTE_WRITE)
POLICY = StepPolicy(retry_count=2, use_circuit_breaker=True, deadline_s=1.0,
                    call_deadline_s=0.3, backoff_initial_s=0.1, backoff_max_s=0.5)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_800_000_000 + self.t

    def wall_synced(self) -> bool:
        return True

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


class Flaky:
    """Fails ``failures`` times (each taking 10 ms of the fake clock), then answers."""

    name = "svc"

    def __init__(self, clock: Clock, failures: int) -> None:
        self.clock = clock
        self.failures = failures
        self.deadlines: list[float] = []

    async def call(self, operation: str, payload: dict[str, Any], *,
                   idempotency_key: str | None, deadline_s: float) -> dict[str, Any]:
        self.deadlines.append(deadline_s)
        self.clock.t += 0.01
        if self.failures > 0:
            self.failures -= 1
            raise TransientError("HTTP 503", service=self.name)
        return {"entry_id": "e1"}


@pytest.fixture
async def store(tmp_path):
    s = await Store.open(tmp_path / "gateway.db")
    yield s
    await s.close()


def chain_for(store: Store, service: Flaky, clock: Clock, labels: list[str]) -> ServiceChain:
    registry = ServiceRegistry()
    registry.register("svc", service)
    return ServiceChain(store, registry, clock, breaker_policy=BreakerPolicy(),
                        cache_max_stale_s=0.0, rng=random.Random(7),
                        on_boundary=labels.append)


def scope(deadline_at: float | None = None) -> CallScope:
    return CallScope("saga-1", "B123CD", emit=lambda _type, _data: None,
                     defer=lambda _op: None, deadline_at=deadline_at)


async def test_breaker_and_statistics_are_made_once_per_service(store):
    clock = Clock()
    service = Flaky(clock, failures=2)
    labels: list[str] = []
    chain = chain_for(store, service, clock, labels)
    attempts: list[Attempt] = []
    result, source = await chain.call(scope(), STEP, POLICY, {}, "k1", attempts)
    assert (result, source) == ({"entry_id": "e1"}, "svc")
    assert [a.outcome for a in attempts] == ["transient", "transient", "ok"]
    assert attempts[-1].duration_ms == pytest.approx(10.0)
    assert labels == ["before call create_entry_record"] * 3 + ["after call create_entry_record"]
    breaker, stats = chain.breakers["svc"], chain.stats["svc"]
    # equal jitter: each wait within [half, all] of 0.1 s then 0.2 s
    assert 0.05 <= clock.slept[0] <= 0.1 and 0.1 <= clock.slept[1] <= 0.2
    assert [c.answered for c in stats.calls] == [False, False, True]
    await chain.call(scope(), STEP, POLICY, {}, "k2", [])
    assert chain.breakers["svc"] is breaker and chain.stats["svc"] is stats
    assert [c.answered for c in stats.calls] == [False, False, True, True]
    assert breaker.state == "closed"


async def test_no_retry_waits_past_the_decision_deadline(store):
    clock = Clock()
    service = Flaky(clock, failures=5)
    chain = chain_for(store, service, clock, [])
    attempts: list[Attempt] = []
    # the decision leaves 0.15 s of the step's 1 s: one wait fits, the second would not
    with pytest.raises(TransientError, match="503"):
        await chain.call(scope(deadline_at=clock.t + 0.15), STEP, POLICY, {}, "k", attempts)
    assert [a.outcome for a in attempts] == ["transient", "transient"]
    assert len(clock.slept) == 1
    # each call's own deadline is what is left of the step's when it is made
    assert service.deadlines[0] == pytest.approx(0.15)
    assert service.deadlines[1] == pytest.approx(0.15 - 0.01 - clock.slept[0])


async def test_no_time_left_is_a_transient_failure_without_a_call(store):
    clock = Clock()
    service = Flaky(clock, failures=0)
    chain = chain_for(store, service, clock, [])
    with pytest.raises(TransientError, match="no time left"):
        await chain.call(scope(deadline_at=clock.t - 1), STEP, POLICY, {}, "k", [])
    assert service.deadlines == []
