"""The real clock. Everything else takes a ``Clock`` so tests can use a fake one.

Durations use the monotonic clock (a Pi without a battery clock may start in 1970 and jump
when NTP syncs); records and events carry wall time and whether it was synchronised.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def wall(self) -> float: ...
    def wall_synced(self) -> bool: ...
    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    _SYNC_MARKER = "/run/systemd/timesync/synchronized"

    def __init__(self) -> None:
        self._synced = False

    # the C functions themselves: read several times per service call, and a Python method
    # around them costs more than the reading (bench/strategies.py)
    monotonic = staticmethod(time.monotonic)
    wall = staticmethod(time.time)

    def wall_synced(self) -> bool:
        # systemd-timesyncd touches this file once the clock is synchronised; without it
        # trust a clock that is at least past this product's release year. Once synchronised
        # it stays so (asked for every event: no file system call each time).
        if not self._synced:
            self._synced = os.path.exists(self._SYNC_MARKER) or time.time() > 1_767_225_600
        return self._synced

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# the text up to the seconds of the last whole second formatted (records and events are
# stamped many times a second, and the datetime's own isoformat costs more than the rest)
_iso_head: tuple[int, str] = (0, "1970-01-01T00:00:00")


def iso(wall: float) -> str:
    """RFC 3339 with offset and milliseconds: ``datetime.fromtimestamp(wall, UTC)
    .isoformat(timespec="milliseconds")``, its microseconds rounded as it rounds them (half
    to even) before the milliseconds are cut."""
    global _iso_head
    frac, whole = math.modf(wall)
    us = round(frac * 1e6)
    second = int(whole)
    if us >= 1_000_000:
        second, us = second + 1, us - 1_000_000
    elif us < 0:
        second, us = second - 1, us + 1_000_000
    head = _iso_head
    if head[0] != second:
        head = _iso_head = (second, datetime.fromtimestamp(second, UTC).isoformat()[:19])
    return f"{head[1]}.{us // 1000:03d}+00:00"
