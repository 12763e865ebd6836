"""Sending the offline queue to the central service once it answers again: oldest first,
with the original idempotency keys, backing off per record; a record the central service
refuses for good goes to the dead-letter list (shown in status), never retried forever.
``records_synced`` events report progress.

Each row is claimed (``pending`` → ``sending``, committed) before it is sent and every later
change is compare-and-set (see ``gateway.store.offline_queue``): a saga cannot drop a row
in flight, and the sync never overwrites a row a saga changed. Order is kept per saga and
per dependency: a cancel never goes before the create it cancels, an exit never before the
entry it refers to (whether that one holds a local id or the backup service's); a row
waiting for another is not due, so it backs off with it, and is dead-lettered with it. A
crash while a row is in flight leaves it ``sending``: the next start sends it again with its
key (its outcome is unknown).

While the central service's breakers refuse every call the sync holds off until one would
admit a call: rows are not claimed, tried or backed off meanwhile (a refusal by the breaker
is not an attempt). The first record the central service takes after an outage makes every
row backing off due at once: their backoff measured the outage, not the rows."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from functools import partial
from typing import Any

from gateway.clock import Clock, iso
from gateway.core.backoff import BackoffSchedule
from gateway.core.errors import CircuitOpenError, PermanentError, TransientError
from gateway.sagas.offline import ID_FIELDS
from gateway.services.base import HasCircuit, RemoteService
from gateway.store import offline_queue
from gateway.store.store import Store

log = logging.getLogger(__name__)
Json = dict[str, Any]


class OfflineSync:
    def __init__(self, store: Store, central: RemoteService, clock: Clock, *, gate_id: str,
                 deadline_s: float, backoff: BackoffSchedule | None = None,
                 idle_check_s: float = 30.0, rng: random.Random | None = None) -> None:
        self.store = store
        self.central = central
        self.clock = clock
        self.gate_id = gate_id
        self.deadline_s = deadline_s
        self.backoff = backoff or BackoffSchedule(initial_s=1.0, max_delay_s=300.0,
                                                  retries=None, jitter=0.3)
        self.idle_check_s = idle_check_s
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._claims_released = False
        self._hold_until = 0.0  # monotonic: no call before (every breaker open)
        self._outage = False  # a failure that opened the breakers, no success since
        self.synced = 0
        self.lost = 0  # transitions that lost a race (the row had changed): nothing done

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            await self.drain()
            next_at = await self.store.read(offline_queue.next_due_at)
            wait = self.idle_check_s
            held = self._hold_until - self.clock.monotonic()
            if held > 0:
                wait = min(wait, held)
            elif next_at is not None:
                wait = min(wait, max(0.0, next_at - self.clock.wall()))
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives as the event is set, and the daemon never stops
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def drain(self) -> int:
        """Send what is due, oldest first. A row waiting for another (an earlier row of its
        saga, the record it refers to) is not due until that one is sent; a transient
        failure ends the pass (the row backs off, and its dependents with it); a row
        refused for good is dead-lettered with its dependents, and the pass goes on."""
        async with self._lock:
            if not self._claims_released:
                # rows a stopped process left in flight: outcome unknown, to send again
                now = iso(self.clock.wall())
                released = await self.store.write(partial(offline_queue.release_claims,
                                                          now=now))
                if released:
                    log.warning("offline queue: %d record(s) were in flight at a stop: "
                                "sent again with their keys", released)
                self._claims_released = True
            sent = 0
            while not self._held():
                rows = await self.store.read(partial(offline_queue.due, now=self.clock.wall()))
                if not rows:
                    break
                progressed = retry = False
                for row in rows:
                    outcome = await self._send(row)
                    if outcome != "lost":
                        progressed = True
                    if outcome == "sent":
                        sent += 1
                        if self._outage:  # the first after an outage
                            self._outage = False
                            await self.store.write(partial(
                                offline_queue.due_now, now=self.clock.wall(),
                                stamp=iso(self.clock.wall())))
                            break  # read again: the rows that were backing off are due
                    elif outcome in ("retry", "held"):
                        retry = True
                        break
                if retry or not progressed:
                    break
        if sent:
            self.synced += sent
            pending = (await self.store.read(offline_queue.counts))["pending"]
            await self._event("records_synced", {"sent": sent, "pending": pending})
        return sent

    async def _send(self, row: Json) -> str:
        """One row: claimed (committed) before it is sent, then moved by compare-and-set.
        ``sent``, ``retry``, ``dead``, or ``lost`` (the row changed under us: nothing
        done)."""
        now = iso(self.clock.wall())
        version = await self.store.write(partial(offline_queue.claim, row_id=row["id"],
                                                 version=row["version"], now=now))
        if version is None:
            self.lost += 1
            return "lost"
        payload = dict(row["payload"])
        operation = row["operation"]
        id_field = ID_FIELDS[operation]
        for field in offline_queue.ID_FIELDS:  # any reference still held locally
            value = str(payload.get(field) or "")
            if value and value != row["local_id"]:
                remote = await self.store.read(partial(offline_queue.remote_id_for,
                                                       local_id=value))
                if remote is not None:
                    payload[field] = remote
        try:
            result = await self.central.call(operation, payload,
                                             idempotency_key=row["idempotency_key"],
                                             deadline_s=self.deadline_s)
        except PermanentError as exc:
            log.warning("offline queue: %s %s refused: %s", operation, row["idempotency_key"],
                        exc)
            now = iso(self.clock.wall())
            dead = await self.store.write(partial(offline_queue.mark_dead, row_id=row["id"],
                                                  version=version, error=str(exc), now=now))
            if not dead:
                return self._lost(row, "dead")
            await self._event("record_rejected", {"operation": operation,
                                                  "idempotency_key": row["idempotency_key"],
                                                  "error": str(exc),
                                                  "dead_with_it": dead[1:]})
            return "dead"
        except CircuitOpenError:
            # the breaker refused it without sending: not an attempt, outcome as it was
            self._held()
            moved = await self.store.write(partial(
                offline_queue.unclaim, row_id=row["id"], version=version,
                outcome=row["outcome"], now=iso(self.clock.wall())))
            return "held" if moved else self._lost(row, "unclaimed")
        except TransientError as exc:
            if not isinstance(self.central, HasCircuit) or self._held():
                self._outage = True
            delay = self.backoff.next_delay(row["attempts"] + 1, 0.0, self.rng.random()) or 60.0
            now = iso(self.clock.wall())
            moved = await self.store.write(partial(
                offline_queue.mark_failed, row_id=row["id"], version=version, error=str(exc),
                next_at=self.clock.wall() + delay, now=now))
            return "retry" if moved else self._lost(row, "failed")
        remote_id = str(result.get(id_field) or "") or None
        # the id the gate used until now: its own (queued) or the backup service's
        old_id = row["local_id"]
        now = iso(self.clock.wall())

        def record(conn: Any) -> bool:
            if not offline_queue.mark_sent(conn, row["id"], version, remote_id, now):
                return False
            if old_id and remote_id and old_id != remote_id and operation.startswith("create"):
                # the session now carries the central service's id
                conn.execute(f"UPDATE vehicle_sessions SET {id_field}=? WHERE {id_field}=?",
                             (remote_id, old_id))
            return True
        if not await self.store.write(record):
            return self._lost(row, "sent")
        return "sent"

    def _held(self) -> bool:
        """Is every breaker of the central service open now? Then hold off until one would
        admit a call."""
        if not isinstance(self.central, HasCircuit):
            return False
        wait = self.central.circuit_wait_s()
        if wait > 0:
            self._hold_until = self.clock.monotonic() + wait
        return wait > 0

    def _lost(self, row: Json, transition: str) -> str:
        self.lost += 1
        log.error("offline queue: row %s changed while it was in flight; %s not recorded",
                  row["id"], transition)
        return "lost"

    async def _event(self, type_: str, data: Json) -> None:
        await self.store.record_event(self.clock, self.gate_id, type_, data)
