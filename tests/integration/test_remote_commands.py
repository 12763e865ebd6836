"""Remote commands against a real Mosquitto and a real SQLite file: a command is acted on at
most once, never from a retained message, never when stale or when the gateway cannot tell
(its clock still in 1970); the ids taken survive a restart."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.clock import iso
from gateway.store import commands_seen
from gateway.store.store import Store
from gateway.telemetry.commands import RemoteCommands
from gateway.telemetry.mqtt import MqttConnection, MqttOptions
from tests.broker import Broker

TOKEN = "remote-test-token"
CMD = "parking/gates/gate-1/cmd"
MAX_AGE_S = 30.0


class WallClock:
    """The real wall time, synchronised; or a Pi without a battery clock, started in 1970."""

    def __init__(self, synced: bool = True) -> None:
        self.synced = synced
        self.started = time.monotonic()

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time() if self.synced else 12.0 + time.monotonic() - self.started

    def wall_synced(self) -> bool:
        return self.synced

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass
class FakeLane:
    opens: list[tuple[str, str]] = field(default_factory=list)
    modes: list[tuple[str, str]] = field(default_factory=list)

    def manual_open(self, who: str, why: str) -> bool:
        self.opens.append((who, why))
        return True

    def set_mode(self, mode: str, who: str) -> bool:
        self.modes.append((mode, who))
        return True


@dataclass
class Gate:
    """The gateway's side: its MQTT connection, its store, its RemoteCommands."""

    mqtt: MqttConnection
    store: Store
    commands: RemoteCommands
    records: list[tuple[str, dict[str, Any]]]
    stopped: bool = False

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [d for t, d in self.records if t == type_]

    async def stop(self) -> None:
        self.stopped = True
        await self.commands.drain()
        await self.mqtt.stop()
        await self.store.close()


@dataclass
class World:
    broker: Broker
    db: Path
    lane: FakeLane
    operator: paho.Client
    gates: list[Gate] = field(default_factory=list)

    async def publish(self, name: str, payload: dict[str, Any] | bytes, *,
                      retain: bool = False) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self.operator.publish(f"{CMD}/{name}", body, qos=1, retain=retain)
        await asyncio.to_thread(info.wait_for_publish, 5.0)
        assert info.is_published()

    async def gate(self, clock: WallClock | None = None) -> Gate:
        """Start (or restart) the gateway's side on the same database file."""
        store = await Store.open(self.db)
        records: list[tuple[str, dict[str, Any]]] = []
        commands = RemoteCommands({"entry-1": self.lane}, TOKEN,
                                  lambda t, d: records.append((t, d)), store=store,
                                  clock=clock or WallClock(), max_age_s=MAX_AGE_S)
        mqtt = MqttConnection(MqttOptions("127.0.0.1", self.broker.port,
                                          client_id=f"gate-1-{len(self.gates)}"))
        mqtt.subscribe(f"{CMD}/+", commands.handle)
        mqtt.start()
        await asyncio.wait_for(mqtt.wait_connected(), 10)
        await asyncio.sleep(0.2)  # the subscription reaches the broker
        gate = Gate(mqtt, store, commands, records)
        self.gates.append(gate)
        return gate


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    broker = Broker(tmp_path)
    await broker.start()
    operator = paho.Client(CallbackAPIVersion.VERSION2, client_id="operator",
                           protocol=paho.MQTTv5)
    operator.connect("127.0.0.1", broker.port)
    operator.loop_start()
    w = World(broker, tmp_path / "gateway.db", FakeLane(), operator)
    yield w
    for gate in w.gates:
        if not gate.stopped:
            await gate.stop()
    operator.loop_stop()
    operator.disconnect()
    await broker.stop()


def command(*, ts: float | None = None, **over: Any) -> dict[str, Any]:
    return {"token": TOKEN, "id": uuid.uuid4().hex, "ts": iso(time.time() if ts is None else ts),
            "lane_id": "entry-1", "who": "central-op", **over}


async def until(cond: Any, within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.01)


async def settled(gate: Gate, n: int) -> None:
    """Until ``n`` outcomes are recorded, then a moment more for any that should not come."""
    await until(lambda: len(gate.records) >= n)
    await asyncio.sleep(0.2)
    await gate.commands.drain()
    assert len(gate.records) == n, gate.records


async def test_a_fresh_command_is_executed_once_and_recorded_with_its_id(world: World):
    gate = await world.gate()
    cmd = command()
    await world.publish("open", cmd)
    mode = command(mode="closed")
    await world.publish("mode", mode)
    await settled(gate, 2)
    assert world.lane.opens == [("central-op", "remote command")]
    assert world.lane.modes == [("closed", "central-op")]
    assert [d["id"] for d in gate.of("command_executed")] == [cmd["id"], mode["id"]]
    assert await gate.store.read(lambda c: commands_seen.seen(c, cmd["id"]))
    assert TOKEN not in json.dumps(gate.records)


async def test_a_retained_open_published_before_the_gateway_subscribes_is_never_executed(
        world: World):
    cmd = command()
    await world.publish("open", cmd, retain=True)  # sits on the broker
    gate = await world.gate()  # the broker hands it over on subscribe, retain flag set
    await settled(gate, 1)
    assert gate.of("command_refused") == [
        {"command": "open", "reason": "retained", "id": cmd["id"], "lane_id": "entry-1",
         "who": "central-op"}]
    assert world.lane.opens == []
    # ... nor on a reconnect: the broker hands it over again, it is refused again
    await gate.stop()
    again = await world.gate()
    await settled(again, 1)
    assert again.of("command_refused")[0]["reason"] == "retained"
    assert world.lane.opens == []


async def test_the_same_message_delivered_twice_is_executed_once(world: World):
    gate = await world.gate()
    cmd = command()
    await world.publish("open", cmd)
    await world.publish("open", cmd)
    await settled(gate, 2)
    assert len(world.lane.opens) == 1
    assert len(gate.of("command_executed")) == 1
    assert [d["reason"] for d in gate.of("command_refused")] == ["already seen"]


async def test_two_deliveries_racing_cannot_both_pass(world: World):
    gate = await world.gate()
    cmd = command()
    body = json.dumps(cmd).encode()
    msg = paho.MQTTMessage(topic=f"{CMD}/open".encode())
    msg.payload = body
    gate.commands.handle(msg)  # both past the synchronous checks before either is taken
    gate.commands.handle(msg)
    await gate.commands.drain()
    assert len(world.lane.opens) == 1
    assert sorted(t for t, _ in gate.records) == ["command_executed", "command_refused"]


async def test_a_command_replayed_after_a_restart_is_refused(world: World):
    gate = await world.gate()
    cmd = command()
    await world.publish("open", cmd)
    await settled(gate, 1)
    assert len(world.lane.opens) == 1
    await gate.stop()  # the daemon stops; its database stays
    restarted = await world.gate()
    await world.publish("open", cmd)  # replayed while still fresh
    await settled(restarted, 1)
    assert restarted.of("command_refused")[0]["reason"] == "already seen"
    assert len(world.lane.opens) == 1


async def test_old_and_future_commands_are_refused(world: World):
    gate = await world.gate()
    await world.publish("open", command(ts=time.time() - MAX_AGE_S - 5))
    await world.publish("open", command(ts=time.time() + MAX_AGE_S + 5))
    await settled(gate, 2)
    assert [d["reason"] for d in gate.of("command_refused")] == ["too old", "from the future"]
    assert world.lane.opens == []
    assert await gate.store.read(commands_seen.count) == 0  # refused ids are not taken


async def test_a_gateway_whose_clock_starts_in_1970_refuses(world: World):
    clock = WallClock(synced=False)
    gate = await world.gate(clock)
    await world.publish("open", command())
    await world.publish("open", command(ts=clock.wall()))  # even one "fresh" by its clock
    await settled(gate, 2)
    assert [d["reason"] for d in gate.of("command_refused")] == ["clock not synchronised"] * 2
    assert world.lane.opens == []


@pytest.mark.parametrize(("change", "reason"), [
    ({"id": None}, "malformed"),
    ({"id": "short"}, "malformed"),
    ({"id": "abcdefgh\n"}, "malformed"),
    ({"id": "has space in it"}, "malformed"),
    ({"id": "x" * 65}, "malformed"),
    ({"ts": None}, "malformed"),
    ({"ts": "2026-12-01T17:00:00"}, "malformed"),  # no offset
    ({"ts": "yesterday at five"}, "malformed"),
    ({"ts": 1764608400}, "malformed"),
    ({"token": "wrong"}, "bad token"),
    ({"lane_id": "exit-9"}, "no lane 'exit-9'"),
])
async def test_a_malformed_unauthenticated_or_misaddressed_command_is_refused(
        world: World, change: dict[str, Any], reason: str):
    gate = await world.gate()
    cmd = {k: v for k, v in {**command(), **change}.items() if v is not None}
    await world.publish("open", cmd)
    await settled(gate, 1)
    [refused] = gate.of("command_refused")
    assert refused["reason"].startswith(reason)
    assert world.lane.opens == []
    assert TOKEN not in json.dumps(gate.records) and "wrong" not in json.dumps(gate.records)


async def test_seen_ids_are_pruned_after_a_few_max_ages(tmp_path: Path):
    store = await Store.open(tmp_path / "g.db")
    try:
        assert await store.write(lambda c: commands_seen.take(c, "old-command", 1000.0, 300.0))
        assert not await store.write(
            lambda c: commands_seen.take(c, "old-command", 1001.0, 300.0))
        assert await store.write(lambda c: commands_seen.take(c, "new-command", 1400.0, 300.0))
        assert not await store.read(lambda c: commands_seen.seen(c, "old-command"))
        for i in range(5):
            def flood(c: sqlite3.Connection, i: int = i) -> bool:
                return commands_seen.take(c, f"flood-{i:04}", 1500.0 + i, 300.0, max_rows=3)
            assert await store.write(flood)
        assert await store.read(commands_seen.count) == 3
    finally:
        await store.close()
