"""The store against real SQLite files."""

import hashlib
import multiprocessing
import signal
import sqlite3
import subprocess
import sys

import pytest

from gateway.core.allocation import AllocationRequest, ZoneSpec
from gateway.core.errors import ForeignDatabaseError, NoSpaceAvailable, SchemaTooNewError
from gateway.store import Database, events, plate_cache, spaces
from gateway.store.schema import LATEST_VERSION

NOW = "2026-11-25T14:00:00.000+00:00"


def open_db(path, zones=(ZoneSpec("A", 5),)):
    db = Database(path)
    with db.transaction() as conn:
        spaces.sync_zones(conn, zones)
    return db


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_new_database_is_wal_versioned_and_seeded(tmp_path):
    db = open_db(tmp_path / "g.sqlite3")
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.version == LATEST_VERSION
    assert [s["space_id"] for s in spaces.list_spaces(db.conn)] == [
        "A-001", "A-002", "A-003", "A-004", "A-005"]
    db.close()
    db = open_db(tmp_path / "g.sqlite3")  # reopening migrates nothing and keeps the data
    assert spaces.occupancy(db.conn) == {"total": 5, "free": 5, "allocated": 0,
                                         "out_of_service": 0}


def test_foreign_database_is_refused_untouched(tmp_path):
    path = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(ForeignDatabaseError, match="not a parking gateway database"):
        Database(path)
    assert digest(path) == before
    assert not (tmp_path / "other.sqlite3-wal").exists()


# A write cut off before its commit on a file still in rollback-journal mode (the daemon
# killed while it creates its database, before the switch to WAL): the journal is hot.
_INTERRUPTED_WRITE = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size=1")  # pages spill to the file: the journal is needed
conn.execute("BEGIN")
conn.execute("CREATE TABLE half_made (x)")
for _ in range(2000):
    conn.execute("INSERT INTO half_made VALUES (randomblob(500))")
print("written", flush=True)
time.sleep(60)
"""


def test_a_write_cut_off_by_a_kill_is_rolled_back_and_the_database_opens(tmp_path):
    path = tmp_path / "g.sqlite3"
    writer = subprocess.Popen([sys.executable, "-c", _INTERRUPTED_WRITE, str(path)],
                              stdout=subprocess.PIPE)
    assert writer.stdout is not None and writer.stdout.readline() == b"written\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    assert (tmp_path / "g.sqlite3-journal").exists()
    # the read-only probe alone cannot roll it back (SQLITE_READONLY_ROLLBACK): the
    # gateway refused to start, telling the operator to move the database away
    db = open_db(path)
    assert db.version == LATEST_VERSION
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_made'"
                           ).fetchone()[0] == 0
    assert not (tmp_path / "g.sqlite3-journal").exists()
    db.close()


def test_garbage_file_is_refused_untouched(tmp_path):
    path = tmp_path / "g.sqlite3"
    path.write_bytes(b"this is not sqlite at all\n" * 100)
    before = digest(path)
    with pytest.raises(ForeignDatabaseError, match="left untouched"):
        Database(path)
    assert digest(path) == before


def test_newer_schema_is_refused_untouched(tmp_path):
    path = tmp_path / "g.sqlite3"
    open_db(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={LATEST_VERSION + 1}")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(SchemaTooNewError, match="newer gateway"):
        Database(path)
    assert digest(path) == before


def test_allocation_is_idempotent_per_saga_and_never_over_allocates(tmp_path):
    db = open_db(tmp_path / "g.sqlite3", (ZoneSpec("A", 2),))
    with db.transaction() as conn:
        a = spaces.allocate(conn, "s1", AllocationRequest("P1"), NOW)
        assert spaces.allocate(conn, "s1", AllocationRequest("P1"), NOW) == a
        b = spaces.allocate(conn, "s2", AllocationRequest("P2"), NOW)
    assert a != b
    with pytest.raises(NoSpaceAvailable), db.transaction() as conn:
        spaces.allocate(conn, "s3", AllocationRequest("P3"), NOW)
    with db.transaction() as conn:
        assert spaces.release_for_saga(conn, "s1", NOW) == a
        assert spaces.release_for_saga(conn, "s1", NOW) is None
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as conn:
        # the schema itself refuses a second space for one saga
        conn.execute("UPDATE spaces SET state='allocated', saga_id='s2' WHERE space_id=?", (a,))


def _allocate_many(path: str, worker: int, count: int, out) -> None:
    db = Database(path)
    got = []
    for i in range(count):
        try:
            with db.transaction() as conn:
                got.append(spaces.allocate(conn, f"w{worker}-{i}", AllocationRequest("P"), NOW))
        except NoSpaceAvailable:
            pass
    out.put(got)


def test_concurrent_processes_never_double_allocate(tmp_path):
    path = tmp_path / "g.sqlite3"
    open_db(path, (ZoneSpec("A", 60),)).close()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_allocate_many, args=(str(path), w, 20, out)) for w in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    allocated = [s for r in results for s in r]
    assert len(allocated) == 60
    assert len(set(allocated)) == 60


def test_event_seq_is_contiguous_and_survives_restart(tmp_path):
    path = tmp_path / "g.sqlite3"
    db = open_db(path)
    with db.transaction() as conn:
        for _ in range(3):
            events.append(conn, gate_id="g", type="vehicle_detected", ts=NOW)
    db.close()
    db = open_db(path)
    with db.transaction() as conn:
        e = events.append(conn, gate_id="g", type="plate_read", ts=NOW, data={"plate": "X"})
    assert e["seq"] == 4
    assert [x["seq"] for x in events.list_after(db.conn)] == [1, 2, 3, 4]
    assert events.outbox_pending(db.conn) == 4


def test_retention_drops_oldest_and_counts_unsent(tmp_path):
    db = open_db(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        for _ in range(10):
            events.append(conn, gate_id="g", type="x", ts=NOW)
        conn.execute("DELETE FROM outbox WHERE seq <= 2")  # two were acknowledged
        deleted = events.prune(conn, max_rows=4, oldest_ts_kept="2000-01-01")
    assert deleted == 6
    assert [x["seq"] for x in events.list_after(db.conn)] == [7, 8, 9, 10]
    assert events.read_counter(db.conn, "outbox_dropped") == 4


def test_plate_cache_fresh_stale_and_future(tmp_path):
    db = open_db(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        plate_cache.put(conn, "34ABC123", {"authorized": True}, "central", 1000.0, 60)
    got = plate_cache.get(db.conn, "34ABC123", 1030.0)
    assert got.fresh and got.age_s == 30
    assert plate_cache.get(db.conn, "34ABC123", 1100.0) is None
    stale = plate_cache.get(db.conn, "34ABC123", 1100.0, max_stale_s=3600)
    assert stale is not None and not stale.fresh
    assert plate_cache.get(db.conn, "34ABC123", 900.0) is None  # stored "in the future"
