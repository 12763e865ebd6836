"""The whole chain with a real broker: central down -> the backup service over MQTT;
both down -> cache, policy and the offline queue; then everything reaches the central
service exactly once."""

from __future__ import annotations

import asyncio

import pytest

from gateway.clock import SystemClock
from gateway.core.errors import DeadlineExceeded
from gateway.core.steps import ENTRY, EXIT
from gateway.sagas.factory import build_registry, build_runner, central_session
from gateway.sagas.sync import OfflineSync
from gateway.services.backup import BackupClient
from gateway.settings import parse_settings
from gateway.sim.backup import SimBackup
from gateway.sim.central import SimCentralState, make_app
from gateway.sim.faults import FaultRequest, Faults, SimServer
from gateway.sim.gate import InstantGate
from gateway.store import Store, offline_queue, spaces
from gateway.telemetry.mqtt import MqttConnection, MqttOptions
from tests.broker import Broker


async def test_backup_then_queue_then_exactly_once_at_central(tmp_path):
    broker = Broker(tmp_path)
    await broker.start()
    central_state, faults = SimCentralState(), Faults()
    central = SimServer(make_app(central_state, faults), faults, "127.0.0.1", 0)
    await central.start()
    gate_mqtt = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="gate"))
    svc_mqtt = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="backup"))
    backup = SimBackup(svc_mqtt)  # its own records: it does not forward to the central
    settings = parse_settings(f"""
[gate]
id = "g1"
data_dir = "{tmp_path / 'data'}"
[central]
base_urls = ["{central.url}"]
deadline_s = 0.2
retry_count = 0
decision_deadline_s = 0.8
reset_timeout_s = 0.2
[backup]
enabled = true
deadline_s = 0.3
[simulation]
enabled = true
[policy]
exit_when_unverifiable = "allow"
[[zones]]
name = "A"
spaces = 10
[[lanes]]
id = "entry-1"
direction = "entry"
[[lanes]]
id = "exit-1"
direction = "exit"
""", "t.toml")
    store = await Store.open(settings.database_path, settings.zone_specs())
    session = central_session(settings)
    client = BackupClient(gate_mqtt, "parking", "g1")
    gate_mqtt.start()
    svc_mqtt.start()
    try:
        await asyncio.wait_for(asyncio.gather(gate_mqtt.wait_connected(),
                                              svc_mqtt.wait_connected()), 10)
        await asyncio.sleep(0.1)
        clock = SystemClock()
        registry = build_registry(settings, session, clock, InstantGate(), client)
        runner = build_runner(settings, store, registry, clock)
        sync = OfflineSync(store, registry.remote["license_plate_service"], clock,
                           gate_id="g1", deadline_s=0.5)

        await faults.set(FaultRequest(mode="refuse"))
        entry = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"})
        assert entry.status == "completed", entry.reason
        assert entry.sources["verify_license_plate"] == "backup"
        assert entry.sources["create_entry_record"] == "backup"
        assert len(backup.state.entries) == 1
        types = [e["type"] for e in await store.events_after(0, 200)]
        assert "fallback_used" in types

        backup.mode = "blackhole"  # now both are gone
        out = await runner.run(EXIT, {"lane_id": "exit-1", "license_plate": "34ABC123"})
        assert out.status == "completed", out.reason
        assert out.sources["verify_license_plate"] == "cache"
        assert out.sources["create_exit_record"] == "queue"
        assert (await store.read(offline_queue.counts))["pending"] == 2  # confirm + exit

        await faults.set(FaultRequest(mode="ok"))
        await asyncio.sleep(0.25)  # the central breaker's reset timeout
        assert await sync.drain() == 2
        assert await sync.drain() == 0
        (central_entry,) = central_state.entries.values()
        (central_exit,) = central_state.exits.values()
        assert central_entry["idempotency_key"] == f"{entry.saga_id}:create_entry_record"
        entry_id = next(iter(central_state.entries))
        assert central_exit["entry_id"] == entry_id
        assert all(n == 1 for n in central_state.key_hits.values())
        (sess,) = await store.read(spaces.list_sessions)
        assert sess["entry_id"] == entry_id and sess["exit_id"] == next(iter(central_state.exits))
        assert sess["status"] == "exited"

        # central blackholed while the backup is too slow, then answers oversized replies:
        # the cache decides, the record waits, nothing malformed is trusted
        await faults.set(FaultRequest(mode="blackhole"))
        backup.mode, backup.delay_s = "slow", 1.0
        again = await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": "34ABC123"})
        assert again.status == "completed", again.reason
        assert again.sources["verify_license_plate"] == "cache"
        assert again.sources["create_entry_record"] == "queue"
        backup.mode = "oversized"
        with pytest.raises(DeadlineExceeded):
            await client.call("verify_license_plate", {"license_plate": "X1"},
                              idempotency_key=None, deadline_s=0.3)
        assert client.dropped["malformed"] == 1
        await faults.set(FaultRequest(mode="ok"))
    finally:
        await session.close()
        await store.close()
        await gate_mqtt.stop()
        await svc_mqtt.stop()
        await central.stop()
        await broker.stop()
