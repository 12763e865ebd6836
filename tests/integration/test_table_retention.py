"""Retention of the saga log, the vehicle sessions and the offline queue against a real
SQLite file with many rows (issue 9, item 10): only terminal rows older than their age go,
in bounded batches; a running saga, a vehicle inside, a live queue row (or one a live row
depends on) stay; the lookups use indexes; the saga counts are kept counters."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gateway.app import Gateway
from gateway.clock import iso
from gateway.core.allocation import ZoneSpec
from gateway.store import Database, offline_queue, retention, saga_log, spaces
from gateway.store.db import _statements
from gateway.store.schema import APPLICATION_ID, LATEST_VERSION, MIGRATIONS
from gateway.store.store import Store

NOW = datetime(2026, 11, 25, 14, 0, tzinfo=UTC).timestamp()
DAY = 86400.0
OLD = iso(NOW - 200 * DAY)
RECENT = iso(NOW - 1 * DAY)
CUT = iso(NOW - 90 * DAY)
TERMINAL = ("completed", "compensated", "failed")


def open_db(path: Path) -> Database:
    db = Database(path)
    with db.transaction() as conn:
        spaces.sync_zones(conn, (ZoneSpec("A", 5),))
    return db


def seed_sagas(conn: sqlite3.Connection, n: int, status: str, ts: str, prefix: str) -> None:
    conn.executemany(
        "INSERT INTO sagas(saga_id, kind, gate_id, status, context, created_at, updated_at) "
        "VALUES (?, 'entry', 'g', ?, '{}', ?, ?)",
        [(f"{prefix}{i}", status, ts, ts) for i in range(n)])
    conn.executemany(
        "INSERT INTO saga_steps(saga_id, step_index, phase, name, status) "
        "VALUES (?, ?, 'forward', 's', 'succeeded')",
        [(f"{prefix}{i}", k) for i in range(n) for k in range(2)])


def ids(conn: sqlite3.Connection, sql: str) -> set[Any]:
    return {r[0] for r in conn.execute(sql)}


def saga_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT status, count(*) FROM sagas GROUP BY status").fetchall())


def test_old_terminal_sagas_go_in_batches_live_and_recent_ones_stay(tmp_path: Path) -> None:
    db = open_db(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        for status in TERMINAL:
            seed_sagas(conn, 6000, status, OLD, f"old-{status}-")
        seed_sagas(conn, 1000, "completed", RECENT, "new-")
        seed_sagas(conn, 500, "running", OLD, "run-")
        seed_sagas(conn, 500, "compensating", OLD, "comp-")
        # an old completed entry saga whose vehicle is still inside, and one holding a space
        spaces.open_session(conn, "AB123CD", None, "old-completed-0", "e1", OLD)
        conn.execute("UPDATE spaces SET state='allocated', plate='X', saga_id='old-failed-0' "
                     "WHERE space_id=(SELECT min(space_id) FROM spaces)")
        # an old compensated saga with a record still waiting for the central service
        offline_queue.enqueue(conn, saga_id="old-compensated-0", operation="cancel_entry",
                              key="k-live", payload={}, reason="unreachable", now=OLD)
    assert sum(saga_counts(db.conn).values()) == 20_000
    batches = []
    while True:
        with db.transaction() as conn:
            n = retention.prune_sagas(conn, older_than=CUT, batch=1000)
        batches.append(n)
        if n == 0:
            break
    assert max(batches) <= 1000 and sum(batches) == 18_000 - 3
    left = ids(db.conn, "SELECT saga_id FROM sagas")
    assert {"old-completed-0", "old-failed-0", "old-compensated-0"} <= left
    assert {f"run-{i}" for i in range(500)} <= left and {f"comp-{i}" for i in range(500)} <= left
    assert {f"new-{i}" for i in range(1000)} <= left
    assert len(left) == 2003
    # steps go with their saga: none is left without one
    assert db.conn.execute("SELECT count(*) FROM saga_steps WHERE saga_id NOT IN "
                           "(SELECT saga_id FROM sagas)").fetchone()[0] == 0
    assert db.conn.execute("SELECT count(*) FROM saga_steps").fetchone()[0] == 2003 * 2


def test_exited_sessions_go_inside_and_exiting_ones_stay(tmp_path: Path) -> None:
    db = open_db(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        rows = []
        for i in range(20_000):
            status = ("exited", "inside", "exiting")[i % 10] if i % 10 < 3 else "exited"
            when = OLD if i % 2 == 0 else RECENT
            rows.append((f"P{i}", f"en-{i}", when, status,
                         when if status == "exited" else None))
        conn.executemany(
            "INSERT INTO vehicle_sessions(plate, entry_saga_id, entered_at, status, exited_at) "
            "VALUES (?,?,?,?,?)", rows)
    expected_kept = {r[0] for r in rows if r[3] != "exited" or r[4] == RECENT}
    total = 0
    while True:
        with db.transaction() as conn:
            n = retention.prune_sessions(conn, older_than=iso(NOW - 150 * DAY),
                                         batch=1000)
        assert n <= 1000
        total += n
        if n == 0:
            break
    assert ids(db.conn, "SELECT plate FROM vehicle_sessions") == expected_kept
    assert total == 20_000 - len(expected_kept)


def _q(conn: sqlite3.Connection, saga: str, key: str, state: str, when: str,
       depends_on: int | None = None, local_id: str | None = None) -> int:
    cur = conn.execute(
        "INSERT INTO offline_queue(saga_id, operation, idempotency_key, payload, reason, "
        "local_id, state, outcome, depends_on, created_at, updated_at) "
        "VALUES (?, 'create_entry_record', ?, '{}', 'unreachable', ?, ?, 'unknown', ?, ?, ?)",
        (saga, key, local_id, state, depends_on, when, when))
    return int(cur.lastrowid or 0)


def test_queue_keeps_live_rows_and_what_they_depend_on(tmp_path: Path) -> None:
    db = open_db(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        bulk = [(f"s{i}", f"bulk-{i}", ("sent", "dead", "dropped")[i % 3], OLD, OLD)
                for i in range(20_000)]
        conn.executemany(
            "INSERT INTO offline_queue(saga_id, operation, idempotency_key, payload, reason, "
            "state, created_at, updated_at) VALUES (?, 'x', ?, '{}', 'unreachable', ?, ?, ?)",
            bulk)
        keep: set[str] = set()
        # a sent create that a pending cancel depends on (another saga)
        peer = _q(conn, "sA", "peer", "sent", OLD, local_id="local-a")
        _q(conn, "sB", "dep-pending", "pending", OLD, depends_on=peer)
        # a dead row whose peer is being sent right now
        peer2 = _q(conn, "sC", "peer2", "dead", OLD)
        _q(conn, "sD", "dep-sending", "sending", OLD, depends_on=peer2)
        # an earlier sent row of a saga that has a pending row
        _q(conn, "sE", "earlier", "sent", OLD)
        _q(conn, "sE", "later", "pending", OLD)
        # a sent row of a saga still running
        conn.execute("INSERT INTO sagas(saga_id, kind, gate_id, status, context, created_at, "
                     "updated_at) VALUES ('sF', 'entry', 'g', 'running', '{}', ?, ?)", (OLD, OLD))
        _q(conn, "sF", "of-running", "sent", OLD)
        # a sent create whose local id a vehicle inside still carries
        _q(conn, "sG", "inside-entry", "sent", OLD, local_id="local-g")
        conn.execute("INSERT INTO vehicle_sessions(plate, entry_saga_id, entry_id, status) "
                     "VALUES ('G1', 'sG', 'local-g', 'inside')")
        _q(conn, "sH", "recent", "sent", RECENT)
        _q(conn, "sI", "old-pending", "pending", OLD)
        keep = {"peer", "dep-pending", "peer2", "dep-sending", "earlier", "later", "of-running",
                "inside-entry", "recent", "old-pending"}
    total = 0
    while True:
        with db.transaction() as conn:
            n = retention.prune_offline_queue(conn, older_than=iso(NOW - 30 * DAY),
                                              batch=1000)
        assert n <= 1000
        total += n
        if n == 0:
            break
    assert ids(db.conn, "SELECT idempotency_key FROM offline_queue") == keep
    assert total == 20_000
    # once its dependant is sent, the peer can go too
    with db.transaction() as conn:
        conn.execute("UPDATE offline_queue SET state='sent' WHERE idempotency_key='dep-pending'")
        retention.prune_offline_queue(conn, older_than=iso(NOW - 30 * DAY), batch=1000)
    assert "peer" not in ids(db.conn, "SELECT idempotency_key FROM offline_queue")


def _plan(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[str]:
    return [str(r[3]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


def _full_scans(plan: list[str]) -> list[str]:
    """Steps that read a whole table, or sort one: a SCAN that is not a walk of an index
    in its order, or a temporary b-tree for the ORDER BY."""
    return [step for step in plan
            if (step.startswith("SCAN") and "INDEX" not in step) or "TEMP B-TREE" in step]


def test_lookups_use_indexes(tmp_path: Path) -> None:
    db = open_db(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        seed_sagas(conn, 2000, "completed", OLD, "c-")
    for analysed in (False, True):  # the daemon never runs ANALYZE; a tool might
        if analysed:
            db.conn.execute("ANALYZE")
        c = db.conn
        lookups: dict[str, list[tuple[str, tuple[Any, ...]]]] = {
            "sagas": [
                ("SELECT * FROM sagas ORDER BY created_at DESC LIMIT ?", (100,)),
                ("SELECT * FROM sagas WHERE status=? ORDER BY created_at DESC LIMIT ?",
                 ("failed", 100)),
            ],
            "vehicle_sessions": [
                ("SELECT plate FROM vehicle_sessions WHERE status='inside' LIMIT 200", ()),
                ("SELECT * FROM vehicle_sessions WHERE plate=? AND status='inside' "
                 "ORDER BY session_id DESC LIMIT 1", ("X",)),
            ],
            "offline_queue": [
                ("SELECT * FROM offline_queue WHERE state='dead' ORDER BY id DESC LIMIT ?", (50,)),
            ],
        }
        for queries in lookups.values():
            for sql, params in queries:
                plan = _plan(c, sql, params)
                assert any("INDEX" in step for step in plan) and not _full_scans(plan), (sql, plan)
        # the sync's due rows: an index range over the pending rows only (sorting those few is
        # fine: they are live rows, not the table's history)
        plan = _plan(c, "SELECT q.* FROM offline_queue q WHERE q.state='pending' "
                     "AND q.next_attempt_at <= ? ORDER BY q.id LIMIT ?", (NOW, 20))
        assert plan[0].startswith("SEARCH q USING INDEX") and "state=?" in plan[0], plan
        # likewise the sagas left in flight, read at start-up
        plan = _plan(c, saga_log.UNFINISHED_SQL)
        assert not _full_scans(plan) and "SEARCH sagas USING INDEX" in " ".join(plan), plan
        # the retention queries themselves: a range of an index, never a scan
        floor = retention.UNSET_CLOCK_BEFORE
        own: list[tuple[str, tuple[Any, ...]]] = [
            *[(retention.sagas_sql(status), (CUT, floor, 10))
              for status in retention.TERMINAL_SAGAS],
            (retention.SESSIONS_SQL, (CUT, floor, 10)),
            (retention.QUEUE_SQL, ("sent", CUT, floor, 10))]
        for sql, params in own:
            plan = _plan(c, sql, params)
            assert not [s for s in plan if s.startswith("SCAN")], (sql, plan)
            assert "TEMP B-TREE" not in " ".join(plan), (sql, plan)
        # by the indexes of what retention may delete only (terminal sagas, exited sessions)
        for status in retention.TERMINAL_SAGAS:
            plan = _plan(c, retention.sagas_sql(status), (CUT, floor, 10))
            assert f"SEARCH s USING INDEX sagas_{status}_by_updated" in " ".join(plan), plan
        plan = _plan(c, retention.SESSIONS_SQL, (CUT, floor, 10))
        assert "USING INDEX sessions_exited_by_time" in " ".join(plan), plan


def test_saga_counts_are_kept_counters(tmp_path: Path) -> None:
    db = open_db(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        for i in range(300):
            saga_log.create(conn, saga_id=f"s{i}", kind="entry", gate_id="g", lane_id="l",
                            plate="P", context={}, now=OLD if i % 2 else RECENT)
            saga_log.create(conn, saga_id=f"s{i}", kind="entry", gate_id="g", lane_id="l",
                            plate="P", context={}, now=OLD)  # a replay: nothing new
        for i in range(250):
            saga_log.set_status(conn, f"s{i}", TERMINAL[i % 3], "", OLD if i % 2 else RECENT)
        for i in range(50):
            saga_log.set_status(conn, f"s{i}", TERMINAL[i % 3], "",
                                OLD if i % 2 else RECENT)  # unchanged
        saga_log.set_status(conn, "s299", "compensating", "", OLD)
        retention.prune_sagas(conn, older_than=CUT, batch=1000)
    assert saga_log.status_counts(db.conn) == {
        k: v for k, v in saga_counts(db.conn).items()}
    assert sum(saga_log.status_counts(db.conn).values()) == 300 - 125


def test_a_version_4_database_gets_its_counters_from_the_rows_it_has(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute("PRAGMA journal_mode=WAL")
    for number in range(1, 5):
        for statement in _statements(MIGRATIONS[number - 1]):
            conn.execute(statement)
    conn.execute("PRAGMA user_version=4")
    seed_sagas(conn, 3000, "completed", OLD, "c-")
    seed_sagas(conn, 7, "running", OLD, "r-")
    conn.close()
    db = Database(path)
    assert db.version == LATEST_VERSION
    assert saga_log.status_counts(db.conn) == {"completed": 3000, "running": 7}
    with db.transaction() as c:
        saga_log.set_status(c, "r-0", "failed", "", RECENT)
        retention.prune_sagas(c, older_than=CUT, batch=1000)
    assert saga_log.status_counts(db.conn) == saga_counts(db.conn) == {
        "completed": 2000, "running": 6, "failed": 1}


# -- housekeeping ---------------------------------------------------------------------------
async def test_housekeeping_prunes_every_table_only_with_a_synchronised_clock(
        tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "g.sqlite3", (ZoneSpec("A", 5),))
    try:
        def seed(conn: sqlite3.Connection) -> None:
            seed_sagas(conn, 2500, "completed", OLD, "old-")
            seed_sagas(conn, 10, "running", OLD, "run-")
            conn.execute("INSERT INTO vehicle_sessions(plate, status, exited_at) "
                         "VALUES ('A', 'exited', ?), ('B', 'inside', NULL)",
                         (iso(NOW - 500 * DAY),))
            # stamped by a clock that had not been set (a Pi that booted in 1970): kept
            seed_sagas(conn, 3, "completed", iso(3600.0), "unset-")
            conn.execute("INSERT INTO vehicle_sessions(plate, status, exited_at) "
                         "VALUES ('C', 'exited', ?)", (iso(7200.0),))
            _q(conn, "x", "sent-old", "sent", OLD)
        await store.write(seed)
        settings = SimpleNamespace(store=SimpleNamespace(
            events_max_rows=1000, events_max_age_days=30, plate_cache_max_rows=100,
            sagas_max_age_days=90, sessions_max_age_days=400, offline_queue_max_age_days=30,
            retention_batch_rows=1000))

        async def once(synced: bool) -> None:
            stub = SimpleNamespace(
                settings=settings, stopping=asyncio.Event(),
                clock=SimpleNamespace(wall=lambda: NOW, wall_synced=lambda: synced),
                store=store, runner=SimpleNamespace(cache_max_stale_s=3600.0))
            task = asyncio.create_task(Gateway._housekeeping(stub))
            try:
                for _ in range(500 if synced else 30):
                    n = await store.read(lambda c: c.execute(
                        "SELECT count(*) FROM sagas").fetchone()[0])
                    if n <= 13 or task.done():
                        break
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.05)
                assert not task.done()
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        await once(synced=False)
        assert await store.read(lambda c: c.execute(
            "SELECT count(*) FROM sagas").fetchone()[0]) == 2513
        await once(synced=True)
        assert await store.read(lambda c: ids(c, "SELECT saga_id FROM sagas")) == {
            *(f"run-{i}" for i in range(10)), *(f"unset-{i}" for i in range(3))}
        assert await store.read(lambda c: ids(c, "SELECT plate FROM vehicle_sessions")) == {
            "B", "C"}
        assert await store.read(lambda c: ids(
            c, "SELECT idempotency_key FROM offline_queue")) == set()
    finally:
        await store.close()
