"""Group commit against real SQLite files: writes queued together on the store's thread
commit in one transaction, each in its own savepoint. Each caller hears of its write only
once it is committed; a write that raises is rolled back alone; a read queued between
writes sees exactly the writes queued before it, committed; a full disk fails the whole
group, keeps nothing, and every write of it gets a ``StoreError`` (and is written again
once there is space)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.core.errors import StoreError
from gateway.store import Database
from gateway.store.store import Store


def put(name: str, value: int = 1) -> Any:
    def write(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO counters(name, value) VALUES (?, ?)", (name, value))
        return name
    return write


def committed(path: Path) -> dict[str, int]:
    """What another connection sees: only what is committed."""
    conn = sqlite3.connect(path)
    try:
        return {r[0]: r[1] for r in conn.execute(
            "SELECT name, value FROM counters WHERE name LIKE 'w%'")}
    finally:
        conn.close()


async def hold_the_thread(store: Store) -> tuple[threading.Event, asyncio.Future[Any]]:
    """Keep the store's thread busy until the event is set, so that what is queued next
    is waiting on the queue together."""
    release, started = threading.Event(), threading.Event()

    def wait(_db: Database) -> None:
        started.set()
        release.wait(10)

    blocker = asyncio.ensure_future(store.run(wait))
    await asyncio.to_thread(started.wait, 10)
    return release, blocker


async def test_writes_queued_together_commit_once_each_after_its_commit(tmp_path):
    path = tmp_path / "g.sqlite3"
    store = await Store.open(path)
    release, blocker = await hold_the_thread(store)
    before = store.commits
    writes = [asyncio.ensure_future(store.write(put(f"w{i}"))) for i in range(16)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in writes)  # nothing is answered before its commit
    release.set()
    await blocker
    assert await asyncio.gather(*writes) == [f"w{i}" for i in range(16)]
    assert store.commits - before == 1  # one transaction, one fsync, for the sixteen
    assert committed(path) == {f"w{i}": 1 for i in range(16)}
    await store.close()


async def test_a_write_that_raises_is_rolled_back_alone(tmp_path):
    path = tmp_path / "g.sqlite3"
    store = await Store.open(path)
    release, blocker = await hold_the_thread(store)

    def half_then_fails(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO counters(name, value) VALUES ('w-half', 1)")
        raise ValueError("refused")

    duplicate = put("w0", 2)  # the primary key is taken by the first write: IntegrityError
    jobs = [asyncio.ensure_future(store.write(fn))
            for fn in (put("w0"), half_then_fails, duplicate, put("w1"))]
    release.set()
    await blocker
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert results[0] == "w0" and results[3] == "w1"
    assert isinstance(results[1], ValueError) and str(results[1]) == "refused"
    assert isinstance(results[2], sqlite3.IntegrityError)
    assert committed(path) == {"w0": 1, "w1": 1}  # nothing of the two that failed
    await store.close()


async def test_a_read_between_writes_sees_those_before_it_committed(tmp_path):
    path = tmp_path / "g.sqlite3"
    store = await Store.open(path)
    release, blocker = await hold_the_thread(store)

    def look(db: Database) -> tuple[bool, dict[str, int]]:
        return db.conn.in_transaction, committed(path)

    first = [asyncio.ensure_future(store.write(put(f"w{i}"))) for i in range(3)]
    seen = asyncio.ensure_future(store.run(look))
    after = [asyncio.ensure_future(store.write(put(f"w{i}"))) for i in range(3, 5)]
    release.set()
    await blocker
    await asyncio.gather(*first, *after)
    in_transaction, what = await seen
    assert not in_transaction
    assert what == {"w0": 1, "w1": 1, "w2": 1}  # durable already, and not the later ones
    await store.close()


async def test_a_full_disk_fails_the_whole_group_and_keeps_nothing(tmp_path):
    path = tmp_path / "g.sqlite3"
    store = await Store.open(path)

    def fill(db: Database) -> None:
        pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
        db.conn.execute(f"PRAGMA max_page_count={pages}")

    def big(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO counters(name, value) VALUES ('w-big', zeroblob(200000))")

    await store.run(fill)
    release, blocker = await hold_the_thread(store)
    jobs = [asyncio.ensure_future(store.write(fn)) for fn in (put("w0"), big, put("w1"))]
    release.set()
    await blocker
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert all(isinstance(r, StoreError) for r in results), results
    assert store.disk_full
    assert committed(path) == {}
    await store.run(lambda db: db.conn.execute("PRAGMA max_page_count=1073741823"))
    assert await store.write(put("w0")) == "w0"  # written again once there is space
    assert committed(path) == {"w0": 1}
    await store.close()


async def test_a_write_whose_caller_stopped_waiting_before_it_ran_is_not_run(tmp_path):
    path = tmp_path / "g.sqlite3"
    store = await Store.open(path)
    release, blocker = await hold_the_thread(store)
    cancelled = asyncio.ensure_future(store.write(put("w-cancelled")))
    kept = asyncio.ensure_future(store.write(put("w0")))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await blocker
    assert await kept == "w0"
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert committed(path) == {"w0": 1}
    await store.close()
