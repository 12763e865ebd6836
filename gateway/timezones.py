"""The gate's time zone: days (the daily summary, "today" on the page) are the gate's local
days when ``gate.timezone`` names one; every record stays stamped in UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@lru_cache(maxsize=8)
def zone(name: str) -> tzinfo:
    """The zone named ``name`` ("UTC" or an IANA name such as "Europe/Istanbul"); a name
    that is none raises ``ValueError`` saying what to write instead."""
    if name == "UTC":
        return UTC
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)  # a path, not a zone name (ZoneInfo would read it)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name[:60]!r} is not a time zone: write an IANA name such as "
                         '"Europe/Istanbul" or "America/New_York" (timedatectl '
                         'list-timezones lists them), or "UTC"') from None


def local_day(wall: float, tz: tzinfo) -> date:
    """The date at the gate at wall-clock instant ``wall``."""
    return datetime.fromtimestamp(wall, tz).date()


def day_start(day: date, tz: tzinfo) -> float:
    """The instant ``day`` begins at the gate (its local midnight; on a day a clock change
    moves, what ``zoneinfo`` says that midnight is)."""
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def day_span(day: date, tz: tzinfo) -> tuple[float, float]:
    """``day`` at the gate as the instants [start, end): 23, 24 or 25 hours long."""
    return day_start(day, tz), day_start(day + timedelta(days=1), tz)
