"""Events with a per-gate ``seq`` that survives restarts (one database per gate), and the
telemetry outbox.

An event is written in the same transaction as the change it reports, and queued in the
outbox in that transaction too; it leaves the outbox when the broker acknowledged it.

Retention (``prune``, hourly; so an SD card never fills) only ever deletes a prefix by
``seq``, so what is left is always the newest events, with no hole:

- Overflow: beyond the newest ``max_rows`` events, the oldest are deleted, unsent ones
  included. This is the only way an unsent event is ever deleted, and every event deleted
  while still in the outbox (its acknowledgement not yet recorded) is counted in
  ``outbox_dropped`` (reported in status). The count is exact, and an upper bound on what
  central monitoring never got: an event in flight at that instant, or acknowledged but
  not yet recorded, may have reached the broker anyway.
- Age: published events older than ``max_age_days`` are deleted, oldest first, stopping at
  the first event that is unsent, too young, or stamped by a wall clock that was not
  synchronised (``wall_synced`` false: a Pi before NTP says 1970, which says nothing about
  the event's age). Such an event, and everything after it, waits for the overflow. No age
  cut at all while the gateway's own clock is not synchronised (``oldest_ts_kept=None``).

``seq`` is never reused, even when every event has been pruned: an event takes the seq
after both the table's newest and the high-water mark ``prune`` keeps in ``counters``
(``events.last_seq``, written only by a pruning that deletes, so no page more in a saga's
commits; schema migration 10, which replaced ``AUTOINCREMENT`` and its sqlite_sequence
page in every commit).
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
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


# Event ids: unique by construction (a random 64-bit prefix drawn once per process, drawn
# again in a forked child, then a counter), so no index has to check them (schema
# migration 10 dropped the UNIQUE one: nothing looks an event up by its id), and in insert
# order within a process. Formatted as an RFC 9562 version 8 (custom) UUID.
_id_prefix = 0
_id_head = ""  # the prefix's half of the id's text, version included (the same every id)
_id_counter = itertools.count()


def _draw_id_prefix() -> None:
    global _id_prefix, _id_head, _id_counter
    _id_prefix = int.from_bytes(os.urandom(8), "big")
    head = f"{(_id_prefix & ~(0xF << 12)) | (0x8 << 12):016x}"  # version 8
    _id_head = f"{head[:8]}-{head[8:12]}-{head[12:]}-"
    _id_counter = itertools.count()


_draw_id_prefix()
os.register_at_fork(after_in_child=_draw_id_prefix)

_TAIL_MASK = (1 << 62) - 1
_VARIANT = 0x2 << 62  # the RFC variant


def new_event_id() -> str:
    """``str(uuid.UUID(int=prefix << 64 | counter))`` with the version and variant set,
    written out directly (no UUID object: several ids in every saga's commits)."""
    tail = f"{(next(_id_counter) & _TAIL_MASK) | _VARIANT:016x}"
    return f"{_id_head}{tail[:4]}-{tail[4:]}"


LAST_SEQ = "events.last_seq"  # the counter: the highest seq pruned, so never taken again
# the next seq: after the table's last row and after the counter (two seeks in pages every
# commit reads anyway; the counter is ahead of the table only once its newest events are
# gone: all pruned, or a database migrated from AUTOINCREMENT whose newest was deleted)
NEXT_SEQ = (f"max(coalesce((SELECT max(seq) FROM events), 0), "
            f"coalesce((SELECT value FROM counters WHERE name = '{LAST_SEQ}'), 0)) + 1")


def _saga_id(data: dict[str, Any]) -> str | None:
    saga_id = data.get("saga_id")
    return saga_id if isinstance(saga_id, str) else None


def saga_key(saga_id: str | None) -> str | None:
    """What events_by_saga indexes of a saga id: its last 8 characters (``substr(id, -8)``)."""
    return None if saga_id is None else saga_id[-8:]


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
    event_id = new_event_id()
    body = data or {}
    saga_id = _saga_id(body)
    cur = conn.execute(
        f"INSERT INTO events(seq, event_id, gate_id, type, ts, wall_synced, lane_id, saga_id, "
        f"saga_key, data) VALUES ({NEXT_SEQ},?,?,?,?,?,?,?,?,?)",
        (event_id, gate_id, type, ts, int(wall_synced), lane_id, saga_id,
         saga_key(saga_id), dumps(body)),
    )
    seq = int(cur.lastrowid or 0)
    conn.execute("INSERT INTO outbox(seq) VALUES (?)", (seq,))
    return {"seq": seq, "event_id": event_id, "gate_id": gate_id, "type": type, "ts": ts,
            "lane_id": lane_id, "wall_synced": wall_synced, "data": body}


_CHUNK = 200  # rows a statement at most (9 parameters each, far below SQLite's limit)
_MANY_SQL: dict[int, tuple[str, str]] = {}  # the two statements for n rows (a few), made once


def _many_sql(n: int) -> tuple[str, str]:
    sql = _MANY_SQL.get(n)
    if sql is None:
        # the first row takes NEXT_SEQ, the others the rowid after it: consecutive seqs,
        # as the writer is alone in its transaction
        values = ",".join([f"({NEXT_SEQ},?,?,?,?,?,?,?,?,?)"]
                          + ["(NULL,?,?,?,?,?,?,?,?,?)"] * (n - 1))
        sql = ("INSERT INTO events(seq, event_id, gate_id, type, ts, wall_synced, lane_id, "
               f"saga_id, saga_key, data) VALUES {values}",
               "INSERT INTO outbox(seq) VALUES " + ",".join(["(?)"] * n))
        if n <= 16:
            _MANY_SQL[n] = sql
    return sql


def append_many(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Append several events (each the keyword arguments of ``append``), in order, and
    queue them for telemetry, in two statements whatever their number (a saga's commit
    carries a few); their envelopes."""
    out: list[dict[str, Any]] = []
    _append_many(conn, rows, out)
    return out


def write_many(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    """``append_many`` for a caller that has no use for the envelopes (a saga's commit):
    the same rows, none of the envelopes made."""
    _append_many(conn, rows, None)


def _append_many(conn: sqlite3.Connection, rows: list[dict[str, Any]],
                 out: list[dict[str, Any]] | None) -> None:
    for i in range(0, len(rows), _CHUNK):
        chunk = rows[i:i + _CHUNK]
        params: list[Any] = []
        for r in chunk:
            body = r.get("data") or {}
            saga_id = _saga_id(body)
            lane_id, synced = r.get("lane_id"), bool(r.get("wall_synced", False))
            event_id = new_event_id()
            params += [event_id, r["gate_id"], r["type"], r["ts"], int(synced), lane_id,
                       saga_id, saga_key(saga_id), dumps(body)]
            if out is not None:
                out.append({"seq": 0, "event_id": event_id, "gate_id": r["gate_id"],
                            "type": r["type"], "ts": r["ts"], "lane_id": lane_id,
                            "wall_synced": synced, "data": body})
        n = len(chunk)
        insert, outbox = _many_sql(n)
        last = int(conn.execute(insert, params).lastrowid or 0)
        seqs = list(range(last - n + 1, last + 1))
        conn.execute(outbox, seqs)
        if out is not None:
            for envelope, seq in zip(out[len(out) - n:], seqs, strict=True):
                envelope["seq"] = seq


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


def recent_for_saga(conn: sqlite3.Connection, type_: str, saga_id: str,
                    window: int = 20_000) -> bool:
    """Is there an event of ``type_`` for ``saga_id`` among the newest ``window`` events?
    (Recovery's question about a saga a stop left in flight: recent by nature; the window
    bounds the walk, newest first by ``seq``.)"""
    row = conn.execute(
        f"SELECT 1 FROM events {_BY_SAGA} AND type = ? "
        "AND seq > (SELECT coalesce(max(seq), 0) FROM events) - ? LIMIT 1",
        (saga_key(saga_id), saga_id, type_, window)).fetchone()
    return row is not None


# the events of a saga: the range of its id's tail (saga_key) in events_by_saga, in seq
# order, then the whole id (another saga's whose id ends the same is not one of them)
_BY_SAGA = "INDEXED BY events_by_saga WHERE saga_key = ? AND saga_id = ?"


def for_saga(conn: sqlite3.Connection, saga_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """The events of one saga, oldest first (index events_by_saga)."""
    return [_envelope(r) for r in conn.execute(
        f"SELECT * FROM events {_BY_SAGA} ORDER BY seq LIMIT ?",
        (saga_key(saga_id), saga_id, limit))]


def outbox_pending(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


def prune(conn: sqlite3.Connection, *, max_rows: int, oldest_ts_kept: str | None) -> int:
    """Apply the retention policy (see the module docstring): the ``max_rows`` overflow, then
    the age cut at ``oldest_ts_kept`` (an ``iso`` time from a synchronised clock; ``None``:
    no age cut). Returns how many events were deleted."""
    deleted = _drop_overflow(conn, max_rows)
    if oldest_ts_kept is not None:
        deleted += _prune_published_by_age(conn, oldest_ts_kept)
    if deleted:
        bump_counter(conn, "events_pruned", deleted)
    return deleted


def _keep_high_water(conn: sqlite3.Connection) -> None:
    """Before a pruning deletes: the highest seq there is, so that it is never taken again
    even if no event is left (``NEXT_SEQ``)."""
    conn.execute(
        "INSERT INTO counters(name, value) SELECT ?, seq FROM events WHERE true "
        "ORDER BY seq DESC LIMIT 1 "
        "ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)", (LAST_SEQ,))


def _drop_overflow(conn: sqlite3.Connection, max_rows: int) -> int:
    """Delete the oldest events beyond the newest ``max_rows``, unsent ones included (counted
    in ``outbox_dropped``)."""
    # two queries: min() and max() in one would scan the table
    lo = conn.execute("SELECT min(seq) FROM events").fetchone()[0]
    hi = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
    if lo is None or hi - lo + 1 <= max_rows:
        return 0  # seq has no holes, so this is the count, without a scan
    row = conn.execute(
        "SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?", (max_rows,)
    ).fetchone()
    if row is None:
        return 0  # holes after all, and no more than max_rows
    upto = int(row[0])
    unsent = int(conn.execute("SELECT count(*) FROM outbox WHERE seq <= ?", (upto,)).fetchone()[0])
    if unsent:
        bump_counter(conn, "outbox_dropped", unsent)
    _keep_high_water(conn)
    conn.execute("DELETE FROM outbox WHERE seq <= ?", (upto,))
    return int(conn.execute("DELETE FROM events WHERE seq <= ?", (upto,)).rowcount)


def _prune_published_by_age(conn: sqlite3.Connection, oldest_ts_kept: str) -> int:
    """Delete the longest prefix by ``seq`` of events that are published, synchronised and
    older than ``oldest_ts_kept``: never an unsent one."""
    first_unsent = conn.execute("SELECT min(seq) FROM outbox").fetchone()[0]
    if first_unsent is None:
        newest = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
        if newest is None:
            return 0
        bound = int(newest) + 1
    else:
        bound = int(first_unsent)
    # walks the rowid from the oldest and stops at the first event to keep: as many rows
    # read as are deleted, no index needed
    stop = conn.execute(
        "SELECT seq FROM events WHERE seq < ? AND NOT (wall_synced = 1 AND ts < ?) "
        "ORDER BY seq LIMIT 1", (bound, oldest_ts_kept)
    ).fetchone()
    upto = int(stop[0]) if stop is not None else bound  # exclusive
    if stop is None:
        _keep_high_water(conn)  # may delete them all
    return int(conn.execute("DELETE FROM events WHERE seq < ?", (upto,)).rowcount)


def outbox_batch(conn: sqlite3.Connection, after_seq: int, limit: int) -> list[dict[str, Any]]:
    """Unsent events after ``after_seq``, in ``seq`` order, as envelopes."""
    return [_envelope(r) for r in conn.execute(
        "SELECT e.* FROM outbox o JOIN events e ON e.seq = o.seq WHERE o.seq > ? "
        "ORDER BY o.seq LIMIT ?", (after_seq, limit))]


# The envelope of ``_envelope`` as its telemetry payload (contracts/mqtt.md), rendered by
# SQLite: no row objects, no decoding of ``data`` to encode it again, and the work done with
# the GIL released. ``data`` is written by ``append`` as compact JSON, and json() keeps its
# text (numbers as written), so this is what msgspec makes of the envelope.
_PAYLOAD = (
    "json_object('seq', e.seq, 'event_id', e.event_id, 'gate_id', e.gate_id, 'type', e.type, "
    "'ts', e.ts, 'lane_id', e.lane_id, 'data', json(e.data), "
    "'wall_synced', json(iif(e.wall_synced, 'true', 'false')))")


def outbox_payloads(conn: sqlite3.Connection, after_seq: int,
                    limit: int) -> list[tuple[int, bytes]]:
    """Unsent events after ``after_seq``, in ``seq`` order: (seq, its JSON envelope)."""
    cur = conn.cursor()
    cur.row_factory = None  # plain tuples
    return [(seq, text.encode()) for seq, text in cur.execute(
        f"SELECT o.seq, {_PAYLOAD} FROM outbox o JOIN events e ON e.seq = o.seq "
        "WHERE o.seq > ? ORDER BY o.seq LIMIT ?", (after_seq, limit))]


def mark_published(conn: sqlite3.Connection, seqs: list[int]) -> None:
    """The broker acknowledged these: they leave the outbox (the events stay)."""
    conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
