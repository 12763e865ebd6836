"""The seed's names and example calls work from ``gateway.sagas``."""

from __future__ import annotations

import subprocess
import sys
import uuid

from gateway.core.errors import PermanentError
from gateway.sagas import (
    AlternativeServiceStrategy,
    CacheFallbackStrategy,
    CircuitBreaker,
    EnhancedSaga,
    EnhancedSagaOrchestrator,
    EnhancedSagaStep,
    LoadBalancingStrategy,
    retry_with_backoff,
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t

    def wall_synced(self) -> bool:
        return True

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


async def test_retry_with_backoff_returns_success_and_result():
    clock = FakeClock()
    calls = []

    async def call_service():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("refused")
        return "ok"

    success, result = await retry_with_backoff(call_service, retry_count=3, initial_delay=0.5,
                                               backoff_factor=2.0, clock=clock)
    assert (success, result) == (True, "ok")
    assert clock.slept == [0.5, 1.0]
    success, result = await retry_with_backoff(call_service, retry_count=0, clock=clock)
    assert success


async def test_retry_gives_up_and_never_retries_permanent_errors():
    clock = FakeClock()
    n = 0

    async def refused():
        nonlocal n
        n += 1
        raise PermanentError("422")

    success, result = await retry_with_backoff(refused, retry_count=3, clock=clock)
    assert not success and isinstance(result, PermanentError) and n == 1


async def test_circuit_breaker_opens_then_half_opens_with_the_clock():
    clock = FakeClock()
    cb = CircuitBreaker("license_plate_service", failure_threshold=2, reset_timeout=30,
                        clock=clock)

    async def down(op, data):
        raise ConnectionError("down")

    async def up(op, data):
        return {"ok": True}

    for _ in range(2):
        assert (await cb.execute(down, "verify", {}))[0] is False
    assert cb.state == "open"
    success, result = await cb.execute(up, "verify", {})
    assert not success and "open" in str(result)
    clock.t += 30
    assert cb.state == "half_open"
    assert await cb.execute(up, "verify", {}) == (True, {"ok": True})
    assert cb.state == "closed"


async def test_alternative_cache_and_load_balancing():
    async def down():
        raise ConnectionError("down")

    async def backup():
        return "backup"

    alt = AlternativeServiceStrategy("primary_service", ["backup_service1", "backup_service2"])
    assert await alt.execute(down, [down, backup]) == (True, "backup")
    assert alt.last_used == "backup_service2"
    clock = FakeClock()
    cache = CacheFallbackStrategy(cache_ttl_seconds=300, clock=clock)
    assert await cache.execute(backup, cache_key="k") == (True, "backup")
    assert await cache.execute(down, cache_key="k") == (True, "backup")
    clock.t += 301
    success, _ = await cache.execute(down, cache_key="k")
    assert not success
    lb = LoadBalancingStrategy(LoadBalancingStrategy.ROUND_ROBIN)
    services = [down, backup, down]
    assert [lb.get_service(services) for _ in range(4)] == [down, backup, down, down]
    assert await LoadBalancingStrategy(LoadBalancingStrategy.ROUND_ROBIN).call([backup]) == \
        "backup"


async def test_seed_saga_example_runs_and_compensates():
    orchestrator = EnhancedSagaOrchestrator()
    try:
        saga = EnhancedSaga(str(uuid.uuid4()), "Vehicle Entry Process")
        verify_step = EnhancedSagaStep("verify_license_plate", "license_plate_service",
                                       "verify_license_plate")
        verify_step.request_data = {"license_plate": "34ABC123"}
        verify_step.retry_count = 2
        verify_step.use_cache_fallback = True
        saga.add_step(verify_step)
        allocate_step = EnhancedSagaStep("allocate_parking_space", "parking_mgmt_service",
                                         "allocate_parking_space")
        allocate_step.request_data = {"license_plate": "34ABC123"}
        allocate_step.retry_count = 3
        allocate_step.use_circuit_breaker = True
        saga.add_step(allocate_step)
        entry_step = EnhancedSagaStep("create_entry_record", "license_plate_service",
                                      "create_entry_record")
        entry_step.request_data = {"license_plate": "34ABC123"}
        entry_step.use_circuit_breaker = True
        entry_step.alternative_services = ["alternative_license_plate_service"]
        saga.add_step(entry_step)

        async def refuse(operation, data):
            raise PermanentError("rejected by the central service")

        result_saga = await orchestrator.execute_saga(saga)
        assert result_saga.status == "completed"
        assert [s.status for s in saga.steps] == ["succeeded"] * 3

        # a definitive failure of the last step compensates the allocation
        orchestrator.register_service("license_plate_service", refuse)
        saga2 = EnhancedSaga(str(uuid.uuid4()), "Vehicle Entry Process")
        for step in saga.steps:
            copy = EnhancedSagaStep(step.name, step.service_name, step.operation)
            copy.request_data = dict(step.request_data)
            copy.use_cache_fallback = step.use_cache_fallback
            saga2.add_step(copy)
        saga2.steps[0].service_name = "alternative_license_plate_service"
        await orchestrator.execute_saga(saga2)
        assert saga2.status == "compensated"
        assert saga2.steps[1].compensated
        assert await orchestrator.store.occupancy() == {"total": 50, "free": 49,
                                                        "allocated": 1, "out_of_service": 0}
    finally:
        await orchestrator.close()


def test_example_programs_run():
    for module, expect in (("gateway.sagas.fallback_strategies", "LoadBalancingStrategy"),
                           ("gateway.sagas.saga_with_fallbacks", "source=cache")):
        out = subprocess.run([sys.executable, "-m", module], capture_output=True, text=True,
                             timeout=60, check=True).stdout
        assert expect in out
