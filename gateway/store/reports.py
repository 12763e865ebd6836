"""Read-only queries for the operator's records: the rows ``parking-gateway export`` writes
and the events a daily summary counts. Every function yields rows as it reads them (a
cursor, never a list), so a year of records passes through in constant memory.

Times are compared as text: every time stamp the gateway writes is ``clock.iso`` (UTC,
``+00:00``, milliseconds), whose text order is time order; the bounds are given in the same
form (``gateway.ops.export.parse_bound``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when an export runs, not with the daemon (it costs 0.1 s)
    from sqlite_utils import Database

Row = dict[str, Any]

SESSION_COLUMNS = ("session_id", "plate", "space_id", "status", "entered_at", "exited_at",
                   "entry_id", "exit_id", "entry_saga_id", "exit_saga_id", "flags")
EVENT_COLUMNS = ("seq", "ts", "wall_synced", "type", "lane_id", "gate_id", "event_id", "data")
SAGA_COLUMNS = ("saga_id", "kind", "lane_id", "plate", "status", "reason", "decision_source",
                "compensated", "created_at", "updated_at", "duration_ms", "steps")
# what a daily summary counts
SUMMARY_TYPES = ("vehicle_entered", "vehicle_exited", "entry_granted", "exit_granted",
                 "entry_denied", "exit_denied", "hardware_fault", "saga_completed",
                 "saga_compensated", "saga_failed", "manual_open", "tailgating_detected")


def open_read_only(path: str) -> sqlite3.Connection:
    """The database, read-only (``mode=ro``): safe beside the running daemon (WAL: the
    reader neither blocks nor is blocked by its writes)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def records(conn: sqlite3.Connection) -> Database:
    """sqlite-utils over ``conn`` without changing the connection (no recursive-triggers
    pragma, no plugins)."""
    from sqlite_utils import Database

    return Database(conn, recursive_triggers=False, execute_plugins=False)


def sessions_between(db: Database, start: str, end: str) -> Iterator[Row]:
    """Vehicle sessions that entered or left in [start, end), in session order."""
    yield from db.query(
        f"SELECT {', '.join(SESSION_COLUMNS)} FROM vehicle_sessions "
        "WHERE (entered_at >= :start AND entered_at < :end) "
        "   OR (exited_at >= :start AND exited_at < :end) ORDER BY session_id",
        {"start": start, "end": end})


def events_between(db: Database, start: str, end: str) -> Iterator[Row]:
    """Events stamped in [start, end), in ``seq`` order; ``data`` decoded."""
    for row in db.query(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM events "
            "WHERE ts >= :start AND ts < :end ORDER BY seq", {"start": start, "end": end}):
        row["wall_synced"] = bool(row["wall_synced"])
        row["data"] = json.loads(row["data"])
        yield row


def _steps(conn: sqlite3.Connection, saga_id: str) -> list[Row]:
    cur = conn.execute(
        "SELECT phase, step_index, name, status, source, service, attempts, duration_ms, "
        "error FROM saga_steps WHERE saga_id = ? "
        "ORDER BY phase = 'compensation', step_index", (saga_id,))
    keys = [d[0] for d in cur.description]
    return [dict(zip(keys, r, strict=True)) for r in cur]


def sagas_between(db: Database, start: str, end: str) -> Iterator[Row]:
    """Sagas created in [start, end), oldest first, each with its steps (forward, then the
    compensations) and where its decision came from; the context (it carries the camera
    image) is left out."""
    for row in db.query(
            "SELECT saga_id, kind, lane_id, plate, status, reason, created_at, updated_at, "
            "duration_ms FROM sagas WHERE created_at >= :start AND created_at < :end "
            "ORDER BY created_at, rowid", {"start": start, "end": end}):
        steps = _steps(db.conn, row["saga_id"])
        decision = next((s for s in steps if s["name"] == "verify_license_plate"
                         and s["phase"] == "forward"), None)
        row["decision_source"] = decision["source"] if decision else ""
        row["compensated"] = any(s["phase"] == "compensation" for s in steps)
        row["steps"] = steps
        yield {k: row[k] for k in SAGA_COLUMNS}


def summary_events(conn: sqlite3.Connection, start: str, end: str) -> Iterator[Row]:
    """The events a daily summary counts, stamped in [start, end): ``type``, ``lane_id``,
    ``wall_synced`` and the decoded ``data``."""
    marks = ", ".join("?" for _ in SUMMARY_TYPES)
    cur = conn.execute(
        f"SELECT type, lane_id, wall_synced, data FROM events WHERE ts >= ? AND ts < ? "
        f"AND type IN ({marks}) ORDER BY seq", (start, end, *SUMMARY_TYPES))
    for type_, lane_id, synced, data in cur:
        yield {"type": type_, "lane_id": lane_id, "wall_synced": bool(synced),
               "data": json.loads(data)}


def daily_summary_event(conn: sqlite3.Connection, day: str) -> Row | None:
    """The ``daily_summary`` event already recorded for ``day`` (YYYY-MM-DD), if any."""
    row = conn.execute(
        "SELECT data FROM events WHERE type = 'daily_summary' "
        "AND json_extract(data, '$.day') = ? ORDER BY seq DESC LIMIT 1", (day,)).fetchone()
    return json.loads(row[0]) if row else None
