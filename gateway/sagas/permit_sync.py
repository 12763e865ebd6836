"""Keeping the local permit list in step with the central service: ``GET /v1/permits``
with ``since`` = the ``as_of`` of the last answer, every ``interval_s``. A failure is only
logged and counted: the list the gate has stays in force, and the next attempt comes after
``retry_s``. Each sync that changed something is a ``permits_synced`` event."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import Any

from gateway.clock import Clock, iso
from gateway.core.errors import ServiceError
from gateway.services.base import RemoteService
from gateway.store import permits
from gateway.store.store import Store

log = logging.getLogger(__name__)


class PermitSync:
    def __init__(self, store: Store, central: RemoteService, clock: Clock, *, gate_id: str,
                 deadline_s: float, interval_s: float = 300.0, retry_s: float = 30.0) -> None:
        self.store = store
        self.central = central
        self.clock = clock
        self.gate_id = gate_id
        self.deadline_s = deadline_s
        self.interval_s = interval_s
        self.retry_s = retry_s
        self.syncs = 0
        self.failures = 0
        self.last_error = ""
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            ok = await self.sync_once()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s if ok else self.retry_s):
                    await self._wake.wait()

    async def sync_once(self) -> bool:
        since = await self.store.read(permits.as_of)
        try:
            reply = await self.central.call("list_permits", {"since": since or ""},
                                            idempotency_key=None, deadline_s=self.deadline_s)
        except ServiceError as exc:
            self.failures += 1
            self.last_error = str(exc)
            log.info("permit list not synced: %s", exc)
            return False
        listed: list[dict[str, Any]] = reply["permits"]
        changed = await self.store.write(partial(
            permits.apply_central, permits=listed, as_of=str(reply["as_of"]),
            now=iso(self.clock.wall())))
        self.syncs += 1
        self.last_error = ""
        if changed:
            await self.store.record_event(self.clock, self.gate_id, "permits_synced", {
                "changed": changed, "as_of": reply["as_of"],
                "deleted": sum(1 for p in listed if p.get("deleted"))})
        return True
