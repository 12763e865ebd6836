"""Schema migration 10 (the events table rebuilt: a saga_id column, no UNIQUE index on
event_id, no AUTOINCREMENT; saga counts kept for terminal statuses only) against real SQLite
files: a database written at version 9, with events, outbox rows and a pruned prefix, keeps
every row, seq and outbox entry, and a seq is never taken again, even once every event is
pruned."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from gateway.store import Database, events, saga_log
from gateway.store.db import _statements
from gateway.store.schema import APPLICATION_ID, LATEST_VERSION, MIGRATIONS

TS = "2026-11-25T14:00:00.000+00:00"
OLD_TS = "2026-09-01T14:00:00.000+00:00"
CUT = "2026-10-26T14:00:00.000+00:00"  # 30 days before TS


def version_9(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")  # as the gateway's connections have it
    for number in range(1, 10):
        for statement in _statements(MIGRATIONS[number - 1]):
            conn.execute(statement)
    conn.execute("PRAGMA user_version=9")
    return conn


def old_event(conn: sqlite3.Connection, n: int, data: dict[str, object], *,
              ts: str = TS) -> int:
    """An event as version 9 wrote it (events.append of then)."""
    cur = conn.execute(
        "INSERT INTO events(event_id, gate_id, type, ts, wall_synced, lane_id, data) "
        "VALUES (?,?,?,?,?,?,?)", (f"id-{n}", "g", "x", ts, 1, "entry-1", json.dumps(data)))
    seq = int(cur.lastrowid or 0)
    conn.execute("INSERT INTO outbox(seq) VALUES (?)", (seq,))
    return seq


def rows(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return [tuple(r) for r in conn.execute(
        "SELECT seq, event_id, gate_id, type, ts, wall_synced, lane_id, data FROM events "
        "ORDER BY seq")]


def test_a_version_9_database_keeps_its_events_outbox_and_seqs(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = version_9(path)
    conn.execute("BEGIN")
    seqs = [old_event(conn, n, {"saga_id": f"s{n % 3}", "n": n} if n % 4 else {"n": n})
            for n in range(12)]
    old_event(conn, 99, {"saga_id": 7})  # not a text id: no saga of its own
    # a pruned prefix (and its outbox rows), some published, the newest row deleted too
    conn.execute("DELETE FROM outbox WHERE seq <= 3")
    conn.execute("DELETE FROM events WHERE seq <= 3")
    conn.execute("DELETE FROM outbox WHERE seq IN (5, 6)")
    conn.execute("DELETE FROM events WHERE seq = 13")  # the high-water is 13 all the same
    conn.execute("COMMIT")
    before = rows(conn)
    outbox = [r[0] for r in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
    assert [r[0] for r in before] == seqs[3:] == list(range(4, 13))
    assert outbox == [4, 7, 8, 9, 10, 11, 12]
    conn.close()

    db = Database(path)
    assert db.version == LATEST_VERSION
    c = db.conn
    assert rows(c) == before
    assert [r[0] for r in c.execute("SELECT seq FROM outbox ORDER BY seq")] == outbox
    # the saga id of every row, from its data; none where the data has no text id
    assert {r[0]: r[1] for r in c.execute("SELECT seq, saga_id FROM events")} == {
        n + 1: (f"s{n % 3}" if n % 4 else None) for n in range(3, 12)}
    assert {r[0]: r[1] for r in c.execute("SELECT seq, saga_key FROM events")} == {
        n + 1: (f"s{n % 3}" if n % 4 else None) for n in range(3, 12)}
    assert [e["seq"] for e in events.for_saga(c, "s1")] == [8, 11]
    assert events.recent_for_saga(c, "x", "s2")
    assert not events.recent_for_saga(c, "y", "s2")
    # no AUTOINCREMENT, no UNIQUE index on event_id; the outbox refers to the new table
    (events_sql,) = c.execute("SELECT sql FROM sqlite_schema WHERE name = 'events'").fetchone()
    assert "AUTOINCREMENT" not in events_sql and "UNIQUE" not in events_sql
    assert not c.execute("SELECT 1 FROM sqlite_sequence WHERE name = 'events'").fetchall()
    assert not [r for r in c.execute("PRAGMA index_list(events)") if r["unique"]]
    assert [tuple(r)[2:4] for r in c.execute("PRAGMA foreign_key_list(outbox)")] == [
        ("events", "seq")]
    assert not c.execute("PRAGMA foreign_key_check").fetchall()
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # seqs go on from the old sequence (13 was taken, and deleted), never reused
    with db.transaction() as conn:
        assert events.append(conn, gate_id="g", type="x", ts=TS)["seq"] == 14
        assert [e["seq"] for e in events.append_many(conn, [
            {"gate_id": "g", "type": "y", "ts": TS, "data": {"saga_id": "s9"},
             "wall_synced": True}] * 2)] == [15, 16]
    assert [e["seq"] for e in events.outbox_batch(c, 0, 100)] == [*outbox, 14, 15, 16]
    # the outbox still cascades from the events it queues
    with db.transaction() as conn:
        assert events.prune(conn, max_rows=2, oldest_ts_kept=None) == 10
    assert [e["seq"] for e in events.list_after(c, 0, 100)] == [15, 16]
    assert [r[0] for r in c.execute("SELECT seq FROM outbox ORDER BY seq")] == [15, 16]
    # every event pruned, then a restart: still no seq taken again
    with db.transaction() as conn:
        events.mark_published(conn, [15, 16])
        conn.execute("UPDATE events SET ts = ?", (OLD_TS,))
        assert events.prune(conn, max_rows=100, oldest_ts_kept=CUT) == 2
    assert events.list_after(c, 0, 100) == []
    db.close()
    db = Database(path)
    with db.transaction() as conn:
        assert events.append(conn, gate_id="g", type="x", ts=TS)["seq"] == 17
    db.close()


def test_an_outbox_row_without_its_event_does_not_stop_the_migration(tmp_path: Path) -> None:
    # an event deleted by hand in the sqlite3 shell (foreign keys off there by default)
    # left its outbox row; version 9 never sent it (its batch joins the events)
    path = tmp_path / "old.sqlite3"
    conn = version_9(path)
    for n in range(3):
        old_event(conn, n, {"n": n})
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("DELETE FROM events WHERE seq = 2")
    conn.close()
    db = Database(path)
    assert db.version == LATEST_VERSION
    assert [r[0] for r in db.conn.execute("SELECT seq FROM outbox ORDER BY seq")] == [1, 3]
    assert not db.conn.execute("PRAGMA foreign_key_check").fetchall()


def test_saga_counts_after_migration_10_count_the_sagas_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = version_9(path)
    for i, status in enumerate(["running", "running", "compensating", "completed",
                                "completed", "failed"]):
        conn.execute("INSERT INTO sagas(saga_id, kind, gate_id, status, context, created_at, "
                     "updated_at) VALUES (?, 'entry', 'g', ?, '{}', ?, ?)",
                     (f"s{i}", status, TS, TS))
    conn.close()
    db = Database(path)
    c = db.conn
    assert saga_log.status_counts(c) == {"running": 2, "compensating": 1, "completed": 2,
                                         "failed": 1}
    # only the terminal statuses are kept counters (a saga's start writes none)
    assert {r[0] for r in c.execute("SELECT name FROM counters WHERE name LIKE 'sagas.%'")
            } == {"sagas.status.completed", "sagas.status.failed"}
    with db.transaction() as conn:
        saga_log.create(conn, saga_id="n", kind="entry", gate_id="g", lane_id="l", plate="P",
                        context={}, now=TS)
        saga_log.set_status(conn, "s0", "completed", "", TS)
        saga_log.set_status(conn, "s2", "compensated", "", TS)
        saga_log.set_status(conn, "s3", "failed", "", TS)  # terminal to terminal
        conn.execute("DELETE FROM sagas WHERE saga_id IN ('s5', 's1')")
    assert saga_log.status_counts(c) == {"running": 1, "completed": 2, "compensated": 1,
                                         "failed": 1}
    assert saga_log.status_counts(c) == {r[0]: r[1] for r in c.execute(
        "SELECT status, count(*) FROM sagas GROUP BY status")}
    db.close()


def test_vehicle_sessions_after_migration_10_keep_their_rows_and_one_exit_per_saga(
        tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = version_9(path)
    conn.execute("INSERT INTO vehicle_sessions(session_id, plate, space_id, entry_saga_id, "
                 "entry_id, entered_at, status) VALUES (3, 'A', 'A-001', 'e1', 'r1', ?, "
                 "'inside'), (7, 'B', 'A-002', 'e2', 'r2', ?, 'inside')", (TS, TS))
    conn.execute("INSERT INTO vehicle_sessions(session_id, plate, exit_saga_id, exit_id, "
                 "exited_at, status, flags) VALUES (9, 'C', 'x1', 'q1', ?, 'exited', 'f')",
                 (TS,))
    before = [tuple(r) for r in conn.execute("SELECT * FROM vehicle_sessions ORDER BY 1")]
    conn.close()
    db = Database(path)
    c = db.conn
    assert [tuple(r) for r in c.execute("SELECT * FROM vehicle_sessions ORDER BY 1")] == before
    indexes = {r["name"]: (r["unique"], r["partial"])
               for r in c.execute("PRAGMA index_list(vehicle_sessions)")}
    assert indexes["sessions_by_exit_saga"] == (1, 1)  # a partial UNIQUE: no NULLs in it
    assert {"sessions_by_plate", "sessions_by_status", "sessions_by_entry_id",
            "sessions_exited_by_time"} <= set(indexes)
    with db.transaction() as conn:
        # an exit saga still has one session at most; any number have none yet
        assert conn.execute("INSERT OR IGNORE INTO vehicle_sessions(plate, exit_saga_id, "
                            "status) VALUES ('D', 'x1', 'exited')").rowcount == 0
        conn.execute("INSERT INTO vehicle_sessions(plate, entry_saga_id, status) "
                     "VALUES ('E', 'e3', 'inside'), ('F', 'e4', 'inside')")
        assert conn.execute("INSERT INTO vehicle_sessions(plate, entry_saga_id, status) "
                            "VALUES ('G', 'e1', 'inside') ON CONFLICT(entry_saga_id) "
                            "DO NOTHING").rowcount == 0
    assert c.execute("SELECT max(session_id) FROM vehicle_sessions").fetchone()[0] == 11
    db.close()


def test_sagas_whose_ids_end_alike_keep_their_own_events(tmp_path: Path) -> None:
    db = Database(tmp_path / "g.sqlite3")
    ids = ["one-0123456789ab", "two-0123456789ab", "0123456789ab", "9ab", "one-0123456789ab"]
    with db.transaction() as conn:
        events.append_many(conn, [{"gate_id": "g", "type": "x", "ts": TS,
                                   "data": {"saga_id": i}} for i in ids])
        events.append(conn, gate_id="g", type="y", ts=TS, data={"saga_id": "9ab"})
    assert {i: [e["seq"] for e in events.for_saga(db.conn, i)] for i in ids} == {
        "one-0123456789ab": [1, 5], "two-0123456789ab": [2], "0123456789ab": [3],
        "9ab": [4, 6]}
    assert events.recent_for_saga(db.conn, "y", "9ab")
    assert not events.recent_for_saga(db.conn, "y", "0123456789ab")
    assert events.for_saga(db.conn, "456789ab") == []
    db.close()


def test_many_events_at_once_take_consecutive_seqs_and_are_all_queued(tmp_path: Path) -> None:
    db = Database(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        first = events.append(conn, gate_id="g", type="x", ts=TS)
        many = events.append_many(conn, [{"gate_id": "g", "type": "y", "ts": TS,
                                          "data": {"i": i}} for i in range(450)])
    assert first["seq"] == 1
    assert [e["seq"] for e in many] == list(range(2, 452))
    assert [(e["seq"], e["data"]) for e in events.list_after(db.conn, 1, 1000)] == [
        (e["seq"], e["data"]) for e in many]
    assert [e["seq"] for e in events.outbox_batch(db.conn, 0, 1000)] == list(range(1, 452))
    assert len({e["event_id"] for e in [first, *many]}) == 451
    db.close()
