"""Sending the offline queue to the central service once it answers again: oldest first,
with the original idempotency keys, backing off per record; a record the central service
refuses for good goes to the dead-letter list (shown in status), never retried forever.
``records_synced`` events report progress."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from functools import partial
from typing import Any

from gateway.clock import Clock, iso
from gateway.core.backoff import BackoffSchedule
from gateway.core.errors import PermanentError, TransientError
from gateway.sagas.offline import ID_FIELDS, LOCAL_PREFIX
from gateway.services.base import RemoteService
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
        self.synced = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            await self.drain()
            next_at = await self.store.read(offline_queue.next_due_at)
            wait = self.idle_check_s
            if next_at is not None:
                wait = min(wait, max(0.0, next_at - self.clock.wall()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def drain(self) -> int:
        """Send what is due, oldest first; stop at the first record the central service
        could not take (the later ones would only fail too, and order matters)."""
        sent = 0
        while True:
            rows = await self.store.read(partial(offline_queue.due, now=self.clock.wall()))
            if not rows:
                break
            progressed = False
            for row in rows:
                outcome = await self._send(row)
                if outcome == "sent":
                    sent += 1
                    progressed = True
                elif outcome == "dead":
                    progressed = True
                else:
                    break
            if not progressed or outcome == "retry":
                break
        if sent:
            self.synced += sent
            pending = (await self.store.read(offline_queue.counts))["pending"]
            await self._event("records_synced", {"sent": sent, "pending": pending})
        return sent

    async def _send(self, row: Json) -> str:
        payload = dict(row["payload"])
        operation = row["operation"]
        id_field = ID_FIELDS[operation]
        for field in ("entry_id", "exit_id"):  # a record made offline refers to its peer
            value = str(payload.get(field) or "")
            if not value:
                continue
            remote = await self.store.read(partial(offline_queue.remote_id_for,
                                                   local_id=value))
            if remote is not None:
                payload[field] = remote
            elif value.startswith(LOCAL_PREFIX):
                return "retry"  # its peer is not at the central service yet
        now = iso(self.clock.wall())
        try:
            result = await self.central.call(operation, payload,
                                             idempotency_key=row["idempotency_key"],
                                             deadline_s=self.deadline_s)
        except PermanentError as exc:
            log.warning("offline queue: %s %s refused: %s", operation, row["idempotency_key"],
                        exc)
            await self.store.write(partial(offline_queue.mark_dead, row_id=row["id"],
                                           error=str(exc), now=now))
            await self._event("record_rejected", {"operation": operation,
                                                  "idempotency_key": row["idempotency_key"],
                                                  "error": str(exc)})
            return "dead"
        except TransientError as exc:
            delay = self.backoff.next_delay(row["attempts"] + 1, 0.0, self.rng.random()) or 60.0
            await self.store.write(partial(offline_queue.mark_failed, row_id=row["id"],
                                           error=str(exc), next_at=self.clock.wall() + delay,
                                           now=now))
            return "retry"
        remote_id = str(result.get(id_field) or "") or None
        # the id the gate used until now: its own (queued) or the backup service's
        old_id = row["local_id"]

        def record(conn: Any) -> None:
            offline_queue.mark_sent(conn, row["id"], remote_id, now)
            if old_id and remote_id and old_id != remote_id and operation.startswith("create"):
                # the session now carries the central service's id
                conn.execute(f"UPDATE vehicle_sessions SET {id_field}=? WHERE {id_field}=?",
                             (remote_id, old_id))
        await self.store.write(record)
        return "sent"

    async def _event(self, type_: str, data: Json) -> None:
        await self.store.record_event(self.clock, self.gate_id, type_, data)
