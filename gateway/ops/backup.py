"""``parking-gateway backup DEST``: a consistent copy of the live database, safe while the
daemon runs and writes.

SQLite's online backup API (``Connection.backup``) copies the pages under one read
transaction. The whole copy is done in one step (``pages=-1``): in WAL mode a reader does
not block the daemon's writers (nor they it), so one step is one consistent snapshot and the
gate goes on deciding vehicles meanwhile. A copy made in several steps restarts from the
beginning each time another process writes between two steps, which at a busy gate could
never end.

The copy is written to a temporary file beside ``DEST``, switched to a single-file
(rollback journal) database, checked (``PRAGMA integrity_check``), synced, and only then
renamed to ``DEST``: ``DEST`` is either the old file or the whole new copy, never half of
one. An existing ``DEST`` is kept unless ``force``. A ``DEST`` that is a directory gets a
file named by the time (``gateway-20261201T230000Z.sqlite3``)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.core.errors import GatewayError
from gateway.store.schema import APPLICATION_ID


class BackupError(GatewayError):
    """The backup was not made (nothing at ``DEST`` changed)."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    bytes: int
    pages: int
    seconds: float


def target_path(dest: Path, now: float) -> Path:
    if dest.is_dir():
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        return dest / f"gateway-{stamp}.sqlite3"
    return dest


def _open_source(src: Path) -> sqlite3.Connection:
    if not src.is_file():
        raise BackupError(f"{src}: no database there (is gate.data_dir right?)")
    try:
        conn = sqlite3.connect(f"file:{src.resolve()}?mode=ro", uri=True)
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.Error as exc:
        raise BackupError(f"{src}: cannot be read: {exc}") from None
    if app_id != APPLICATION_ID:
        conn.close()
        raise BackupError(f"{src}: not a parking gateway database (application_id "
                          f"{app_id:#x}); nothing was copied")
    return conn


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_database(src: Path, dest: Path, *, force: bool = False) -> BackupResult:
    """Copy the database at ``src`` to ``dest`` (see the module's docstring)."""
    started = time.monotonic()
    target = target_path(dest, time.time())
    if target.exists() and not force:
        raise BackupError(f"{target}: already exists; give another name, or --force to "
                          "replace it")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent}: no such directory")
    source = _open_source(src)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # left by an earlier backup that was killed
        copy = sqlite3.connect(tmp)
        try:
            source.backup(copy, pages=-1)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            check = copy.execute("PRAGMA integrity_check").fetchone()[0]
            pages = int(copy.execute("PRAGMA page_count").fetchone()[0])
        finally:
            copy.close()
        if check != "ok":
            raise BackupError(f"the copy fails its integrity check ({check}); the live "
                              f"database may be damaged: nothing was written to {target}")
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync(target.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"backup to {target} failed: {exc}; nothing was written") from None
    except OSError as exc:
        raise BackupError(f"backup to {target} failed: {exc}; nothing was written") from None
    finally:
        source.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return BackupResult(target, target.stat().st_size, pages, time.monotonic() - started)
