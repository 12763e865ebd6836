"""Kill a process running sagas with SIGKILL at every boundary and at random instants,
restart it, recover, and check that nothing was lost, leaked or doubled."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import pytest

from gateway.sim.central import SimCentralState
from tests.conftest import start_central

pytestmark = pytest.mark.crash
ROOT = Path(__file__).resolve().parents[2]


async def worker(db: Path, url: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.crash_worker", str(db), url, *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode in (0, -9), err.decode()
    return proc.returncode or 0, out.decode()


def check_invariants(db: Path, central: SimCentralState) -> None:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    sagas = {r["saga_id"]: dict(r) for r in conn.execute("SELECT * FROM sagas")}
    # every saga is terminal
    assert {s["status"] for s in sagas.values()} <= {"completed", "compensated", "failed"}, sagas
    # no space held twice, none leaked: allocated spaces are exactly the vehicles inside
    allocated = {r["space_id"]: r["saga_id"] for r in conn.execute(
        "SELECT space_id, saga_id FROM spaces WHERE state='allocated'")}
    inside = {r["entry_saga_id"]: r["space_id"] for r in conn.execute(
        "SELECT * FROM vehicle_sessions WHERE status='inside'")}
    assert sorted(allocated.values()) == sorted(inside), (allocated, inside)
    for saga_id, space in inside.items():
        assert allocated.get(space) == saga_id
    # one record per idempotency key at the central service, and it agrees with the saga
    keys = Counter(r["idempotency_key"] for r in [*central.entries.values(),
                                                  *central.exits.values()])
    assert all(n == 1 for n in keys.values()), keys
    by_key = {r["idempotency_key"]: r for r in [*central.entries.values(),
                                                *central.exits.values()]}
    for saga_id, saga in sagas.items():
        record = by_key.get(f"{saga_id}:create_{saga['kind']}_record")
        if saga["status"] == "completed":
            assert record is not None and record["status"] == "active", saga
        else:
            assert record is None or record["status"] == "cancelled", saga
    # entry sagas that completed and sessions agree
    completed_entries = {s for s, v in sagas.items() if v["kind"] == "entry"
                         and v["status"] == "completed"}
    sessions = {r[0] for r in conn.execute("SELECT entry_saga_id FROM vehicle_sessions "
                                           "WHERE entry_saga_id IS NOT NULL")}
    assert sessions == completed_entries
    seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    conn.close()


async def crash_round(tmp_path: Path, name: str, kill: int | None,
                      delay: float | None = None) -> None:
    state = SimCentralState()
    central = await start_central(state)
    db = tmp_path / name / "gateway.sqlite3"
    db.parent.mkdir()
    try:
        if delay is None:
            code, _ = await worker(db, central.url, "run", str(kill))
            assert code == -9
        else:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.crash_worker", str(db), central.url, "run", "-1",
                cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            await asyncio.sleep(delay)  # the random instant is the point of this round
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        await worker(db, central.url, "recover")
        check_invariants(db, state)
        # and the gate goes on working after recovery
        code, _ = await worker(db, central.url, "run", "-1")
        assert code == 0
        check_invariants(db, state)
    finally:
        await central.runner.cleanup()


@pytest.mark.timeout(360)  # ~40 kills and restarts: a minute alone, more on a busy machine
async def test_kill_at_every_boundary(tmp_path):
    state = SimCentralState()
    central = await start_central(state)
    try:
        db = tmp_path / "count" / "gateway.sqlite3"
        db.parent.mkdir()
        _, out = await worker(db, central.url, "run", "-1")
        boundaries = int(out.strip())
        check_invariants(db, state)
    finally:
        await central.runner.cleanup()
    assert boundaries > 30
    # two rounds at a time (each its own central, database and processes): the rounds are
    # mostly process start-ups, and the machine has two cores
    both = asyncio.Semaphore(2)

    async def one(k: int) -> None:
        async with both:
            await crash_round(tmp_path, f"k{k}", k)

    await asyncio.gather(*(one(k) for k in range(boundaries)))


async def test_kill_at_random_instants(tmp_path, request):
    rounds = request.config.getoption("--crash-rounds")
    rng = random.Random(20261125)
    for n in range(rounds):
        await crash_round(tmp_path, f"r{n}", None, delay=rng.uniform(0.3, 1.2))
