"""Event retention against real SQLite files (issue 9, item 9): only a contiguous, published
prefix by ``seq`` is pruned by age, and by age only where the wall time was synchronised;
the one exception is the ``events_max_rows`` overflow, which drops the oldest rows, unsent
ones included, and counts those in ``outbox_dropped``."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gateway.app import Gateway
from gateway.clock import iso
from gateway.core.allocation import ZoneSpec
from gateway.settings import StoreSettings
from gateway.store import Database, events, spaces
from gateway.store.store import Store

NOW = datetime(2026, 11, 25, 14, 0, tzinfo=UTC).timestamp()
DAY = 86400.0
CUTOFF_30_DAYS = iso(NOW - 30 * DAY)  # what housekeeping passes with events_max_age_days=30
BOOT_1970 = 120.0  # a Pi without a battery clock, before NTP


def open_db(path: Path) -> Database:
    db = Database(path)
    with db.transaction() as conn:
        spaces.sync_zones(conn, (ZoneSpec("A", 5),))
    return db


def add(conn: sqlite3.Connection, wall: float, synced: bool, n: int = 1) -> list[int]:
    return [events.append(conn, gate_id="g", type="x", ts=iso(wall + i), wall_synced=synced)
            ["seq"] for i in range(n)]


def publish(conn: sqlite3.Connection, seqs: list[int]) -> None:
    events.mark_published(conn, seqs)


def kept(db: Database) -> list[int]:
    return [e["seq"] for e in events.list_after(db.conn, 0, 10_000)]


def unsent(db: Database) -> list[int]:
    return [int(r[0]) for r in db.conn.execute("SELECT seq FROM outbox ORDER BY seq")]


def counter(db: Database, name: str) -> int:
    return events.read_counter(db.conn, name)


# -- (a) a clock that started in 1970 ----------------------------------------------------------
def test_1970_events_then_2026_events_lose_nothing_unsent_nor_newer(tmp_path: Path) -> None:
    db = open_db(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        early = add(conn, BOOT_1970, synced=False, n=6)  # offline before NTP
        publish(conn, early[:3])  # the broker came up for a moment
        later = add(conn, NOW - 3600, synced=True, n=6)
        publish(conn, later[:2])
    before_unsent = unsent(db)
    assert before_unsent == early[3:] + later[2:]
    with db.transaction() as conn:
        deleted = events.prune(conn, max_rows=1000, oldest_ts_kept=CUTOFF_30_DAYS)
    assert deleted == 0  # 1970 rows are not "old": their wall time says nothing
    assert kept(db) == early + later
    assert unsent(db) == before_unsent
    assert counter(db, "outbox_dropped") == 0


def test_a_reboot_before_ntp_does_not_prune_what_came_before(tmp_path: Path) -> None:
    """Synced events, a reboot in 1970, synced again: the old published synced prefix goes,
    the 1970 rows stop the age cut (and nothing after them goes, unsent or not)."""
    db = open_db(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        old = add(conn, NOW - 60 * DAY, synced=True, n=3)
        publish(conn, old)
        mid = add(conn, NOW - 10 * DAY, synced=True, n=3)  # young, one unsent
        publish(conn, mid[:2])
        reboot = add(conn, BOOT_1970, synced=False, n=3)  # newest by wall? no: oldest ts
        after = add(conn, NOW, synced=True, n=2)
    with db.transaction() as conn:
        deleted = events.prune(conn, max_rows=1000, oldest_ts_kept=CUTOFF_30_DAYS)
    assert deleted == 3
    assert kept(db) == mid + reboot + after
    assert unsent(db) == mid[2:] + reboot + after
    assert counter(db, "outbox_dropped") == 0
    assert counter(db, "events_pruned") == 3


# -- (b) published, synchronised and old: pruned, as a contiguous prefix ---------------------
def test_published_old_synced_events_are_pruned(tmp_path: Path) -> None:
    db = open_db(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        old = add(conn, NOW - 40 * DAY, synced=True, n=5)
        young = add(conn, NOW - 1 * DAY, synced=True, n=3)
        publish(conn, old + young)
    with db.transaction() as conn:
        assert events.prune(conn, max_rows=1000, oldest_ts_kept=CUTOFF_30_DAYS) == 5
    assert kept(db) == young
    assert counter(db, "events_pruned") == 5
    assert counter(db, "outbox_dropped") == 0
    with db.transaction() as conn:  # again: nothing more to do
        assert events.prune(conn, max_rows=1000, oldest_ts_kept=CUTOFF_30_DAYS) == 0


def test_the_age_cut_stops_at_the_first_unsent_young_or_unsynchronised_row(
        tmp_path: Path) -> None:
    db = open_db(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        a = add(conn, NOW - 50 * DAY, synced=True, n=2)
        b = add(conn, NOW - 49 * DAY, synced=True)  # unsent (a broker refused it)
        c = add(conn, NOW - 48 * DAY, synced=True, n=2)
        publish(conn, a + c)
    with db.transaction() as conn:
        assert events.prune(conn, max_rows=1000, oldest_ts_kept=CUTOFF_30_DAYS) == 2
    assert kept(db) == b + c  # c is old and published, but after an unsent row

    db2 = open_db(tmp_path / "h.sqlite3")
    with db2.transaction() as conn:
        a = add(conn, NOW - 50 * DAY, synced=True, n=2)
        y = add(conn, NOW - 1 * DAY, synced=True)  # young...
        o = add(conn, NOW - 45 * DAY, synced=True)  # ...then old again (clock stepped back)
        u = add(conn, NOW - 44 * DAY, synced=False)  # unsynchronised
        z = add(conn, NOW - 43 * DAY, synced=True)
        publish(conn, a + y + o + u + z)
    with db2.transaction() as conn:
        assert events.prune(conn, max_rows=1000, oldest_ts_kept=CUTOFF_30_DAYS) == 2
    assert kept(db2) == y + o + u + z
    with db2.transaction() as conn:  # the young row aged: the cut now stops at u
        assert events.prune(conn, max_rows=1000, oldest_ts_kept=iso(NOW + 1)) == 2
    assert kept(db2) == u + z
    assert counter(db2, "outbox_dropped") == 0


def test_no_age_pruning_without_a_cutoff(tmp_path: Path) -> None:
    db = open_db(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        publish(conn, add(conn, NOW - 400 * DAY, synced=True, n=3))
        assert events.prune(conn, max_rows=1000, oldest_ts_kept=None) == 0
    assert len(kept(db)) == 3


# -- (c) the overflow policy -------------------------------------------------------------------
def test_overflow_drops_the_oldest_even_unsent_and_counts_them(tmp_path: Path) -> None:
    db = open_db(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        seqs = add(conn, BOOT_1970, synced=False, n=3) + add(conn, NOW, synced=True, n=7)
        publish(conn, [seqs[0], seqs[2]])  # 1 and 3 acknowledged, 2 not
    with db.transaction() as conn:
        assert events.prune(conn, max_rows=4, oldest_ts_kept=CUTOFF_30_DAYS) == 6
    assert kept(db) == seqs[6:]
    # dropped 1..6, of which 2, 4, 5, 6 had not been acknowledged
    assert counter(db, "outbox_dropped") == 4
    assert counter(db, "events_pruned") == 6
    assert unsent(db) == seqs[6:]
    with db.transaction() as conn:  # at the limit, not beyond: nothing goes
        assert events.prune(conn, max_rows=4, oldest_ts_kept=CUTOFF_30_DAYS) == 0
    assert counter(db, "outbox_dropped") == 4


def test_overflow_then_the_age_cut_in_one_prune(tmp_path: Path) -> None:
    db = open_db(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        old = add(conn, NOW - 90 * DAY, synced=True, n=6)
        young = add(conn, NOW, synced=True, n=2)
        publish(conn, old[2:])  # the two oldest never went out
    with db.transaction() as conn:
        assert events.prune(conn, max_rows=6, oldest_ts_kept=CUTOFF_30_DAYS) == 6
    assert kept(db) == young
    assert counter(db, "outbox_dropped") == 2  # only the overflow drops unsent rows


def test_overflow_with_a_hole_in_seq_keeps_the_newest_max_rows(tmp_path: Path) -> None:
    db = open_db(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        seqs = add(conn, NOW, synced=True, n=10)
        conn.execute("DELETE FROM events WHERE seq IN (8, 9)")  # not something we do
    with db.transaction() as conn:
        assert events.prune(conn, max_rows=5, oldest_ts_kept=None) == 3
    assert kept(db) == [*seqs[3:7], seqs[9]]  # the newest five that are left
    assert counter(db, "outbox_dropped") == 3


# -- (d) seq is never reused -------------------------------------------------------------------
def test_seq_continues_after_pruning_everything_and_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite3"
    db = open_db(path)
    with db.transaction() as conn:
        seqs = add(conn, NOW - 60 * DAY, synced=True, n=5)
        publish(conn, seqs)
        assert events.prune(conn, max_rows=1000, oldest_ts_kept=CUTOFF_30_DAYS) == 5
        assert kept(db) == []
        assert add(conn, NOW, synced=True) == [6]
    with db.transaction() as conn:
        assert events.prune(conn, max_rows=1, oldest_ts_kept=None) == 0
        assert add(conn, NOW, synced=True) == [7]
        assert events.prune(conn, max_rows=1, oldest_ts_kept=None) == 1  # overflow: 6 goes
    db.close()
    db = open_db(path)
    with db.transaction() as conn:
        assert add(conn, NOW, synced=True, n=2) == [8, 9]
    assert kept(db) == [7, 8, 9]
    assert [e["seq"] for e in events.outbox_batch(db.conn, 0, 10)] == [7, 8, 9]


# -- housekeeping: no age cut while the wall clock itself is not synchronised ---------------
class _CountingStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.writes = 0

    async def write(self, fn: Any) -> Any:
        result = await self.store.write(fn)
        self.writes += 1
        return result


async def _housekeep_once(store: Store, wall: float, synced: bool) -> None:
    counting = _CountingStore(store)
    stub = SimpleNamespace(
        settings=SimpleNamespace(store=StoreSettings(
            events_max_rows=1000, events_max_age_days=30, plate_cache_max_rows=100)),
        clock=SimpleNamespace(wall=lambda: wall, wall_synced=lambda: synced),
        store=counting, runner=SimpleNamespace(cache_max_stale_s=3600.0))
    task = asyncio.create_task(Gateway._housekeeping(stub))
    writes = 5 if synced else 2  # events, plate cache, and with a synced clock three tables
    try:
        for _ in range(500):
            if counting.writes >= writes or task.done():
                break
            await asyncio.sleep(0.01)
        assert counting.writes >= writes and not task.done(), task  # a whole pass, alive
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_housekeeping_cuts_by_age_only_with_a_synchronised_clock(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "g.sqlite3", (ZoneSpec("A", 5),))
    try:
        def seed(conn: sqlite3.Connection) -> None:
            publish(conn, add(conn, NOW - 60 * DAY, synced=True, n=4))
        await store.write(seed)
        # a clock not synchronised (here: far ahead) makes every row look old: no age cut
        await _housekeep_once(store, NOW + 3650 * DAY, synced=False)
        assert len(await store.events_after(0, 100)) == 4
        await _housekeep_once(store, NOW, synced=True)
        assert await store.events_after(0, 100) == []
        assert await store.read(partial(events.read_counter, name="outbox_dropped")) == 0
    finally:
        await store.close()
