"""Backing the database up before an upgrade and putting it back on a rollback.

Both directions use SQLite's online backup API (``Connection.backup``), never a file copy:
a WAL database is its main file *and* its ``-wal`` file, and copying one without the other
(or restoring a main file beside a newer release's leftover ``-wal``) corrupts it. The
backup goes to a temporary file, is checked (``quick_check``), synced and renamed, so a
power cut leaves the old backup or the new one. Restoring writes the backup's pages into the
live database through SQLite, which replaces whatever the newer release wrote, WAL
included.

The installer runs as root: files SQLite creates beside the database (``-wal``, ``-shm``)
are given back to the database's owner, or the daemon could no longer open it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from gateway.install.layout import InstallError


def schema_version(path: Path) -> int | None:
    """The database's ``user_version`` (the number of migrations applied), read-only;
    None when there is no database yet."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def backup(source: Path, dest: Path) -> None:
    """An online backup of ``source`` at ``dest`` (replaced atomically)."""
    tmp = dest.with_name(f".{dest.name}.partial")
    tmp.unlink(missing_ok=True)
    owner = source.stat()
    src = sqlite3.connect(source)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise InstallError(f"{dest}: the backup does not check out ({check})")
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            dst.close()
    except sqlite3.Error as exc:
        tmp.unlink(missing_ok=True)
        raise InstallError(f"cannot back {source} up to {dest}: {exc}") from None
    finally:
        src.close()
        _give_back(source, owner)
    _sync(tmp)
    os.replace(tmp, dest)
    _sync(dest.parent)


def restore(backup_file: Path, live: Path) -> None:
    """Put ``backup_file``'s content into the live database (the daemon stopped)."""
    owner = live.stat() if live.exists() else live.parent.stat()
    src = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(live)
        try:
            src.backup(dst)
            # back to WAL as the daemon keeps it (the backup file is a rollback-journal one)
            dst.execute("PRAGMA journal_mode=WAL")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise InstallError(f"cannot restore {live} from {backup_file}: {exc}") from None
    finally:
        src.close()
    _give_back(live, owner)
    _sync(live)


def _give_back(db: Path, owner: os.stat_result) -> None:
    if os.geteuid() != 0:
        return
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if path.exists():
            os.chown(path, owner.st_uid, owner.st_gid)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
