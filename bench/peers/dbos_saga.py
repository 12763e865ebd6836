"""The saga as a DBOS Transact user writes it: an async workflow of three steps (verify,
allocate, create), the system database in SQLite. Runs under ``.venv-bench`` (it must not
import ``gateway``), driven by ``bench/engine_peers.py`` like the other contenders.

``--sqlite defaults``: DBOS's own set-up of its SQLite system database, untouched. DBOS 3.4
(``dbos/_sys_db_sqlite.py``) sets on each connection only ``isolation_level = "IMMEDIATE"``
(pysqlite's ``BEGIN IMMEDIATE`` before a write), ``PRAGMA busy_timeout=30000`` and
``PRAGMA foreign_keys=ON``: no journal mode and no ``synchronous``, so SQLite's own defaults
hold, a rollback journal (``journal_mode=delete``) and ``synchronous=FULL``: every commit is
durable (and costs more than one fsync).

``--sqlite wal``: the same, plus ``PRAGMA journal_mode=WAL`` and ``PRAGMA synchronous=NORMAL``
on each new connection, from a SQLAlchemy ``connect`` event listened for on the ``Pool``
class (so it applies to the engine DBOS creates, besides DBOS's own listener): the usual
advice for speed; a commit is then not fsynced (a power cut may lose the last ones).

The allocation is a DBOS step writing to the application's own SQLite file, WAL with
``synchronous=FULL`` like the gateway's database, on one thread of its own (the same code
as the hand-written contenders: ``bench/peers/common.py``). A step runs at least once: the
allocation is idempotent by workflow id (a step run again after a crash finds the space it
took). The records' idempotency key is the workflow id with the step's name.

    .venv-bench/bin/python bench/peers/dbos_saga.py --url URL --dir DIR --spaces N --sqlite MODE
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dbos import DBOS, DBOSConfig
from sqlalchemy import event
from sqlalchemy.pool import Pool

from bench.peers.common import COUNT, AppDb, Central, Contender, allocate, serve

SEEN: dict[str, Any] = {"connections": 0}
F = TypeVar("F", bound=Callable[..., Any])


def step(f: F) -> F:
    return cast(F, DBOS.step()(f))


def workflow(f: F) -> F:
    return cast(F, DBOS.workflow()(f))


class DbosSaga(Contender):
    def __init__(self, url: str, data_dir: Path, spaces: int, mode: str) -> None:
        self.url, self.dir, self.spaces, self.mode = url, data_dir, spaces, mode
        self.sysdb = data_dir / "dbos-system.sqlite3"
        self.prefix = "DD" if mode == "defaults" else "DW"

    async def start(self) -> None:
        self.central = Central(self.url)
        self.app = AppDb(self.dir / "app.sqlite3", self.spaces)
        wal = self.mode == "wal"

        def on_connect(dbapi_conn: Any, record: Any) -> None:
            if wal:
                dbapi_conn.execute("PRAGMA journal_mode=WAL")
                dbapi_conn.execute("PRAGMA synchronous=NORMAL")
            SEEN["connections"] += 1
            SEEN["journal_mode"] = dbapi_conn.execute("PRAGMA journal_mode").fetchone()[0]
            SEEN["synchronous"] = dbapi_conn.execute("PRAGMA synchronous").fetchone()[0]
            COUNT.watch(dbapi_conn, syncs=not wal)

        event.listen(Pool, "connect", on_connect)
        central, app = self.central, self.app

        @step
        async def verify_license_plate(plate: str) -> bool:
            return await central.verify(plate)

        @step
        async def allocate_parking_space(saga_id: str, plate: str) -> str:
            return await app.write(lambda conn: allocate(conn, saga_id, plate))

        @step
        async def create_entry_record(saga_id: str, plate: str, space: str) -> str:
            return await central.create(saga_id, plate, space)

        @workflow
        async def entry_saga(plate: str) -> str:
            saga_id = str(DBOS.workflow_id)
            if not await verify_license_plate(plate):
                return "denied"
            space = await allocate_parking_space(saga_id, plate)
            return await create_entry_record(saga_id, plate, space)

        self.workflow = entry_saga
        config: DBOSConfig = {"name": "engine-peers", "log_level": "WARNING",
                              "system_database_url": f"sqlite:///{self.sysdb}"}
        DBOS(config=config)
        DBOS.launch()

    async def saga(self, n: int) -> None:
        plate = f"{self.prefix}{n:07d}"
        await self.workflow(plate)

    async def check(self) -> dict[str, Any]:
        """What DBOS wrote: its workflows and step outputs, read back from its file."""
        db = sqlite3.connect(f"file:{self.sysdb}?mode=ro", uri=True)
        try:
            statuses = dict(db.execute(
                "SELECT status, count(*) FROM workflow_status GROUP BY status").fetchall())
            steps = db.execute("SELECT count(*) FROM operation_outputs").fetchone()[0]
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
        finally:
            db.close()
        taken = await self.app.read(lambda c: c.execute(
            "SELECT count(*) FROM spaces WHERE state='allocated'").fetchone()[0])
        wal = self.sysdb.with_name(self.sysdb.name + "-wal")
        size = self.sysdb.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        return {"workflows": statuses, "step_outputs": steps, "file_journal_mode": mode,
                "file_bytes": size, "allocated": taken, **SEEN}

    async def close(self) -> None:
        DBOS.destroy()
        await self.central.close()
        await self.app.close()


class Concurrent(Contender):
    """Sagas started with ``DBOS.start_workflow_async`` (16 in flight: the batch's lanes)."""

    def __init__(self, inner: DbosSaga) -> None:
        self.inner = inner

    async def saga(self, n: int) -> None:
        handle = await DBOS.start_workflow_async(self.inner.workflow,
                                                 f"{self.inner.prefix}{n:07d}")
        await handle.get_result()

    async def check(self) -> dict[str, Any]:
        return await self.inner.check()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--spaces", type=int, required=True)
    p.add_argument("--sqlite", choices=("defaults", "wal"), required=True)
    a = p.parse_args()

    async def make() -> dict[str, Contender]:
        saga = DbosSaga(a.url, a.dir, a.spaces, a.sqlite)
        return {"direct": saga, "started": Concurrent(saga)}

    serve(make)


if __name__ == "__main__":
    main()
