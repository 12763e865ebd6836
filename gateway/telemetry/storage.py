"""Storage on the gate's SD card in one place: every bound the gateway keeps on what it
writes (they are set in [store] and [images]), what each part uses now, and the disk's free
space, for the page, /metrics and /healthz. The logs are journald's (bounded by its own
SystemMaxUse=); the broker of a demo keeps its data under the data directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from gateway.settings import Settings

# below this much free space, or this share of the disk, the gate says so (/healthz)
LOW_FREE_BYTES = 200 * 1024 * 1024
LOW_FREE_RATIO = 0.05


def bounds(settings: Settings) -> dict[str, Any]:
    st, im = settings.store, settings.images
    return {
        "events_max_rows": st.events_max_rows,
        "events_max_age_days": st.events_max_age_days,
        "sagas_max_age_days": st.sagas_max_age_days,
        "sessions_max_age_days": st.sessions_max_age_days,
        "offline_queue_max_age_days": st.offline_queue_max_age_days,
        "images_max_bytes": int(im.max_mb * 1024 * 1024) if im.enabled else 0,
        "images_max_age_days": im.max_age_days if im.enabled else 0,
    }


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tree_size(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        total += sum(_size(Path(folder) / f) for f in files)
    return total


def usage(settings: Settings, images_bytes: int | None) -> dict[str, Any]:
    db = settings.database_path
    out: dict[str, Any] = {
        "database_bytes": _size(db),
        "wal_bytes": _size(db.with_name(db.name + "-wal")),
        "images_bytes": images_bytes or 0,
        "broker_bytes": _tree_size(settings.data_dir / "mosquitto")
        if settings.simulation.private_broker else 0,
    }
    try:
        disk = shutil.disk_usage(settings.data_dir)
        out["disk_free_bytes"], out["disk_total_bytes"] = disk.free, disk.total
    except OSError:
        out["disk_free_bytes"] = out["disk_total_bytes"] = None
    return out


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} kB"


def summary(u: dict[str, Any], b: dict[str, Any]) -> str:
    parts = [f"database {_mb(u['database_bytes'] + u['wal_bytes'])}"]
    if b["images_max_bytes"]:
        parts.append(f"images {_mb(u['images_bytes'])} of {_mb(b['images_max_bytes'])}")
    if u["disk_free_bytes"] is not None:
        parts.append(f"{_mb(u['disk_free_bytes'])} free")
    return ", ".join(parts)


def problem(u: dict[str, Any]) -> str:
    free, total = u["disk_free_bytes"], u["disk_total_bytes"]
    if free is None or not total:
        return ""
    if free < LOW_FREE_BYTES or free / total < LOW_FREE_RATIO:
        return (f"the data disk is nearly full ({_mb(free)} free of {_mb(total)}): lower "
                "[images] max_mb or [store] events_max_rows, or move old backups off it")
    return ""


def report(settings: Settings, images_bytes: int | None) -> dict[str, Any]:
    b, u = bounds(settings), usage(settings, images_bytes)
    return {"bounds": b, "usage": u, "summary": summary(u, b), "problem": problem(u) or None}
