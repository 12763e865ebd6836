"""Opening the database: identity and version checks, WAL, migrations, transactions.

One ``Database`` per process, used from one thread (see ``executor.py``). Transactions are
``BEGIN IMMEDIATE`` so concurrent writers queue on ``busy_timeout`` instead of failing or,
worse, both reading "free" and both allocating. Each commit is counted: on a Pi's SD card a
commit (an fsync) is the cost that matters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.core.errors import ForeignDatabaseError, SchemaTooNewError, StoreError
from gateway.store.schema import APPLICATION_ID, LATEST_VERSION, MIGRATIONS


class Database:
    def __init__(
        self, path: str | Path, *, synchronous: str = "full", busy_timeout_ms: int = 5000
    ) -> None:
        self.path = str(path)
        self.commits = 0
        self._in_txn = False
        self.conn = _open_checked(self.path, busy_timeout_ms)
        try:
            # "off" exists for benchmarks only; settings allow full and normal.
            level = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}[synchronous]
            self.conn.execute(f"PRAGMA synchronous={level}")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except BaseException:
            self.conn.close()
            raise

    # -- transactions --------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK`` on any exception)."""
        if self._in_txn:
            raise StoreError("nested transaction")
        self.conn.execute("BEGIN IMMEDIATE")
        self._in_txn = True
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
            self.commits += 1
        finally:
            self._in_txn = False

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
            probe = sqlite3.connect(f"file:{p.resolve()}?mode=ro", uri=True)
            try:
                app_id = probe.execute("PRAGMA application_id").fetchone()[0]
                version = probe.execute("PRAGMA user_version").fetchone()[0]
                tables = probe.execute(
                    "SELECT count(*) FROM sqlite_master WHERE type='table'"
                ).fetchone()[0]
                check = probe.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                probe.close()
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
