"""Home Assistant discovery: retained configs on connect, sent again when Home Assistant
announces itself online."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.store import Store
from gateway.telemetry.discovery import discovery_messages
from gateway.telemetry.mqtt import MqttConnection, MqttOptions
from gateway.telemetry.publisher import TelemetryPublisher
from tests.broker import Broker


async def test_discovery_on_connect_and_on_home_assistant_restart(tmp_path):
    broker = Broker(tmp_path)
    await broker.start()
    store = await Store.open(tmp_path / "g.sqlite3")
    ha = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="home-assistant"))
    configs: list[tuple[str, dict[str, Any]]] = []
    ha.subscribe("homeassistant/+/+/+/config",
                 lambda m: configs.append((m.topic, json.loads(m.payload))))
    gate = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="gate"))

    async def state() -> dict[str, Any]:
        return {"gate_id": "g1", "occupancy": {"free": 3, "total": 4}, "lanes": []}

    messages = discovery_messages(discovery_prefix="homeassistant", prefix="parking",
                                  gate_id="g1", lanes=[("entry-1", "entry")])
    publisher = TelemetryPublisher(gate, store, prefix="parking", gate_id="g1", state=state,
                                   metrics=state, discovery=messages)
    ha.start()
    await ha.wait_connected()
    await asyncio.sleep(0.1)
    gate.start()
    publisher.start()
    try:
        async def until(n: int) -> None:
            deadline = asyncio.get_running_loop().time() + 10
            while len(configs) < n:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)

        await until(len(messages))
        topics = {t for t, _ in configs}
        assert "homeassistant/binary_sensor/parking_g1_entry_1/arming_loop/config" in topics
        free = next(c for t, c in configs if t.endswith("/free_spaces/config"))
        assert free["state_topic"] == "parking/gates/g1/state"
        assert free["availability_topic"] == "parking/gates/g1/availability"
        assert free["device"]["identifiers"] == ["parking_g1_entry_1"]
        configs.clear()
        await ha.publish("homeassistant/status", b"online")
        await until(len(messages))
    finally:
        await publisher.stop()
        await gate.stop()
        await ha.stop()
        await store.close()
        await broker.stop()
