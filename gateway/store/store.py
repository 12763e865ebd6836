"""The store as the rest of the daemon sees it: one database, one thread.

Database calls block (an fsync, a lock held by another process), so they run on a single
dedicated thread and the event loop awaits them; a locked call made inline once stalled
the loop for half a second.

A write that fails (a full disk, an I/O error) raises ``StoreError`` (``DiskFullError``),
leaves nothing of itself and no transaction open; ``disk_full``, ``write_failures`` and
``last_write_error`` say so to the rest of the daemon, and the next write that commits
clears them: the daemon keeps running and resumes writing without a restart.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway.clock import Clock, iso
from gateway.core.allocation import ZoneSpec
from gateway.store import events, spaces
from gateway.store.db import Database

T = TypeVar("T")


class Store:
    def __init__(self, db: Database, thread: ThreadPoolExecutor) -> None:
        self.db = db
        self._thread = thread
        # Called on the event loop after each committed write (wakes SSE streams).
        self.on_commit: list[Callable[[], None]] = []

    @classmethod
    async def open(
        cls, path: str | Path, zones: Sequence[ZoneSpec] = (), *, synchronous: str = "full",
        busy_timeout_ms: int = 5000,
    ) -> Store:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        loop = asyncio.get_running_loop()
        try:
            db = await loop.run_in_executor(
                thread, lambda: Database(path, synchronous=synchronous,
                                         busy_timeout_ms=busy_timeout_ms))
        except BaseException:
            thread.shutdown(wait=False)
            raise
        store = cls(db, thread)
        if zones:
            try:
                await store.write(lambda conn: spaces.sync_zones(conn, zones))
            except BaseException:  # a full disk at start-up: close what was opened
                await store.close()
                raise
        return store

    async def run(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn(db)`` on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, self.db)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction on the database thread."""
        def txn(db: Database) -> T:
            with db.transaction() as conn:
                return fn(conn)
        result = await self.run(txn)
        for hook in self.on_commit:
            hook()
        return result

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.run(lambda db: fn(db.conn))

    @property
    def commits(self) -> int:
        return self.db.commits

    # Plain attributes the database thread sets; read from the loop for health and status.
    @property
    def disk_full(self) -> bool:
        """A write failed because the disk (or the database's limit) is full, and none has
        committed since."""
        return self.db.disk_full

    @property
    def write_failures(self) -> int:
        """Write transactions that failed on the storage since start-up (a counter)."""
        return self.db.write_failures

    @property
    def last_write_error(self) -> str | None:
        """Why the last write failed, until a write commits again."""
        return self.db.last_write_error

    async def close(self) -> None:
        await self.run(lambda db: db.close())
        self._thread.shutdown(wait=True)

    # -- conveniences for status and tests ------------------------------------------------
    async def occupancy(self) -> dict[str, int]:
        return await self.read(spaces.occupancy)

    async def record_event(self, clock: Clock, gate_id: str, type_: str, data: dict[str, Any],
                           lane_id: str | None = None) -> dict[str, Any]:
        """Write one event on its own (changes made in a saga ride its transaction)."""
        ts, synced = iso(clock.wall()), clock.wall_synced()
        return await self.write(lambda conn: events.append(
            conn, gate_id=gate_id, type=type_, ts=ts, data=data, lane_id=lane_id,
            wall_synced=synced))

    async def events_after(self, after_seq: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        return await self.read(lambda c: events.list_after(c, after_seq, limit))
