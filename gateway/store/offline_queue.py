"""Records waiting for the central service, sent oldest first with their original
idempotency keys. States: ``pending`` (to send), ``sent`` (the central service has it),
``dead`` (refused for good: shown in status for an operator), ``dropped`` (a queued create
cancelled before it was ever sent: nothing to send)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from gateway.store.codec import dumps


def enqueue(conn: sqlite3.Connection, *, saga_id: str, operation: str, key: str,
            payload: dict[str, Any], reason: str, now: str, local_id: str | None = None,
            remote_id: str | None = None) -> None:
    conn.execute(
        "INSERT INTO offline_queue(saga_id, operation, idempotency_key, payload, reason, "
        "local_id, remote_id, state, created_at, updated_at) VALUES (?,?,?,?,?,?,?,'pending',?,?) "
        "ON CONFLICT(idempotency_key) DO NOTHING",
        (saga_id, operation, key, dumps(payload), reason, local_id, remote_id, now, now))


def drop_pending_create(conn: sqlite3.Connection, local_id: str, now: str) -> bool:
    """A record that was only queued is cancelled: it is never sent. True if it was still
    waiting (then no cancel needs to go anywhere)."""
    cur = conn.execute(
        "UPDATE offline_queue SET state='dropped', updated_at=? "
        "WHERE local_id=? AND state='pending' AND reason='unreachable'", (now, local_id))
    return cur.rowcount > 0


def remote_id_for(conn: sqlite3.Connection, local_id: str) -> str | None:
    row = conn.execute("SELECT remote_id FROM offline_queue WHERE local_id=? AND state='sent'",
                       (local_id,)).fetchone()
    return str(row[0]) if row and row[0] else None


def due(conn: sqlite3.Connection, now: float, limit: int = 20) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM offline_queue WHERE state='pending' AND next_attempt_at <= ? "
        "ORDER BY id LIMIT ?", (now, limit)).fetchall()
    return [{**dict(r), "payload": json.loads(r["payload"])} for r in rows]


def next_due_at(conn: sqlite3.Connection) -> float | None:
    row = conn.execute(
        "SELECT min(next_attempt_at) FROM offline_queue WHERE state='pending'").fetchone()
    return None if row[0] is None else float(row[0])


def mark_sent(conn: sqlite3.Connection, row_id: int, remote_id: str | None, now: str) -> None:
    conn.execute("UPDATE offline_queue SET state='sent', remote_id=coalesce(?, remote_id), "
                 "attempts=attempts+1, updated_at=? WHERE id=?", (remote_id, now, row_id))


def mark_failed(conn: sqlite3.Connection, row_id: int, error: str, next_at: float,
                now: str) -> None:
    conn.execute("UPDATE offline_queue SET attempts=attempts+1, last_error=?, "
                 "next_attempt_at=?, updated_at=? WHERE id=?",
                 (error[:300], next_at, now, row_id))


def mark_dead(conn: sqlite3.Connection, row_id: int, error: str, now: str) -> None:
    conn.execute("UPDATE offline_queue SET state='dead', attempts=attempts+1, last_error=?, "
                 "updated_at=? WHERE id=?", (error[:300], now, row_id))


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    out = {"pending": 0, "sent": 0, "dead": 0, "dropped": 0}
    for r in conn.execute("SELECT state, count(*) FROM offline_queue GROUP BY state"):
        out[r[0]] = r[1]
    return out


def dead_letters(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    return [{k: r[k] for k in ("id", "saga_id", "operation", "idempotency_key", "attempts",
                               "last_error", "updated_at")}
            for r in conn.execute("SELECT * FROM offline_queue WHERE state='dead' "
                                  "ORDER BY id DESC LIMIT ?", (limit,))]
