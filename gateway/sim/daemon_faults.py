"""Faults inside the daemon itself, for the reliability campaign (``tests/reliability/``):
a full disk and a wall clock that jumps. Simulation only: the daemon builds these only when
``[simulation] enabled = true``, and ``POST /api/sim/faults`` (admin token) switches them.

- ``disk_full``: SQLite's ``max_page_count`` set to the database's current page count, so
  the file may not grow and writes that need a new page fail with ``SQLITE_FULL``, as on a
  full SD card; ``false`` restores the limit it had. (A connection the store reopens after
  a failed rollback starts without the limit: the fault then ends early, as when space is
  freed.)
- ``wall_offset_s``: added to the wall clock (negative: the clock jumps backwards, as when
  an RTC-less Pi gets a wrong time); durations use the monotonic clock, which never jumps.
- ``wall_synced``: what the clock says about its synchronisation (left as it is when not
  given; an offset set back to 0 without it restores the real answer).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec

from gateway.clock import SystemClock
from gateway.store.db import Database
from gateway.store.store import Store


class OffsetClock(SystemClock):
    """The system clock, with a wall time offset and a synchronisation flag the campaign
    sets; the monotonic clock is untouched."""

    def __init__(self) -> None:
        super().__init__()
        self.offset_s = 0.0
        self.synced: bool | None = None  # None: as the system says

    def wall(self) -> float:
        return time.time() + self.offset_s

    def wall_synced(self) -> bool:
        return super().wall_synced() if self.synced is None else self.synced


class DaemonFaultRequest(msgspec.Struct, forbid_unknown_fields=True):
    disk_full: bool | None = None
    # ±100 years: beyond, the wall time leaves what a timestamp can hold (every saga fails)
    wall_offset_s: Annotated[float, msgspec.Meta(ge=-3.2e9, le=3.2e9)] | None = None
    wall_synced: bool | None = None


class DaemonFaults:
    def __init__(self, clock: OffsetClock) -> None:
        self.clock = clock
        self.disk_full = False
        self._max_pages: int | None = None  # the limit before the disk was "filled"
        self.injected: dict[str, int] = {"disk_full": 0, "wall_offset": 0}

    def as_json(self) -> dict[str, Any]:
        return {"disk_full": self.disk_full, "wall_offset_s": self.clock.offset_s,
                "wall_synced": self.clock.synced, "injected": dict(self.injected)}

    async def set(self, request: DaemonFaultRequest, store: Store) -> dict[str, Any]:
        if request.disk_full is not None and request.disk_full != self.disk_full:
            await store.run(self._fill if request.disk_full else self._free)
            self.disk_full = request.disk_full
            self.injected["disk_full"] += int(request.disk_full)
        if request.wall_offset_s is not None:
            if request.wall_offset_s != self.clock.offset_s:
                self.injected["wall_offset"] += 1
            self.clock.offset_s = request.wall_offset_s
            if request.wall_offset_s == 0 and request.wall_synced is None:
                self.clock.synced = None  # the clock is right again
        if request.wall_synced is not None:
            self.clock.synced = request.wall_synced
        return self.as_json()

    def _fill(self, db: Database) -> None:
        conn = db.conn
        self._max_pages = int(conn.execute("PRAGMA max_page_count").fetchone()[0])
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        conn.execute(f"PRAGMA max_page_count={pages}")

    def _free(self, db: Database) -> None:
        conn = db.conn
        conn.execute(f"PRAGMA max_page_count={self._max_pages or 1073741823}")
