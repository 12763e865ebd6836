"""The space table and vehicle sessions. Every function runs inside the caller's
``BEGIN IMMEDIATE`` transaction, so a check and the change it guards are one atomic step:
one space is never handed to two vehicles, one saga never holds two spaces."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from gateway.core.allocation import AllocationRequest, FreeSpace, SpaceKind, ZoneSpec, choose_space
from gateway.core.errors import NoSpaceAvailable, PermanentError


def sync_zones(conn: sqlite3.Connection, zones: Sequence[ZoneSpec]) -> None:
    """Make the table match the configured zones: add new spaces as free, retire spaces no
    longer configured (an allocated one stays until its vehicle leaves)."""
    wanted: dict[str, tuple[str, int, SpaceKind]] = {}
    for zone in zones:
        for n, (sid, kind) in enumerate(zone.space_ids(), start=1):
            wanted[sid] = (zone.name, n, kind)
    existing = {r["space_id"] for r in conn.execute("SELECT space_id FROM spaces")}
    for sid, (zone_name, n, kind) in wanted.items():
        if sid in existing:
            conn.execute("UPDATE spaces SET kind=?, retired=0 WHERE space_id=?", (kind, sid))
        else:
            conn.execute(
                "INSERT INTO spaces(space_id, zone, number, kind, state) VALUES (?,?,?,?,'free')",
                (sid, zone_name, n, kind),
            )
    for sid in existing - wanted.keys():
        conn.execute("UPDATE spaces SET retired=1 WHERE space_id=?", (sid,))


def allocate(
    conn: sqlite3.Connection, saga_id: str, request: AllocationRequest, now: str
) -> str:
    """Allocate a space to ``saga_id`` (idempotent: a saga that has one gets the same)."""
    held = conn.execute("SELECT space_id FROM spaces WHERE saga_id=?", (saga_id,)).fetchone()
    if held:
        return str(held["space_id"])
    # Only the lowest-numbered free space of each (kind, zone) can be chosen, so the policy
    # is given those few instead of every free space, found by a skip-scan of
    # spaces_by_state: a handful of index seeks, not a walk of every free space.
    rows = conn.execute(FIRST_FREE_OF_EACH_GROUP_SQL).fetchall()
    free = [FreeSpace(r["space_id"], r["zone"], r["number"], SpaceKind(r["kind"])) for r in rows]
    choice = choose_space(free, request)
    if choice is None:
        raise NoSpaceAvailable("no free space for this vehicle", service="parking_mgmt_service")
    cur = conn.execute(
        "UPDATE spaces SET state='allocated', plate=?, saga_id=?, since=? "
        "WHERE space_id=? AND state='free'",
        (request.plate, saga_id, now, choice.space_id),
    )
    if cur.rowcount != 1:  # pragma: no cover - impossible inside BEGIN IMMEDIATE
        raise NoSpaceAvailable("space taken concurrently", service="parking_mgmt_service")
    return choice.space_id


# The lowest-numbered free space of each (kind, zone), one group after the other in the
# index's order: the first free space; then, after a group, the next zone of its kind or
# else the first space of the next kind. Each step is one seek in spaces_by_state(state,
# kind, zone, number); a retired space is stepped over.
FIRST_FREE_OF_EACH_GROUP_SQL = """
WITH RECURSIVE firsts(rid) AS (
    SELECT (SELECT rowid FROM spaces WHERE state='free' AND retired=0
            ORDER BY kind, zone, number LIMIT 1)
    UNION ALL
    SELECT coalesce(
        (SELECT n.rowid FROM spaces n WHERE n.state='free' AND n.retired=0
         AND n.kind=s.kind AND n.zone>s.zone ORDER BY n.zone, n.number LIMIT 1),
        (SELECT n.rowid FROM spaces n WHERE n.state='free' AND n.retired=0
         AND n.kind>s.kind ORDER BY n.kind, n.zone, n.number LIMIT 1))
    FROM firsts JOIN spaces s ON s.rowid = firsts.rid
)
SELECT s.space_id, s.zone, s.number, s.kind FROM firsts JOIN spaces s ON s.rowid = firsts.rid
"""


def release_for_saga(conn: sqlite3.Connection, saga_id: str, now: str) -> str | None:
    """Free the space an entry saga holds (its compensation). Idempotent."""
    row = conn.execute("SELECT space_id FROM spaces WHERE saga_id=?", (saga_id,)).fetchone()
    if row is None:
        return None
    conn.execute(
        "UPDATE spaces SET state='free', plate=NULL, saga_id=NULL, since=? WHERE space_id=?",
        (now, row["space_id"]),
    )
    return str(row["space_id"])


def set_state(conn: sqlite3.Connection, space_id: str, state: str, now: str) -> None:
    """Operator change between ``free`` and ``out_of_service``; an allocated space is
    refused (its vehicle must leave first)."""
    if state not in ("free", "out_of_service"):
        raise PermanentError(f"state must be free or out_of_service, not {state!r}")
    row = conn.execute("SELECT state FROM spaces WHERE space_id=?", (space_id,)).fetchone()
    if row is None:
        raise PermanentError(f"no space {space_id!r}", status=404)
    if row["state"] == "allocated":
        raise PermanentError(f"space {space_id} is allocated; it changes when its vehicle leaves",
                             status=409)
    conn.execute("UPDATE spaces SET state=?, since=? WHERE space_id=?", (state, now, space_id))


def occupancy(conn: sqlite3.Connection) -> dict[str, int]:
    counts = {"free": 0, "allocated": 0, "out_of_service": 0}
    for r in conn.execute(
        "SELECT state, count(*) AS n FROM spaces "
        "WHERE retired=0 OR state='allocated' GROUP BY state"
    ):
        counts[r["state"]] = r["n"]
    return {"total": sum(counts.values()), **counts}


def zones(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Occupancy of each zone; a zone with no free space is FULL."""
    out = []
    for r in conn.execute(
        "SELECT zone, sum(state='free') AS free, sum(state='allocated') AS allocated, "
        "sum(state='out_of_service') AS out_of_service, count(*) AS total FROM spaces "
        "WHERE retired=0 OR state='allocated' GROUP BY zone ORDER BY zone"
    ):
        out.append({"zone": r["zone"], "total": r["total"], "free": r["free"],
                    "allocated": r["allocated"], "out_of_service": r["out_of_service"],
                    "full": r["free"] == 0})
    return out


def list_spaces(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in conn.execute(
            "SELECT space_id, zone, number, kind, state, plate, saga_id, since FROM spaces "
            "WHERE retired=0 OR state='allocated' ORDER BY zone, number"
        )
    ]


# -- vehicle sessions -------------------------------------------------------------------
def open_session(
    conn: sqlite3.Connection, plate: str, space_id: str | None, entry_saga_id: str,
    entry_id: str | None, now: str, flags: str = "",
) -> int:
    """The entry saga's session, opened once (idempotent on ``entry_saga_id``, UNIQUE): one
    statement when it is new, the existing one's id when it is not."""
    made = conn.execute(
        "INSERT INTO vehicle_sessions(plate, space_id, entry_saga_id, entry_id, entered_at, "
        "status, flags) VALUES (?,?,?,?,?,'inside',?) "
        "ON CONFLICT(entry_saga_id) DO NOTHING RETURNING session_id",
        (plate, space_id, entry_saga_id, entry_id, now, flags),
    ).fetchone()
    if made is not None:
        return int(made[0])
    existing = conn.execute(
        "SELECT session_id FROM vehicle_sessions WHERE entry_saga_id=?", (entry_saga_id,)
    ).fetchone()
    return int(existing["session_id"])


def inside(conn: sqlite3.Connection, plate: str, exclude_saga: str = "") -> bool:
    """Is a vehicle with this plate inside (an open session, or a space held by another
    entry saga)? Two index seeks (sessions_by_plate, spaces_allocated_by_plate)."""
    row = conn.execute(
        "SELECT 1 FROM vehicle_sessions WHERE plate=? AND status != 'exited' "
        "UNION ALL SELECT 1 FROM spaces WHERE plate=? AND state='allocated' AND saga_id != ? "
        "LIMIT 1", (plate, plate, exclude_saga)).fetchone()
    return row is not None


def supersede_assumed(conn: sqlite3.Connection, plate: str, now: str) -> dict[str, Any] | None:
    """The vehicle ``plate`` is read at an entry again while its last entry is only
    *assumed* (recovery found that saga past its barrier and could not see the passage):
    that passage did not happen. Its session is closed as ``superseded`` and its space
    freed; the session as it was, or ``None`` if no assumed session is open."""
    row = conn.execute(
        "SELECT * FROM vehicle_sessions WHERE plate=? AND status='inside' "
        "AND (',' || flags || ',') LIKE '%,assumed,%' ORDER BY session_id DESC LIMIT 1",
        (plate,)).fetchone()
    if row is None:
        return None
    flags = ",".join(f for f in (row["flags"], "superseded") if f)
    conn.execute("UPDATE vehicle_sessions SET status='exited', exited_at=?, flags=? "
                 "WHERE session_id=? AND status='inside'", (now, flags, row["session_id"]))
    if row["space_id"]:
        conn.execute("UPDATE spaces SET state='free', plate=NULL, saga_id=NULL, since=? "
                     "WHERE space_id=? AND saga_id=?",
                     (now, row["space_id"], row["entry_saga_id"]))
    return dict(row)


def begin_exit(
    conn: sqlite3.Connection, plate: str, exit_saga_id: str, now: str
) -> dict[str, Any] | None:
    """Free the space of the vehicle ``plate`` that is inside and mark its session as
    exiting. Idempotent per exit saga. ``None`` when no session matches (no entry)."""
    row = conn.execute(
        "SELECT * FROM vehicle_sessions WHERE exit_saga_id=?", (exit_saga_id,)
    ).fetchone()
    if row is None:
        row = conn.execute(
            "SELECT * FROM vehicle_sessions WHERE plate=? AND status='inside' "
            "ORDER BY session_id DESC LIMIT 1", (plate,),
        ).fetchone()
        matched = ""
        if row is None and plate:
            # a vehicle let in by policy with no plate read can only be matched this way:
            # the oldest one without a plate goes with an exit that matches nothing, or
            # its space would be held for ever
            row = conn.execute(
                "SELECT * FROM vehicle_sessions WHERE plate='' AND status='inside' "
                "ORDER BY session_id LIMIT 1").fetchone()
            matched = "matched_unread"
        if row is None:
            return None
        flags = ",".join(f for f in (row["flags"], matched) if f)
        conn.execute(
            "UPDATE vehicle_sessions SET status='exiting', exit_saga_id=?, flags=? "
            "WHERE session_id=?", (exit_saga_id, flags, row["session_id"]),
        )
    if row["space_id"]:
        conn.execute(
            "UPDATE spaces SET state='free', plate=NULL, saga_id=NULL, since=? "
            "WHERE space_id=? AND saga_id=?",
            (now, row["space_id"], row["entry_saga_id"]),
        )
    return {"session_id": row["session_id"], "space_id": row["space_id"],
            "entry_id": row["entry_id"], "entry_saga_id": row["entry_saga_id"],
            "matched_unread": "matched_unread" in (row["flags"] or "").split(",") or matched}


def undo_exit(conn: sqlite3.Connection, exit_saga_id: str, now: str) -> str | None:
    """Compensation of ``begin_exit``: the vehicle is inside again. It gets its space back,
    or, if another vehicle took that space meanwhile, another one; with the lot full it is
    flagged ``over_capacity`` rather than given a space someone holds. Idempotent."""
    row = conn.execute(
        "SELECT * FROM vehicle_sessions WHERE exit_saga_id=?", (exit_saga_id,)
    ).fetchone()
    if row is None:
        return None
    entry_saga = row["entry_saga_id"]
    held = conn.execute("SELECT space_id FROM spaces WHERE saga_id=?", (entry_saga,)).fetchone()
    space_id: str | None = held["space_id"] if held else None
    flags = ",".join(f for f in (row["flags"] or "").split(",") if f and f != "matched_unread")
    if space_id is None and row["space_id"]:
        cur = conn.execute(
            "UPDATE spaces SET state='allocated', plate=?, saga_id=?, since=? "
            "WHERE space_id=? AND state='free'",
            (row["plate"], entry_saga, now, row["space_id"]),
        )
        if cur.rowcount == 1:
            space_id = row["space_id"]
    if space_id is None:
        try:
            space_id = allocate(conn, entry_saga, AllocationRequest(row["plate"]), now)
        except NoSpaceAvailable:
            flags = ",".join(f for f in (flags, "over_capacity") if f)
    conn.execute(
        "UPDATE vehicle_sessions SET status='inside', exit_saga_id=NULL, space_id=?, flags=? "
        "WHERE session_id=?",
        (space_id, flags, row["session_id"]),
    )
    return space_id


def close_session(
    conn: sqlite3.Connection, exit_saga_id: str, exit_id: str | None, now: str
) -> None:
    conn.execute(
        "UPDATE vehicle_sessions SET status='exited', exit_id=?, exited_at=? "
        "WHERE exit_saga_id=?",
        (exit_id, now, exit_saga_id),
    )


def list_sessions(conn: sqlite3.Connection, limit: int = 500) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(
        "SELECT * FROM vehicle_sessions ORDER BY session_id DESC LIMIT ?", (limit,))]
