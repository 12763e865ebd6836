"""Verification results kept in SQLite so they survive a reboot. Times are wall-clock
seconds (the only clock that survives a reboot); an entry stored "in the future" (the clock
was wrong, then synchronised) is treated as expired."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from gateway.store.codec import dumps


@dataclass(frozen=True, slots=True)
class CachedResult:
    plate: str
    result: dict[str, Any]
    source: str
    age_s: float
    fresh: bool


def put(conn: sqlite3.Connection, plate: str, result: dict[str, Any], source: str,
        now: float, ttl_s: float) -> None:
    conn.execute(
        "INSERT INTO plate_cache(plate, result, source, stored_at, expires_at) VALUES (?,?,?,?,?) "
        "ON CONFLICT(plate) DO UPDATE SET result=excluded.result, source=excluded.source, "
        "stored_at=excluded.stored_at, expires_at=excluded.expires_at",
        (plate, dumps(result), source, now, now + ttl_s),
    )


def get(conn: sqlite3.Connection, plate: str, now: float,
        max_stale_s: float = 0.0) -> CachedResult | None:
    """The cached result for ``plate``: fresh if within its TTL, stale if expired less than
    ``max_stale_s`` ago; ``None`` otherwise."""
    row = conn.execute("SELECT * FROM plate_cache WHERE plate=?", (plate,)).fetchone()
    if row is None or row["stored_at"] > now + 1.0:
        return None
    fresh = now < row["expires_at"]
    if not fresh and now - row["expires_at"] > max_stale_s:
        return None
    return CachedResult(plate, json.loads(row["result"]), row["source"],
                        now - row["stored_at"], fresh)


def get_permit_one_off(conn: sqlite3.Connection, plate: str, now: float,
                       max_stale_s: float = 0.0) -> CachedResult | None:
    """A cached permit holder whose plate differs from ``plate`` in exactly one character
    (a misread), when exactly one such plate exists; ``None`` otherwise."""
    matches = []
    for row in conn.execute(
            "SELECT plate FROM plate_cache WHERE length(plate)=? AND expires_at >= ? "
            "AND json_extract(result, '$.reason')='permit' "
            "AND json_extract(result, '$.authorized')", (len(plate), now - max_stale_s)):
        other = str(row[0])
        if sum(a != b for a, b in zip(other, plate, strict=True)) == 1:
            matches.append(other)
    if len(matches) != 1:
        return None  # none, or ambiguous: no guessing
    hit = get(conn, matches[0], now, max_stale_s)
    if hit is None:
        return None
    return CachedResult(hit.plate, {**hit.result, "misread_of": plate}, hit.source,
                        hit.age_s, hit.fresh)


def prune(conn: sqlite3.Connection, now: float, max_stale_s: float, max_rows: int) -> int:
    n = conn.execute("DELETE FROM plate_cache WHERE expires_at < ?", (now - max_stale_s,)).rowcount
    over = conn.execute("SELECT count(*) FROM plate_cache").fetchone()[0] - max_rows
    if over > 0:
        n += conn.execute(
            "DELETE FROM plate_cache WHERE plate IN "
            "(SELECT plate FROM plate_cache ORDER BY expires_at LIMIT ?)", (over,)
        ).rowcount
    return int(n)
