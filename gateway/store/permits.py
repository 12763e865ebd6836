"""The local permit list: plates always let in (residents, staff, delivery windows), from
the central service (``GET /v1/permits``, synced by ``gateway.sagas.permit_sync``) or
entered at the gate with the admin token. Asked before the lane's policy when nothing
else answers a verification.

A permit is valid at ``now`` inside its window (``valid_from`` .. ``valid_until``, either
open). While the gateway's clock is not synchronised (a Pi that started in 1970) the wall
time says nothing: only permits with no end count, whatever their start."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

KINDS = ("resident", "staff", "delivery")
_AS_OF = "permits_as_of"


def epoch(text: str | None) -> float | None:
    """RFC 3339 to UTC epoch seconds (``None`` for none); a time without an offset is UTC.
    Raises ``ValueError`` for anything else."""
    if text is None or text == "":
        return None
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def apply_central(conn: sqlite3.Connection, permits: list[dict[str, Any]], as_of: str,
                  now: str) -> int:
    """The central service's changes since the last sync; returns how many rows changed."""
    changed = 0
    for p in permits:
        changed += conn.execute(
            "INSERT INTO permits(plate, source, kind, valid_from, valid_until, from_ts, "
            "until_ts, deleted, updated_at) VALUES (?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(plate, source) DO UPDATE SET kind=excluded.kind, "
            "valid_from=excluded.valid_from, valid_until=excluded.valid_until, "
            "from_ts=excluded.from_ts, until_ts=excluded.until_ts, deleted=excluded.deleted, "
            "updated_at=excluded.updated_at",
            (p["license_plate"], "central", p["kind"], p.get("valid_from"),
             p.get("valid_until"), epoch(p.get("valid_from")), epoch(p.get("valid_until")),
             int(bool(p.get("deleted"))), now)).rowcount
    conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) "
                 "DO UPDATE SET value=excluded.value", (_AS_OF, as_of))
    return changed


def as_of(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key=?", (_AS_OF,)).fetchone()
    return str(row[0]) if row else None


def put_local(conn: sqlite3.Connection, plate: str, *, kind: str, valid_from: str | None,
              valid_until: str | None, note: str, now: str) -> None:
    conn.execute(
        "INSERT INTO permits(plate, source, kind, valid_from, valid_until, from_ts, until_ts, "
        "deleted, note, updated_at) VALUES (?,?,?,?,?,?,?,0,?,?) "
        "ON CONFLICT(plate, source) DO UPDATE SET kind=excluded.kind, "
        "valid_from=excluded.valid_from, valid_until=excluded.valid_until, "
        "from_ts=excluded.from_ts, until_ts=excluded.until_ts, deleted=0, "
        "note=excluded.note, updated_at=excluded.updated_at",
        (plate, "local", kind, valid_from, valid_until, epoch(valid_from), epoch(valid_until),
         note, now))


def delete_local(conn: sqlite3.Connection, plate: str) -> bool:
    """Remove a permit entered at the gate (the central service's are its own to end)."""
    return conn.execute("DELETE FROM permits WHERE plate=? AND source='local'",
                        (plate,)).rowcount > 0


_VALID = ("deleted = 0 AND (:synced = 0 OR from_ts IS NULL OR from_ts <= :now) AND "
          "(until_ts IS NULL OR (:synced = 1 AND until_ts > :now))")


def valid(conn: sqlite3.Connection, plate: str, now: float, synced: bool,
          ) -> dict[str, Any] | None:
    """The plate's permit valid now (a local one first), or ``None``."""
    row = conn.execute(
        f"SELECT * FROM permits WHERE plate=:plate AND {_VALID} "
        "ORDER BY source = 'local' DESC LIMIT 1",
        {"plate": plate, "now": now, "synced": int(synced)}).fetchone()
    return dict(row) if row else None


def valid_one_off(conn: sqlite3.Connection, plate: str, now: float, synced: bool,
                  ) -> dict[str, Any] | None:
    """The one valid permit whose plate differs from ``plate`` in exactly one character (a
    misread), when exactly one exists; ``None`` when none or several."""
    matches: dict[str, dict[str, Any]] = {}
    for row in conn.execute(
            f"SELECT * FROM permits WHERE length(plate)=:n AND {_VALID}",
            {"n": len(plate), "now": now, "synced": int(synced)}):
        other = str(row["plate"])
        if sum(a != b for a, b in zip(other, plate, strict=True)) == 1:
            matches.setdefault(other, dict(row))
    if len(matches) != 1:
        return None
    return next(iter(matches.values()))


def list_all(conn: sqlite3.Connection, limit: int = 5000) -> list[dict[str, Any]]:
    return [{k: r[k] for k in ("plate", "source", "kind", "valid_from", "valid_until",
                               "deleted", "note", "updated_at")}
            for r in conn.execute("SELECT * FROM permits ORDER BY plate, source LIMIT ?",
                                  (limit,))]


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    out = {"central": 0, "local": 0}
    for source, n in conn.execute(
            "SELECT source, count(*) FROM permits WHERE deleted=0 GROUP BY source"):
        out[source] = n
    return out
