"""The durable saga log: one row per saga, one row per (saga, step, phase) with its status,
attempts, service, source, idempotency key, timing and result. Recovery reads it back."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from gateway.core.saga import StepRecord, StepStatus
from gateway.store.codec import dumps


@dataclass(slots=True)
class StepWrite:
    """One step row to upsert (a log record)."""

    saga_id: str
    index: int
    phase: str  # forward | compensation
    name: str
    status: str  # started | succeeded | failed
    attempts: int = 0
    service: str = ""
    source: str = ""
    idempotency_key: str | None = None
    outcome_unknown: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    attempt_log: list[dict[str, Any]] = field(default_factory=list)


def create(conn: sqlite3.Connection, *, saga_id: str, kind: str, gate_id: str, lane_id: str,
           plate: str, context: dict[str, Any], now: str) -> None:
    conn.execute(
        "INSERT INTO sagas(saga_id, kind, gate_id, lane_id, plate, status, context, created_at, "
        "updated_at) VALUES (?,?,?,?,?,'running',?,?,?) ON CONFLICT(saga_id) DO NOTHING",
        (saga_id, kind, gate_id, lane_id, plate, dumps(context),
         now, now),
    )


_STEP_INSERT = (
    "INSERT INTO saga_steps(saga_id, step_index, phase, name, status, attempts, service, "
    "source, idempotency_key, outcome_unknown, started_at, finished_at, duration_ms, result, "
    "error, attempt_log) VALUES ")
_STEP_ROW = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
_STEP_UPSERT = (
    " ON CONFLICT(saga_id, step_index, phase) DO UPDATE SET status=excluded.status, "
    "attempts=excluded.attempts, service=excluded.service, source=excluded.source, "
    "idempotency_key=coalesce(excluded.idempotency_key, idempotency_key), "
    "outcome_unknown=excluded.outcome_unknown, "
    "started_at=coalesce(started_at, excluded.started_at), finished_at=excluded.finished_at, "
    "duration_ms=excluded.duration_ms, result=excluded.result, error=excluded.error, "
    "attempt_log=excluded.attempt_log")
_STEPS_CHUNK = 100  # rows a statement at most (16 parameters each)
_STEPS_SQL: dict[int, str] = {}  # the statement for n rows (the usual few), made once


def _steps_sql(n: int) -> str:
    sql = _STEPS_SQL.get(n)
    if sql is None:
        sql = _STEP_INSERT + ",".join([_STEP_ROW] * n) + _STEP_UPSERT
        if n <= 16:
            _STEPS_SQL[n] = sql
    return sql


_NO_ATTEMPTS = dumps([])


def _step_params(w: StepWrite) -> tuple[Any, ...]:
    return (w.saga_id, w.index, w.phase, w.name, w.status, w.attempts, w.service, w.source,
            w.idempotency_key, int(w.outcome_unknown), w.started_at, w.finished_at,
            w.duration_ms, None if w.result is None else dumps(w.result), w.error,
            _NO_ATTEMPTS if w.attempt_log == [] else dumps(w.attempt_log))


def write_step(conn: sqlite3.Connection, w: StepWrite) -> None:
    conn.execute(_steps_sql(1), _step_params(w))


def write_steps(conn: sqlite3.Connection, writes: list[StepWrite]) -> None:
    """Several step records in one statement, in order: the same as ``write_step`` for
    each (a later record of the same step updates the earlier one, as an upsert does)."""
    for i in range(0, len(writes), _STEPS_CHUNK):
        chunk = writes[i:i + _STEPS_CHUNK]
        conn.execute(_steps_sql(len(chunk)), [p for w in chunk for p in _step_params(w)])


def set_status(conn: sqlite3.Connection, saga_id: str, status: str, reason: str, now: str,
               duration_ms: float | None = None) -> None:
    conn.execute(
        "UPDATE sagas SET status=?, reason=?, updated_at=?, duration_ms=coalesce(?, duration_ms) "
        "WHERE saga_id=?",
        (status, reason, now, duration_ms, saga_id),
    )


def unfinished(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [_saga(r) for r in conn.execute(
        UNFINISHED_SQL)]


# two ranges of sagas_by_status(status, created_at) merged in time order: the few in
# flight, never a walk of the whole table (a plain IN can be planned as one)
UNFINISHED_SQL = ("SELECT * FROM sagas WHERE status='running' UNION ALL "
                  "SELECT * FROM sagas WHERE status='compensating' ORDER BY created_at")


def step_records(conn: sqlite3.Connection, saga_id: str) -> list[StepRecord]:
    rows = conn.execute("SELECT * FROM saga_steps WHERE saga_id=?", (saga_id,)).fetchall()
    merged: dict[int, dict[str, Any]] = {}
    for r in rows:
        m = merged.setdefault(r["step_index"], {"index": r["step_index"]})
        if r["phase"] == "forward":
            m["forward"] = StepStatus(r["status"])
            m["outcome_unknown"] = bool(r["outcome_unknown"])
        else:
            m["compensation"] = StepStatus(r["status"])
            m["compensation_attempts"] = r["attempts"]
    return [StepRecord(**m) for m in merged.values()]


def step_results(conn: sqlite3.Connection, saga_id: str) -> dict[str, dict[str, Any]]:
    """Results of the forward steps that succeeded, by step name."""
    return {
        r["name"]: json.loads(r["result"] or "{}")
        for r in conn.execute(
            "SELECT name, result FROM saga_steps WHERE saga_id=? AND phase='forward' "
            "AND status='succeeded'", (saga_id,))
    }


def step_sources(conn: sqlite3.Connection, saga_id: str) -> dict[str, str]:
    """Where each forward step that succeeded got its answer (central, backup, queue…)."""
    return {r["name"]: r["source"] for r in conn.execute(
        "SELECT name, source FROM saga_steps WHERE saga_id=? AND phase='forward' "
        "AND status='succeeded'", (saga_id,))}


def _saga(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    d["context"] = json.loads(d["context"])
    return d


def get(conn: sqlite3.Connection, saga_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM sagas WHERE saga_id=?", (saga_id,)).fetchone()
    if row is None:
        return None
    saga = _saga(row)
    saga["steps"] = [
        {**dict(s), "result": json.loads(s["result"]) if s["result"] else None,
         "attempt_log": json.loads(s["attempt_log"]), "outcome_unknown": bool(s["outcome_unknown"])}
        for s in conn.execute(
            "SELECT * FROM saga_steps WHERE saga_id=? ORDER BY step_index, phase DESC", (saga_id,))
    ]
    return saga


def list_sagas(conn: sqlite3.Connection, status: str | None = None,
               limit: int = 100) -> list[dict[str, Any]]:
    sql = "SELECT * FROM sagas"
    params: list[Any] = []
    if status:
        sql += " WHERE status=?"
        params.append(status)
    sql += " ORDER BY created_at DESC LIMIT ?"
    params.append(limit)
    return [_saga(r) for r in conn.execute(sql, params)]


STATUS_COUNTER = "sagas.status."


IN_FLIGHT = ("running", "compensating")


def status_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Sagas by status: the terminal ones from the counters the schema's triggers keep (no
    count of the table), the few in flight counted on their range of sagas_by_status
    (schema migration 10: a saga's start and end no longer write the counters page
    twice); statuses with none are left out."""
    counts = {r[0][len(STATUS_COUNTER):]: int(r[1]) for r in conn.execute(
        "SELECT name, value FROM counters WHERE name >= ? AND name < ? AND value > 0",
        (STATUS_COUNTER, STATUS_COUNTER[:-1] + chr(ord(".") + 1)))}
    for status in IN_FLIGHT:
        n = int(conn.execute("SELECT count(*) FROM sagas WHERE status = ?",
                             (status,)).fetchone()[0])
        if n:
            counts[status] = n
        else:
            counts.pop(status, None)
    return counts
