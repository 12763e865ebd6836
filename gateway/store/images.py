"""The camera images of each decision (the plate crop, the whole frame), kept on disk under
the data directory, bounded by size and by age, so an SD card never fills with them.

Layout: ``<dir>/<YYYYMMDD>/<saga_id>-<kind>.jpg`` (the UTC day of the capture), ``kind`` one
of ``crop`` and ``frame``. Each file is written to ``<dir>/.incoming.tmp``, synced and then
renamed into place, so a power cut leaves either the whole JPEG or none (a leftover temp
file is removed at the next start). Only names this store wrote (or found in that layout at
start) are ever served: ``find`` looks them up in its index, never in the file system.

Bounds, enforced after every write and on the writer's hourly round: beyond ``max_bytes``
the oldest (in the order written) go first; files older than ``max_age_s`` go, but only by
a synchronised wall clock (a Pi before NTP says nothing about how old a file is), as the
event history is pruned. A failing disk (full, read-only, gone) is counted and shown, never
raised: the lanes go on without their images.

``ImageStore`` is synchronous and runs on the ``ImageWriter``'s one thread; the web handlers
read its in-memory index only (a lock between the two), so no request waits on the disk
except to read the JPEG it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gateway.clock import Clock, iso
from gateway.os_threads import name_this_thread

if TYPE_CHECKING:
    from gateway.settings import Settings

log = logging.getLogger(__name__)

Kind = Literal["crop", "frame"]
KINDS: tuple[Kind, ...] = ("crop", "frame")
Keep = Literal["crops", "frames", "both"]
Public = Literal["crops", "all", "none"]
SAGA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
NAME = re.compile(r"(crop|frame)\.jpg")  # an image's name in its URL
_FILE = re.compile(r"(?P<saga>[A-Za-z0-9][A-Za-z0-9_-]{0,63})-(?P<kind>crop|frame)\.jpg")
_DAY = re.compile(r"\d{8}")
INCOMING = ".incoming.tmp"


@dataclass(frozen=True)
class Stored:
    saga_id: str
    kind: Kind
    path: Path
    bytes: int
    mtime_ns: int  # the wall time of the capture (set on the file)

    @property
    def name(self) -> str:
        return f"{self.kind}.jpg"

    @property
    def etag(self) -> str:
        return f"{self.bytes:x}-{self.mtime_ns:x}"


@dataclass(frozen=True)
class ImageBounds:
    max_bytes: int
    max_age_s: float
    keep: Keep = "both"
    public: Public = "crops"


class ImageStore:
    def __init__(self, root: Path, bounds: ImageBounds) -> None:
        self.root = root
        self.bounds = bounds
        self._lock = threading.Lock()
        self._index: dict[tuple[str, str], Stored] = {}
        self._bytes = 0
        self.written = 0
        self.pruned = 0
        self.too_big = 0  # one image larger than the whole quota: not kept
        self.write_failures = 0
        self.last_error = ""
        self.disk_full = False

    # -- what the bounds and the setting say ---------------------------------------------
    def keeps(self, kind: str) -> bool:
        return self.bounds.keep == "both" or self.bounds.keep == f"{kind}s"

    def public(self, kind: str) -> bool:
        """May a viewer without the admin token fetch an image of this kind?"""
        return self.bounds.public == "all" or (kind == "crop" and self.bounds.public == "crops")

    # -- the writer thread's side --------------------------------------------------------
    def scan(self) -> None:
        """Index what an earlier run left on disk; remove a write a power cut interrupted."""
        found: list[Stored] = []
        try:
            (self.root / INCOMING).unlink(missing_ok=True)
            days = [d for d in self.root.iterdir() if _DAY.fullmatch(d.name) and d.is_dir()]
            for day in days:
                for f in day.iterdir():
                    m = _FILE.fullmatch(f.name)
                    if m:
                        st = f.stat()
                        kind: Kind = "crop" if m["kind"] == "crop" else "frame"
                        found.append(Stored(m["saga"], kind, f, st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            pass  # nothing written yet
        except OSError as exc:
            self._failed(exc)
        for entry in sorted(found, key=_age_order):
            self._add(entry)

    def save(self, saga_id: str, kind: Kind, jpeg: bytes, now: float) -> Stored | None:
        """Write one image atomically at wall time ``now``; None if not kept or failed."""
        if not SAGA_ID.fullmatch(saga_id) or kind not in KINDS:
            raise ValueError(f"not an image name: {saga_id!r} {kind!r}")
        if not self.keeps(kind):
            return None
        if len(jpeg) > self.bounds.max_bytes:
            self.too_big += 1
            return None
        day = self.root / time.strftime("%Y%m%d", time.gmtime(now))
        path, tmp = day / f"{saga_id}-{kind}.jpg", self.root / INCOMING
        try:
            day.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(jpeg)
                f.flush()
                os.fsync(f.fileno())
            os.utime(tmp, (now, now))
            os.replace(tmp, path)
            st = path.stat()
        except OSError as exc:
            self._failed(exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return None
        entry = Stored(saga_id, kind, path, st.st_size, st.st_mtime_ns)
        self._add(entry)
        self.written += 1
        self.disk_full = False
        self.last_error = ""
        return entry

    def prune(self, now: float | None) -> int:
        """Delete the oldest files beyond ``max_bytes``, and (with ``now``, the wall time of
        a synchronised clock) those older than ``max_age_s``. Returns how many went."""
        cutoff = None if now is None else int((now - self.bounds.max_age_s) * 1e9)
        victims: list[Stored] = []
        with self._lock:  # the index is in the order written: the oldest first
            total = self._bytes
            for entry in self._index.values():
                if total <= self.bounds.max_bytes and (cutoff is None
                                                       or entry.mtime_ns >= cutoff):
                    break
                victims.append(entry)
                total -= entry.bytes
            for entry in victims:
                del self._index[(entry.saga_id, entry.kind)]
            self._bytes = total
        for entry in victims:
            self._delete(entry.path)
        self.pruned += len(victims)
        return len(victims)

    def _add(self, entry: Stored) -> None:
        """At the end of the index (of the order written), replacing any image it updates."""
        with self._lock:
            old = self._index.pop((entry.saga_id, entry.kind), None)
            self._index[(entry.saga_id, entry.kind)] = entry
            self._bytes += entry.bytes - (old.bytes if old else 0)
        if old is not None and old.path != entry.path:
            self._delete(old.path)  # the same image twice (on another day): one is enough

    def _delete(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            self._failed(exc)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only once the day's directory is empty

    def _failed(self, exc: OSError) -> None:
        self.write_failures += 1
        self.disk_full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.write_failures == 1 or self.write_failures % 100 == 0:
            log.error("images: %s (%d failure(s) so far); the lanes go on without images",
                      self.last_error, self.write_failures)

    # -- the web's side (the index only) -------------------------------------------------
    def find(self, saga_id: str, name: str) -> Stored | None:
        """The image of that saga by its name in the URL, if this store holds it."""
        if not SAGA_ID.fullmatch(saga_id) or not NAME.fullmatch(name):
            return None
        with self._lock:
            return self._index.get((saga_id, name.removesuffix(".jpg")))

    def images(self, saga_id: str) -> list[Stored]:
        with self._lock:
            return [e for kind in KINDS if (e := self._index.get((saga_id, kind)))]

    def usage(self) -> dict[str, Any]:
        with self._lock:
            files, total = len(self._index), self._bytes
            oldest = next((e.mtime_ns for e in self._index.values()), None)
        return {"dir": str(self.root), "bytes": total, "files": files,
                "oldest": iso(oldest / 1e9) if oldest is not None else None,
                "max_bytes": self.bounds.max_bytes,
                "max_age_days": round(self.bounds.max_age_s / 86400, 3),
                "keep": self.bounds.keep, "public": self.bounds.public,
                "written": self.written, "pruned": self.pruned, "too_big": self.too_big,
                "write_failures": self.write_failures, "disk_full": self.disk_full,
                "last_error": self.last_error or None}


def _age_order(entry: Stored) -> tuple[int, str]:
    return entry.mtime_ns, entry.path.name


class ImageWriter:
    """One thread for all lanes: ``submit`` never blocks (a lane's barrier must not wait on
    a disk), and at most ``max_pending`` vehicles' images wait; beyond, they are dropped
    and counted. The bounds are enforced after each write and every ``prune_every_s``."""

    def __init__(self, store: ImageStore, clock: Clock, *, max_pending: int = 16,
                 prune_every_s: float = 3600.0) -> None:
        self.store = store
        self.clock = clock
        self.prune_every_s = prune_every_s
        self.dropped = 0
        self._queue: queue.Queue[tuple[str, Mapping[Kind, bytes], float] | None] = \
            queue.Queue(max_pending)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="image writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, saga_id: str, images: Mapping[Kind, bytes], now: float) -> bool:
        """Queue a vehicle's images (captured at wall time ``now``); False if dropped."""
        if self._closed or not images:
            return False
        try:
            self._queue.put_nowait((saga_id, images, now))
        except queue.Full:
            self.dropped += 1
            return False
        return True

    async def close(self, within_s: float = 5.0) -> None:
        """Let the queued writes finish (within ``within_s``: a hung disk is left behind)."""
        self._closed = True
        if not self._thread.is_alive():
            return
        await asyncio.to_thread(self._stop, within_s)

    def _stop(self, within_s: float) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=within_s)
        self._thread.join(within_s)
        if self._thread.is_alive():
            log.warning("images: the writer is still busy after %.1f s (a hung disk?); "
                        "left behind", within_s)

    def _age_now(self) -> float | None:
        return self.clock.wall() if self.clock.wall_synced() else None

    def _run(self) -> None:
        name_this_thread()
        self._guarded(self.store.scan)
        self._guarded(self._prune)
        while True:
            try:
                job = self._queue.get(timeout=self.prune_every_s)
            except queue.Empty:
                self._guarded(self._prune)
                continue
            if job is None:
                return
            saga_id, images, now = job
            for kind, jpeg in images.items():
                self._guarded(partial(self.store.save, saga_id, kind, jpeg, now))
            self._guarded(self._prune)

    def _prune(self) -> None:
        self.store.prune(self._age_now())

    def _guarded(self, work: Callable[[], object]) -> None:
        try:
            work()
        except Exception as exc:  # the thread must go on: the next vehicle's images
            log.exception("images: %s", exc)
            self.store.write_failures += 1
            self.store.last_error = f"{type(exc).__name__}: {exc}"

    def usage(self) -> dict[str, Any]:
        return {**self.store.usage(), "dropped": self.dropped,
                "pending": self._queue.qsize()}

    def problem(self) -> str:
        """For the health report: the last write failed (empty when the last one worked)."""
        s = self.store
        if not s.last_error:
            return ""
        return (f"images: {'disk full, ' if s.disk_full else ''}writes failing "
                f"({s.write_failures} so far): {s.last_error}")


def open_images(settings: Settings, clock: Clock) -> ImageWriter | None:
    """The image writer of ``[images]``, started; None when it is off."""
    s = settings.images
    if not s.enabled:
        return None
    writer = ImageWriter(ImageStore(settings.images_dir, ImageBounds(
        int(s.max_mb * 1_000_000), s.max_age_days * 86400.0, s.keep, s.public)), clock)
    writer.start()
    return writer
