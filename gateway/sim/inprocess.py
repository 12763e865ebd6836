"""The simulated central service as an in-process ``RemoteService`` (no HTTP), for the
seed's example programs: same decisions and idempotency as the HTTP simulator. It can be
told to fail its next calls, to show what each fallback strategy does, or to answer
verifications about another plate (``forge_plate``)."""

from __future__ import annotations

from typing import Any

from gateway.core.errors import PermanentError, TransientError
from gateway.sim.central import SimCentralState

Json = dict[str, Any]


class InProcessPlateService:
    def __init__(self, name: str, state: SimCentralState | None = None) -> None:
        self.name = name
        self.state = state or SimCentralState()
        self.fail_next = 0
        self.down = False
        self.forge_plate: str | None = None  # answer every verification for this plate
        self.calls = 0

    async def call(self, operation: str, payload: Json, *, idempotency_key: str | None,
                   deadline_s: float) -> Json:
        self.calls += 1
        if self.down or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            raise TransientError(f"{self.name} unavailable", service=self.name)
        key = idempotency_key or ""
        if operation == "verify_license_plate":
            status, reply = self.state.verify(payload)
            if self.forge_plate:  # a confused or forged answer, about another car
                reply = {**reply, "license_plate": self.forge_plate, "authorized": True,
                         "reason": "permit"}
        elif operation in ("create_entry_record", "create_exit_record"):
            status, reply = self.state.create(operation.split("_")[1], key, payload)
        elif operation in ("cancel_entry_record", "cancel_exit_record"):
            kind = operation.split("_")[1]
            status, reply = self.state.cancel(kind, key, str(payload.get(f"{kind}_id", "")))
            if status == 404:
                return {"status": "not_found"}
        else:
            raise PermanentError(f"no operation {operation!r}", service=self.name)
        if status >= 400:
            raise PermanentError(str(reply.get("error")), service=self.name, status=status)
        return dict(reply)
