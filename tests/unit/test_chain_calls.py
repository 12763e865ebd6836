"""One step's calls through the service chain, with a fake clock: what it keeps per service
across calls (the breaker, the call statistics) and the backoff it waits within the step's
deadline, the decision's deadline included; a refusal by breakers (the chain's own, or the
central pool's with every instance's open) moves on to the next fallback at once."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import aiohttp
import pytest

from gateway.core.balancing import Balancer
from gateway.core.breaker import BreakerPolicy
from gateway.core.errors import PermanentError, TransientError
from gateway.core.saga import StepKind, StepSpec
from gateway.core.steps import ALTERNATIVE_LICENSE_PLATE_SERVICE, LICENSE_PLATE_SERVICE
from gateway.sagas.chain import CallScope, ServiceChain
from gateway.sagas.policy import Attempt, StepPolicy
from gateway.services.base import ServiceRegistry
from gateway.services.central import CentralInstance, CentralPool
from gateway.store import Store, plate_cache

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


def chain_for(store: Store, service: Flaky, clock: Clock, labels: list[str],
              **more: Any) -> ServiceChain:
    registry = ServiceRegistry()
    registry.register("svc", service)
    for name, other in more.items():
        registry.register(name, other)
    return ServiceChain(store, registry, clock, breaker_policy=BreakerPolicy(),
                        cache_max_stale_s=0.0, rng=random.Random(7),
                        on_boundary=labels.append)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def open_pool(session: aiohttp.ClientSession, clock: Clock) -> CentralPool:
    """The central pool of two instances (nothing listens there: never called), every
    instance's breaker open, as after failures a moment ago."""
    pool = CentralPool([CentralInstance(f"http://127.0.0.1:{port}", session)
                        for port in (1, 2)], Balancer(), BreakerPolicy(failure_threshold=1),
                       clock)
    for breaker in pool.breakers.values():
        breaker.record_failure(clock.t)
    pool.take_transitions()
    return pool


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


async def test_chain_breaker_open_moves_on_to_the_alternative_at_once(store):
    clock = Clock()
    service = Flaky(clock, failures=0)
    backup = Flaky(clock, failures=0)
    backup.name = "backup"
    chain = chain_for(store, service, clock, [], backup=backup)
    policy = StepPolicy(retry_count=2, use_circuit_breaker=True, alternative_services=("backup",),
                        backoff_initial_s=0.1)
    # the chain's breaker for svc, opened by failures a moment ago
    await chain.call(scope(), STEP, policy, {}, "k0", [])
    for _ in range(chain.breaker_policy.failure_threshold):
        chain.breakers["svc"].record_failure(clock.t)
    attempts: list[Attempt] = []
    result, source = await chain.call(scope(), STEP, policy, {}, "k1", attempts)
    assert (result, source) == ({"entry_id": "e1"}, "backup")
    assert [(a.service, a.outcome) for a in attempts] == [("svc", "circuit_open"),
                                                          ("backup", "ok")]
    assert clock.slept == [] and len(service.deadlines) == 1  # not asked again


async def test_central_pool_every_breaker_open_moves_on_to_the_backup_at_once(store, session):
    """Every central breaker open: the pool refuses (CircuitOpenError) and the chain asks the
    backup at once, as when its own breaker refuses: no backoff, no retry of the pool
    (no breaker closes within a backoff; they reset after seconds)."""
    clock = Clock()
    backup = Flaky(clock, failures=0)
    backup.name = ALTERNATIVE_LICENSE_PLATE_SERVICE
    pool = open_pool(session, clock)
    chain = chain_for(store, Flaky(clock, 0), clock, [], **{
        LICENSE_PLATE_SERVICE: pool, ALTERNATIVE_LICENSE_PLATE_SERVICE: backup})
    step = StepSpec("create_entry_record", LICENSE_PLATE_SERVICE, "create_entry_record",
                    StepKind.REMOTE_WRITE)
    policy = StepPolicy(retry_count=2, use_circuit_breaker=True, deadline_s=1.0,
                        alternative_services=(ALTERNATIVE_LICENSE_PLATE_SERVICE,),
                        backoff_initial_s=0.1)
    attempts: list[Attempt] = []
    started = clock.t
    result, source = await chain.call(scope(), step, policy, {}, "k1", attempts)
    assert (result, source) == ({"entry_id": "e1"}, "backup")
    assert clock.slept == []  # before: two backoffs (0.05-0.1 s, 0.1-0.2 s) first
    assert clock.t - started == pytest.approx(0.01)  # only the backup's own 10 ms
    assert [(a.service, a.outcome) for a in attempts] == [
        (LICENSE_PLATE_SERVICE, "circuit_open"), (ALTERNATIVE_LICENSE_PLATE_SERVICE, "ok")]
    assert "breaker is open" in attempts[0].error


async def test_central_pool_every_breaker_open_answers_from_the_cache_at_once(store, session):
    clock = Clock()
    pool = open_pool(session, clock)
    chain = chain_for(store, Flaky(clock, 0), clock, [], **{LICENSE_PLATE_SERVICE: pool})
    verify = StepSpec("verify_license_plate", LICENSE_PLATE_SERVICE, "verify_license_plate",
                      StepKind.READ, requires="authorized")
    policy = StepPolicy(retry_count=2, use_circuit_breaker=True, use_cache_fallback=True,
                        deadline_s=1.0, backoff_initial_s=0.1)
    answer = {"license_plate": "B123CD", "authorized": True, "reason": "permit"}
    await store.write(partial(plate_cache.put, plate="B123CD", result=answer, source="central",
                              now=clock.wall() - 60, ttl_s=30.0))  # stale, within a day
    chain.cache_max_stale_s = 86_400.0
    attempts: list[Attempt] = []
    result, source = await chain.call(scope(), verify, policy, {"license_plate": "B123CD"},
                                      None, attempts)
    assert source == "cache" and result["authorized"] is True
    assert clock.slept == []
    assert [a.outcome for a in attempts] == ["circuit_open", "cache"]


class Refusing(Flaky):
    """Answers definitively no (a 4xx)."""

    async def call(self, operation: str, payload: dict[str, Any], *,
                   idempotency_key: str | None, deadline_s: float) -> dict[str, Any]:
        self.deadlines.append(deadline_s)
        self.clock.t += 0.01
        raise PermanentError("HTTP 409 duplicate", service=self.name, status=409)


async def test_a_definitive_answer_is_raised_at_once_and_counts_as_answered(store):
    clock = Clock()
    service = Refusing(clock, failures=0)
    chain = chain_for(store, service, clock, [])
    attempts: list[Attempt] = []
    with pytest.raises(PermanentError, match="409"):
        await chain.call(scope(), STEP, POLICY, {}, "k", attempts)
    assert [(a.outcome, a.error) for a in attempts] == [("permanent", "HTTP 409 duplicate")]
    assert attempts[0].duration_ms == pytest.approx(10.0)
    assert clock.slept == [] and len(service.deadlines) == 1
    assert [c.answered for c in chain.stats["svc"].calls] == [True]
    assert chain.breakers["svc"].state == "closed"
