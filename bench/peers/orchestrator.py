"""The gateway's own contenders, in one process driven by ``bench/engine_peers.py``, built
only from the product's public API (``gateway.sagas.factory``, ``SagaRunner.run``,
``Store.open``):

- ``orchestrator``: the saga runner and its durable log (``synchronous=FULL``, the
  product's setting) running verify → allocate → create, the entry saga's first three steps
  (its barrier steps left out), against the test service through the product's client;
- ``orchestrator_off``: the same with the log written but never fsynced (``synchronous=OFF``);
- ``product_plain``: the same calls through the product's client and the same allocation
  commit (``Store.write``), with no saga log: what the runner adds is the difference;
- ``engine_inproc``: the runner with in-process services (no HTTP) and no fsync: its CPU;
- ``orchestrator_entry``: the daemon's whole entry saga (its barrier steps too, on a gate
  that opens at once), ``synchronous=FULL``.

Every SQLite connection the process opens is counted (``sqlite3.connect`` is wrapped before
the store opens its own: no hook in the product is needed).

    python bench/peers/orchestrator.py --url URL --dir DIR --spaces N
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers.common import COUNT, Contender, serve, zones
from gateway.clock import SystemClock, iso
from gateway.core.allocation import AllocationRequest, ZoneSpec
from gateway.core.saga import SagaDefinition
from gateway.core.steps import ENTRY, GATE_SERVICE
from gateway.sagas.factory import build_registry, build_runner, central_session
from gateway.sagas.runner import SagaRunner
from gateway.sagas.saga_with_fallbacks import default_registry
from gateway.services.central import CentralInstance
from gateway.settings import Settings, parse_settings
from gateway.sim.gate import InstantGate
from gateway.store import spaces
from gateway.store.store import Store

# verify → allocate → create: the entry saga without its barrier steps
SAGA = SagaDefinition(ENTRY.name, tuple(s for s in ENTRY.steps if s.service != GATE_SERVICE))
UNSYNCED = "-off"  # in a database file's name: its commits are not fsynced

_connect = sqlite3.connect


def _counted(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    conn: sqlite3.Connection = _connect(*args, **kwargs)
    COUNT.watch(conn, syncs=UNSYNCED not in str(args[0] if args else kwargs.get("database")))
    return conn


sqlite3.connect = _counted  # type: ignore[assignment]


def settings(url: str, data_dir: Path, spaces_n: int) -> Settings:
    lot = "".join(f'[[zones]]\nname = "{z}"\nspaces = {n}\n' for z, n in zones(spaces_n))
    return parse_settings(f"""
[gate]
id = "bench"
data_dir = "{data_dir}"
[central]
base_urls = ["{url}"]
[backup]
enabled = false
{lot}""", "bench.toml")


class Orchestrator(Contender):
    def __init__(self, url: str, data_dir: Path, spaces_n: int, synchronous: str,
                 prefix: str, definition: SagaDefinition = SAGA) -> None:
        self.settings = settings(url, data_dir, spaces_n)
        self.synchronous, self.prefix, self.definition = synchronous, prefix, definition

    async def start(self) -> None:
        s = self.settings
        self.store = await Store.open(s.database_path, s.zone_specs(),
                                      synchronous=self.synchronous)
        self.session = central_session(s)
        clock = SystemClock()
        self.runner = build_runner(s, self.store, build_registry(
            s, self.session, clock, InstantGate()), clock)

    async def saga(self, n: int) -> None:
        out = await self.runner.run(self.definition, {
            "lane_id": "entry-1", "license_plate": f"{self.prefix}{n:07d}"})
        if not out.succeeded:
            raise RuntimeError(f"saga {out.saga_id}: {out.status} {out.reason}")

    async def check(self) -> dict[str, Any]:
        return {"occupancy": await self.store.occupancy(), "commits": self.store.commits}

    async def close(self) -> None:
        await self.session.close()
        await self.store.close()


class ProductPlain(Orchestrator):
    """The product's client and allocation, no saga log."""

    async def start(self) -> None:
        await super().start()
        self.central = CentralInstance(self.settings.central.base_urls[0], self.session)

    async def saga(self, n: int) -> None:
        plate, saga_id = f"{self.prefix}{n:07d}", f"direct-{n}"
        verdict = await self.central.call(
            "verify_license_plate", {"gate_id": "bench", "lane_id": "entry-1",
                                     "direction": "entry", "license_plate": plate},
            idempotency_key=None, deadline_s=0.8)
        if not verdict["authorized"]:
            raise RuntimeError("not authorized")
        space = await self.store.write(partial(
            spaces.allocate, saga_id=saga_id, request=AllocationRequest(plate),
            now=iso(time.time())))
        await self.central.call("create_entry_record", {
            "saga_id": saga_id, "license_plate": plate, "gate_id": "bench",
            "lane_id": "entry-1", "space_id": space, "occurred_at": iso(time.time())},
            idempotency_key=f"{saga_id}:create_entry_record", deadline_s=0.8)


class InProcess(Contender):
    """The runner with in-process services and an unsynced log: the engine's CPU."""

    def __init__(self, data_dir: Path, spaces_n: int) -> None:
        self.path, self.spaces_n = data_dir / f"inproc{UNSYNCED}.sqlite3", spaces_n

    async def start(self) -> None:
        self.store = await Store.open(self.path, [ZoneSpec(z, n) for z, n in zones(
            self.spaces_n)], synchronous="off")
        self.runner = SagaRunner(self.store, default_registry(), SystemClock(),
                                 gate_id="bench")

    async def saga(self, n: int) -> None:
        out = await self.runner.run(SAGA, {"lane_id": "entry-1",
                                           "license_plate": f"IP{n:07d}"})
        if not out.succeeded:
            raise RuntimeError(f"saga {out.saga_id}: {out.status} {out.reason}")

    async def close(self) -> None:
        await self.store.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--spaces", type=int, required=True)
    a = p.parse_args()

    async def make() -> dict[str, Contender]:
        return {
            "orchestrator": Orchestrator(a.url, a.dir / "full", a.spaces, "full", "OR"),
            "orchestrator_off": Orchestrator(a.url, a.dir / f"x{UNSYNCED}", a.spaces, "off",
                                             "OF"),
            "product_plain": ProductPlain(a.url, a.dir / "plain", a.spaces, "full", "PP"),
            "orchestrator_entry": Orchestrator(a.url, a.dir / "entry", a.spaces, "full", "EN",
                                               ENTRY),
            "engine_inproc": InProcess(a.dir, a.spaces),
        }

    serve(make)


if __name__ == "__main__":
    main()
