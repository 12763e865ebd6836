"""Telemetry with a real Mosquitto that the test stops and restarts, and a daemon that is
SIGKILLed and restarted: every event arrives, in seq order, with no gap."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.clock import iso
from gateway.sim.central import SimCentralState
from tests.broker import Broker
from tests.conftest import start_central
from tests.e2e.daemon import ADMIN_TOKEN, Daemon, e2e_config, get, until

PREFIX = "parking/gates/e2e-gate"


class Monitor:
    """A central-monitoring subscriber with a persistent session (it misses nothing while
    the broker is down); paho's own thread is fine for a test peer."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.retained: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="monitor",
                                  protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{PREFIX}/#", qos=1)
        self.client.on_message = self._message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            if msg.topic.endswith("/events"):
                self.events.append(json.loads(msg.payload))
            else:
                user = dict(getattr(msg.properties, "UserProperty", []) or [])
                self.retained[msg.topic.rsplit("/", 1)[-1]] = (bytes(msg.payload), user)

    def seqs(self) -> list[int]:
        with self.lock:
            return [e["seq"] for e in self.events]

    def availability(self) -> tuple[bytes, dict[str, str]] | None:
        with self.lock:
            return self.retained.get("availability")

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@asynccontextmanager
async def gate_with_broker(tmp_path: Path, telemetry: str = "",
                           **broker_options: Any) -> AsyncIterator[tuple[Broker, Daemon]]:
    """A Mosquitto, the sim central and a daemon configured for both (not yet started);
    all stopped at the end."""
    (tmp_path / "mq").mkdir()
    broker = Broker(tmp_path / "mq", **broker_options)
    await broker.start()
    central = await start_central(SimCentralState())
    config = tmp_path / "gateway.toml"
    config.write_text(e2e_config(tmp_path / "data", central.url,
                                 f"[mqtt]\nport = {broker.port}\n{telemetry}\n"))
    daemon = Daemon(config)
    try:
        yield broker, daemon
    finally:
        try:
            if daemon.proc is not None:
                await daemon.stop()
        finally:
            await central.runner.cleanup()
            await broker.stop()


def no_gap(events: list[dict[str, Any]], upto: int) -> bool:
    """All of 1..upto arrived in order; a repeat only as a redelivery (same seq and id)."""
    first: dict[int, str] = {}
    last = 0
    for e in events:
        if e["seq"] in first:
            assert first[e["seq"]] == e["event_id"], "a repeat with a different event_id"
            continue
        assert e["seq"] == last + 1, f"gap or disorder: {last} then {e['seq']}"
        first[e["seq"]] = e["event_id"]
        last = e["seq"]
    return last >= upto


async def drive(http: aiohttp.ClientSession, url: str, plate: str) -> None:
    async with http.post(f"{url}/api/sim/lanes/entry-1/vehicles", json={"plate": plate}) as r:
        vid = (await r.json())["vehicle_id"]

    async def done() -> bool:
        return bool((await get(http, f"{url}/api/sim/vehicles/{vid}"))["status"] == "passed")
    await until(done)

    async def settled() -> bool:  # the next vehicle comes once the barrier is down again
        status = await get(http, f"{url}/api/status")
        return all(lane["state"] == "idle" for lane in status["lanes"])
    await until(settled)


async def test_broker_outage_kill_and_restart_lose_nothing(tmp_path):
    (tmp_path / "mq").mkdir()
    broker = Broker(tmp_path / "mq", persistent=True)
    await broker.start()
    central = await start_central(SimCentralState())
    config = tmp_path / "gateway.toml"
    config.write_text(e2e_config(tmp_path / "data", central.url, f"""
[mqtt]
port = {broker.port}
[telemetry]
state_min_interval_s = 0.05
"""))
    monitor = Monitor(broker.port)
    daemon = Daemon(config)
    try:
        await daemon.start()
        async with aiohttp.ClientSession() as http:
            url = daemon.url
            await until(lambda: (monitor.availability() or (b"",))[0] == b"online")
            await drive(http, url, "A1")
            # the broker goes away while vehicles pass; the daemon goes on
            await broker.stop()
            for plate in ("A2", "A3", "A4"):
                await drive(http, url, plate)
            last = (await get(http, f"{url}/api/events?limit=1000"))[-1]["seq"]
            status = await get(http, f"{url}/api/status")
            assert status["services"]["mqtt"]["connected"] is False
            assert status["outbox"]["pending"] > 0
            await broker.start()
            await until(lambda: no_gap(monitor.events, last), 30)
            def state() -> Any:
                with monitor.lock:
                    return json.loads(monitor.retained["state"][0])
            # the retained state catches up with the gate (on change, rate-limited)
            await until(lambda: state()["occupancy"]["allocated"] == 4, 10)
            assert state()["gate_id"] == "e2e-gate"

            # SIGKILL: the last will says offline; a backlog waits in the outbox meanwhile
            await broker.stop()
            for plate in ("B1", "B2"):
                await drive(http, url, plate)
            await broker.start()
            await daemon.stop(signal.SIGKILL)
        await until(lambda: (monitor.availability() or (b"",))[0] == b"offline", 30)
        assert monitor.availability()[1].get("reason") == "connection_lost"
        daemon = Daemon(config)
        await daemon.start()
        async with aiohttp.ClientSession() as http:
            url = daemon.url
            await until(lambda: (monitor.availability() or (b"",))[0] == b"online", 30)
            await drive(http, url, "C1")
            last = (await get(http, f"{url}/api/events?limit=1000"))[-1]["seq"]
            await until(lambda: no_gap(monitor.events, last), 30)
        assert await daemon.stop() == 0  # a clean stop says so
        await until(lambda: monitor.availability()[1].get("reason") == "clean_stop", 10)
        assert monitor.availability()[0] == b"offline"
    finally:
        if daemon.proc is not None and daemon.proc.returncode is None:
            await daemon.stop()
        monitor.stop()
        await central.runner.cleanup()
        await broker.stop()


async def test_remote_commands_are_authenticated_recorded_and_safe(tmp_path):
    async with gate_with_broker(tmp_path, "[telemetry]\ncommands = true") as (broker, daemon):
        await commands_are_authenticated_recorded_and_safe(broker, daemon)


async def commands_are_authenticated_recorded_and_safe(broker: Broker, daemon: Daemon) -> None:
    operator = paho.Client(CallbackAPIVersion.VERSION2, client_id="operator",
                           protocol=paho.MQTTv5)
    operator.connect("127.0.0.1", broker.port)
    operator.loop_start()
    try:
        await daemon.start()
        async with aiohttp.ClientSession() as http:
            url = daemon.url

            async def connected() -> bool:
                return bool((await get(http, f"{url}/api/status"))["services"]["mqtt"]
                            ["connected"])
            await until(connected)
            await asyncio.sleep(0.2)  # the command subscription reaches the broker
            cmd = f"{PREFIX}/cmd"

            def fresh(**fields: str) -> str:  # a unique id and the sender's wall time
                return json.dumps({"id": uuid.uuid4().hex, "ts": iso(time.time()), **fields})
            operator.publish(f"{cmd}/open", fresh(token="wrong", lane_id="entry-1"), qos=1)
            operator.publish(f"{cmd}/open", b"{not json", qos=1)
            operator.publish(f"{cmd}/open", fresh(token=ADMIN_TOKEN, lane_id="entry-1",
                                                  who="central-op"), qos=1)
            operator.publish(f"{cmd}/mode", fresh(token=ADMIN_TOKEN, lane_id="exit-1",
                                                  mode="closed"), qos=1)

            async def recorded() -> list[dict[str, Any]] | None:
                evs = await get(http, f"{url}/api/events?limit=1000")
                kinds = [e["type"] for e in evs]
                return evs if kinds.count("command_refused") == 2 and \
                    kinds.count("command_executed") == 2 else None
            evs = await until(recorded)
            refused = [e["data"]["reason"] for e in evs if e["type"] == "command_refused"]
            assert "bad token" in refused and any("malformed" in r for r in refused)
            manual = [e for e in evs if e["type"] == "manual_open"]
            assert len(manual) == 1 and manual[0]["data"]["who"] == "central-op"
            assert ADMIN_TOKEN not in json.dumps(evs) and "wrong" not in json.dumps(evs)
            # the closed exit lane lets nobody out
            async with http.post(f"{url}/api/sim/lanes/exit-1/vehicles",
                                 json={"plate": "34ABC123"}) as r:
                vid = (await r.json())["vehicle_id"]

            async def left() -> bool:
                return bool((await get(http, f"{url}/api/sim/vehicles/{vid}"))["status"]
                            == "left")
            await until(left)
            evs = await get(http, f"{url}/api/events?limit=1000")
            assert any(e["type"] == "exit_denied" and e["data"]["reason"] == "lane_closed"
                       for e in evs)
    finally:
        operator.loop_stop()
        operator.disconnect()


async def test_a_broker_refusing_the_events_is_a_problem_until_it_takes_them(tmp_path):
    """An ACL that refuses the gate's events (PUBACK 0x87): the events stay in the outbox,
    /healthz says why and /metrics counts the refusals; once the ACL allows them they are
    delivered and the gate is healthy again."""
    gate = f"topic readwrite {PREFIX}/state\ntopic readwrite {PREFIX}/metrics\n" \
           f"topic readwrite {PREFIX}/availability\ntopic read {PREFIX}/cmd/#\n" \
           "topic read parking/#\n"
    async with gate_with_broker(tmp_path, acl=gate) as (broker, daemon):
        await daemon.start()
        async with aiohttp.ClientSession() as http:
            url = daemon.url

            async def health() -> tuple[int, Any]:
                async with http.get(f"{url}/healthz") as r:
                    return r.status, await r.json()

            async def refused() -> bool:
                code, body = await health()
                return code == 503 and any("broker refuses publishes" in p
                                           for p in body["problems"])

            await drive(http, url, "A1")
            await until(refused, 15)
            async with http.get(f"{url}/metrics") as r:
                text = await r.text()
            assert "parking_mqtt_publishes_refused_total" in text
            assert 'parking_task_restarts_total{task="offline sync"} 0.0' in text
            assert (await get(http, f"{url}/api/status"))["outbox"]["pending"] > 0
            broker.set_acl(gate + f"topic readwrite {PREFIX}/events\n")
            await broker.reload()

            async def delivered() -> bool:
                status = await get(http, f"{url}/api/status")
                return status["outbox"]["pending"] == 0 and (await health())[0] == 200

            await until(delivered, 30)
