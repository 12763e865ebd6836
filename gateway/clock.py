"""The real clock. Everything else takes a ``Clock`` so tests can use a fake one.

Durations use the monotonic clock (a Pi without a battery clock may start in 1970 and jump
when NTP syncs); records and events carry wall time and whether it was synchronised.
"""

from __future__ import annotations

import asyncio
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


def iso(wall: float) -> str:
    """RFC 3339 with offset and milliseconds."""
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")
