"""The seed's SAGA API (``EnhancedSaga``, ``EnhancedSagaStep``, ``EnhancedSagaOrchestrator``)
as a thin face over the daemon's orchestrator: the same saga machine, durable log, retry,
breaker, alternatives and cache. Run ``python -m gateway.sagas.saga_with_fallbacks``.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.clock import Clock, SystemClock
from gateway.core.allocation import ZoneSpec
from gateway.core.breaker import BreakerPolicy
from gateway.core.saga import SagaDefinition, StepKind, StepSpec
from gateway.core.steps import (
    ALTERNATIVE_LICENSE_PLATE_SERVICE,
    DEFAULT_COMPENSATIONS,
    LICENSE_PLATE_SERVICE,
    PARKING_MGMT_SERVICE,
)
from gateway.sagas.policy import SagaOutcome, StepPolicy
from gateway.sagas.runner import SagaRunner
from gateway.services.base import LocalService, RemoteService, ServiceRegistry
from gateway.services.spaces import ParkingService
from gateway.sim.inprocess import InProcessPlateService
from gateway.store import Store, saga_log

SEED_KINDS = {"verify_license_plate": StepKind.READ}


class EnhancedSagaStep:
    def __init__(self, name: str, service_name: str, operation: str) -> None:
        self.name = name
        self.service_name = service_name
        self.operation = operation
        self.request_data: dict[str, Any] = {}
        self.retry_count = 0
        self.use_circuit_breaker = False
        self.use_cache_fallback = False
        self.alternative_services: list[str] = []
        self.deadline_s = 1.0
        self.compensation_operation: str | None = DEFAULT_COMPENSATIONS.get(operation)
        # filled in by the orchestrator
        self.status = "pending"
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self.source: str | None = None
        self.attempts: list[dict[str, Any]] = []
        self.compensated = False

    def spec(self) -> StepSpec:
        if self.service_name == PARKING_MGMT_SERVICE:
            kind = StepKind.LOCAL
        else:
            kind = SEED_KINDS.get(self.operation, StepKind.REMOTE_WRITE)
        return StepSpec(self.name, self.service_name, self.operation, kind,
                        compensation=self.compensation_operation,
                        requires="authorized" if self.operation == "verify_license_plate"
                        else None)

    def policy(self) -> StepPolicy:
        return StepPolicy(retry_count=self.retry_count,
                          use_circuit_breaker=self.use_circuit_breaker,
                          use_cache_fallback=self.use_cache_fallback,
                          alternative_services=tuple(self.alternative_services),
                          deadline_s=self.deadline_s, call_deadline_s=self.deadline_s,
                          backoff_initial_s=0.05, backoff_max_s=0.5)


class EnhancedSaga:
    def __init__(self, saga_id: str, name: str) -> None:
        self.saga_id = saga_id
        self.name = name
        self.steps: list[EnhancedSagaStep] = []
        self.status = "pending"
        self.reason = ""
        self.outcome: SagaOutcome | None = None

    def add_step(self, step: EnhancedSagaStep) -> None:
        self.steps.append(step)

    @property
    def succeeded(self) -> bool:
        return self.status == "completed"


class EnhancedSagaOrchestrator:
    """Runs ``EnhancedSaga`` objects. Without arguments it uses in-process simulated plate
    services and a space table in a temporary SQLite file, so the seed's example runs as is;
    the daemon passes its own registry and store."""

    def __init__(self, registry: ServiceRegistry | None = None, store: Store | None = None,
                 clock: Clock | None = None, gate_id: str = "seed",
                 breaker_policy: BreakerPolicy | None = None) -> None:
        self.registry = registry or default_registry()
        self.store = store
        self.clock = clock or SystemClock()
        self.gate_id = gate_id
        self.breaker_policy = breaker_policy or BreakerPolicy()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._runner: SagaRunner | None = None

    def register_service(self, name: str, service: RemoteService | LocalService
                         | Callable[[str, dict[str, Any]], Awaitable[Any]]) -> None:
        self.registry.register(name, service)

    async def _ensure_store(self) -> Store:
        if self.store is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="gateway-seed-")
            self.store = await Store.open(Path(self._tmp.name) / "gateway.sqlite3",
                                          [ZoneSpec("A", 50)])
        return self.store

    async def execute_saga(self, saga: EnhancedSaga) -> EnhancedSaga:
        store = await self._ensure_store()
        definition = SagaDefinition(saga.name, tuple(s.spec() for s in saga.steps))
        if self._runner is None:
            self._runner = SagaRunner(store, self.registry, self.clock, gate_id=self.gate_id,
                                      breaker_policy=self.breaker_policy)
        self._runner.policies = {s.name: s.policy() for s in saga.steps}
        plate = next((s.request_data.get("license_plate") for s in saga.steps
                      if s.request_data.get("license_plate")), "")
        ctx = {"license_plate": plate,
               "request_data": {s.name: dict(s.request_data) for s in saga.steps}}
        outcome = await self._runner.run(definition, ctx, saga_id=saga.saga_id)
        saga.status, saga.reason, saga.outcome = outcome.status, outcome.reason, outcome
        log = await store.read(lambda c: saga_log.get(c, saga.saga_id)) or {"steps": []}
        by_name = {s.name: s for s in saga.steps}
        for row in log["steps"]:
            if row["phase"] == "forward" and row["name"] in by_name:
                step = by_name[row["name"]]
                step.status, step.result, step.error = row["status"], row["result"], row["error"]
                step.source, step.attempts = row["source"], row["attempt_log"]
        for row in log["steps"]:
            if row["phase"] == "compensation" and row["status"] == "succeeded":
                by_name[saga.steps[row["step_index"]].name].compensated = True
        return saga

    async def close(self) -> None:
        if self._tmp is not None and self.store is not None:
            await self.store.close()
            self._tmp.cleanup()
            self.store = self._tmp = None


def default_registry() -> ServiceRegistry:
    registry = ServiceRegistry()
    registry.register(LICENSE_PLATE_SERVICE, InProcessPlateService(LICENSE_PLATE_SERVICE))
    registry.register(ALTERNATIVE_LICENSE_PLATE_SERVICE,
                      InProcessPlateService(ALTERNATIVE_LICENSE_PLATE_SERVICE))
    # The seed's examples enter the same plates again and model no exits: flag, not deny.
    registry.register(PARKING_MGMT_SERVICE, ParkingService(anti_passback="allow"))
    return registry


def entry_saga(plate: str) -> EnhancedSaga:
    """The seed's example saga, step for step."""
    saga = EnhancedSaga(str(uuid.uuid4()), "Vehicle Entry Process")
    verify_step = EnhancedSagaStep("verify_license_plate", "license_plate_service",
                                   "verify_license_plate")
    verify_step.request_data = {"license_plate": plate}
    verify_step.retry_count = 2
    verify_step.use_cache_fallback = True
    saga.add_step(verify_step)
    allocate_step = EnhancedSagaStep("allocate_parking_space", "parking_mgmt_service",
                                     "allocate_parking_space")
    allocate_step.request_data = {"license_plate": plate}
    allocate_step.retry_count = 3
    allocate_step.use_circuit_breaker = True
    saga.add_step(allocate_step)
    entry_step = EnhancedSagaStep("create_entry_record", "license_plate_service",
                                  "create_entry_record")
    entry_step.request_data = {"license_plate": plate}
    entry_step.use_circuit_breaker = True
    entry_step.alternative_services = ["alternative_license_plate_service"]
    saga.add_step(entry_step)
    return saga


def _print(title: str, saga: EnhancedSaga) -> None:
    print(f"{title}: saga {saga.status}" + (f" ({saga.reason})" if saga.reason else ""))
    for step in saga.steps:
        tries = ", ".join(f"{a['service']}:{a['outcome']}" for a in step.attempts)
        extra = " [compensated]" if step.compensated else ""
        print(f"   {step.name:24} {step.status:9} source={step.source or '-':8} "
              f"attempts=[{tries}]{extra}")


async def _demo() -> None:
    orchestrator = EnhancedSagaOrchestrator()
    primary = orchestrator.registry.remote[LICENSE_PLATE_SERVICE]
    assert isinstance(primary, InProcessPlateService)
    try:
        _print("1. all services healthy", await orchestrator.execute_saga(entry_saga("34ABC123")))

        primary.fail_next = 1
        _print("2. central fails once: verify retried",
               await orchestrator.execute_saga(entry_saga("06XYZ99")))

        primary.down = True
        _print("3. central down: verify answered from the cache, entry record by the "
               "alternative service", await orchestrator.execute_saga(entry_saga("34ABC123")))
        primary.down = False

        primary.state.blocked.add("66BAD66")
        _print("4. a blocked plate: denied, nothing to compensate",
               await orchestrator.execute_saga(entry_saga("66BAD66")))
    finally:
        await orchestrator.close()


if __name__ == "__main__":
    asyncio.run(_demo())
