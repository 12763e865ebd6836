"""The periodic metrics snapshot: counters, per-stage latency summaries, breaker states,
queue depths, and the board's CPU, memory, disk and temperature (where it reports one)."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")


def summary(values: Iterable[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    def q(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))], 3)
    return {"count": len(ordered), "p50": q(0.5), "p99": q(0.99), "max": round(ordered[-1], 3),
            "mean": round(statistics.fmean(ordered), 3)}


def board(data_dir: Path) -> dict[str, Any]:
    times = os.times()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out: dict[str, Any] = {"cpu_s": round(times.user + times.system, 3),
                           "max_rss_kib": usage.ru_maxrss,
                           "load_1m": round(os.getloadavg()[0], 2)}
    try:
        disk = shutil.disk_usage(data_dir)
        out["disk_free_bytes"] = disk.free
        out["disk_used_ratio"] = round(disk.used / disk.total, 4) if disk.total else 0.0
    except OSError:
        pass
    with contextlib.suppress(OSError, ValueError):  # no sensor: not a Pi, or a container
        out["temperature_c"] = int(THERMAL.read_text().strip()) / 1000
    return out
