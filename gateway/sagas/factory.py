"""Building the orchestrator of the daemon from its settings.

Each remote service of a chain is called with its own per-call deadline (the central
service: ``central.deadline_s``; the backup service: ``backup.deadline_s``); the steps
before the barrier share ``central.decision_deadline_s``, which caps every call; the lane's
own steps have ``saga.step_deadline_s``."""

from __future__ import annotations

from dataclasses import replace

import aiohttp

from gateway.clock import Clock
from gateway.core.backoff import BackoffSchedule
from gateway.core.balancing import Balancer
from gateway.core.breaker import BreakerPolicy
from gateway.core.steps import (
    ALTERNATIVE_LICENSE_PLATE_SERVICE,
    GATE_SERVICE,
    LICENSE_PLATE_SERVICE,
    PARKING_MGMT_SERVICE,
)
from gateway.sagas.policy import StepPolicy
from gateway.sagas.runner import SagaRunner
from gateway.services.base import RemoteService, ServiceRegistry
from gateway.services.central import CentralInstance, CentralPool
from gateway.services.spaces import ParkingService
from gateway.settings import Settings
from gateway.store.store import Store


def central_session(settings: Settings) -> aiohttp.ClientSession:
    """One session for all central calls: connections are reused; the library's default
    five-minute timeout is replaced by the configured per-call deadline."""
    c = settings.central
    # Aborting closed connections after 2 s helps only with TLS servers that never finish
    # their shutdown; it costs a timer every 2 s for the daemon's life, waking an idle gate.
    tls = any(url.lower().startswith("https:") for url in c.base_urls)
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=c.deadline_s, connect=c.deadline_s),
        connector=aiohttp.TCPConnector(limit=32, enable_cleanup_closed=tls),
        raise_for_status=False,
    )


def breaker_policy(settings: Settings) -> BreakerPolicy:
    c = settings.central
    return BreakerPolicy(failure_threshold=c.failure_threshold, reset_timeout_s=c.reset_timeout_s,
                         window_s=c.failure_window_s, failure_rate=c.failure_rate,
                         min_calls=c.min_calls_in_window, half_open_probes=c.half_open_probes)


def build_registry(settings: Settings, session: aiohttp.ClientSession, clock: Clock,
                   gate: RemoteService, backup: RemoteService | None = None) -> ServiceRegistry:
    c = settings.central
    registry = ServiceRegistry()
    instances = [CentralInstance(url, session, max_body_bytes=c.max_body_bytes)
                 for url in c.base_urls]
    registry.register(LICENSE_PLATE_SERVICE, CentralPool(
        instances, Balancer(c.load_balancing), breaker_policy(settings), clock))
    if backup is not None:
        registry.register(ALTERNATIVE_LICENSE_PLATE_SERVICE, backup)
    registry.register(PARKING_MGMT_SERVICE, ParkingService(
        {lane.id: lane.zone_order for lane in settings.lanes},
        anti_passback=settings.policy.anti_passback,
        exit_without_entry=settings.policy.exit_without_entry))
    registry.register(GATE_SERVICE, gate)
    return registry


def build_runner(settings: Settings, store: Store, registry: ServiceRegistry,
                 clock: Clock) -> SagaRunner:
    runner = SagaRunner(store, registry, clock, gate_id=settings.gate.id)
    apply_runner_settings(runner, settings)
    return runner


def apply_runner_settings(runner: SagaRunner, settings: Settings) -> None:
    """The runner's policies, breakers' thresholds, cache and deadlines from ``settings``:
    at start, and again on SIGHUP (each saga reads them afresh at each step)."""
    c, s = settings.central, settings.saga
    alternatives = (ALTERNATIVE_LICENSE_PLATE_SERVICE,) if settings.backup.enabled else ()
    p = settings.policy
    # one deadline per service of the chain, whichever step (verify, record, cancel) asks it
    per_service = ((LICENSE_PLATE_SERVICE, c.deadline_s),
                   (ALTERNATIVE_LICENSE_PLATE_SERVICE, settings.backup.deadline_s))
    remote = StepPolicy(retry_count=c.retry_count, alternative_services=alternatives,
                        use_circuit_breaker=True,
                        deadline_s=c.decision_deadline_s, call_deadline_s=c.deadline_s,
                        service_call_deadlines_s=per_service,
                        backoff_initial_s=c.backoff_initial_s, backoff_max_s=c.backoff_max_s,
                        queue_when_unreachable=p.record_when_unreachable == "queue")
    verify = StepPolicy(retry_count=c.retry_count, use_cache_fallback=True,
                        use_circuit_breaker=True, hedge_after_s=c.hedge_after_s,
                        alternative_services=alternatives, deadline_s=c.decision_deadline_s,
                        call_deadline_s=c.deadline_s, service_call_deadlines_s=per_service,
                        backoff_initial_s=c.backoff_initial_s, backoff_max_s=c.backoff_max_s)
    gate = StepPolicy(retry_count=0, deadline_s=s.step_deadline_s,
                      call_deadline_s=s.step_deadline_s)
    policies = {
        "entry:verify_license_plate": replace(verify,
                                              when_unverifiable=p.entry_when_unverifiable),
        "exit:verify_license_plate": replace(verify, when_unverifiable=p.exit_when_unverifiable),
        "create_entry_record": remote, "create_exit_record": remote,
        "cancel_entry_record": remote, "cancel_exit_record": remote,
        "open_barrier": gate, "confirm_passage": gate,
    }
    runner.policies, runner.default_policy = policies, remote
    runner.decision_deadline_s = runner.fence_wait_s = c.decision_deadline_s
    runner.compensation_backoff = BackoffSchedule(initial_s=s.compensation_backoff_initial_s,
                                                  max_delay_s=s.compensation_backoff_max_s,
                                                  retries=None)
    bp = breaker_policy(settings)
    runner.breaker_policy = runner.chain.breaker_policy = bp
    runner.cache_max_stale_s = runner.chain.cache_max_stale_s = settings.cache.max_stale_s
    runner.chain.permit_misread_tolerance = settings.cache.permit_misread_tolerance
    for breaker in runner.chain.breakers.values():
        breaker.policy = bp
    pool = runner.registry.remote.get(LICENSE_PLATE_SERVICE)
    if isinstance(pool, CentralPool):
        for breaker in pool.breakers.values():
            breaker.policy = bp
    parking = runner.registry.local.get(PARKING_MGMT_SERVICE)
    if isinstance(parking, ParkingService):
        parking.anti_passback = settings.policy.anti_passback
        parking.exit_without_entry = settings.policy.exit_without_entry
