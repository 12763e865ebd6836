"""The store as the rest of the daemon sees it: one database, one thread.

Database calls block (an fsync, a lock held by another process), so they run on a single
dedicated thread and the event loop awaits them; a locked call made inline once stalled
the loop for half a second. One hop there and back per call: the job goes on a queue, its
answer comes back with ``call_soon_threadsafe``.

Group commit: writes waiting on the queue when the thread takes one (sagas in flight at
the same time) are committed together, each in its own savepoint, in one transaction and
one fsync (``Database.write_group``); nothing waits to make a group, so a write alone
commits as soon as it is taken. Each caller still gets its answer only once its write is
committed; a write that raises is rolled back alone. A read, or any other call, is never
part of a group: it runs after the writes queued before it are committed, so it never
sees a write that is not yet durable.

A write that fails (a full disk, an I/O error) raises ``StoreError`` (``DiskFullError``),
leaves nothing of itself and no transaction open; ``disk_full``, ``write_failures`` and
``last_write_error`` say so to the rest of the daemon, and the next write that commits
clears them: the daemon keeps running and resumes writing without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from gateway.clock import Clock, iso
from gateway.core.allocation import ZoneSpec
from gateway.os_threads import name_this_thread
from gateway.store import events, spaces
from gateway.store.db import Database

T = TypeVar("T")
# at most this many writes in one group (a bound on how long one transaction holds the lock)
GROUP_MAX = 64


class _Job:
    __slots__ = ("fn", "future", "loop", "write")

    def __init__(self, fn: Callable[[Any], Any], write: bool, loop: asyncio.AbstractEventLoop,
                 future: asyncio.Future[Any]) -> None:
        self.fn, self.write, self.loop, self.future = fn, write, loop, future


class _DatabaseThread:
    """The one thread that runs the database calls, in the order they were made."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # a daemon thread: a store left open does not hold the interpreter at exit (a
        # transaction cut off there is rolled back by SQLite, as after a crash)
        self._thread = threading.Thread(target=self._work, name="sqlite", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Any], Any], *, write: bool) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._jobs.put(_Job(fn, write, loop, future))
        return future

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _work(self) -> None:
        name_this_thread()
        backlog: deque[_Job | None] = deque()
        while True:
            job = backlog.popleft() if backlog else self._jobs.get()
            if job is None:
                return
            if not job.write:
                self._run_one(job)
                continue
            group = [job]
            while len(group) < GROUP_MAX and not backlog:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is not None and nxt.write:
                    group.append(nxt)
                else:
                    backlog.append(nxt)  # after the group is committed
            self._run_group(group)

    def _run_one(self, job: _Job) -> None:
        if job.future.cancelled():
            return  # its caller stopped waiting before it ran
        try:
            result = job.fn(self.db)
        except BaseException as exc:
            _answer(job, False, exc)
        else:
            _answer(job, True, result)

    def _run_group(self, group: list[_Job]) -> None:
        group = [j for j in group if not j.future.cancelled()]
        if not group:
            return
        try:
            outcomes = self.db.write_group([j.fn for j in group])
        except BaseException as exc:
            outcomes = [(False, exc)] * len(group)
        for job, (ok, value) in zip(group, outcomes, strict=True):
            _answer(job, ok, value)


def _answer(job: _Job, ok: bool, value: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
        job.loop.call_soon_threadsafe(_settle, job.future, ok, value)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._thread = _DatabaseThread(db)
        # Called on the event loop after each committed write (wakes SSE streams).
        self.on_commit: list[Callable[[], None]] = []

    @classmethod
    async def open(
        cls, path: str | Path, zones: Sequence[ZoneSpec] = (), *, synchronous: str = "full",
        busy_timeout_ms: int = 5000,
    ) -> Store:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # opened on a thread of its own (a quick_check and migrations take a while); used
        # from then on by the store's thread only
        db = await asyncio.to_thread(lambda: Database(path, synchronous=synchronous,
                                                      busy_timeout_ms=busy_timeout_ms))
        store = cls(db)
        if zones:
            try:
                await store.write(lambda conn: spaces.sync_zones(conn, zones))
            except BaseException:  # a full disk at start-up: close what was opened
                await store.close()
                raise
        return store

    async def run(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn(db)`` on the database thread (after the writes queued before it are
        committed)."""
        result: T = await self._thread.submit(fn, write=False)
        return result

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in a ``BEGIN IMMEDIATE`` transaction on the database thread
        (with the writes queued beside it: see the module's doc); returns once it is
        committed."""
        result: T = await self._thread.submit(fn, write=True)
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
        try:
            await self.run(lambda db: db.close())
        finally:
            await asyncio.to_thread(self._thread.stop)

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
