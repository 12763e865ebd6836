"""Two contenders written by hand, in one process driven by ``bench/engine_peers.py``:

- ``plain``: the saga's calls and its allocation commit, and nothing else: no log (the
  floor: what the work costs with no durability of the saga itself);
- ``minimal``: the smallest durable log a careful engineer would write: after the
  verification, commit 1 holds the saga's row, the allocation and the intent to create the
  record (its idempotency key); the create is sent; commit 2 holds its result and "done".
  ``recover()`` sends the create again, with the same key, for every saga left between
  the two (run at start: it finds none here). SQLite with ``synchronous=FULL`` (WAL), one
  connection on one thread of its own so the event loop never waits on an fsync.

    python bench/peers/handwritten.py --url URL --dir DIR --spaces N
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers.common import (
    AppDb,
    Central,
    Contender,
    allocate,
    now_iso,
    serve,
)

LOG = """
CREATE TABLE IF NOT EXISTS sagas (
    saga_id TEXT PRIMARY KEY, plate TEXT NOT NULL, space_id TEXT,
    status TEXT NOT NULL CHECK (status IN ('creating', 'done')),
    create_key TEXT NOT NULL, entry_id TEXT, started_at TEXT NOT NULL, finished_at TEXT);
CREATE INDEX IF NOT EXISTS sagas_open ON sagas(status) WHERE status != 'done';
"""


class Plain(Contender):
    def __init__(self, central: Central, db: AppDb) -> None:
        self.central, self.db = central, db

    async def saga(self, n: int) -> None:
        plate, saga_id = f"PL{n:07d}", f"plain-{n}"
        if not await self.central.verify(plate):
            return
        space = await self.db.write(lambda conn: allocate(conn, saga_id, plate))
        await self.central.create(saga_id, plate, space)

    async def check(self) -> dict[str, object]:
        taken = await self.db.read(lambda c: c.execute(
            "SELECT count(*) FROM spaces WHERE state='allocated'").fetchone()[0])
        return {"allocated": taken}

    async def close(self) -> None:
        await self.central.close()
        await self.db.close()


class Minimal(Plain):
    async def start(self) -> None:
        await self.recover()

    async def recover(self) -> int:
        """Finish every saga a crash left between its two commits."""
        open_ = await self.db.read(lambda c: c.execute(
            "SELECT saga_id, plate, space_id FROM sagas WHERE status='creating'").fetchall())
        for saga_id, plate, space in open_:
            entry = await self.central.create(saga_id, plate, space)
            await self.db.write(partial(self._done, saga_id=saga_id, entry_id=entry))
        return len(open_)

    @staticmethod
    def _begin(conn: sqlite3.Connection, saga_id: str, plate: str) -> str:
        space = allocate(conn, saga_id, plate)
        conn.execute("INSERT INTO sagas(saga_id, plate, space_id, status, create_key, "
                     "started_at) VALUES (?, ?, ?, 'creating', ?, ?)",
                     (saga_id, plate, space, f"{saga_id}:create_entry_record", now_iso()))
        return space

    @staticmethod
    def _done(conn: sqlite3.Connection, saga_id: str, entry_id: str) -> None:
        conn.execute("UPDATE sagas SET status='done', entry_id=?, finished_at=? "
                     "WHERE saga_id=?", (entry_id, now_iso(), saga_id))

    async def saga(self, n: int) -> None:
        plate, saga_id = f"ML{n:07d}", f"minimal-{n}"
        if not await self.central.verify(plate):
            return  # nothing done, nothing to log
        space = await self.db.write(lambda conn: self._begin(conn, saga_id, plate))
        entry = await self.central.create(saga_id, plate, space)
        await self.db.write(lambda conn: self._done(conn, saga_id, entry))

    async def check(self) -> dict[str, object]:
        done = await self.db.read(lambda c: c.execute(
            "SELECT count(*) FROM sagas WHERE status='done'").fetchone()[0])
        return {**await super().check(), "done": done}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--spaces", type=int, required=True)
    args = p.parse_args()

    async def make() -> dict[str, Contender]:
        return {
            "plain": Plain(Central(args.url), AppDb(args.dir / "plain.sqlite3", args.spaces)),
            "minimal": Minimal(Central(args.url),
                               AppDb(args.dir / "minimal.sqlite3", args.spaces, schema=LOG)),
        }

    serve(make)


if __name__ == "__main__":
    main()
