"""The central service fails in every way the simulator can: the gate still decides, from
the cache or by policy, queues what it cannot write, and sends it exactly once later."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest

from gateway.clock import SystemClock
from gateway.core.steps import ENTRY, EXIT
from gateway.sagas.factory import build_registry, build_runner, central_session
from gateway.sagas.runner import SagaRunner
from gateway.sagas.sync import OfflineSync
from gateway.settings import parse_settings
from gateway.sim.central import SimCentralState, make_app
from gateway.sim.faults import FaultRequest, Faults, SimServer
from gateway.sim.gate import InstantGate
from gateway.store import Store, offline_queue

FAULTS = ["refuse", "blackhole", "error500", "garbage", "oversized", "slow"]


@dataclass
class World:
    runner: SagaRunner
    store: Store
    central: SimCentralState
    faults: Faults
    sync: OfflineSync

    async def fault(self, mode: str, fraction: float = 0.0) -> None:
        await self.faults.set(FaultRequest(mode=mode, fail_fraction=fraction, delay_s=1.0))


@pytest.fixture
async def world(tmp_path) -> AsyncIterator[World]:
    state, faults = SimCentralState(), Faults()
    server = SimServer(make_app(state, faults), faults, "127.0.0.1", 0)
    await server.start()
    settings = parse_settings(f"""
[gate]
id = "g1"
data_dir = "{tmp_path}"
[central]
base_urls = ["{server.url}"]
deadline_s = 0.2
retry_count = 1
backoff_initial_s = 0.01
decision_deadline_s = 0.6
failure_threshold = 3
reset_timeout_s = 0.5
max_body_bytes = 4096
[backup]
enabled = false
[simulation]
enabled = true
[[zones]]
name = "A"
spaces = 20
[[lanes]]
id = "entry-1"
direction = "entry"
[[lanes]]
id = "exit-1"
direction = "exit"
""", "t.toml")
    store = await Store.open(settings.database_path, settings.zone_specs())
    session = central_session(settings)
    clock = SystemClock()
    registry = build_registry(settings, session, clock, InstantGate())
    runner = build_runner(settings, store, registry, clock)
    sync = OfflineSync(store, registry.remote["license_plate_service"], clock, gate_id="g1",
                       deadline_s=0.5)
    yield World(runner, store, state, faults, sync)
    await session.close()
    await store.close()
    await server.stop()


async def drain_when_healthy(w: World) -> int:
    """The central service is back: wait out its breaker, then send everything due."""
    sent = 0
    for _ in range(200):
        await w.store.write(lambda c: c.execute("UPDATE offline_queue SET next_attempt_at=0"))
        sent += await w.sync.drain()
        if (await w.store.read(offline_queue.counts))["pending"] == 0:
            return sent
        await asyncio.sleep(0.05)  # the breaker's reset timeout (0.5 s) passes
    raise AssertionError("the queue did not drain")


@pytest.mark.parametrize("mode", FAULTS)
async def test_each_fault_mode_falls_back_then_syncs_exactly_once(world: World, mode: str):
    w = world
    entry = await w.runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"})
    assert entry.succeeded
    await w.fault(mode)
    out = await w.runner.run(EXIT, {"lane_id": "exit-1", "license_plate": "34ABC123"})
    assert out.status == "completed", out.reason
    assert out.sources["verify_license_plate"] == "cache"
    assert out.sources["create_exit_record"] == "queue"
    assert w.faults.injected >= 1
    assert w.central.exits == {}
    await w.fault("ok")
    assert await drain_when_healthy(w) == 1
    (record,) = w.central.exits.values()
    assert record["idempotency_key"] == f"{out.saga_id}:create_exit_record"
    assert w.central.key_hits[record["idempotency_key"]] == 1


async def test_the_breaker_opens_and_stops_calling_a_dead_service(world: World):
    w = world
    await w.fault("error500")
    for i in range(3):
        await w.runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": f"P{i}"})
    calls = w.faults.injected
    out = await w.runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "P9"})
    assert w.faults.injected == calls  # the open breaker did not let the call through
    assert "unverifiable" in out.reason  # entry policy: deny
    types = [e["type"] for e in await w.store.events_after(0, 500)]
    assert "circuit_state_changed" in types


async def test_flapping_service_leaves_every_record_consistent(world: World):
    w = world
    await w.fault("ok", fraction=0.5)
    w.central.permits.update({f"F{i}" for i in range(8)})
    outcomes = [await w.runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": f"F{i}"})
                for i in range(8)]
    await w.fault("ok")
    await drain_when_healthy(w)
    by_key = {r["idempotency_key"]: r for r in w.central.entries.values()}
    for o in outcomes:
        record = by_key.get(f"{o.saga_id}:create_entry_record")
        if o.status == "completed":
            assert record is not None and record["status"] == "active"
        else:
            assert record is None or record["status"] == "cancelled"
    assert all(n == 1 for k, n in w.central.key_hits.items() if k.endswith("create_entry_record"))


async def make_runner(tmp_path, url: str, extra: str, backup=None):
    settings = parse_settings(f"""
[gate]
id = "g1"
data_dir = "{tmp_path}"
[central]
base_urls = ["{url}"]
deadline_s = 0.8
retry_count = 0
decision_deadline_s = 1.0
{extra}
[backup]
enabled = {"true" if backup else "false"}
[simulation]
enabled = true
[[zones]]
name = "A"
spaces = 5
[[lanes]]
id = "entry-1"
direction = "entry"
[[lanes]]
id = "exit-1"
direction = "exit"
""", "t.toml")
    store = await Store.open(settings.database_path, settings.zone_specs())
    session = central_session(settings)
    registry = build_registry(settings, session, SystemClock(), InstantGate(), backup)
    return build_runner(settings, store, registry, SystemClock()), store, session


async def test_hedging_takes_the_backup_when_central_is_slow(world: World, tmp_path):
    from gateway.sim.inprocess import InProcessPlateService

    backup = InProcessPlateService("alternative_license_plate_service")
    runner, store, session = await make_runner(
        tmp_path / "h", w_url(world), "hedge_after_s = 0.05", backup)
    try:
        await world.fault("slow")
        world.faults.delay_s = 0.5
        out = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"})
        assert out.sources["verify_license_plate"] == "backup"
        types = [e["data"].get("after") for e in await store.events_after(0, 100)
                 if e["type"] == "fallback_used"]
        assert "hedged: primary slow" in types
    finally:
        await session.close()
        await store.close()


async def test_the_decision_deadline_bounds_the_whole_chain(world: World, tmp_path):
    runner, store, session = await make_runner(tmp_path / "d", w_url(world), "")
    try:
        await world.fault("slow")
        world.faults.delay_s = 0.7  # each answer in time, but two do not fit in 1.0 s
        out = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"})
        assert out.status == "completed", out.reason
        assert out.sources["verify_license_plate"] == "central"
        assert out.sources["create_entry_record"] == "queue"
    finally:
        await session.close()
        await store.close()


async def test_a_permit_plate_misread_by_one_character_matches_only_when_enabled(
        world: World, tmp_path):
    for enabled, expect in ((False, "compensated"), (True, "completed")):
        runner, store, session = await make_runner(
            tmp_path / str(enabled), w_url(world),
            f"[cache]\npermit_misread_tolerance = {'true' if enabled else 'false'}")
        try:
            await world.fault("ok")
            world.central.permits.add("34ABC123")
            assert (await runner.run(ENTRY, {"lane_id": "entry-1",
                                             "license_plate": "34ABC123"})).succeeded
            assert (await runner.run(EXIT, {"lane_id": "exit-1",
                                            "license_plate": "34ABC123"})).succeeded
            await world.fault("refuse")
            out = await runner.run(ENTRY, {"lane_id": "entry-1",
                                           "license_plate": "34A8C123"})
            assert out.status == expect, out.reason
            if enabled:
                assert out.sources["verify_license_plate"] == "cache"
                assert out.results["verify_license_plate"]["misread_of"] == "34A8C123"
        finally:
            await session.close()
            await store.close()


def w_url(world: World) -> str:
    return str(world.sync.central.instances[0].base_url)  # type: ignore[attr-defined]


async def test_a_record_refused_for_good_goes_to_the_dead_letters(world: World):
    w = world
    await w.fault("refuse")
    w.runner.policies["entry:verify_license_plate"] = replace(
        w.runner.policies["entry:verify_license_plate"], when_unverifiable="allow")
    out = await w.runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "BAD1"})
    assert out.sources == {**out.sources, "verify_license_plate": "policy",
                           "create_entry_record": "queue"}
    w.central.reject_plates.add("BAD1")
    await w.fault("ok")
    await drain_when_healthy(w)
    counts = await w.store.read(offline_queue.counts)
    assert counts["dead"] == 1 and counts["pending"] == 0
    (dead,) = await w.store.read(offline_queue.dead_letters)
    assert "plate_rejected" in dead["last_error"]
    types = [e["type"] for e in await w.store.events_after(0, 500)]
    assert "record_rejected" in types
