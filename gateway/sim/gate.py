"""A simulated lane for the saga's ``gate_service`` steps: the barrier opens at once and the
vehicle behaves as its ``behaviour`` says (``pass``, or ``back_out`` which fails the
passage). The full lane with loops and relays on mock pins replaces it in the daemon."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.core.errors import PermanentError

Json = dict[str, Any]


class InstantGate:
    name = "gate_service"

    def __init__(self) -> None:
        self.opened = 0

    async def call(self, operation: str, payload: Json, *, idempotency_key: str | None,
                   deadline_s: float) -> Json:
        await asyncio.sleep(0)  # a real barrier is awaited: let cancellation in as it would
        recovering = bool(payload.get("recovering"))
        if operation == "open_barrier":
            self.opened += 1
            return {"opened": True, "assumed": recovering}
        if operation == "confirm_passage":
            if recovering:
                return {"passed": True, "assumed": True}
            if payload.get("behaviour") == "back_out":
                raise PermanentError("vehicle backed out", service=self.name)
            return {"passed": True}
        raise PermanentError(f"gate_service has no operation {operation!r}", service=self.name)
