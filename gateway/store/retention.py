"""Retention of the saga log, the vehicle sessions and the offline queue (README
"Durability"): only terminal rows older than their configured age are deleted, oldest
first, at most ``batch`` rows per call (one call is one transaction, so the database
thread is never held long). Each query walks an index range (schema migration 5).

- A saga goes (with its steps) when it is ``completed``, ``compensated`` or ``failed``,
  and nothing live refers to it: no session of a vehicle not yet out (entry or exit saga),
  no space it holds, no offline-queue row of it still ``pending`` or ``sending``.
- A vehicle session goes when it is ``exited``, by its exit time.
- An offline-queue row goes when it is ``sent``, ``dead`` or ``dropped`` and nothing live
  may still need it: no ``pending``/``sending`` row depends on it or is of its saga, its
  saga is not running or compensating, and no vehicle not yet out carries its local id
  (an exit queued later resolves that id through this row).

A row stamped before ``UNSET_CLOCK_BEFORE`` (2001) was stamped by a clock that had not been
set (a Pi without a battery clock boots in 1970): its age is unknown, so it is kept rather
than taken for decades old at the first housekeeping after NTP (a handful of rows per boot
at most). A clock set wrong but plausible cannot be told from a right one."""

from __future__ import annotations

import sqlite3

TERMINAL_SAGAS = ("completed", "compensated", "failed")
DONE_QUEUE_STATES = ("sent", "dead", "dropped")
BATCH_ROWS = 1000
UNSET_CLOCK_BEFORE = "2001-01-01"

# parameters: older_than, plausible_after, limit; the status is written into the text (one
# of TERMINAL_SAGAS), with the index of the sagas of that status only (in time order: a
# range of it, no sort); the planner, without statistics, would pick sagas_by_status and sort
SAGAS_SQL = """
SELECT s.saga_id FROM sagas s INDEXED BY sagas_{status}_by_updated
 WHERE s.status = '{status}' AND s.updated_at < ? AND s.updated_at >= ?
   AND NOT EXISTS (SELECT 1 FROM vehicle_sessions v
                    WHERE v.entry_saga_id = s.saga_id AND v.status <> 'exited')
   AND NOT EXISTS (SELECT 1 FROM vehicle_sessions v
                    WHERE v.exit_saga_id = s.saga_id AND v.status <> 'exited')
   AND NOT EXISTS (SELECT 1 FROM spaces p WHERE p.saga_id = s.saga_id)
   AND NOT EXISTS (SELECT 1 FROM offline_queue q
                    WHERE q.saga_id = s.saga_id AND q.state IN ('pending','sending'))
 ORDER BY s.updated_at LIMIT ?"""

def sagas_sql(status: str) -> str:
    """The retention's query of terminal sagas of ``status`` (one of TERMINAL_SAGAS)."""
    if status not in TERMINAL_SAGAS:
        raise ValueError(f"not a terminal saga status: {status!r}")
    return SAGAS_SQL.format(status=status)


# parameters: older_than, plausible_after, limit (the index of exited sessions only, in time
# order; the planner, without statistics, would pick sessions_by_status and sort)
SESSIONS_SQL = """
SELECT session_id FROM vehicle_sessions INDEXED BY sessions_exited_by_time
 WHERE status = 'exited' AND exited_at < ? AND exited_at >= ?
 ORDER BY exited_at LIMIT ?"""

# parameters: state, older_than, plausible_after, limit
QUEUE_SQL = """
SELECT q.id FROM offline_queue q
 WHERE q.state = ? AND q.updated_at < ? AND q.updated_at >= ?
   AND NOT EXISTS (SELECT 1 FROM offline_queue d
                    WHERE d.depends_on = q.id AND d.state IN ('pending','sending'))
   AND NOT EXISTS (SELECT 1 FROM offline_queue d
                    WHERE d.saga_id = q.saga_id AND d.state IN ('pending','sending'))
   AND NOT EXISTS (SELECT 1 FROM sagas s
                    WHERE s.saga_id = q.saga_id AND s.status IN ('running','compensating'))
   AND (q.local_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM vehicle_sessions v
             WHERE v.entry_id = q.local_id AND v.status IN ('inside','exiting')))
 ORDER BY q.updated_at LIMIT ?"""


def prune_sagas(conn: sqlite3.Connection, *, older_than: str, batch: int = BATCH_ROWS) -> int:
    """Delete up to ``batch`` terminal sagas (and their steps) last changed before
    ``older_than`` (an ``iso`` time). How many sagas were deleted."""
    ids: list[tuple[str]] = []
    for status in TERMINAL_SAGAS:
        if len(ids) >= batch:
            break
        ids += [(r[0],) for r in conn.execute(sagas_sql(status), (
            older_than, UNSET_CLOCK_BEFORE, batch - len(ids)))]
    if not ids:
        return 0
    conn.executemany("DELETE FROM saga_steps WHERE saga_id = ?", ids)
    conn.executemany("DELETE FROM sagas WHERE saga_id = ? AND status IN "
                     "('completed','compensated','failed')", ids)
    return len(ids)


def prune_sessions(conn: sqlite3.Connection, *, older_than: str,
                   batch: int = BATCH_ROWS) -> int:
    """Delete up to ``batch`` exited vehicle sessions that exited before ``older_than``."""
    ids = [(r[0],) for r in conn.execute(SESSIONS_SQL, (older_than, UNSET_CLOCK_BEFORE,
                                                        batch))]
    conn.executemany("DELETE FROM vehicle_sessions WHERE session_id = ? AND status = 'exited'",
                     ids)
    return len(ids)


def prune_offline_queue(conn: sqlite3.Connection, *, older_than: str,
                        batch: int = BATCH_ROWS) -> int:
    """Delete up to ``batch`` sent, dead or dropped queue rows last changed before
    ``older_than`` that nothing live needs (see the module docstring)."""
    ids: list[tuple[int]] = []
    for state in DONE_QUEUE_STATES:
        if len(ids) >= batch:
            break
        ids += [(r[0],) for r in conn.execute(QUEUE_SQL, (
            state, older_than, UNSET_CLOCK_BEFORE, batch - len(ids)))]
    conn.executemany("DELETE FROM offline_queue WHERE id = ? AND state IN "
                     "('sent','dead','dropped')", ids)
    return len(ids)
