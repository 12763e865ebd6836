"""A full disk against real SQLite files (issue 9, item 12).

SQLite really runs out of space here: ``PRAGMA max_page_count`` set low on the gateway's own
connection (the database file may not grow: ``SQLITE_FULL`` in the middle of a write), and,
where this process may mount one (root in a container), a small tmpfs filled by a ballast
file so that the ``COMMIT`` itself, appending to the WAL, fails with ``ENOSPC``. Every failed
write must be rolled back (the connection never left inside a transaction), raised as a
``StoreError`` (``DiskFullError`` for a full disk), counted, shown by the store, and the next
write after space is back must succeed without a restart, nothing committed before lost and
nothing of a failed write kept.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gateway.core.allocation import ZoneSpec
from gateway.core.errors import DiskFullError, StoreError
from gateway.store import Database, events, spaces
from gateway.store.store import Store

T = TypeVar("T")
TS = "2026-11-25T14:00:00.000+00:00"
BIG = "x" * 20_000  # an event body that needs several new pages


def add_events(conn: sqlite3.Connection, n: int, body: str = "") -> list[int]:
    return [events.append(conn, gate_id="g", type="test", ts=TS, data={"i": i, "body": body})
            ["seq"] for i in range(n)]


def seqs(conn: sqlite3.Connection) -> list[int]:
    return [int(r[0]) for r in conn.execute("SELECT seq FROM events ORDER BY seq")]


def outbox(conn: sqlite3.Connection) -> list[int]:
    return [int(r[0]) for r in conn.execute("SELECT seq FROM outbox ORDER BY seq")]


def write(db: Database, fn: Callable[[sqlite3.Connection], T]) -> T:
    with db.transaction() as conn:
        return fn(conn)


def too_much(conn: sqlite3.Connection) -> None:
    add_events(conn, 1)  # fits in the pages there are ...
    add_events(conn, 10, BIG)  # ... these do not


def fill_the_disk(db: Database) -> None:
    """The database file may not grow beyond the pages it has now."""
    pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
    assert db.conn.execute(f"PRAGMA max_page_count={pages}").fetchone()[0] == pages


def free_the_disk(db: Database) -> None:
    db.conn.execute("PRAGMA max_page_count=1073741823")


# -- the database file may not grow (max_page_count) ---------------------------------------
def test_a_full_database_raises_disk_full_keeps_nothing_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite3"
    db = Database(path)
    with db.transaction() as conn:
        spaces.sync_zones(conn, (ZoneSpec("A", 3),))
        before = add_events(conn, 5)
    commits = db.commits
    fill_the_disk(db)

    for attempt in (1, 2, 3):  # every write while full fails the same way, none is stuck
        with pytest.raises(DiskFullError, match="disk is full") as info:
            write(db, too_much)
        assert isinstance(info.value, StoreError)
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert "rolled back" in str(info.value) and "gate.data_dir" in str(info.value)
        assert not db.conn.in_transaction
        assert db.disk_full
        assert db.write_failures == attempt
        assert db.last_write_error == str(info.value)
    assert db.commits == commits
    assert seqs(db.conn) == before and outbox(db.conn) == before  # no partial rows

    free_the_disk(db)  # space is back: the same connection, no restart
    with db.transaction() as conn:
        after = add_events(conn, 10, BIG)
    assert not db.disk_full and db.last_write_error is None
    assert db.write_failures == 3  # a count of failures, not a state
    assert db.commits == commits + 1
    db.close()

    db = Database(path)  # and it was all durable
    assert seqs(db.conn) == outbox(db.conn) == before + after
    assert after[0] == before[-1] + 1  # the failed writes took no seq (AUTOINCREMENT)
    assert spaces.occupancy(db.conn)["total"] == 3
    db.close()


def test_errors_that_are_not_storage_failures_pass_unchanged(tmp_path: Path) -> None:
    db = Database(tmp_path / "g.sqlite3")
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as conn:
        conn.execute("INSERT INTO outbox(seq) VALUES (424242)")  # no such event: a bug
    def own_error(conn: sqlite3.Connection) -> None:
        add_events(conn, 1)
        raise KeyError("the caller's own error")

    with pytest.raises(KeyError):
        write(db, own_error)
    assert not db.conn.in_transaction
    assert seqs(db.conn) == []
    assert db.write_failures == 0 and not db.disk_full
    db.close()


def test_a_commit_that_fails_and_stays_open_is_rolled_back(tmp_path: Path) -> None:
    """SQLite rolls a transaction back by itself after most SQLITE_FULL and SQLITE_IOERR
    errors, but not after every failed COMMIT: a deferred constraint keeps it open. The
    connection must not be left inside it (every later BEGIN would fail)."""
    db = Database(tmp_path / "g.sqlite3")
    with db.transaction() as conn:
        kept = add_events(conn, 2)
    def fails_at_commit(conn: sqlite3.Connection) -> None:
        add_events(conn, 1)
        conn.execute("PRAGMA defer_foreign_keys=ON")
        conn.execute("INSERT INTO outbox(seq) VALUES (424242)")  # checked at COMMIT

    with pytest.raises(StoreError, match="COMMIT") as info:
        write(db, fails_at_commit)
    assert not isinstance(info.value, DiskFullError)
    assert not db.conn.in_transaction
    assert db.write_failures == 1 and not db.disk_full
    with db.transaction() as conn:  # the next write is not refused
        kept += add_events(conn, 1)
    assert seqs(db.conn) == outbox(db.conn) == kept
    db.close()


class RefusesRollback(sqlite3.Connection):
    """A connection whose ROLLBACK fails (as it may on an I/O error): the one case no real
    fault here produces, so the refusal is injected at the API; the transaction is real."""

    refuse = True

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "ROLLBACK" and self.refuse:
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return super().execute(sql, *args)


def test_a_transaction_that_cannot_be_rolled_back_is_closed_with_its_connection(
        tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite3"
    db = Database(path)
    kept = write(db, lambda c: add_events(c, 2))
    db.conn.close()
    db.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                              factory=RefusesRollback)
    db.conn.execute("PRAGMA foreign_keys=ON")
    fill_the_disk(db)
    with pytest.raises(DiskFullError):  # SQLite rolled this one back: no ROLLBACK needed
        write(db, too_much)
    assert isinstance(db.conn, RefusesRollback)

    def fails_at_commit(conn: sqlite3.Connection) -> None:
        add_events(conn, 1)
        conn.execute("PRAGMA defer_foreign_keys=ON")
        conn.execute("INSERT INTO outbox(seq) VALUES (424242)")

    with pytest.raises(StoreError, match="COMMIT"):
        write(db, fails_at_commit)  # open after COMMIT, and ROLLBACK refused
    assert not isinstance(db.conn, RefusesRollback)  # a new connection
    assert not db.conn.in_transaction
    other = sqlite3.connect(path, isolation_level=None, timeout=0)  # no write lock held
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()
    kept += write(db, lambda c: add_events(c, 1))
    assert seqs(db.conn) == outbox(db.conn) == kept
    assert db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.write_failures == 2
    db.close()


async def test_the_store_reports_disk_full_and_resumes(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "g.sqlite3", (ZoneSpec("A", 2),))
    woken: list[int] = []
    store.on_commit.append(lambda: woken.append(1))
    first = await store.write(lambda c: add_events(c, 3))
    assert not store.disk_full and store.write_failures == 0
    await store.run(fill_the_disk)
    with pytest.raises(DiskFullError):
        await store.write(lambda c: add_events(c, 10, BIG))
    assert store.disk_full and store.write_failures == 1
    assert store.last_write_error and "disk is full" in store.last_write_error
    assert len(woken) == 1  # a failed write wakes no one
    assert await store.read(seqs) == first
    await store.run(free_the_disk)
    later = await store.write(lambda c: add_events(c, 10, BIG))
    assert not store.disk_full and store.last_write_error is None
    assert await store.read(seqs) == await store.read(outbox) == first + later
    await store.close()


# -- the filesystem is full: the COMMIT itself fails (a small tmpfs) ----------------------
@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    # mounting needs root (CAP_SYS_ADMIN): `make soak` runs this test, `make test` does not
    mnt = tmp_path / "fs"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs",
                           str(mnt)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here (run as root): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> None:
    """What a full SD card looks like: something else (logs) took every free block."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while _write_some(fd):
            pass
    finally:
        os.close(fd)


def _write_some(fd: int) -> bool:
    try:
        os.write(fd, b"\1" * 512)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        return False
    return True


@pytest.mark.privileged
async def test_a_commit_on_a_full_filesystem_fails_rolls_back_and_resumes(
        small_fs: Path) -> None:
    path = small_fs / "gateway.sqlite3"
    store = await Store.open(path, (ZoneSpec("A", 2),))
    first = await store.write(lambda c: add_events(c, 3))
    ballast = small_fs / "syslog"
    fill(ballast)

    failures: list[DiskFullError] = []
    for _ in range(3):
        with pytest.raises(DiskFullError) as info:
            await store.write(lambda c: add_events(c, 2))  # small: the WAL append fails
        failures.append(info.value)
        assert not await store.run(lambda db: db.conn.in_transaction)
    assert all("COMMIT" in str(e) for e in failures), failures  # the COMMIT itself failed
    assert store.disk_full and store.write_failures == 3
    assert await store.read(seqs) == first  # no partial rows
    threads = threading.active_count()
    with pytest.raises(DiskFullError):  # opening it again while full: nothing left open
        await Store.open(path, (ZoneSpec("A", 2), ZoneSpec("B", 40)))
    assert threading.active_count() == threads

    ballast.unlink()  # space is back
    later = await store.write(lambda c: add_events(c, 2))
    assert not store.disk_full and store.write_failures == 3
    await store.close()

    store = await Store.open(path)  # nothing committed before is lost
    got: Any = await store.read(seqs)
    assert got == await store.read(outbox) == first + later
    await store.close()
