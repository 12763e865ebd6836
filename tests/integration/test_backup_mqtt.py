"""The backup client against a real Mosquitto the test starts (and stops), with the
simulated backup service on the same broker."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.core.errors import DeadlineExceeded, TransientError
from gateway.services.backup import BackupClient
from gateway.sim.backup import SimBackup
from gateway.telemetry.mqtt import MqttConnection, MqttOptions
from tests.broker import Broker


async def until(cond, within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.01)


def connection(broker: Broker, name: str, **kw) -> MqttConnection:
    return MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id=name, **kw))


@dataclass
class Setup:
    broker: Broker
    gate: MqttConnection
    service: MqttConnection
    client: BackupClient
    backup: SimBackup


@pytest.fixture
async def setup(tmp_path) -> AsyncIterator[Setup]:
    broker = Broker(tmp_path)
    await broker.start()
    gate, service = connection(broker, "gate-1"), connection(broker, "sim-backup")
    client = BackupClient(gate, "parking", "gate-1")
    backup = SimBackup(service)
    gate.start()
    service.start()
    await asyncio.wait_for(asyncio.gather(gate.wait_connected(), service.wait_connected()), 10)
    await asyncio.sleep(0.1)  # let both subscriptions reach the broker
    yield Setup(broker, gate, service, client, backup)
    await gate.stop()
    await service.stop()
    await broker.stop()


async def test_request_response_with_idempotency(setup: Setup):
    c = setup.client
    verified = await c.call("verify_license_plate", {"license_plate": "34ABC123"},
                            idempotency_key=None, deadline_s=1.0)
    assert verified["authorized"] and verified["license_plate"] == "34ABC123"
    first = await c.call("create_entry_record", {"license_plate": "34ABC123"},
                         idempotency_key="s1:create_entry_record", deadline_s=1.0)
    again = await c.call("create_entry_record", {"license_plate": "34ABC123"},
                         idempotency_key="s1:create_entry_record", deadline_s=1.0)
    assert first == again and len(setup.backup.state.entries) == 1


async def test_stray_and_forged_replies_never_resolve_a_request(setup: Setup):
    c = setup.client
    setup.backup.mode = "slow"
    setup.backup.delay_s = 0.3
    call = asyncio.create_task(c.call("verify_license_plate", {"license_plate": "06XYZ99"},
                                      idempotency_key=None, deadline_s=2.0))
    await until(lambda: setup.backup.requests == 1)
    forged = Properties(PacketTypes.PUBLISH)
    forged.CorrelationData = os.urandom(16)
    lie = b'{"ok": true, "result": {"license_plate": "06XYZ99", "authorized": false}}'
    setup.service.publish(c.reply_topic, lie, properties=forged)
    setup.service.publish(c.reply_topic, lie)  # no correlation data at all
    result = await call
    assert result["authorized"] is True  # the real answer, not the forged one
    assert c.dropped["stray"] == 2


async def test_malformed_duplicate_and_late_replies_are_counted(setup: Setup):
    c = setup.client
    setup.backup.mode = "garbage"
    with pytest.raises(DeadlineExceeded):
        await c.call("verify_license_plate", {"license_plate": "X1"}, idempotency_key=None,
                     deadline_s=0.3)
    assert c.dropped["malformed"] == 1
    setup.backup.mode = "duplicate"
    await c.call("verify_license_plate", {"license_plate": "X1"}, idempotency_key=None,
                 deadline_s=1.0)
    await until(lambda: c.dropped["duplicate"] == 1)
    setup.backup.mode = "slow"
    setup.backup.delay_s = 0.4
    with pytest.raises(DeadlineExceeded):
        await c.call("verify_license_plate", {"license_plate": "X1"}, idempotency_key=None,
                     deadline_s=0.2)
    await until(lambda: c.dropped["late"] == 1)
    setup.backup.mode = "error"
    with pytest.raises(TransientError, match="backup unavailable"):
        await c.call("verify_license_plate", {"license_plate": "X1"}, idempotency_key=None,
                     deadline_s=1.0)


async def test_broker_outage_is_transient_and_the_client_reconnects(setup: Setup):
    c = setup.client
    await setup.broker.stop()
    await until(lambda: not setup.gate.connected)
    with pytest.raises(TransientError, match="not connected"):
        await c.call("verify_license_plate", {"license_plate": "X1"}, idempotency_key=None,
                     deadline_s=0.5)
    await setup.broker.start()
    await asyncio.wait_for(asyncio.gather(setup.gate.wait_connected(),
                                          setup.service.wait_connected()), 30)
    await asyncio.sleep(0.1)
    result = await c.call("verify_license_plate", {"license_plate": "X1"},
                          idempotency_key=None, deadline_s=1.0)
    assert result["license_plate"] == "X1"
    assert setup.gate.reconnects >= 1


async def test_refused_credentials_are_a_clear_fault_retried_with_backoff(tmp_path):
    broker = Broker(tmp_path, password="right")
    await broker.start()
    conn = connection(broker, "gate-x", username="gate", password="wrong")
    conn.start()
    try:
        await until(lambda: "refused" in conn.last_error)
        assert not conn.connected
        await until(lambda: conn.reconnects >= 2)
    finally:
        await conn.stop()
        await broker.stop()
    good = connection(broker, "gate-y", username="gate", password="right")
    await broker.start()
    good.start()
    try:
        await asyncio.wait_for(good.wait_connected(), 10)
    finally:
        await good.stop()
        await broker.stop()
