"""The orchestrator: runs the core's saga machine against the services and the durable log.

Durability rule: a log record is committed before any side effect outside this database (a
remote write, the barrier) and in the same transaction as any change inside it (the space
table). Records that need no durability of their own (a verification result, an event) wait
in a batch for the next commit, so an entry saga costs three commits, not one per record.

A ``CancelledError`` (the daemon is stopping) leaves the log as it is; ``recover()`` at the
next start finishes or compensates every saga that was in flight, each on its own (one that
waits for a service holds up no other), and until a saga is recovered no new saga starts
for its lane or its plate (``gateway.sagas.fences``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gateway.clock import Clock, iso
from gateway.core.backoff import BackoffSchedule
from gateway.core.breaker import BreakerPolicy
from gateway.core.errors import PermanentError, StoreError, TransientError
from gateway.core.saga import (
    Command,
    Finish,
    RunCompensation,
    RunStep,
    SagaDefinition,
    SagaMachine,
    SagaStatus,
    StepKind,
    StepRecord,
    StepSpec,
    StepStatus,
)
from gateway.core.steps import DEFINITIONS, GATE_SERVICE
from gateway.sagas import offline, payloads
from gateway.sagas.chain import KEEP_OUT_OF_LOG, CallScope, ServiceChain, loggable
from gateway.sagas.fences import RecoveryFences, fence_keys
from gateway.sagas.policy import Attempt, SagaOutcome, StepPolicy
from gateway.services.base import ServiceRegistry
from gateway.store import events, saga_log
from gateway.store.saga_log import StepWrite
from gateway.store.store import Store

log = logging.getLogger(__name__)
# Kept from the decision deadline for the work after a saga's last call before the barrier.
DECISION_RESERVE_S = 0.1
Json = dict[str, Any]
Op = Callable[[sqlite3.Connection], Any]


class SagaStopped(asyncio.CancelledError):
    """A saga stopped at a step boundary because the daemon stops (a cancellation: the
    lane treats it as the stop it is, not as the saga's failure)."""


@dataclass
class _Run:
    saga_id: str
    definition: SagaDefinition
    machine: SagaMachine
    ctx: Json
    started: float
    results: dict[str, Json] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    batch: list[Op] = field(default_factory=list)
    # the batch's events and step records, each written by one op of the batch (at the
    # place of the first), in one statement or two, not one or two each
    events: list[Json] | None = None
    steps: list[StepWrite] | None = None
    steps_op: Op | None = None  # the batch's op that writes ``steps``
    durable_started: set[int] = field(default_factory=set)
    exists: bool = False
    # Entering compensation is committed before the first compensation runs: a crash must
    # not roll forward a saga that had already decided to undo itself.
    must_flush: bool = False


class SagaRunner:
    def __init__(
        self,
        store: Store,
        registry: ServiceRegistry,
        clock: Clock,
        *,
        gate_id: str,
        policies: dict[str, StepPolicy] | None = None,
        default_policy: StepPolicy | None = None,
        breaker_policy: BreakerPolicy | None = None,
        compensation_backoff: BackoffSchedule | None = None,
        cache_max_stale_s: float = 86_400.0,
        permit_misread_tolerance: bool = False,
        decision_deadline_s: float | None = None,
        rng: random.Random | None = None,
        on_boundary: Callable[[str], None] | None = None,
    ) -> None:
        # Steps before the first device step (the decision) share this deadline.
        self.decision_deadline_s = decision_deadline_s
        self.fences = RecoveryFences()
        self.write_retries = 0  # log writes that failed and were retried (a full disk)
        # Whether a device step left a trace of acting (the daemon: the lane's
        # barrier_opened event); None: unknown, so one in flight at a stop rolls forward.
        self.device_evidence: Callable[[sqlite3.Connection, str], bool] | None = None
        # how long a new saga waits for a fence on its lane or plate before it is refused
        self.fence_wait_s = decision_deadline_s or 2.5
        self.store = store
        self.registry = registry
        self.clock = clock
        self.gate_id = gate_id
        self.policies = policies or {}
        self.default_policy = default_policy or StepPolicy()
        self.breaker_policy = breaker_policy or BreakerPolicy()
        self.compensation_backoff = compensation_backoff or BackoffSchedule(
            initial_s=0.2, max_delay_s=30.0, retries=None)
        self.cache_max_stale_s = cache_max_stale_s
        self.rng = rng or random.Random()
        # A stop drains: no new saga is started, a saga asking a service is let finish that
        # step (a record being written gets its answer; cut off, its outcome would be
        # unknown), and stops at the step boundary after it, with what it did committed.
        # Sagas waiting on the gate (the arm, the passage) are not waited for: the lanes'
        # stop cancels them, and their log says where they were.
        self.stopping = False
        self.busy = 0  # sagas running a step that is not a wait on the gate
        self._none_busy = asyncio.Event()
        self._none_busy.set()
        # Instrumentation hook called at every durability boundary (tests kill here).
        self.on_boundary = on_boundary or (lambda _label: None)
        # the last definition run and its steps as the log keeps them (None: the daemon's)
        self._last_definition: SagaDefinition | None = None
        self._last_steps: list[Json] | None = None
        self.chain = ServiceChain(store, registry, clock, breaker_policy=self.breaker_policy,
                                  cache_max_stale_s=cache_max_stale_s, rng=self.rng,
                                  on_boundary=lambda label: self.on_boundary(label),
                                  permit_misread_tolerance=permit_misread_tolerance)

    # -- public --------------------------------------------------------------------------
    async def run(self, definition: SagaDefinition, context: Json,
                  saga_id: str | None = None) -> SagaOutcome:
        saga_id = saga_id or str(uuid.uuid4())
        now = self.clock.wall()
        stamp = iso(now)
        ctx = {"saga_id": saga_id, "kind": definition.name, "gate_id": self.gate_id,
               "created_at": stamp, "captured_at": stamp, **context}
        ctx["saga_id"] = saga_id
        if definition is not self._last_definition:
            # Not one of the daemon's tables (a seed-API saga): keep its steps in the log so
            # that recovery can rebuild it (made again only for another definition).
            self._last_steps = None if DEFINITIONS.get(definition.name) == definition else [
                _spec_json(step) for step in definition.steps]
            self._last_definition = definition
        if self._last_steps is not None:
            ctx["_steps"] = list(self._last_steps)
        fenced = await self.fences.wait(fence_keys(ctx.get("lane_id"), ctx.get("license_plate")),
                                         self.fence_wait_s)
        run = _Run(saga_id, definition, SagaMachine(definition), ctx, self.clock.monotonic())
        log_ctx = {k: v for k, v in ctx.items() if k not in KEEP_OUT_OF_LOG}
        run.batch.append(lambda conn: saga_log.create(
            conn, saga_id=saga_id, kind=definition.name, gate_id=self.gate_id,
            lane_id=str(ctx.get("lane_id", "")), plate=str(ctx.get("license_plate", "")),
            context=log_ctx, now=stamp))
        cmd = run.machine.start()
        if self.stopping:
            self._event(run, "saga_refused_stopping", {"saga_id": saga_id})
            cmd = run.machine.step_failed(0, "the gateway is stopping")
        elif fenced:
            # not decided while an earlier saga of this lane or plate is being recovered
            # (past the decision's deadline): refused with the reason, nothing done
            reason = "recovering: an earlier saga of " + " and ".join(
                k.replace(":", " ", 1) for k in fenced) + " is still being recovered"
            self._event(run, "saga_fenced", {"saga_id": saga_id, "fenced_by": fenced})
            cmd = run.machine.step_failed(0, reason)
        self._busy(+1)
        try:
            return await self._drive(run, cmd)
        finally:
            self._busy(-1)

    def _busy(self, delta: int) -> None:
        self.busy += delta
        if self.busy:
            self._none_busy.clear()
        else:
            self._none_busy.set()

    async def _call(self, scope: CallScope, step: StepSpec, policy: StepPolicy,
                    payload: Json, key: str, attempts: list[Attempt]) -> tuple[Json, str]:
        call = self.chain.call(scope, step, policy, payload,
                               key if step.kind is not StepKind.READ else None, attempts)
        if step.service != GATE_SERVICE:
            return await call
        self._busy(-1)  # waiting on the arm or the vehicle: a stop does not wait for it
        try:
            return await call
        finally:
            self._busy(+1)

    async def drain(self, within_s: float) -> int:
        """Start no saga from now on and wait up to ``within_s`` for each saga asking a
        service to get its answer and commit it; how many were still asking after that."""
        self.stopping = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                await self._none_busy.wait()
        return self.busy

    async def fence_unfinished(self) -> int:
        """Fence the lane and plate of every saga left in flight (before the lanes start);
        ``recover`` lifts each fence as its saga is finished."""
        pending = await self.store.read(saga_log.unfinished)
        for saga in pending:
            self.fences.fence(str(saga["saga_id"]), saga.get("lane_id"), saga.get("plate"))
        return len(pending)

    async def recover(self) -> list[SagaOutcome]:
        """Finish or compensate every saga a crash or a stop left in flight, each on its
        own: one that waits for a service holds up no other."""
        pending = [s for s in await self.store.read(saga_log.unfinished)
                   if _definition_of(s) is not None]
        for saga in pending:
            self.fences.fence(str(saga["saga_id"]), saga.get("lane_id"), saga.get("plate"))
        results = await asyncio.gather(*(self._recover_one(s) for s in pending),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for error in errors:
            log.error("recovery of a saga failed: %r", error)
        if errors:
            raise errors[0]  # the supervisor runs recovery again for what is left
        return [r for r in results if isinstance(r, SagaOutcome)]

    @staticmethod
    def _without_effect(conn: sqlite3.Connection, *, definition: SagaDefinition,
                        saga_id: str, records: list[StepRecord],
                        evidence: Callable[[sqlite3.Connection, str], bool],
                        ) -> list[StepRecord]:
        """A device step in flight at the stop that left no trace of acting (the lane
        records ``barrier_opened`` as it energises the relay) did not act: it failed with
        no effect, and the saga is compensated rather than completed on an assumed
        passage of a barrier that never opened."""
        out = []
        for r in records:
            step = definition.steps[r.index]
            if step.kind is StepKind.DEVICE and r.forward is StepStatus.STARTED \
                    and not evidence(conn, saga_id):
                r = StepRecord(r.index, forward=StepStatus.FAILED)
            out.append(r)
        return out

    async def _recover_one(self, saga: Json) -> SagaOutcome:
        sid = str(saga["saga_id"])
        try:
            definition = _definition_of(saga)
            assert definition is not None
            records = await self.store.read(partial(saga_log.step_records, saga_id=sid))
            if self.device_evidence is not None:
                records = await self.store.read(partial(
                    self._without_effect, definition=definition, saga_id=sid,
                    records=records, evidence=self.device_evidence))
            results = await self.store.read(partial(saga_log.step_results, saga_id=sid))
            sources = await self.store.read(partial(saga_log.step_sources, saga_id=sid))
            machine, cmd = SagaMachine.restore(definition, SagaStatus(saga["status"]), records,
                                               saga["reason"])
            run = _Run(sid, definition, machine, saga["context"],
                       self.clock.monotonic(), results=results, sources=sources, exists=True)
            self._event(run, "saga_recovered", {"saga_id": run.saga_id,
                                                "action": type(cmd).__name__})
            return await self._drive(run, cmd)
        finally:
            self.fences.lift(sid)

    def policy_for(self, step: StepSpec, kind: str = "") -> StepPolicy:
        """The policy of ``kind:step`` (e.g. ``entry:verify_license_plate``), else of the
        step, else the default."""
        return self.policies.get(f"{kind}:{step.name}") or self.policies.get(
            step.name, self.default_policy)

    # -- the loop ------------------------------------------------------------------------
    async def _drive(self, run: _Run, cmd: Command) -> SagaOutcome:
        first = True
        while True:
            if self.stopping and not first and not isinstance(cmd, Finish):
                # at a step boundary: what the steps so far did is committed (a record a
                # service has just taken among it), and recovery at the next start goes on
                # from there (a saga that had not opened the barrier is compensated)
                await self._flush(run, "stopping")
                raise SagaStopped(f"saga {run.saga_id}: stopped at a step boundary")
            first = False
            if isinstance(cmd, RunStep):
                cmd = await self._run_step(run, cmd)
            elif isinstance(cmd, RunCompensation):
                cmd = await self._run_compensation(run, cmd)
            else:
                return await self._finish(run, cmd)

    async def _run_step(self, run: _Run, cmd: RunStep) -> Command:
        step, i = cmd.step, cmd.index
        payload = payloads.build(step.operation, step.name, run.ctx, run.results)
        key = f"{run.saga_id}:{step.name}"
        started_at = iso(self.clock.wall())
        t0 = self.clock.monotonic()
        if step.kind is StepKind.LOCAL:
            return await self._run_local_step(run, i, step, payload, key, started_at, t0)
        if step.kind in (StepKind.REMOTE_WRITE, StepKind.DEVICE) and i not in run.durable_started:
            self._pend_step(run, self._started_write(run, i, step, key, started_at))
            await self._flush(run, f"before {step.name}")
        if cmd.recovering:
            payload["recovering"] = True
        attempts: list[Attempt] = []
        policy = self.policy_for(step, run.definition.name)
        scope = self._scope(run, i)
        waits_for = ""
        if step.kind is StepKind.REMOTE_WRITE and step.operation in offline.ID_FIELDS \
                and offline.references(step.operation, payload):
            # a reference to another record (an exit's entry) may stand for a queued one:
            # one read on the database thread; a payload with none needs no read at all
            payload, waits_for = await self.store.read(partial(
                offline.resolve_references, operation=step.operation, payload=payload))
        try:
            try:
                if waits_for:
                    # it refers to a record still in the queue: it is sent after that one,
                    # from the queue, so its body is the same every time it is sent
                    raise TransientError(f"waits for the queued record {waits_for}",
                                         service=step.service)
                result, source = await self._call(scope, step, policy, payload, key, attempts)
            except TransientError as exc:
                result, source = self._unreachable(run, scope, policy, step, payload, key, exc,
                                                   force_queue=bool(waits_for))
        except (PermanentError, TransientError) as exc:
            unknown = isinstance(exc, TransientError) and step.kind in (
                StepKind.REMOTE_WRITE, StepKind.DEVICE)
            self._log_step(run, i, step, "failed", key, started_at, t0, attempts=attempts,
                           error=str(exc), outcome_unknown=unknown)
            self._step_event(run, step, None, str(exc))
            return self._enter_compensation(
                run, run.machine.step_failed(i, _reason(step, exc), outcome_unknown=unknown))
        if source == "backup" and step.kind is StepKind.REMOTE_WRITE:
            offline.confirm_at_central(scope, step.operation, payload, key, result,
                                       iso(self.clock.wall()))
        run.sources[step.name] = source
        if step.operation == "verify_license_plate":
            result = {**result, "reading": payloads.reading_used(run.ctx, result, source)}
        if step.requires and not result.get(step.requires):
            reason = f"not {step.requires}: {result.get('reason', 'refused')}"
            self._log_step(run, i, step, "failed", key, started_at, t0, attempts=attempts,
                           error=reason, result=result, source=source)
            self._step_event(run, step, result, reason)
            return self._enter_compensation(run, run.machine.step_failed(i, reason))
        run.results[step.name] = loggable(result)
        self._log_step(run, i, step, "succeeded", key, started_at, t0, attempts=attempts,
                       result=result, source=source)
        self._step_event(run, step, result, None)
        return run.machine.step_succeeded(i)

    def _unreachable(self, run: _Run, scope: CallScope, policy: StepPolicy, step: StepSpec,
                     payload: Json, key: str, error: TransientError, *,
                     force_queue: bool = False) -> tuple[Json, str]:
        """No service answered: the policy's answer, the offline queue, or the error."""
        if step.kind is StepKind.READ and step.requires:
            answer = offline.policy_answer(policy, scope, step, error)
            if answer is not None:
                return answer, "policy"
            raise TransientError(f"unverifiable: {error}", service=step.service)
        if step.kind is StepKind.REMOTE_WRITE and step.operation in offline.ID_FIELDS:
            queued = offline.queue_record(policy, scope, step.operation, payload, key,
                                          iso(self.clock.wall()), error, force=force_queue)
            if queued is not None:
                return queued, "queue"
        raise error

    async def _run_local_step(self, run: _Run, i: int, step: StepSpec, payload: Json, key: str,
                              started_at: str, t0: float) -> Command:
        service = self.registry.local[step.service]
        nxt = run.definition.steps[i + 1] if i + 1 < len(run.definition.steps) else None
        # The next step's "started" record rides in this transaction when it must be
        # durable before that step runs: one commit instead of two.
        announce = nxt is not None and nxt.kind in (StepKind.REMOTE_WRITE, StepKind.DEVICE)
        # The step records waiting in the batch (the verification's) are written in the
        # same statement as this step's, after them, instead of by their own op; if the
        # transaction fails they stay in the batch, with their op.
        pending = run.steps or []

        def txn(conn: sqlite3.Connection) -> Json:
            now = iso(self.clock.wall())
            result = service.apply(conn, step.operation, payload, saga_id=run.saga_id,
                                   now=now)
            rows = [*pending, self._write(run, i, step, "succeeded", key, started_at, t0,
                                          result=result, source="local")]
            if announce and nxt is not None:
                rows.append(self._started_write(run, i + 1, nxt, f"{run.saga_id}:{nxt.name}",
                                                now))
            saga_log.write_steps(conn, rows)
            return result

        try:
            result = await self._flush(run, step.name, txn,
                                       absorbed=run.steps_op if pending else None)
        except PermanentError as exc:
            self._log_step(run, i, step, "failed", key, started_at, t0, error=str(exc))
            self._step_event(run, step, None, str(exc))
            return self._enter_compensation(run, run.machine.step_failed(i, _reason(step, exc)))
        if announce:
            run.durable_started.add(i + 1)
        run.results[step.name] = result
        run.sources[step.name] = "local"
        return run.machine.step_succeeded(i)

    async def _run_compensation(self, run: _Run, cmd: RunCompensation) -> Command:
        step, i = cmd.step, cmd.index
        assert step.compensation is not None
        if run.must_flush:
            await self._flush(run, "compensating")
            run.must_flush = False
        if cmd.attempt > 1:
            delay = self.compensation_backoff.next_delay(cmd.attempt - 1, 0.0, self.rng.random())
            await self.clock.sleep(delay or 0.0)
        key = f"{run.saga_id}:{step.compensation}"
        started_at = iso(self.clock.wall())
        t0 = self.clock.monotonic()
        if step.kind is StepKind.LOCAL:
            service = self.registry.local[step.service]
            payload = payloads.build(step.compensation, step.compensation, run.ctx, run.results)

            def txn(conn: sqlite3.Connection) -> Json:
                result = service.apply(conn, step.compensation or "", payload,
                                       saga_id=run.saga_id, now=iso(self.clock.wall()))
                saga_log.write_step(conn, self._write(
                    run, i, step, "succeeded", key, started_at, t0, result=result,
                    phase="compensation", attempts_n=cmd.attempt))
                return result

            await self._flush(run, step.compensation, txn)
            return run.machine.compensation_succeeded(i)
        try:
            if cmd.outcome_unknown and step.name not in run.results:
                # The forward write may have happened: ask again with the same key to learn
                # its id (the service answers a replay with the original), then undo it.
                fwd = payloads.build(step.operation, step.name, run.ctx, run.results)
                policy = self.policy_for(step, run.definition.name)
                try:
                    result, _ = await self.chain.call(
                        self._scope(run), step, policy, fwd, f"{run.saga_id}:{step.name}", [])
                except PermanentError:
                    result = None  # it never took effect: nothing to undo
                except TransientError as exc:
                    if not self._replay_then_cancel(run, i, step, policy, fwd, key, started_at,
                                                    t0, cmd.attempt, exc):
                        raise
                    return run.machine.compensation_succeeded(i)
                if result is None:
                    self._log_step(run, i, step, "succeeded", key, started_at, t0,
                                   phase="compensation", attempts_n=cmd.attempt,
                                   result={"status": "nothing_to_undo"})
                    return run.machine.compensation_succeeded(i)
                run.results[step.name] = loggable(result)
            payload = payloads.build(step.compensation, step.compensation, run.ctx, run.results)
            if run.sources.get(step.name) == "backup":
                # made by the backup service and waiting to be confirmed at the central
                # service: the cancel follows it there, in order, under its own key
                scope = self._scope(run)
                offline.queue_cancel_after_confirm(scope, step.compensation, payload, key,
                                                   iso(self.clock.wall()))
                self._log_step(run, i, step, "succeeded", key, started_at, t0,
                               phase="compensation", attempts_n=cmd.attempt, source="queue",
                               result={"status": "queued"})
                return run.machine.compensation_succeeded(i)
            id_field = offline.ID_FIELDS.get(step.compensation, "")
            local_id = str(payload.get(id_field) or "")
            if local_id.startswith(offline.LOCAL_PREFIX):
                # the record only ever reached the offline queue
                remote = await self._unqueue(run, i, step, key, started_at, t0, cmd.attempt,
                                             local_id, payload)
                if remote is None:
                    return run.machine.compensation_succeeded(i)
                payload[id_field] = remote
            comp = StepSpec(step.compensation, step.service, step.compensation, step.kind)
            policy = self.policy_for(comp, run.definition.name)
            scope = self._scope(run)
            attempts: list[Attempt] = []
            try:
                result, source = await self.chain.call(scope, comp, policy, payload, key,
                                                       attempts)
            except TransientError as exc:
                queued = offline.queue_record(policy, scope, step.compensation, payload, key,
                                              iso(self.clock.wall()), exc)
                if queued is None:
                    raise
                result, source = queued, "queue"
            if source == "backup":
                offline.confirm_at_central(scope, step.compensation, payload, key, result,
                                           iso(self.clock.wall()))
        except PermanentError as exc:
            self._log_step(run, i, step, "failed", key, started_at, t0, phase="compensation",
                           error=str(exc), attempts_n=cmd.attempt)
            return run.machine.compensation_failed(i, str(exc), permanent=True)
        except TransientError as exc:
            self._log_step(run, i, step, "started", key, started_at, t0, phase="compensation",
                           error=str(exc), attempts_n=cmd.attempt)
            return run.machine.compensation_failed(i, str(exc), permanent=False)
        self._log_step(run, i, step, "succeeded", key, started_at, t0, phase="compensation",
                       result=result, source=source, attempts=attempts, attempts_n=cmd.attempt)
        return run.machine.compensation_succeeded(i)

    def _replay_then_cancel(self, run: _Run, i: int, step: StepSpec, policy: StepPolicy,
                            fwd: Json, key: str, started_at: str, t0: float, attempt: int,
                            error: TransientError) -> bool:
        """No answer to the re-ask of a write whose outcome is unknown: the offline queue
        replays it with its key (the service answers with the record, or makes it now) and
        then sends the cancel after it. ``False`` when the policy queues no records."""
        assert step.compensation is not None
        if step.operation not in offline.ID_FIELDS or not policy.queue_when_unreachable:
            return False
        scope = self._scope(run)
        now = iso(self.clock.wall())
        queued = offline.queue_record(policy, scope, step.operation, fwd,
                                      f"{run.saga_id}:{step.name}", now, error, maybe_sent=True)
        assert queued is not None
        payload = payloads.build(step.compensation, step.compensation, run.ctx,
                                 {**run.results, step.name: queued})
        offline.queue_record(policy, scope, step.compensation, payload, key, now, error)
        self._log_step(run, i, step, "succeeded", key, started_at, t0, phase="compensation",
                       attempts_n=attempt, source="queue",
                       result={"status": "queued", "after": str(error)[:200]})
        return True

    async def _unqueue(self, run: _Run, i: int, step: StepSpec, key: str, started_at: str,
                       t0: float, attempt: int, local_id: str, payload: Json) -> str | None:
        """Undo a record that was queued, compare-and-set against the sync: drop it if it was
        never sent; if it may have reached the central service (sent and not answered, or
        in flight now) queue the cancel after it (the create is replayed with its key, then
        cancelled); if it is there, the central service's id to cancel. ``None``: nothing
        left to do here."""
        now = iso(self.clock.wall())
        assert step.compensation is not None
        operation = step.compensation

        def txn(conn: sqlite3.Connection) -> str | None:
            undo = offline.undo_queued_create(conn, saga_id=run.saga_id, operation=operation,
                                              payload=payload, key=key, local_id=local_id,
                                              now=now)
            if undo.action == "cancel":
                return undo.remote_id
            status = {"dropped": "dropped", "follow": "queued"}.get(undo.action,
                                                                     "nothing_to_undo")
            saga_log.write_step(conn, self._write(
                run, i, step, "succeeded", key, started_at, t0, phase="compensation",
                attempts_n=attempt, source="queue", result={"status": status}))
            return None

        return await self._flush(run, f"unqueue {step.name}", txn)  # type: ignore[no-any-return]

    def _enter_compensation(self, run: _Run, cmd: Command) -> Command:
        if run.machine.status is SagaStatus.COMPENSATING:
            run.batch.append(lambda conn: saga_log.set_status(
                conn, run.saga_id, "compensating", run.machine.reason, iso(self.clock.wall())))
            run.must_flush = True
        return cmd

    async def _finish(self, run: _Run, cmd: Finish) -> SagaOutcome:
        duration_ms = (self.clock.monotonic() - run.started) * 1000
        now = iso(self.clock.wall())
        status = cmd.status.value
        kind = run.definition.name
        reason = run.machine.reason or cmd.reason
        run.batch.append(lambda conn: saga_log.set_status(conn, run.saga_id, status, reason,
                                                          now, duration_ms))
        for service in self.registry.local.values():
            run.batch.append(partial(service.on_finished, kind=kind, status=status,
                                     saga_id=run.saga_id, context=run.ctx,
                                     results=run.results, now=now))
        if cmd.status is SagaStatus.COMPLETED:
            vehicle = "vehicle_entered" if kind == "entry" else "vehicle_exited"
            self._event(run, vehicle, {"saga_id": run.saga_id,
                                       "license_plate": run.ctx.get("license_plate"),
                                       "space_id": _space(run)})
        self._event(run, f"saga_{status}", {
            "saga_id": run.saga_id, "saga": kind, "reason": reason,
            "duration_ms": round(duration_ms, 3), "sources": run.sources})
        await self._flush(run, "finish")
        return SagaOutcome(run.saga_id, kind, status, reason, run.results, run.sources,
                           duration_ms)

    # -- log and event records -----------------------------------------------------------
    def _write(self, run: _Run, i: int, step: StepSpec, status: str, key: str, started_at: str,
               t0: float, *, result: Json | None = None, source: str = "", error: str | None
               = None, attempts: list[Attempt] | None = None, phase: str = "forward",
               outcome_unknown: bool = False, attempts_n: int | None = None) -> StepWrite:
        log = [a.as_json() for a in attempts or []]
        return StepWrite(
            run.saga_id, i, phase, step.name if phase == "forward" else step.compensation or "",
            status, attempts=attempts_n if attempts_n is not None else max(1, len(log)),
            service=step.service, source=source,
            idempotency_key=key if step.kind is not StepKind.READ else None,
            outcome_unknown=outcome_unknown, started_at=started_at,
            finished_at=iso(self.clock.wall()) if status != "started" else None,
            duration_ms=round((self.clock.monotonic() - t0) * 1000, 3),
            result=loggable(result) if result is not None else None, error=error,
            attempt_log=log)

    def _log_step(self, run: _Run, i: int, step: StepSpec, status: str, key: str,
                  started_at: str, t0: float, **kw: Any) -> None:
        self._pend_step(run, self._write(run, i, step, status, key, started_at, t0, **kw))

    @staticmethod
    def _pend_step(run: _Run, w: StepWrite) -> None:
        """``w`` into the batch: its step records are written by one op, in one statement."""
        if run.steps is None:
            steps = run.steps = []
            op = run.steps_op = partial(saga_log.write_steps, writes=steps)
            run.batch.append(op)
        run.steps.append(w)

    @staticmethod
    def _started_write(run: _Run, i: int, step: StepSpec, key: str,
                       started_at: str) -> StepWrite:
        return StepWrite(run.saga_id, i, "forward", step.name, "started", service=step.service,
                         idempotency_key=key, started_at=started_at)

    def _scope(self, run: _Run, step_index: int | None = None) -> CallScope:
        deadline_at = None
        if self.decision_deadline_s is not None and step_index is not None and not any(
                s.kind is StepKind.DEVICE for s in run.definition.steps[:step_index + 1]):
            # the calls end a little before the deadline: what follows the last one (the
            # fallback's answer, the allocation, a record queued, their commits) must fit
            # too, or the decision ends past it (bench/degraded_latency.py: 2,505 ms for a
            # 2,500 ms deadline with central blackholed)
            reserve = min(DECISION_RESERVE_S, 0.05 * self.decision_deadline_s)
            deadline_at = run.started + self.decision_deadline_s - reserve
        return CallScope(run.saga_id, str(run.ctx.get("license_plate") or ""),
                         emit=lambda type_, data: self._event(run, type_, data),
                         defer=run.batch.append, deadline_at=deadline_at)

    def _event(self, run: _Run, type_: str, data: Json) -> None:
        ts = iso(self.clock.wall())
        synced = self.clock.wall_synced()
        lane = str(run.ctx.get("lane_id", "")) or None
        if run.events is None:
            rows = run.events = []
            run.batch.append(lambda conn: events.write_many(conn, rows))
        run.events.append({"gate_id": self.gate_id, "type": type_, "ts": ts, "data": data,
                           "lane_id": lane, "wall_synced": synced})

    def _step_event(self, run: _Run, step: StepSpec, result: Json | None,
                    error: str | None) -> None:
        kind = run.definition.name
        if step.name == "verify_license_plate":
            if result is not None:
                self._event(run, "plate_read", {"saga_id": run.saga_id,
                                                "license_plate": result.get("license_plate"),
                                                "confidence": result.get("confidence")})
            granted = result is not None and error is None
            self._event(run, f"{kind}_{'granted' if granted else 'denied'}", {
                "saga_id": run.saga_id, "license_plate": run.ctx.get("license_plate"),
                "reason": (result or {}).get("reason") if granted else error,
                "source": run.sources.get(step.name, "")})

    async def _flush(self, run: _Run, label: str, extra: Callable[[sqlite3.Connection], Any]
                     | None = None, *, absorbed: Op | None = None) -> Any:
        """Commit the batch, then ``extra`` (its result returned) in the same transaction.
        ``absorbed``: an op of the batch that ``extra`` does itself (left out of it)."""
        ops = list(run.batch) if absorbed is None else [
            op for op in run.batch if op is not absorbed]

        def txn(conn: sqlite3.Connection) -> Any:
            for op in ops:
                op(conn)
            return extra(conn) if extra is not None else None

        self.on_boundary(f"before commit {label}")
        failures = 0
        while True:
            try:
                result = await self.store.write(txn)
                break
            except StoreError as exc:
                # a full disk, an I/O error: the write was rolled back and the saga holds
                # what it knows in memory; it waits (its lane moves on by its own
                # timeouts) and commits once writes succeed again, rather than being
                # abandoned half-done until the next start
                failures += 1
                self.write_retries += 1
                if failures == 1:
                    log.error("saga %s: cannot write its log (%s); retrying until writes "
                              "succeed", run.saga_id, exc)
                await self.clock.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)))
        if failures:
            log.warning("saga %s: log written after %d failed attempt(s)", run.saga_id,
                        failures)
        run.batch.clear()
        run.events = run.steps = run.steps_op = None
        run.exists = True
        self.on_boundary(f"after commit {label}")
        return result


def _spec_json(step: StepSpec) -> Json:
    return {"name": step.name, "service": step.service, "operation": step.operation,
            "kind": step.kind.value, "compensation": step.compensation,
            "recover_forward": step.recover_forward, "requires": step.requires}


def _definition_of(saga: Json) -> SagaDefinition | None:
    steps = saga["context"].get("_steps")
    if steps:
        return SagaDefinition(saga["kind"], tuple(
            StepSpec(**{**st, "kind": StepKind(st["kind"])}) for st in steps))
    return DEFINITIONS.get(saga["kind"])


def _reason(step: StepSpec, exc: Exception) -> str:
    return f"{step.name}: {exc}"


def _space(run: _Run) -> Any:
    for name in ("allocate_parking_space", "release_parking_space"):
        if name in run.results:
            return run.results[name].get("space_id")
    return None
