"""The ``parking_mgmt_service``: the local space table as a saga service. Each operation
runs inside the transaction that writes its saga log record, so it is atomic with it."""

from __future__ import annotations

import sqlite3
from typing import Any

from gateway.core.allocation import AllocationRequest, SpaceKind
from gateway.core.errors import PermanentError
from gateway.store import spaces

Json = dict[str, Any]


class ParkingService:
    name = "parking_mgmt_service"

    def __init__(self, zone_order: dict[str, list[str]] | None = None, *,
                 anti_passback: str = "deny", exit_without_entry: str = "allow") -> None:
        self._zone_order = zone_order or {}
        self.anti_passback = anti_passback
        self.exit_without_entry = exit_without_entry

    def apply(self, conn: sqlite3.Connection, operation: str, payload: Json, *,
              saga_id: str, now: str) -> Json:
        plate = str(payload.get("license_plate", ""))
        if operation == "allocate_parking_space":
            wants = payload.get("wants_kind")
            request = AllocationRequest(
                plate,
                permit_holder=payload.get("reason") == "permit",
                wants_kind=SpaceKind(str(wants)) if wants in set(SpaceKind) else None,
                zone_order=tuple(self._zone_order.get(str(payload.get("lane_id", "")), ())),
            )
            flags = []
            if spaces.inside(conn, plate, exclude_saga=saga_id):
                if self.anti_passback == "deny":
                    raise PermanentError(f"anti_passback: {plate} is already inside",
                                         service=self.name)
                flags.append("anti_passback")
            result: Json = {"space_id": spaces.allocate(conn, saga_id, request, now)}
            if flags:
                result["flags"] = flags
            return result
        if operation == "release_parking_space":
            return {"space_id": spaces.release_for_saga(conn, saga_id, now)}
        if operation == "vacate_parking_space":
            found = spaces.begin_exit(conn, plate, saga_id, now)
            if found is None:
                if self.exit_without_entry == "deny":
                    raise PermanentError(f"no_matching_entry: {plate} has no entry",
                                         service=self.name)
                return {"space_id": None, "flags": ["no_matching_entry"]}
            return {k: found[k] for k in ("space_id", "entry_id", "entry_saga_id")}
        if operation == "reoccupy_parking_space":
            return {"space_id": spaces.undo_exit(conn, saga_id, now)}
        raise PermanentError(f"parking_mgmt_service has no operation {operation!r}",
                             service=self.name)

    def on_finished(self, conn: sqlite3.Connection, *, kind: str, status: str, saga_id: str,
                    context: Json, results: dict[str, Json], now: str) -> None:
        if status != "completed":
            return
        plate = str(context.get("license_plate", ""))
        if kind == "entry":
            space = results.get("allocate_parking_space", {}).get("space_id")
            entry_id = results.get("create_entry_record", {}).get("entry_id")
            flags = ",".join(results.get("allocate_parking_space", {}).get("flags", []))
            spaces.open_session(conn, plate, space, saga_id, entry_id, now, flags)
        elif kind == "exit":
            exit_id = results.get("create_exit_record", {}).get("exit_id")
            vacate = results.get("release_parking_space", {})
            if vacate.get("space_id") is None and "no_matching_entry" in vacate.get("flags", []):
                conn.execute(
                    "INSERT OR IGNORE INTO vehicle_sessions(plate, exit_saga_id, exit_id, "
                    "exited_at, status, flags) VALUES (?,?,?,?,'exited','no_matching_entry')",
                    (plate, saga_id, exit_id, now),
                )
            else:
                spaces.close_session(conn, saga_id, exit_id, now)
