"""Entry saga throughput and latency, and what the durable log costs.

Prints, in one run, side by side:
  - durable entry sagas/s and p50/p99 latency against the sim central service (a separate
    process on 127.0.0.1), the database with synchronous=FULL (the product's setting);
  - the same engine with the log written but not fsynced (synchronous=OFF);
  - the same service calls and allocation made directly, with no saga log at all;
  - the raw SQLite commit rate of this disk (synchronous=FULL) as the floor;
  - durable commits (fsyncs) per saga, and the engine's own overhead per saga beyond them;
  - the engine's CPU time per saga with in-process services (no HTTP, no fsync).

    python bench/saga_throughput.py [--sagas N]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.clock import SystemClock, iso  # noqa: E402
from gateway.core.allocation import AllocationRequest, ZoneSpec  # noqa: E402
from gateway.core.steps import ENTRY  # noqa: E402
from gateway.sagas.factory import build_registry, build_runner, central_session  # noqa: E402
from gateway.sagas.runner import SagaRunner  # noqa: E402
from gateway.sagas.saga_with_fallbacks import default_registry  # noqa: E402
from gateway.services.central import CentralInstance  # noqa: E402
from gateway.settings import Settings, parse_settings  # noqa: E402
from gateway.sim.gate import InstantGate  # noqa: E402
from gateway.store import Database, Store, spaces  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings(url: str, data_dir: str, sagas: int) -> Settings:
    return parse_settings(f"""
[gate]
id = "bench"
data_dir = "{data_dir}"
[central]
base_urls = ["{url}"]
[backup]
enabled = false
[[zones]]
name = "A"
spaces = {sagas + 10}
""", "bench.toml")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def engine_run(url: str, sagas: int, synchronous: str) -> tuple[list[float], float]:
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        s = settings(url, tmp, sagas)
        store = await Store.open(s.database_path, s.zone_specs(), synchronous=synchronous)
        session = central_session(s)
        clock = SystemClock()
        runner = build_runner(s, store, build_registry(s, session, clock, InstantGate()), clock)
        await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "WARMUP"})
        before = store.commits
        lat = []
        for i in range(sagas):
            t0 = time.perf_counter()
            out = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": f"B{i:05d}"})
            lat.append(time.perf_counter() - t0)
            assert out.succeeded, out.reason
        commits = (store.commits - before) / sagas
        await session.close()
        await store.close()
        return lat, commits


async def direct_run(url: str, sagas: int) -> list[float]:
    """The same remote calls and one allocation commit, with no saga log."""
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        s = settings(url, tmp, sagas)
        store = await Store.open(s.database_path, s.zone_specs())
        session = central_session(s)
        central = CentralInstance(url, session)
        gate = InstantGate()
        lat = []
        for i in range(sagas + 1):
            plate = f"D{i:05d}"
            t0 = time.perf_counter()
            await central.call("verify_license_plate", {"license_plate": plate},
                               idempotency_key=None, deadline_s=0.8)
            space = await store.write(partial(
                spaces.allocate, saga_id=f"direct-{i}", request=AllocationRequest(plate),
                now=iso(time.time())))
            await central.call("create_entry_record", {"license_plate": plate,
                                                       "space_id": space},
                               idempotency_key=f"direct-{i}:create_entry_record",
                               deadline_s=0.8)
            await gate.call("open_barrier", {}, idempotency_key=None, deadline_s=1)
            await gate.call("confirm_passage", {}, idempotency_key=None, deadline_s=1)
            if i:  # the first one warms the connection up
                lat.append(time.perf_counter() - t0)
        await session.close()
        await store.close()
        return lat


def commit_floor(n: int = 500) -> float:
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        db = Database(Path(tmp) / "floor.sqlite3")
        t0 = time.perf_counter()
        for i in range(n):
            with db.transaction() as conn:
                conn.execute("INSERT INTO counters(name, value) VALUES (?, 1)", (f"c{i}",))
        elapsed = time.perf_counter() - t0
        db.close()
        return n / elapsed


async def engine_cpu(sagas: int) -> float:
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        store = await Store.open(Path(tmp) / "cpu.sqlite3", [ZoneSpec("A", sagas + 10)],
                                 synchronous="off")
        registry = default_registry()
        registry.register("gate_service", InstantGate())
        runner = SagaRunner(store, registry, SystemClock(), gate_id="bench")
        t0 = time.process_time()
        for i in range(sagas):
            out = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": f"C{i:05d}"})
            assert out.succeeded, out.reason
        cpu = (time.process_time() - t0) / sagas
        await store.close()
        return cpu


def row(name: str, lat: list[float]) -> str:
    mean = statistics.fmean(lat)
    return (f"  {name:34} {1 / mean:8.0f} sagas/s   p50 {pct(lat, 50) * 1000:6.2f} ms   "
            f"p99 {pct(lat, 99) * 1000:6.2f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sagas", type=int, default=300)
    args = parser.parse_args()
    port = free_port()
    command = [sys.executable, "-m", "gateway.sim", "central", "--port", str(port)]
    # A plain Popen: the service must outlive no loop, and nothing async runs yet.
    central = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)  # noqa: ASYNC220
    try:
        assert central.stdout is not None
        central.stdout.readline()  # "listening"
        url = f"http://127.0.0.1:{port}"
        full, commits_full = await engine_run(url, args.sagas, "full")
        off, _ = await engine_run(url, args.sagas, "off")
        direct = await direct_run(url, args.sagas)
    finally:
        central.terminate()
        central.wait()
    floor = commit_floor()
    cpu = await engine_cpu(args.sagas)
    commit_cost = 1 / floor
    overhead = statistics.fmean(full) - statistics.fmean(direct) - (commits_full - 1) * commit_cost
    print(f"entry saga, {args.sagas} sequential sagas, sim central on 127.0.0.1 "
          "(separate process)")
    print(row("durable log (synchronous=FULL)", full))
    print(row("log not fsynced (synchronous=OFF)", off))
    print(row("direct calls, no saga log", direct))
    print(f"  {'raw SQLite commits (FULL), floor':34} {floor:8.0f} commits/s "
          f"({commit_cost * 1000:.3f} ms each)")
    print(f"  durable commits per entry saga     {commits_full:8.2f}   (aim: at most 4; "
          "direct calls make 1)")
    print(f"  engine overhead per saga           {overhead * 1000:8.3f} ms beyond its extra "
          f"commits and the calls (aim: under 1 ms)")
    print(f"  engine CPU per saga, in-process    {cpu * 1000:8.3f} ms (no HTTP, no fsync)")


if __name__ == "__main__":
    asyncio.run(main())
