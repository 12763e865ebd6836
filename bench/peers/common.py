"""What every contender process of ``bench/engine_peers.py`` shares (no ``gateway`` import:
the DBOS contender runs this under ``.venv-bench``).

- ``SqlCount``: every SQL statement a contender's SQLite connections execute, counted with
  ``sqlite3.Connection.set_trace_callback``; commits of a write transaction are told apart
  from the others, and those made on a connection whose setting syncs at commit
  (``synchronous=FULL``, or a rollback journal) are the durable, fsyncing ones. Only in a
  process started with ``BENCH_COUNT_SQL=1`` (the benchmark's counting pass): the callback
  costs the contender about 5 µs a statement (sqlite3 expands each statement's text for
  it), which would be charged to whoever runs the most statements.
- ``AppDb``: the application's space table (the product's columns and indexes), one
  connection on one thread of its own (``synchronous=FULL``, WAL: the product's setting), and
  the allocation as the product does it (the space a saga holds, else the lowest free one,
  taken by a conditional ``UPDATE``).
- ``Central``: the two calls of the saga to the test service, made as a person would write
  them with aiohttp (the gateway's own client is the orchestrator's).
- ``serve``: the line protocol the benchmark drives a contender process with: a JSON
  command a line on stdin, a JSON answer a line on the process's original stdout (what
  libraries print goes to stderr).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")
Json = dict[str, Any]
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")
ZONE_SIZE = 9999  # the most the gateway's settings allow a zone: more spaces, more zones


def zones(spaces: int) -> list[tuple[str, int]]:
    """``spaces`` spaces as zones A, B, … of at most ``ZONE_SIZE`` (the same for every
    contender's table)."""
    out: list[tuple[str, int]] = []
    left = spaces
    while left > 0:
        out.append((chr(ord("A") + len(out)), min(left, ZONE_SIZE)))
        left -= ZONE_SIZE
    return out


class SqlCount:
    """Statements, commits, write commits and durable commits, over every watched
    connection (any thread)."""

    def __init__(self) -> None:
        self.enabled = os.environ.get("BENCH_COUNT_SQL") == "1"
        self.statements = 0
        self.commits = 0
        self.write_commits = 0
        self.durable_commits = 0
        self._lock = threading.Lock()

    def watch(self, conn: Any, *, syncs: bool) -> None:
        """Count ``conn``'s statements (a ``sqlite3.Connection``, or the DBAPI connection a
        SQLAlchemy ``connect`` event is given). ``syncs``: its commits fsync. Nothing is
        watched in a process not started to count (``enabled``)."""
        if not self.enabled:
            return
        # in a transaction; it wrote; savepoints open (one that began the transaction
        # counts: its RELEASE commits it)
        state = {"txn": False, "dirty": False, "savepoints": 0, "by_savepoint": False}

        def trace(sql: str) -> None:
            if sql.startswith("--"):
                return  # a trigger's statement, part of the one that fired it
            word = sql.lstrip()[:12].upper()
            with self._lock:
                self.statements += 1
                if word.startswith("BEGIN"):
                    state.update(txn=True, dirty=False, savepoints=0, by_savepoint=False)
                elif word.startswith("SAVEPOINT"):
                    if not state["txn"]:
                        state.update(txn=True, dirty=False, by_savepoint=True)
                    state["savepoints"] += 1
                elif word.startswith("RELEASE"):
                    state["savepoints"] = max(0, state["savepoints"] - 1)
                    if state["by_savepoint"] and not state["savepoints"]:
                        self._end(state, syncs)
                elif word.startswith(("COMMIT", "END")):
                    self._end(state, syncs)
                elif word.startswith("ROLLBACK"):
                    if "TO" not in word.split():  # ROLLBACK TO a savepoint goes on
                        state.update(txn=False, dirty=False, savepoints=0)
                elif word.startswith(WRITES):
                    if state["txn"]:
                        state["dirty"] = True
                    else:  # autocommit: a transaction of its own
                        self._commit(True, syncs)

        conn.set_trace_callback(trace)

    def _end(self, state: dict[str, Any], syncs: bool) -> None:
        self._commit(bool(state["dirty"]), syncs)
        state.update(txn=False, dirty=False, savepoints=0, by_savepoint=False)

    def _commit(self, wrote: bool, syncs: bool) -> None:
        self.commits += 1
        if wrote:
            self.write_commits += 1
            if syncs:
                self.durable_commits += 1

    def snapshot(self) -> Json:
        with self._lock:
            return {"statements": self.statements, "commits": self.commits,
                    "write_commits": self.write_commits,
                    "durable_commits": self.durable_commits}


COUNT = SqlCount()

SCHEMA = """
CREATE TABLE IF NOT EXISTS spaces (
    space_id TEXT PRIMARY KEY, zone TEXT NOT NULL, number INTEGER NOT NULL,
    kind TEXT NOT NULL, state TEXT NOT NULL, plate TEXT, saga_id TEXT, since TEXT,
    retired INTEGER NOT NULL DEFAULT 0,
    CHECK ((state = 'allocated') = (saga_id IS NOT NULL)));
CREATE UNIQUE INDEX IF NOT EXISTS spaces_one_per_saga ON spaces(saga_id)
    WHERE saga_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS spaces_by_state ON spaces(state, kind, zone, number);
"""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class AppDb:
    """An application SQLite file written on one thread of its own, off the event loop."""

    def __init__(self, path: Path, spaces: int, *, synchronous: str = "FULL",
                 schema: str = "") -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="appdb")
        self.path, self._synchronous = path, synchronous
        self._thread.submit(self._open, schema, spaces).result()

    def _open(self, schema: str, spaces: int) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.executescript(SCHEMA + schema)
        conn.execute("BEGIN")  # one commit for the whole lot, not one a space
        conn.executemany("INSERT INTO spaces(space_id, zone, number, kind, state) "
                         "VALUES (?, ?, ?, 'standard', 'free')",
                         [(f"{z}-{i:04d}", z, i) for z, n in zones(spaces)
                          for i in range(1, n + 1)])
        conn.execute("COMMIT")
        self.conn = conn
        COUNT.watch(conn, syncs=self._synchronous != "OFF")

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction, on the database's thread."""
        def txn() -> T:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self.conn)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
            return out
        return await asyncio.get_running_loop().run_in_executor(self._thread, txn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, self.conn)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self.conn.close)
        self._thread.shutdown()


def allocate(conn: sqlite3.Connection, saga_id: str, plate: str) -> str:
    """The space ``saga_id`` holds, else the lowest free one (idempotent: a step run again
    after a crash gets the same space)."""
    held = conn.execute("SELECT space_id FROM spaces WHERE saga_id=?", (saga_id,)).fetchone()
    if held:
        return str(held[0])
    # one seek in spaces_by_state, however many spaces are free
    free = conn.execute("SELECT space_id FROM spaces WHERE state='free' AND retired=0 "
                        "ORDER BY kind, zone, number LIMIT 1").fetchone()
    if free is None:
        raise RuntimeError("no free space")
    cur = conn.execute("UPDATE spaces SET state='allocated', plate=?, saga_id=?, since=? "
                       "WHERE space_id=? AND state='free'", (plate, saga_id, now_iso(), free[0]))
    if cur.rowcount != 1:
        raise RuntimeError("space taken concurrently")
    return str(free[0])


class Central:
    """The saga's calls to the test service (contracts/central-api.md), by hand."""

    def __init__(self, url: str, gate_id: str = "bench") -> None:
        self.url, self.gate_id = url.rstrip("/"), gate_id
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=0.8),
            connector=aiohttp.TCPConnector(limit=32))

    async def _post(self, path: str, body: Json, key: str | None = None) -> Json:
        headers = {"Idempotency-Key": key} if key else {}
        async with self.session.post(self.url + path, json=body, headers=headers) as resp:
            raw = await resp.read()
            if resp.status >= 300:
                raise RuntimeError(f"{path}: HTTP {resp.status} {raw[:80]!r}")
        reply = json.loads(raw)
        if not isinstance(reply, dict):
            raise RuntimeError(f"{path}: not an object")
        return reply

    async def verify(self, plate: str) -> bool:
        reply = await self._post("/v1/plates/verify", {
            "gate_id": self.gate_id, "lane_id": "entry-1", "direction": "entry",
            "license_plate": plate, "captured_at": now_iso()})
        return reply.get("authorized") is True

    async def create(self, saga_id: str, plate: str, space_id: str) -> str:
        reply = await self._post("/v1/entries", {
            "saga_id": saga_id, "license_plate": plate, "gate_id": self.gate_id,
            "lane_id": "entry-1", "space_id": space_id, "occurred_at": now_iso()},
            key=f"{saga_id}:create_entry_record")
        return str(reply["entry_id"])

    async def close(self) -> None:
        await self.session.close()


class Contender:
    """One way of running the saga; ``saga(n)`` runs the n-th (unique) one to its end."""

    async def start(self) -> None:
        pass

    async def saga(self, n: int) -> None:
        raise NotImplementedError

    async def check(self) -> Json:
        return {}

    async def close(self) -> None:
        pass


async def batch(contender: Contender, first: int, seconds: float, most: int,
                inflight: int) -> Json:
    """Sagas for ``seconds``, one at a time (``inflight`` 1) or that many at once (each lane
    starts no saga after the time is up; at most ``most`` in all, at least one a lane): each
    one's latency, the wall time, this process's CPU time (all its threads) and the SQL
    it cost."""
    lat: list[float] = []
    numbers = iter(range(first, first + max(most, inflight)))

    async def lane(until: float) -> None:
        for i in numbers:
            t0 = time.perf_counter()
            await contender.saga(i)
            t1 = time.perf_counter()
            lat.append(t1 - t0)
            if t1 >= until:
                break

    sql0, cpu0, t0 = COUNT.snapshot(), time.process_time(), time.perf_counter()
    await asyncio.gather(*(lane(t0 + seconds) for _ in range(inflight)))
    wall, cpu, sql1 = time.perf_counter() - t0, time.process_time() - cpu0, COUNT.snapshot()
    return {"lat": lat, "wall": wall, "cpu": cpu,
            "sql": {k: sql1[k] - sql0[k] for k in sql1}}


def serve(make: Callable[[], Awaitable[dict[str, Contender]]]) -> None:
    """Answer the benchmark's commands until ``quit`` (or the end of stdin):
    ``{"run": name, "first": i, "seconds": s, "most": n, "inflight": k}``,
    ``{"check": name}``."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # what a library prints must not garble the answers
    sys.stdout = sys.stderr

    async def main() -> None:
        loop = asyncio.get_running_loop()
        contenders = await make()
        for c in contenders.values():
            await c.start()
        out.write(json.dumps({"ready": sorted(contenders)}) + "\n")
        try:
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                cmd = json.loads(line)
                if "quit" in cmd:
                    break
                if "check" in cmd:
                    answer = await contenders[cmd["check"]].check()
                else:
                    answer = await batch(contenders[cmd["run"]], cmd["first"],
                                         cmd["seconds"], cmd["most"], cmd["inflight"])
                out.write(json.dumps(answer) + "\n")
        finally:
            for c in contenders.values():
                await c.close()
        out.write(json.dumps({"bye": True}) + "\n")

    asyncio.run(main())
