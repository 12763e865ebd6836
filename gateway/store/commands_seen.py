"""Ids of the remote commands already taken, so that none is acted on twice, also across a
restart. ``seen_at`` is the gateway's wall time when the id was first taken (commands are
only taken while the wall clock is synchronised). An id is kept ``keep_s`` (several times
the largest accepted command age, so a pruned id could only come back with a ts that is
refused as too old anyway), and never more than ``max_rows`` ids."""

from __future__ import annotations

import sqlite3

MAX_ROWS = 10_000


def take(conn: sqlite3.Connection, command_id: str, now: float, keep_s: float,
         max_rows: int = MAX_ROWS) -> bool:
    """Record ``command_id``; ``True`` if it is new (the caller may act on it), ``False`` if
    it was seen before. One conditional insert: of two deliveries racing, one wins."""
    new = conn.execute("INSERT OR IGNORE INTO command_ids(id, seen_at) VALUES (?, ?)",
                       (command_id, now)).rowcount == 1
    if new:
        prune(conn, now, keep_s, max_rows)
    return new


def prune(conn: sqlite3.Connection, now: float, keep_s: float,
          max_rows: int = MAX_ROWS) -> int:
    n = conn.execute("DELETE FROM command_ids WHERE seen_at < ?", (now - keep_s,)).rowcount
    over = conn.execute("SELECT count(*) FROM command_ids").fetchone()[0] - max_rows
    if over > 0:
        n += conn.execute(
            "DELETE FROM command_ids WHERE id IN "
            "(SELECT id FROM command_ids ORDER BY seen_at LIMIT ?)", (over,)).rowcount
    return int(n)


def seen(conn: sqlite3.Connection, command_id: str) -> bool:
    return conn.execute("SELECT 1 FROM command_ids WHERE id=?",
                        (command_id,)).fetchone() is not None


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM command_ids").fetchone()[0])
