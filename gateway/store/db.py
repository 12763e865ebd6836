"""Opening the database: identity and version checks, WAL, migrations, transactions.

One ``Database`` per process, used from one thread (see ``executor.py``). Transactions are
``BEGIN IMMEDIATE`` so concurrent writers queue on ``busy_timeout`` instead of failing or,
worse, both reading "free" and both allocating. Each commit is counted: on a Pi's SD card a
commit (an fsync) is the cost that matters.

A write that fails anywhere (``BEGIN``, a statement, the ``COMMIT`` itself) is rolled back
explicitly: the connection is never left inside a transaction, whether SQLite already rolled
it back (it does after most ``SQLITE_FULL``/``SQLITE_IOERR``) or kept it open (a failed
``COMMIT`` may). A storage failure is raised as ``StoreError`` (``DiskFullError`` for
``SQLITE_FULL``), counted in ``write_failures`` and shown by ``disk_full`` and
``last_write_error`` until the next write commits: nothing needs a restart once there is
space again.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.core.errors import (
    DiskFullError,
    ForeignDatabaseError,
    SchemaTooNewError,
    StoreError,
)
from gateway.store.schema import APPLICATION_ID, LATEST_VERSION, MIGRATIONS

log = logging.getLogger(__name__)

# Primary result codes that mean the storage failed, not the SQL: raised as StoreError even
# from a statement inside the transaction. (An IntegrityError or a syntax error there is the
# caller's bug and passes unchanged; from BEGIN or COMMIT every sqlite3.Error is a StoreError.)
_STORAGE_CODES = frozenset({
    sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_CORRUPT,
    sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_PROTOCOL,
})


class Database:
    def __init__(
        self, path: str | Path, *, synchronous: str = "full", busy_timeout_ms: int = 5000
    ) -> None:
        self.path = str(path)
        self.commits = 0
        # Failed write transactions (storage failures only), ever; ``disk_full`` and
        # ``last_write_error`` hold until the next write commits.
        self.write_failures = 0
        self.disk_full = False
        self.last_write_error: str | None = None
        self._in_txn = False
        self._reopen_pending = False
        self._busy_timeout_ms = busy_timeout_ms
        # "off" exists for benchmarks only; settings allow full and normal.
        self._synchronous = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}[synchronous]
        self.conn = _open_checked(self.path, busy_timeout_ms)
        try:
            self._configure(self.conn)
            self._migrate()
        except BaseException:
            self.conn.close()
            raise

    def _configure(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")

    # -- transactions --------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; on any exception, anywhere, ``ROLLBACK``.

        Storage failures are raised as ``StoreError`` (``DiskFullError`` when full); every
        other exception of the caller's passes unchanged, after the rollback.
        """
        if self._in_txn:
            raise StoreError("nested transaction")
        self._in_txn = True
        stage = "BEGIN"
        try:
            try:
                if self._reopen_pending:
                    self._reopen()
                self.conn.execute("BEGIN IMMEDIATE")
                stage = "a statement"
                yield self.conn
                stage = "COMMIT"
                self.conn.execute("COMMIT")
            except BaseException as exc:
                self._roll_back()
                if isinstance(exc, sqlite3.Error) and (
                        stage != "a statement" or _code(exc) in _STORAGE_CODES):
                    raise self._write_failed(exc, stage) from exc
                raise
            self.commits += 1
            if self.last_write_error is not None:
                log.warning("%s: writes succeed again (after %d failed)", self.path,
                            self.write_failures)
            self.disk_full = False
            self.last_write_error = None
        finally:
            self._in_txn = False

    def write_group(self, writes: Sequence[Callable[[sqlite3.Connection], Any]],
                    ) -> list[tuple[bool, Any]]:
        """Several writes in one transaction (one commit, one fsync: a group commit), each
        in a savepoint of its own, in order: ``(True, result)`` or ``(False, exception)``
        for each. A write that raises is rolled back alone, to its savepoint, and gets its
        own exception; the others commit. A storage failure, or a failure that ends the
        transaction, keeps nothing of any: the write that failed gets its exception, every
        other one a ``StoreError`` (rolled back, to be written again). One write alone is
        exactly ``transaction()``."""
        if len(writes) == 1:
            try:
                with self.transaction() as conn:
                    return [(True, writes[0](conn))]
            except Exception as exc:
                return [(False, exc)]
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self.transaction() as conn:
                for write in writes:
                    conn.execute("SAVEPOINT gateway_write")
                    try:
                        result = write(conn)
                    except Exception as exc:
                        if (isinstance(exc, sqlite3.Error) and _code(exc) in _STORAGE_CODES) \
                                or not conn.in_transaction:
                            raise  # the whole transaction is lost
                        conn.execute("ROLLBACK TO gateway_write")
                        conn.execute("RELEASE gateway_write")
                        outcomes.append((False, exc))
                    else:
                        conn.execute("RELEASE gateway_write")
                        outcomes.append((True, result))
        except Exception as exc:
            shared = exc if isinstance(exc, StoreError) else StoreError(
                f"{self.path}: rolled back with the writes it was committed with ({exc!r}); "
                "nothing of it kept.")
            failed = len(outcomes)  # the write that was running when the group failed
            return [(False, exc if i == failed or isinstance(exc, StoreError) else shared)
                    for i in range(len(writes))]
        return outcomes

    def _roll_back(self) -> None:
        """Leave no transaction open, whatever state the failure left the connection in."""
        try:
            if not self.conn.in_transaction:
                return  # never begun, or SQLite rolled it back itself (most FULL/IOERR do)
            self.conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.error("%s: ROLLBACK failed (%s); reopening the connection", self.path, exc)
        try:
            stuck = self.conn.in_transaction
        except sqlite3.Error:
            stuck = True
        if stuck:
            self._reopen()

    def _reopen(self) -> None:
        """Last resort: closing a connection discards its transaction (and its write lock).
        If the new one cannot be opened either, the next write tries again."""
        try:
            self.conn.close()
        except sqlite3.Error as exc:
            log.error("%s: closing the connection failed: %s", self.path, exc)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            self._configure(conn)
        except sqlite3.Error as exc:
            log.error("%s: cannot reopen the database (%s); trying again at the next write",
                      self.path, exc)
            self._reopen_pending = True
            return
        self.conn = conn
        self._reopen_pending = False

    def _write_failed(self, exc: sqlite3.Error, stage: str) -> StoreError:
        self.write_failures += 1
        code = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        if _code(exc) == sqlite3.SQLITE_FULL:
            if not self.disk_full:
                log.error("%s: database or disk is full; writes fail until there is space",
                          self.path)
            self.disk_full = True
            error: StoreError = DiskFullError(
                f"{self.path}: write failed at {stage}: database or disk is full ({code}); "
                "it was rolled back, nothing of it kept. Free space on the filesystem of "
                "gate.data_dir; writes resume by themselves once there is space.")
        else:
            error = StoreError(
                f"{self.path}: write failed at {stage}: {exc} ({code}); it was rolled back, "
                "nothing of it kept.")
        self.last_write_error = str(error)
        return error

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self.conn.close()

    # -- schema --------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.version
        for number in range(current + 1, LATEST_VERSION + 1):
            with self.transaction() as conn:
                if number == 1:
                    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                for statement in _statements(MIGRATIONS[number - 1]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={number}")


def _code(exc: sqlite3.Error) -> int:
    """The primary result code (``SQLITE_IOERR_WRITE`` is ``SQLITE_IOERR``), or -1."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else -1


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements (``executescript`` would commit on its own)."""
    buf = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf
            buf = ""
    if buf.strip():
        yield buf


def _probe(p: Path) -> tuple[int, int, int, str]:
    """application_id, user_version, the number of tables and quick_check, read-only."""
    probe = sqlite3.connect(f"file:{p.resolve()}?mode=ro", uri=True)
    try:
        app_id = probe.execute("PRAGMA application_id").fetchone()[0]
        version = probe.execute("PRAGMA user_version").fetchone()[0]
        tables = probe.execute("SELECT count(*) FROM sqlite_master WHERE type='table'"
                               ).fetchone()[0]
        check = probe.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        probe.close()
    return int(app_id), int(version), int(tables), str(check)


def _roll_back_hot_journal(p: Path) -> None:
    log.warning("%s: a write interrupted before its commit (a hot rollback journal) is "
                "rolled back", p)
    conn = sqlite3.connect(str(p), isolation_level=None)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the first read
    finally:
        conn.close()


def _open_checked(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """Open ``path`` and refuse, without writing anything, a file that is not ours."""
    p = Path(path)
    if p.exists() and p.is_dir():
        raise StoreError(f"{path}: is a directory, expected the gateway database file")
    existed = p.exists() and p.stat().st_size > 0
    try:
        # Read-only probe first: a foreign or corrupt file must not be touched (not even
        # turned into WAL mode).
        if existed:
            try:
                app_id, version, tables, check = _probe(p)
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorname", "") != "SQLITE_READONLY_ROLLBACK":
                    raise
                # A write cut off before its commit left a hot rollback journal (a crash
                # while the file was created, before it was switched to WAL): a read-only
                # connection may not roll it back. Any read-write open does exactly that,
                # restoring the last committed state, and nothing else; then look again.
                _roll_back_hot_journal(p)
                app_id, version, tables, check = _probe(p)
            if app_id != APPLICATION_ID and (app_id != 0 or tables):
                raise ForeignDatabaseError(
                    f"{path}: not a parking gateway database (application_id {app_id:#x}, "
                    f"{tables} tables); it was left untouched. Point gate.data_dir elsewhere "
                    "or move the file away."
                )
            if check != "ok":
                raise ForeignDatabaseError(
                    f"{path}: the database is damaged ({check}); it was left untouched. "
                    "Restore it from a backup or move it away to start empty."
                )
            if version > LATEST_VERSION:
                raise SchemaTooNewError(
                    f"{path}: schema version {version} was written by a newer gateway "
                    f"(this one knows up to {LATEST_VERSION}); it was left untouched. "
                    "Install the newer gateway version again."
                )
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.DatabaseError as exc:
        raise ForeignDatabaseError(
            f"{path}: not a usable SQLite database ({exc}); it was left untouched. "
            "Move it away to start with an empty database."
        ) from None
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.close()
        raise StoreError(f"{path}: could not switch to WAL mode (got {mode})")
    return conn
