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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from aiohttp import ClientConnectorError

from gateway.clock import Clock
from gateway.core.backoff import BackoffSchedule
from gateway.core.breaker import (
    Breaker,
    BreakerPolicy,
    BreakerTransition,
    CircuitState,
    refusal,
)
from gateway.core.call_stats import CallStats
from gateway.core.errors import (
    CircuitOpenError,
    PermanentError,
    ServiceError,
    TransientError,
)
from gateway.core.saga import StepKind, StepSpec
from gateway.core.steps import ALTERNATIVE_LICENSE_PLATE_SERVICE, LICENSE_PLATE_SERVICE
from gateway.sagas.policy import Attempt, StepPolicy
from gateway.services.base import RemoteService, ServiceRegistry
from gateway.store import permits, plate_cache
from gateway.store.store import Store

Json = dict[str, Any]
SOURCES = {LICENSE_PLATE_SERVICE: "central", ALTERNATIVE_LICENSE_PLATE_SERVICE: "backup"}
KEEP_OUT_OF_LOG = ("image_jpeg_b64",)
_new_attempt = tuple.__new__
_OPEN = CircuitState.OPEN
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


class _Plan:
    """What asking one service for one step under one policy needs, made at its first call
    (:meth:`ServiceChain._plan`) and kept for the next ones."""

    __slots__ = ("after", "before", "breaker", "call_deadline_s", "hedged", "moves", "name",
                 "policy", "refused", "schedule", "service", "source", "stats", "step", "take",
                 "use_cache", "verifies")

    def __init__(self, name: str, step: StepSpec, policy: StepPolicy, service: RemoteService,
                 take: Callable[[], list[BreakerTransition]] | None, breaker: Breaker | None,
                 schedule: BackoffSchedule, stats: CallStats | None) -> None:
        self.name = name
        self.step = step
        self.policy = policy
        self.service = service
        self.take = take  # the service's own breakers' transitions (the central pool's)
        self.moves = -1  # ``Breaker.moves`` when ``take`` was last asked (after an answer)
        self.breaker = breaker  # the chain's breaker for the service
        self.schedule = schedule
        self.call_deadline_s = policy.call_deadline_for(name)
        self.stats = stats  # None: the service records its own calls
        self.before = f"before call {step.name}"  # the durability-boundary labels
        self.after = f"after call {step.name}"
        self.refused = f"{name}: circuit open"
        self.source = SOURCES.get(name, name)
        # a verification: the answer must be for the plate asked
        self.verifies = step.operation == "verify_license_plate"
        # the step's (asked of the primary's plan)
        self.use_cache = policy.use_cache_fallback and step.kind is _READ
        self.hedged = (policy.hedge_after_s > 0 and step.kind is _READ
                       and bool(policy.alternative_services))


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
        self._plans: dict[tuple[str, str, int], _Plan] = {}  # by service, step, id(policy)
        self._primary_plans: dict[int, _Plan] = {}  # by id(step): the last its primary used
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
        deadline_at = scope.deadline_at
        if deadline_at is not None:  # the decision's deadline bounds the step's
            left = deadline_at - begin
            cut = left if left < deadline_s else deadline_s
            deadline_s = cut if cut > 0.0 else 0.0
        primary = step.service
        # the primary's plan, as _plan_for finds it, by the step alone (a plan holds its
        # step, so its id is not another's while it is kept: the plan found is the step's)
        plan = self._primary_plans.get(id(step))
        if plan is None or plan.policy is not policy or \
                plan.service is not self.registry.remote.get(primary):
            plan = self._primary_plans[id(step)] = self._plan_for(primary, step, policy)
        use_cache, hedged = plan.use_cache, plan.hedged
        last: TransientError | None = None
        if not hedged:  # the primary, asked at once (``begin`` is its start)
            breaker = plan.breaker
            if breaker is not None and deadline_s > 0.0 and not breaker.allow(begin):
                last = self._refused(scope, plan, attempts)
            else:
                result: Json | TransientError
                if deadline_s > 0.0:  # the first call, made here as _try makes it (one
                    failed: ServiceError | None = None  # coroutine fewer per call)
                    self.on_boundary(plan.before)
                    try:
                        call_deadline_s = plan.call_deadline_s
                        result = await plan.service.call(
                            step.operation, payload, idempotency_key=key,
                            deadline_s=call_deadline_s if call_deadline_s < deadline_s
                            else deadline_s)
                        if plan.verifies:
                            _answers_the_question(step, payload, result, primary)
                    except (PermanentError, TransientError) as exc:
                        failed = exc
                    else:
                        self.on_boundary(plan.after)
                        result = self._answered(scope, plan, result, begin, attempts)
                    if failed is not None:
                        if plan.take is not None and isinstance(failed, CircuitOpenError):
                            result = self._service_refused(scope, plan, failed, attempts)
                        else:  # recorded there, and retried while it may be
                            result = await self._try(scope, plan, payload, key, begin,
                                                     attempts, deadline_s, begin, failed,
                                                     begin)
                else:  # no time left
                    result = await self._try(scope, plan, payload, key, begin, attempts,
                                             deadline_s, begin)
                if not isinstance(result, TransientError):
                    if use_cache:
                        self._remember(scope, result, plan.source)
                    return result, plan.source
                last = result
        # the fallbacks: the alternatives registered, in order (``position`` counts the
        # services asked, the primary first)
        remote = self.registry.remote
        names: Sequence[str] = policy.alternative_services
        position = 0  # the primary, asked above
        if hedged:
            names = [primary, *(a for a in names if a in remote)]
            position = -1  # the primary not asked yet
            if len(names) > 1:
                try:
                    return await self._hedged(scope, names[0], names[1], step, policy,
                                              payload, begin, attempts, deadline_s=deadline_s)
                except TransientError as exc:
                    last = exc
                    names = names[2:]
                    if use_cache:
                        cached = await self._cached(scope, fresh_only=True)
                        if cached is not None:
                            return self._from_cache(scope, step, cached, attempts, last)
        for name in names:
            if name not in remote:
                continue
            position += 1
            if position == 1 and use_cache:
                cached = await self._cached(scope, fresh_only=True)
                if cached is not None:
                    return self._from_cache(scope, step, cached, attempts, last)
            result = await self._try(scope, self._plan_for(name, step, policy), payload, key,
                                     begin, attempts, deadline_s, None)
            if isinstance(result, TransientError):
                last = result
                continue
            source = SOURCES.get(name, name)
            if name != primary:
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
        """:meth:`_try`, its failure raised (for the hedged calls, run as tasks)."""
        result = await self._try(scope, self._plan_for(name, step, policy), payload, key,
                                 begin, attempts, deadline_s, None)
        if isinstance(result, TransientError):
            raise result
        return result

    def _plan_for(self, name: str, step: StepSpec, policy: StepPolicy) -> _Plan:
        """The plan for asking ``name`` for ``step`` under ``policy``: the one kept, while
        the service registered under ``name`` is the same."""
        service: RemoteService | None = self.registry.remote.get(name)
        plan = self._plans.get((name, step.name, id(policy)))
        # the plan holds its policy, so its id is not another's while it is kept
        if plan is None or plan.policy is not policy or plan.service is not service or \
                plan.step is not step:
            if service is None:
                raise PermanentError(f"no service registered as {name!r}", service=name)
            plan = self._plan(name, step, policy, service)
        return plan

    def _plan(self, name: str, step: StepSpec, policy: StepPolicy,
              service: RemoteService) -> _Plan:
        """What asking ``service`` for ``step`` under ``policy`` needs, made at its first
        call (the breaker and the call statistics once per service, the backoff schedule
        once per backoff setting, checked then, before the first call)."""
        if len(self._plans) >= 256:  # policies replaced by reloads: forget the old ones
            self._plans.clear()
            self._primary_plans.clear()
        take = getattr(service, "take_transitions", None)  # a service with its own breakers
        breaker = None
        if policy.use_circuit_breaker and take is None:
            breaker = self.breakers.get(name)
            if breaker is None:
                breaker = self.breakers[name] = Breaker(name, self.breaker_policy)
        values = (policy.backoff_initial_s, policy.backoff_max_s, policy.retry_count)
        schedule = self._schedules.get(values)
        if schedule is None:
            schedule = self._schedules[values] = BackoffSchedule(
                initial_s=values[0], max_delay_s=values[1], retries=values[2])
        stats: CallStats | None = self.stats.get(name)
        own = getattr(service, "stats", None)
        if isinstance(own, CallStats):  # a service that keeps its own (the central pool)
            self.stats[name], stats = own, None  # the chain's figures are the service's
        elif stats is None:
            stats = self.stats[name] = CallStats()
        plan = _Plan(name, step, policy, service, take, breaker, schedule, stats)
        self._plans[name, step.name, id(policy)] = plan
        return plan

    def _refused(self, scope: CallScope, plan: _Plan, attempts: list[Attempt]) -> TransientError:
        """The chain's breaker for ``plan``'s service refused a call: recorded, and the
        failure the chain moves on with (at once: no breaker closes within a backoff)."""
        attempts.append(_new_attempt(Attempt, (plan.name, "circuit_open", 0.0, "")))
        breaker = plan.breaker
        if plan.take is not None or (breaker is not None and breaker.unreported):
            self._report(scope, plan.take, breaker)
        return refusal(TransientError, plan.refused, plan.name)

    def _service_refused(self, scope: CallScope, plan: _Plan, error: CircuitOpenError,
                         attempts: list[Attempt]) -> TransientError:
        """The service's own breakers refused the call (the central pool's, every one open):
        as the chain's own breaker refusing, recorded and moved on from at once."""
        attempts.append(_new_attempt(Attempt, (plan.name, "circuit_open", 0.0, str(error))))
        take = plan.take
        if take is not None and plan.moves != Breaker.moves:
            plan.moves = Breaker.moves
            for t in take():
                _emit_transition(scope, t)
        return error

    async def _try(self, scope: CallScope, plan: _Plan, payload: Json, key: str | None,
                   begin: float, attempts: list[Attempt], deadline_s: float,
                   now: float | None, failed: ServiceError | None = None,
                   t0: float = 0.0) -> Json | TransientError:
        """One service (``plan``'s), retried with backoff while the step's deadline
        (``deadline_s`` from ``begin``) allows; each call has the service's own deadline,
        cut to what is left of the step's. Returns the answer, or the last transient
        failure (returned, not raised: the caller moves on to its next fallback); raises
        ``PermanentError``. ``now``: the clock's reading, when the caller has just read it;
        ``failed``: the caller made the first call (started at ``t0``, its breaker asked)
        and it failed so.

        A refusal by a breaker moves on at once, with no backoff: the chain's own breaker
        for the service, or the service's own breakers (the central pool's
        ``CircuitOpenError`` when every instance's is open), since no breaker closes within
        a backoff.

        Asked for every call of every step, so it makes nothing per call it may not need
        (:meth:`_plan`), reads the clock once before the call and once after it, and this
        step's deadline goes into the backoff schedule only after a failure."""
        name, clock, breaker = plan.name, self.clock, plan.breaker
        schedule = plan.schedule
        failures = 0
        last: TransientError | None = None
        if now is None:
            now = clock.monotonic()
        while True:
            if failed is None:  # a call
                remaining = deadline_s - (now - begin)
                if remaining <= 0:
                    return last or TransientError(f"{name}: no time left", service=name)
                if breaker is not None and not breaker.allow(now):
                    return self._refused(scope, plan, attempts)
                # the call as ServiceChain.call makes the first one
                self.on_boundary(plan.before)
                t0 = now
                try:
                    call_deadline_s = plan.call_deadline_s
                    result = await plan.service.call(
                        plan.step.operation, payload, idempotency_key=key,
                        deadline_s=call_deadline_s if call_deadline_s < remaining
                        else remaining)
                    if plan.verifies:
                        _answers_the_question(plan.step, payload, result, name)
                except (PermanentError, TransientError) as exc:
                    failed = exc
                else:
                    self.on_boundary(plan.after)
                    return self._answered(scope, plan, result, t0, attempts)
            # the call failed: recorded, then given up, moved on from, or tried again
            error, failed = failed, None
            stats = plan.stats
            if isinstance(error, PermanentError):
                end = clock.monotonic()
                if stats is not None:
                    stats.record(t0, end - t0, True)
                attempts.append(Attempt(name, "permanent", (end - t0) * 1000, str(error)))
                if breaker is not None:
                    breaker.record_success(end)  # it answered
                self._report(scope, plan.take, breaker)
                raise error
            assert isinstance(error, TransientError)
            if plan.take is not None and isinstance(error, CircuitOpenError):
                return self._service_refused(scope, plan, error, attempts)
            end = clock.monotonic()
            if stats is not None:
                stats.record(t0, end - t0, False, str(error))
            last = error
            failures += 1
            if key is not None and may_have_landed(error):
                scope.maybe_sent = True  # a write not answered: outcome unknown
            attempts.append(Attempt(name, "transient", (end - t0) * 1000, str(error)))
            if breaker is not None:
                breaker.record_failure(end)
            self._report(scope, plan.take, breaker)
            if schedule.deadline_s != deadline_s:  # this step's deadline, once
                schedule = replace(schedule, deadline_s=deadline_s)
            delay = schedule.next_delay(failures, end - begin, self.rng.random())
            if delay is None:
                return error
            await clock.sleep(delay)
            now = clock.monotonic()

    def _answered(self, scope: CallScope, plan: _Plan, result: Json, t0: float,
                  attempts: list[Attempt]) -> Json:
        """A call that began at ``t0`` answered: the statistics, the attempt, the breakers
        (one clock reading for all)."""
        end = self.clock.monotonic()
        stats = plan.stats
        if stats is not None:
            stats.record(t0, end - t0, True)
        instance = result.pop("_instance", None)
        name = plan.name
        # Attempt(...) without its generated __new__ (half of its cost; at every call)
        attempts.append(_new_attempt(Attempt, (f"{name}@{instance}" if instance else name,
                                               "ok", (end - t0) * 1000, "")))
        take = plan.take
        if take is not None and plan.moves != Breaker.moves:  # no breaker moved: none
            plan.moves = Breaker.moves
            for t in take():
                _emit_transition(scope, t)
        breaker = plan.breaker
        if breaker is not None:
            breaker.record_success(end)
            if breaker.unreported:
                for t in breaker.take_transitions():
                    _emit_transition(scope, t)
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
        if take is not None:
            for t in take():
                _emit_transition(scope, t)
        if breaker is not None and breaker.unreported:
            for t in breaker.take_transitions():
                _emit_transition(scope, t)


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
