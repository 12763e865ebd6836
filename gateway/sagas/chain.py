"""Asking services for a step's answer: retries with backoff for transient failures, a
breaker per service, the alternatives in order, and the plate cache, all inside the step's
deadline. For a verification the order is: the primary service, a fresh cached answer, the
alternatives, a stale cached answer (within the configured maximum age), the local permit
list (``gateway.store.permits``).

Each call to a service has that service's own deadline (``StepPolicy.call_deadline_for``:
the central service's for the central service, the backup's for the backup), and no call
outlasts what is left of the step's deadline, itself bounded by the decision deadline.

Every call made is appended to ``attempts``; fallbacks and breaker changes are reported
through ``emit``; cache writes are handed to ``defer`` (they ride the saga's next commit).
A write that failed after it may have reached a service (a timeout, a 5xx, a reply that
is not the contract's) sets the scope's ``maybe_sent``: queued, it is "outcome unknown"
and can only be undone by replaying it with its key, then cancelling.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from aiohttp import ClientConnectorError

from gateway.clock import Clock
from gateway.core.backoff import BackoffSchedule
from gateway.core.breaker import Breaker, BreakerPolicy, BreakerTransition
from gateway.core.call_stats import CallStats
from gateway.core.errors import CircuitOpenError, PermanentError, TransientError
from gateway.core.saga import StepKind, StepSpec
from gateway.core.steps import ALTERNATIVE_LICENSE_PLATE_SERVICE, LICENSE_PLATE_SERVICE
from gateway.sagas.policy import Attempt, StepPolicy
from gateway.services.base import RemoteService, ServiceRegistry
from gateway.store import permits, plate_cache
from gateway.store.store import Store

Json = dict[str, Any]
SOURCES = {LICENSE_PLATE_SERVICE: "central", ALTERNATIVE_LICENSE_PLATE_SERVICE: "backup"}
KEEP_OUT_OF_LOG = ("image_jpeg_b64",)
_READ = StepKind.READ  # a plain name: Python 3.11 finds an enum member through a descriptor


def loggable(result: Json | None) -> Json:
    return {k: v for k, v in (result or {}).items() if k not in KEEP_OUT_OF_LOG}


@dataclass
class CallScope:
    """What one step's calls need from its saga. ``deadline_at`` (monotonic) is the
    decision deadline that no chain of retries and fallbacks may pass. ``maybe_sent``: a
    write of this step may have reached a service that did not answer."""

    saga_id: str
    plate: str
    emit: Callable[[str, Json], None]
    defer: Callable[[Callable[[sqlite3.Connection], Any]], None]
    deadline_at: float | None = None
    maybe_sent: bool = False


def may_have_landed(exc: BaseException) -> bool:
    """False only when the call certainly never reached the service: refused by a breaker,
    or no connection could be made (an adapter may also say so with ``sent = False``)."""
    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        if isinstance(seen, CircuitOpenError | ClientConnectorError) or \
                getattr(seen, "sent", None) is False:
            return False
        visited.add(id(seen))
        seen = seen.__cause__ or seen.__context__
    return True


class ServiceChain:
    def __init__(self, store: Store, registry: ServiceRegistry, clock: Clock, *,
                 breaker_policy: BreakerPolicy, cache_max_stale_s: float,
                 rng: random.Random, on_boundary: Callable[[str], None],
                 permit_misread_tolerance: bool = False) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.breaker_policy = breaker_policy
        self.breakers: dict[str, Breaker] = {}
        self.stats: dict[str, CallStats] = {}  # the last calls of each service, for the page
        # one backoff schedule per (initial, cap, retries) of the policies asked with
        self._schedules: dict[tuple[float, float, int], BackoffSchedule] = {}
        self.cache_max_stale_s = cache_max_stale_s
        self.rng = rng
        self.on_boundary = on_boundary
        self.permit_misread_tolerance = permit_misread_tolerance

    async def call(self, scope: CallScope, step: StepSpec, policy: StepPolicy, payload: Json,
                   key: str | None, attempts: list[Attempt]) -> tuple[Json, str]:
        """The step's answer and where it came from. Raises ``PermanentError`` at once on a
        definitive answer, ``TransientError`` when nothing answered within the deadline."""
        begin = self.clock.monotonic()
        deadline_s = policy.deadline_s
        if scope.deadline_at is not None:  # the decision's deadline bounds the step's
            left = scope.deadline_at - begin
            cut = left if left < deadline_s else deadline_s
            deadline_s = cut if cut > 0.0 else 0.0
        use_cache = policy.use_cache_fallback and step.kind is _READ
        names = [step.service]
        if policy.alternative_services:
            names += [a for a in policy.alternative_services if a in self.registry.remote]
        last: TransientError | None = None
        if policy.hedge_after_s > 0 and step.kind is _READ and len(names) > 1:
            try:
                return await self._hedged(scope, names[0], names[1], step, policy, payload,
                                          begin, attempts, deadline_s=deadline_s)
            except TransientError as exc:
                last = exc
                names = names[2:]
                if use_cache:
                    cached = await self._cached(scope, fresh_only=True)
                    if cached is not None:
                        return self._from_cache(scope, step, cached, attempts, last)
        for position, name in enumerate(names):
            if position == 1 and use_cache:
                cached = await self._cached(scope, fresh_only=True)
                if cached is not None:
                    return self._from_cache(scope, step, cached, attempts, last)
            try:
                result = await self._ask(scope, name, step, policy, payload, key, begin,
                                         attempts, deadline_s=deadline_s)
            except TransientError as exc:
                last = exc
                continue
            source = SOURCES.get(name, name)
            if name != step.service:
                scope.emit("fallback_used", {"saga_id": scope.saga_id, "step": step.name,
                                             "source": source, "after": str(last)})
            if use_cache:
                self._remember(scope, result, source)
            return result, source
        if use_cache:
            cached = await self._cached(scope, fresh_only=False)
            if cached is not None:
                return self._from_cache(scope, step, cached, attempts, last)
            permit = await self._permit(scope) if step.requires else None
            if permit is not None:
                attempts.append(Attempt("permits", "permit", 0.0))
                scope.emit("fallback_used", {"saga_id": scope.saga_id, "step": step.name,
                                             "source": "permits", "after": str(last)})
                return permit, "permits"
        raise last or TransientError(f"{step.name}: no service could be tried",
                                     service=step.service)

    async def _hedged(self, scope: CallScope, primary: str, second: str, step: StepSpec,
                      policy: StepPolicy, payload: Json, begin: float,
                      attempts: list[Attempt], *, deadline_s: float) -> tuple[Json, str]:
        """Ask the primary; if it has not answered within ``hedge_after_s``, ask the second
        too, and take the first valid answer."""
        first = asyncio.ensure_future(
            self._ask(scope, primary, step, policy, payload, None, begin, attempts,
                      deadline_s=deadline_s))
        done, _ = await asyncio.wait({first}, timeout=policy.hedge_after_s)
        tasks = {first: primary}
        if not done:
            hedge = asyncio.ensure_future(
                self._ask(scope, second, step, policy, payload, None, begin, attempts,
                          deadline_s=deadline_s))
            tasks[hedge] = second
        last: BaseException | None = None
        pending = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is None:
                        name = tasks[task]
                        source = SOURCES.get(name, name)
                        if name != primary:
                            scope.emit("fallback_used", {"saga_id": scope.saga_id,
                                                         "step": step.name, "source": source,
                                                         "after": "hedged: primary slow"})
                        if policy.use_cache_fallback:
                            self._remember(scope, task.result(), source)
                        return task.result(), source
                    last = task.exception()
                    if isinstance(last, PermanentError):
                        raise last
            if len(tasks) == 1:  # the primary failed before the hedge: ask the second now
                result = await self._ask(scope, second, step, policy, payload, None, begin,
                                         attempts, deadline_s=deadline_s)
                source = SOURCES.get(second, second)
                scope.emit("fallback_used", {"saga_id": scope.saga_id, "step": step.name,
                                             "source": source, "after": str(last)})
                if policy.use_cache_fallback:
                    self._remember(scope, result, source)
                return result, source
        finally:
            for task in pending:
                task.cancel()
        raise last if isinstance(last, TransientError) else TransientError(str(last))

    async def _ask(self, scope: CallScope, name: str, step: StepSpec, policy: StepPolicy,
                   payload: Json, key: str | None, begin: float,
                   attempts: list[Attempt], *, deadline_s: float) -> Json:
        """One service, retried with backoff while the step's deadline (``deadline_s`` from
        ``begin``) allows; each call has the service's own deadline, cut to what is left of
        the step's.

        Asked for every call of every step, so it makes nothing it may not need: the breaker
        and the call statistics once per service, the backoff schedule once per backoff
        setting (checked then, before the first call), with this step's deadline only after
        a failure."""
        service: RemoteService | None = self.registry.remote.get(name)
        if service is None:
            raise PermanentError(f"no service registered as {name!r}", service=name)
        take = getattr(service, "take_transitions", None)  # a service with its own breakers
        breaker = None
        if policy.use_circuit_breaker and not hasattr(service, "take_transitions"):
            breaker = self.breakers.get(name)
            if breaker is None:
                breaker = self.breakers[name] = Breaker(name, self.breaker_policy)
        values = (policy.backoff_initial_s, policy.backoff_max_s, policy.retry_count)
        schedule = self._schedules.get(values)
        if schedule is None:
            schedule = self._schedules[values] = BackoffSchedule(
                initial_s=values[0], max_delay_s=values[1], retries=values[2])
        call_deadline_s = policy.call_deadline_for(name)
        stats = self.stats.get(name)
        if stats is None:
            stats = self.stats[name] = CallStats()
        failures = 0
        last: TransientError | None = None
        while True:
            now = self.clock.monotonic()
            remaining = deadline_s - (now - begin)
            if remaining <= 0:
                raise last or TransientError(f"{name}: no time left", service=name)
            if breaker is not None and not breaker.allow(now):
                attempts.append(Attempt(name, "circuit_open", 0.0))
                self._report(scope, take, breaker)
                raise TransientError(f"{name}: circuit open", service=name)
            self.on_boundary(f"before call {step.name}")
            t0 = self.clock.monotonic()
            try:
                result = await service.call(
                    step.operation, payload, idempotency_key=key,
                    deadline_s=call_deadline_s if call_deadline_s < remaining else remaining)
                _answers_the_question(step, payload, result, name)
            except PermanentError as exc:
                stats.record(t0, self.clock.monotonic() - t0, answered=True)
                attempts.append(Attempt(name, "permanent", self._ms(t0), str(exc)))
                if breaker is not None:
                    breaker.record_success(self.clock.monotonic())  # it answered
                self._report(scope, take, breaker)
                raise
            except TransientError as exc:
                stats.record(t0, self.clock.monotonic() - t0, answered=False, error=str(exc))
                last = exc
                failures += 1
                if key is not None and may_have_landed(exc):
                    scope.maybe_sent = True  # a write not answered: outcome unknown
                attempts.append(Attempt(name, "transient", self._ms(t0), str(exc)))
                if breaker is not None:
                    breaker.record_failure(self.clock.monotonic())
                self._report(scope, take, breaker)
                if schedule.deadline_s != deadline_s:  # this step's deadline, once
                    schedule = replace(schedule, deadline_s=deadline_s)
                delay = schedule.next_delay(failures, self.clock.monotonic() - begin,
                                            self.rng.random())
                if delay is None:
                    raise
                await self.clock.sleep(delay)
                continue
            self.on_boundary(f"after call {step.name}")
            end = self.clock.monotonic()  # one reading for the statistics, record, breaker
            stats.record(t0, end - t0, answered=True)
            instance = result.pop("_instance", None)
            label = f"{name}@{instance}" if instance else name
            attempts.append(Attempt(label, "ok", (end - t0) * 1000))
            if breaker is not None:
                breaker.record_success(end)
            self._report(scope, take, breaker)
            return result

    def _from_cache(self, scope: CallScope, step: StepSpec, cached: Json,
                    attempts: list[Attempt], last: Exception | None) -> tuple[Json, str]:
        attempts.append(Attempt("cache", "cache", 0.0))
        scope.emit("fallback_used", {"saga_id": scope.saga_id, "step": step.name,
                                     "source": "cache", "fresh": cached["cache_fresh"],
                                     "after": str(last)})
        return cached, "cache"

    def _remember(self, scope: CallScope, result: Json, source: str) -> None:
        ttl = result.get("cacheable_for_s")
        if isinstance(ttl, int | float) and ttl > 0:
            plate = str(result.get("license_plate") or scope.plate)
            scope.defer(partial(plate_cache.put, plate=plate, result=loggable(result),
                                source=source, now=self.clock.wall(), ttl_s=float(ttl)))

    async def _cached(self, scope: CallScope, *, fresh_only: bool) -> Json | None:
        if not scope.plate:
            return None
        wall = self.clock.wall()
        stale = 0.0 if fresh_only else self.cache_max_stale_s
        hit = await self.store.read(partial(plate_cache.get, plate=scope.plate, now=wall,
                                            max_stale_s=stale))
        if hit is None and self.permit_misread_tolerance:
            hit = await self.store.read(partial(plate_cache.get_permit_one_off,
                                                plate=scope.plate, now=wall, max_stale_s=stale))
        if hit is None:
            return None
        return {**hit.result, "cached_age_s": round(hit.age_s, 1), "cache_fresh": hit.fresh}

    async def _permit(self, scope: CallScope) -> Json | None:
        """The local permit list, when nothing else answered: a plate always let in (or,
        with the misread tolerance, the one permit a character away)."""
        if not scope.plate:
            return None
        wall, synced = self.clock.wall(), self.clock.wall_synced()
        hit = await self.store.read(partial(permits.valid, plate=scope.plate, now=wall,
                                            synced=synced))
        misread = False
        if hit is None and self.permit_misread_tolerance:
            hit = await self.store.read(partial(permits.valid_one_off, plate=scope.plate,
                                                now=wall, synced=synced))
            misread = hit is not None
        if hit is None:
            return None
        answer: Json = {"license_plate": hit["plate"], "authorized": True, "reason": "permit",
                        "confidence": 1.0, "permit_kind": hit["kind"],
                        "permit_source": hit["source"]}
        if misread:
            answer["misread_of"] = scope.plate
        return answer

    def _report(self, scope: CallScope, take: Callable[[], list[BreakerTransition]] | None,
                breaker: Breaker | None) -> None:
        """Breaker changes as events: the service's own breakers' (``take``), then the
        chain's."""
        if callable(take):
            for t in take():
                _emit_transition(scope, t)
        if breaker is not None:
            for t in breaker.take_transitions():
                _emit_transition(scope, t)

    def _ms(self, t0: float) -> float:
        return (self.clock.monotonic() - t0) * 1000


def _emit_transition(scope: CallScope, t: BreakerTransition) -> None:
    scope.emit("circuit_state_changed", {"service": t.name, "from": t.from_state.value,
                                         "to": t.to_state.value, "reason": t.reason})


def _answers_the_question(step: StepSpec, payload: Json, result: Json, service: str) -> None:
    """A verification answered for another plate than the one asked is not an answer (a
    confused or forged reply would let a car in on another plate's permit and hold its space
    under that plate): a malformed reply, tried again or elsewhere. A service that read the
    image itself may correct a misread of a character or two, not name another car."""
    if step.operation != "verify_license_plate":
        return
    asked = str(payload.get("license_plate") or "")
    answered = str(result.get("license_plate") or "")
    if not asked or not answered or answered == asked:
        return
    if payload.get("image_jpeg_b64") and edit_distance(asked, answered) <= 2:
        return
    raise TransientError(f"wrong_plate: asked about {asked}, answered about {answered}",
                         service=service)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (plates are short: the plain dynamic programme)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]
