"""The vehicle list of the page: one row per saga (a vehicle at a lane), newest first, with
where its decision came from and its outcome in words. Read-only."""

from __future__ import annotations

import sqlite3
from typing import Any

DECISION_STEP = "verify_license_plate"


def outcome_words(kind: str, status: str, reason: str) -> str:
    """What happened to the vehicle, as an operator says it."""
    if status == "completed":
        return "let in" if kind == "entry" else "let out"
    if status in ("running", "compensating"):
        return "in progress"
    verb = "turned away" if status == "compensated" else "failed"
    return f"{verb}: {reason}" if reason else verb


def decision_source(sources: dict[str, str]) -> str:
    """Where the vehicle's decision came from: central, backup, cache, permits, policy,
    queue (the verification queued while every service was down) or '' (none yet)."""
    return sources.get(DECISION_STEP, "")


def recent(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT s.saga_id, s.kind, s.lane_id, s.plate, s.status, s.reason, s.created_at, "
        "s.duration_ms, v.source, "
        "EXISTS(SELECT 1 FROM saga_steps c WHERE c.saga_id = s.saga_id "
        "       AND c.phase = 'compensation') AS compensated "
        "FROM sagas s LEFT JOIN saga_steps v ON v.saga_id = s.saga_id AND v.name = ? "
        "AND v.phase = 'forward' AND v.status = 'succeeded' "
        "ORDER BY s.created_at DESC, s.rowid DESC LIMIT ?", (DECISION_STEP, limit))
    return [{"saga_id": r["saga_id"], "kind": r["kind"], "lane_id": r["lane_id"],
             "license_plate": r["plate"], "status": r["status"], "reason": r["reason"],
             "outcome": outcome_words(r["kind"], r["status"], r["reason"]),
             "source": r["source"] or "", "created_at": r["created_at"],
             "duration_ms": r["duration_ms"], "compensated": bool(r["compensated"])}
            for r in rows]
