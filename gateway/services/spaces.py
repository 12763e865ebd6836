"""The ``parking_mgmt_service``: the local space table as a saga service. Each operation
runs inside the transaction that writes its saga log record, so it is atomic with it.

A passage recovery could only assume (the daemon stopped while the vehicle was at an open
barrier) is flagged ``assumed`` on the session; the same plate read at an entry again
supersedes it: that session is closed, its space freed and its entry record cancelled at the
central service through the offline queue, under the key the old saga's own compensation
would have used."""

from __future__ import annotations

import sqlite3
from typing import Any

from gateway.core.allocation import AllocationRequest, SpaceKind
from gateway.core.errors import PermanentError
from gateway.sagas import payloads
from gateway.store import offline_queue, saga_log, spaces

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
            superseded = None
            inside = spaces.inside(conn, plate, exclude_saga=saga_id)
            if inside:
                superseded = _supersede(conn, plate, now)
            if superseded is not None:
                flags.append("superseded")
                # still inside if another session holds the plate than the assumed one
                inside = spaces.inside(conn, plate, exclude_saga=saga_id)
            if inside:
                if self.anti_passback == "deny":
                    raise PermanentError(f"anti_passback: {plate} is already inside",
                                         service=self.name)
                flags.append("anti_passback")
            result: Json = {"space_id": spaces.allocate(conn, saga_id, request, now)}
            if flags:
                result["flags"] = flags
            if superseded is not None:
                result["superseded_saga_id"] = superseded
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
            vacated: Json = {k: found[k] for k in ("space_id", "entry_id", "entry_saga_id")}
            if found["matched_unread"]:
                vacated["flags"] = ["matched_unread"]  # the entry had no plate read
            return vacated
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
            # the sync may have sent the queued record before this saga finished
            entry_id = offline_queue.resolved_id(
                conn, results.get("create_entry_record", {}).get("entry_id"))
            flags = ",".join([*results.get("allocate_parking_space", {}).get("flags", []),
                              *_assumed(results)])
            spaces.open_session(conn, plate, space, saga_id, entry_id, now, flags)
        elif kind == "exit":
            exit_id = offline_queue.resolved_id(
                conn, results.get("create_exit_record", {}).get("exit_id"))
            vacate = results.get("release_parking_space", {})
            if vacate.get("space_id") is None and "no_matching_entry" in vacate.get("flags", []):
                conn.execute(
                    "INSERT OR IGNORE INTO vehicle_sessions(plate, exit_saga_id, exit_id, "
                    "exited_at, status, flags) VALUES (?,?,?,?,'exited','no_matching_entry')",
                    (plate, saga_id, exit_id, now),
                )
            else:
                spaces.close_session(conn, saga_id, exit_id, now)


def _assumed(results: dict[str, Json]) -> list[str]:
    """``assumed`` when recovery could not see the barrier open or the vehicle pass."""
    seen = (results.get("open_barrier", {}), results.get("confirm_passage", {}))
    return ["assumed"] if any(r.get("assumed") for r in seen) else []


def _supersede(conn: sqlite3.Connection, plate: str, now: str) -> str | None:
    """Close the plate's assumed session (see the module's doc) and queue the cancel of
    its entry record; the superseded saga's id, or ``None``."""
    old = spaces.supersede_assumed(conn, plate, now)
    if old is None:
        return None
    saga_id = str(old["entry_saga_id"])
    saga = saga_log.get(conn, saga_id)
    results = saga_log.step_results(conn, saga_id)
    if old["entry_id"]:
        results["create_entry_record"] = {**results.get("create_entry_record", {}),
                                          "entry_id": old["entry_id"]}
    ctx = {**(saga["context"] if saga else {}), "saga_id": saga_id}
    body = payloads.build("cancel_entry_record", "cancel_entry_record", ctx, results)
    if body.get("entry_id"):
        offline_queue.enqueue(conn, saga_id=saga_id, operation="cancel_entry_record",
                              key=f"{saga_id}:cancel_entry_record", payload=body,
                              # the schema's reasons are 'unreachable' and 'confirm': a
                              # local step makes no calls, so this cancel is the queue's
                              reason="unreachable", now=now)
    return saga_id
