"""Events with a per-gate ``seq`` that survives restarts (one database per gate), and the
telemetry outbox.

An event is written in the same transaction as the change it reports, and queued in the
outbox in that transaction too. Retention policy (so an SD card never fills): events older
than ``max_age_days`` or beyond the newest ``max_rows`` are deleted, oldest first, unsent
ones included; every event deleted before the broker acknowledged it is counted in
``outbox_dropped`` and reported in status.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

from gateway.store.codec import dumps


def bump_counter(conn: sqlite3.Connection, name: str, by: int = 1) -> int:
    row = conn.execute(
        "INSERT INTO counters(name, value) VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value RETURNING value",
        (name, by),
    ).fetchone()
    return int(row[0])


def read_counter(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
    return int(row[0]) if row else 0


def append(
    conn: sqlite3.Connection,
    *,
    gate_id: str,
    type: str,
    ts: str,
    data: dict[str, Any] | None = None,
    lane_id: str | None = None,
    wall_synced: bool = False,
) -> dict[str, Any]:
    """Append an event and queue it for telemetry; returns its envelope."""
    event_id = str(uuid.uuid4())
    body = data or {}
    cur = conn.execute(
        "INSERT INTO events(event_id, gate_id, type, ts, wall_synced, lane_id, data) "
        "VALUES (?,?,?,?,?,?,?)",
        (event_id, gate_id, type, ts, int(wall_synced), lane_id, dumps(body)),
    )
    seq = int(cur.lastrowid or 0)
    conn.execute("INSERT INTO outbox(seq) VALUES (?)", (seq,))
    return {"seq": seq, "event_id": event_id, "gate_id": gate_id, "type": type, "ts": ts,
            "lane_id": lane_id, "wall_synced": wall_synced, "data": body}


def _envelope(r: sqlite3.Row) -> dict[str, Any]:
    return {
        "seq": r["seq"], "event_id": r["event_id"], "gate_id": r["gate_id"], "type": r["type"],
        "ts": r["ts"], "lane_id": r["lane_id"], "wall_synced": bool(r["wall_synced"]),
        "data": json.loads(r["data"]),
    }


def list_after(conn: sqlite3.Connection, after_seq: int = 0, limit: int = 100,
               type: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT * FROM events WHERE seq > ?"
    params: list[Any] = [after_seq]
    if type:
        sql += " AND type = ?"
        params.append(type)
    sql += " ORDER BY seq LIMIT ?"
    params.append(limit)
    return [_envelope(r) for r in conn.execute(sql, params)]


def outbox_pending(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


def prune(conn: sqlite3.Connection, *, max_rows: int, oldest_ts_kept: str) -> int:
    """Apply the retention policy; returns how many events were deleted."""
    cutoff_row = conn.execute(
        "SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?", (max_rows,)
    ).fetchone()
    by_count = int(cutoff_row[0]) if cutoff_row else 0
    by_age_row = conn.execute(
        "SELECT max(seq) FROM events WHERE ts < ?", (oldest_ts_kept,)
    ).fetchone()
    by_age = int(by_age_row[0] or 0)
    upto = max(by_count, by_age)
    if upto <= 0:
        return 0
    unsent = int(conn.execute("SELECT count(*) FROM outbox WHERE seq <= ?", (upto,)).fetchone()[0])
    if unsent:
        bump_counter(conn, "outbox_dropped", unsent)
    conn.execute("DELETE FROM outbox WHERE seq <= ?", (upto,))
    deleted = conn.execute("DELETE FROM events WHERE seq <= ?", (upto,)).rowcount
    bump_counter(conn, "events_pruned", deleted)
    return int(deleted)


def outbox_batch(conn: sqlite3.Connection, after_seq: int, limit: int) -> list[dict[str, Any]]:
    """Unsent events after ``after_seq``, in ``seq`` order, as envelopes."""
    return [_envelope(r) for r in conn.execute(
        "SELECT e.* FROM outbox o JOIN events e ON e.seq = o.seq WHERE o.seq > ? "
        "ORDER BY o.seq LIMIT ?", (after_seq, limit))]


def mark_published(conn: sqlite3.Connection, seqs: list[int]) -> None:
    """The broker acknowledged these: they leave the outbox (the events stay)."""
    conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
