"""Entry and exit sagas through the orchestrator, against the sim central over real HTTP
and a real SQLite file."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from gateway.clock import SystemClock
from gateway.core.breaker import Breaker
from gateway.core.steps import ENTRY, EXIT
from gateway.sagas.factory import build_registry, build_runner, central_session
from gateway.sagas.sync import OfflineSync
from gateway.settings import parse_settings
from gateway.sim.central import make_app
from gateway.sim.gate import InstantGate
from gateway.store import Store, offline_queue, saga_log, spaces


def settings_for(url: str, tmp_path, extra: str = ""):
    return parse_settings(f"""
[gate]
id = "g1"
data_dir = "{tmp_path}"
[central]
base_urls = ["{url}"]
deadline_s = 0.3
retry_count = 1
backoff_initial_s = 0.01
decision_deadline_s = 1.0
reset_timeout_s = 0.1
[backup]
enabled = false
[simulation]
enabled = true
[saga]
compensation_backoff_initial_s = 0.01
compensation_backoff_max_s = 0.05
[[zones]]
name = "A"
spaces = 3
reserved = 1
[[lanes]]
id = "entry-1"
direction = "entry"
[[lanes]]
id = "exit-1"
direction = "exit"
{extra}
""", "test.toml")


@pytest.fixture
async def gateway(sim_central, tmp_path):
    settings = settings_for(sim_central.url, tmp_path)
    store = await Store.open(settings.database_path, settings.zone_specs())
    session = central_session(settings)
    clock = SystemClock()
    registry = build_registry(settings, session, clock, InstantGate())
    runner = build_runner(settings, store, registry, clock)
    yield runner, store, sim_central.state
    await session.close()
    await store.close()


async def test_entry_then_exit(gateway):
    runner, store, central = gateway
    before = store.commits
    out = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"})
    assert out.status == "completed", out.reason
    assert store.commits - before == 3  # the durable commits of one entry saga
    space = out.results["allocate_parking_space"]["space_id"]
    assert space == "A-002"  # A-001 is reserved for permit holders
    entry_id = out.results["create_entry_record"]["entry_id"]
    assert central.entries[entry_id]["status"] == "active"
    assert central.entries[entry_id]["space_id"] == space
    assert out.sources["verify_license_plate"] == "central"

    out2 = await runner.run(EXIT, {"lane_id": "exit-1", "license_plate": "34ABC123"})
    assert out2.status == "completed", out2.reason
    exit_id = out2.results["create_exit_record"]["exit_id"]
    assert central.exits[exit_id]["entry_id"] == entry_id
    occ = await store.occupancy()
    assert occ["allocated"] == 0
    sessions = await store.read(spaces.list_sessions)
    assert sessions[0]["status"] == "exited" and sessions[0]["exit_id"] == exit_id
    evs = await store.events_after(0, 100)
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    types = [e["type"] for e in evs]
    for t in ("plate_read", "entry_granted", "vehicle_entered", "saga_completed",
              "exit_granted", "vehicle_exited"):
        assert t in types


async def test_permit_holder_gets_the_reserved_space(gateway):
    runner, _, central = gateway
    central.permits.add("06XYZ99")
    out = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "06XYZ99"})
    assert out.results["allocate_parking_space"]["space_id"] == "A-001"


async def test_blocked_plate_is_denied_with_no_side_effect(gateway):
    runner, store, central = gateway
    central.blocked.add("66BAD66")
    out = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "66BAD66"})
    assert out.status == "compensated"
    assert "blocked" in out.reason
    assert central.entries == {}
    assert (await store.occupancy())["allocated"] == 0
    types = [e["type"] for e in await store.events_after()]
    assert "entry_denied" in types and "saga_compensated" in types


async def test_back_out_compensates_in_reverse_with_idempotency_keys(gateway):
    runner, store, central = gateway
    out = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123",
                                   "behaviour": "back_out"})
    assert out.status == "compensated"
    (entry,) = central.entries.values()
    assert entry["status"] == "cancelled"
    assert (await store.occupancy())["allocated"] == 0
    saga = await store.read(lambda c: saga_log.get(c, out.saga_id))
    comps = [s for s in saga["steps"] if s["phase"] == "compensation"]
    assert [s["name"] for s in comps] == ["release_parking_space", "cancel_entry_record"]
    keys = set(central.key_hits)
    assert f"{out.saga_id}:create_entry_record" in keys
    assert f"{out.saga_id}:cancel_entry_record" in keys
    types = [e["type"] for e in await store.events_after()]
    assert "saga_compensated" in types and "vehicle_entered" not in types


async def test_lot_full_is_a_definitive_refusal(gateway):
    runner, store, _ = gateway
    for plate in ("P1", "P2"):
        assert (await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": plate})).succeeded
    out = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "P3"})
    assert out.status == "compensated" and "no free space" in out.reason
    assert (await store.occupancy())["allocated"] == 2


async def test_exit_without_entry_is_flagged(gateway):
    runner, store, _ = gateway
    out = await runner.run(EXIT, {"lane_id": "exit-1", "license_plate": "NOENTRY1"})
    assert out.status == "completed"
    rows = await store.read(spaces.list_sessions)
    assert rows[0]["flags"] == "no_matching_entry"


async def test_central_down_exit_is_verified_from_cache_and_queued_then_synced(
        gateway, sim_central):
    runner, store, central = gateway
    entry = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"})
    assert entry.succeeded
    port = int(sim_central.url.rsplit(":", 1)[1])
    await sim_central.runner.cleanup()  # the central service goes away
    out = await runner.run(EXIT, {"lane_id": "exit-1", "license_plate": "34ABC123"})
    assert out.status == "completed", out.reason
    assert out.sources["verify_license_plate"] == "cache"
    assert out.sources["create_exit_record"] == "queue"
    local_id = out.results["create_exit_record"]["exit_id"]
    assert local_id.startswith("local-")
    assert (await store.occupancy())["allocated"] == 0
    assert (await store.read(offline_queue.counts))["pending"] == 1
    types = [e["type"] for e in await store.events_after(0, 200)]
    assert types.count("fallback_used") == 2

    sync = OfflineSync(store, runner.registry.remote["license_plate_service"], SystemClock(),
                       gate_id="g1", deadline_s=0.3)
    assert await sync.drain() == 0  # still down: it waits, with backoff
    back = web.AppRunner(make_app(central))
    await back.setup()
    await web.TCPSite(back, "127.0.0.1", port).start()
    try:
        await store.write(lambda c: c.execute("UPDATE offline_queue SET next_attempt_at=0"))
        runner.registry.remote["license_plate_service"].breakers.clear()  # a fresh start
        for b in runner.registry.remote["license_plate_service"].instances:
            runner.registry.remote["license_plate_service"].breakers[b.name] = Breaker(b.name)
        assert await sync.drain() == 1
        assert await sync.drain() == 0  # exactly once
    finally:
        await back.cleanup()
    (record,) = central.exits.values()
    assert record["entry_id"] == entry.results["create_entry_record"]["entry_id"]
    assert central.key_hits[f"{out.saga_id}:create_exit_record"] == 1
    sessions = await store.read(spaces.list_sessions)
    assert sessions[0]["exit_id"] == next(iter(central.exits))
    types = [e["type"] for e in await store.events_after(0, 200)]
    assert "records_synced" in types


async def test_a_queued_entry_that_backs_out_is_never_sent(gateway, sim_central):
    runner, store, central = gateway
    central.permits.add("34ABC123")
    assert (await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"})
            ).succeeded
    exit_ = await runner.run(EXIT, {"lane_id": "exit-1", "license_plate": "34ABC123"})
    assert exit_.succeeded
    await sim_central.runner.cleanup()
    out = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123",
                                   "behaviour": "back_out"})
    assert out.status == "compensated"
    assert out.sources["create_entry_record"] == "queue"
    counts = await store.read(offline_queue.counts)
    assert counts["pending"] == 0 and counts["dropped"] == 1
    assert len(central.entries) == 1  # only the first, real entry


def nobody_listening() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_unverifiable_entry_follows_the_lane_policy(tmp_path):
    url = nobody_listening()
    for policy, expect in (("deny", "compensated"), ("allow", "completed")):
        settings = settings_for(url, tmp_path / policy,
                                f'[policy]\nentry_when_unverifiable = "{policy}"\n')
        store = await Store.open(settings.database_path, settings.zone_specs())
        session = central_session(settings)
        try:
            runner = build_runner(settings, store, build_registry(
                settings, session, SystemClock(), InstantGate()), SystemClock())
            out = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "NEW1"})
            assert out.status == expect, out.reason
            if policy == "allow":
                assert out.sources["verify_license_plate"] == "policy"
                assert out.sources["create_entry_record"] == "queue"
            else:
                assert "unverifiable" in out.reason
        finally:
            await session.close()
            await store.close()


async def test_with_records_denied_when_unreachable_compensation_waits_for_central(
        sim_central, tmp_path):
    settings = settings_for(sim_central.url, tmp_path,
                            '[policy]\nrecord_when_unreachable = "deny"\n')
    store = await Store.open(settings.database_path, settings.zone_specs())
    session = central_session(settings)
    central = sim_central.state
    try:
        runner = build_runner(settings, store, build_registry(
            settings, session, SystemClock(), InstantGate()), SystemClock())
        assert (await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"})
                ).succeeded
        port = int(sim_central.url.rsplit(":", 1)[1])
        await sim_central.runner.cleanup()
        tries = 0
        retried = asyncio.Event()

        def count(label: str) -> None:
            nonlocal tries
            if label == "before call create_exit_record":
                tries += 1
                if tries >= 4:  # 2 forward attempts, then compensation attempts
                    retried.set()

        runner.on_boundary = count
        task = asyncio.create_task(
            runner.run(EXIT, {"lane_id": "exit-1", "license_plate": "34ABC123"}))
        await asyncio.wait_for(retried.wait(), 10)
        assert not task.done()  # a compensation is retried until it succeeds
        back = web.AppRunner(make_app(central))
        await back.setup()
        await web.TCPSite(back, "127.0.0.1", port).start()
        try:
            out = await asyncio.wait_for(task, 10)
        finally:
            await back.cleanup()
        assert out.status == "compensated"
        assert (await store.occupancy())["allocated"] == 1  # the vehicle keeps its space
        (record,) = central.exits.values()
        assert record["status"] == "cancelled"
        assert central.key_hits[f"{out.saga_id}:create_exit_record"] == 1
    finally:
        await session.close()
        await store.close()


async def test_malformed_reply_is_a_transient_failure(tmp_path):
    async def garbage(request):
        return web.Response(text='{"license_plate": "<script>", "authorized": true}',
                            content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/plates/verify", garbage)
    runner_ = web.AppRunner(app)
    await runner_.setup()
    site = web.TCPSite(runner_, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner_.addresses[0][1]}"
    settings = settings_for(url, tmp_path)
    store = await Store.open(settings.database_path, settings.zone_specs())
    session = central_session(settings)
    try:
        registry = build_registry(settings, session, SystemClock(), InstantGate())
        runner = build_runner(settings, store, registry, SystemClock())
        out = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"})
        assert out.status == "compensated"
        assert "license_plate is invalid" in out.reason
    finally:
        await session.close()
        await store.close()
        await runner_.cleanup()


async def test_a_stop_mid_saga_leaves_the_log_and_recovery_compensates(gateway):
    runner, store, central = gateway
    task: asyncio.Task[object] | None = None

    def stop_here(label: str) -> None:
        if label == "before call create_entry_record" and task is not None:
            task.cancel()  # the daemon is stopping: not a saga failure

    runner.on_boundary = stop_here
    task = asyncio.create_task(runner.run(ENTRY, {"lane_id": "entry-1",
                                                  "license_plate": "34ABC123"}))
    with pytest.raises(asyncio.CancelledError):
        await task
    (saga,) = await store.read(saga_log.unfinished)
    assert saga["status"] == "running"
    assert (await store.occupancy())["allocated"] == 1
    runner.on_boundary = lambda label: None
    (outcome,) = await runner.recover()
    assert outcome.status == "compensated"
    assert (await store.occupancy())["allocated"] == 0
    # the create whose outcome was unknown was settled under its own key, then cancelled
    assert all(e["status"] == "cancelled" for e in central.entries.values())
    types = [e["type"] for e in await store.events_after(0, 200)]
    assert "saga_recovered" in types


async def test_recovery_after_the_barrier_opened_completes_the_entry(gateway):
    runner, store, _ = gateway
    task: asyncio.Task[object] | None = None

    def stop_here(label: str) -> None:
        if label == "after commit before open_barrier" and task is not None:
            task.cancel()

    runner.on_boundary = stop_here
    task = asyncio.create_task(runner.run(ENTRY, {"lane_id": "entry-1",
                                                  "license_plate": "34ABC123"}))
    with pytest.raises(asyncio.CancelledError):
        await task
    runner.on_boundary = lambda label: None
    (outcome,) = await runner.recover()
    assert outcome.status == "completed"
    assert outcome.results["confirm_passage"] == {"passed": True, "assumed": True}
    sessions = await store.read(spaces.list_sessions)
    assert sessions[0]["status"] == "inside"


async def test_anti_passback_denies_a_plate_already_inside(gateway):
    runner, store, central = gateway
    assert (await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"})).succeeded
    out = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"})
    assert out.status == "compensated" and "anti_passback" in out.reason
    assert (await store.occupancy())["allocated"] == 1
    assert len(central.entries) == 1
