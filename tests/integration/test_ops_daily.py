"""The daily summary on a running gate: a real Gateway (sim lanes, its database), real
vehicles, a real broker. Its wall clock is the simulation's (``OffsetClock``), set to a day
of its own and then to just before that day's midnight, as the campaign shifts it.

- ``GET /api/summary/daily?day=`` (``daily_summary_handler`` on a real aiohttp server over
  the Gateway) counts the day's vehicles, decisions by source, denials by reason.
- ``publish_daily_summaries``: at start the day before is published retained; just after
  midnight the day that ended, with the vehicles of that day; the summary is recorded once
  as a ``daily_summary`` event (the durable outbox), also across a restart of the task (a
  quiet day is published, not recorded), and a subscriber that comes later gets the
  retained message; a broker whose ACL refuses the topic is told in the log, and the gate
  is not unhealthy for it.
About 8 s (a Gateway start, three vehicles, a midnight; the refusal 1 s).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.app import Gateway
from gateway.ops.daily import daily_summary_handler, daily_topic, publish_daily_summaries
from gateway.settings import parse_settings
from gateway.sim.central import SimCentralState
from gateway.sim.daemon_faults import OffsetClock
from gateway.store.store import Store
from gateway.telemetry.mqtt import MqttConnection, MqttOptions
from gateway.web.http import GATEWAY
from tests.broker import Broker
from tests.conftest import start_central
from tests.e2e.daemon import ADMIN_TOKEN, e2e_config, until

DAY = date(2031, 3, 14)
NOON = datetime(2031, 3, 14, 12, tzinfo=UTC).timestamp()
MIDNIGHT = datetime(2031, 3, 15, tzinfo=UTC).timestamp()


def set_wall(clock: OffsetClock, wall: float) -> None:
    clock.offset_s = wall - time.time()


async def drive(gw: Gateway, lane: str, plate: str) -> dict[str, Any]:
    assert gw.sim is not None
    vehicle = gw.sim.add_vehicle(lane, plate, "pass")
    last: dict[str, Any] = await until(
        lambda: gw.lanes[lane].last.get("license_plate") == plate and gw.lanes[lane].last,
        15, f"{plate}'s saga on {lane}")
    await until(lambda: vehicle.status in ("passed", "left"), 10, f"{plate} done")
    await until(lambda: gw.lanes[lane].lane.state.value == "idle", 10, f"{lane} at rest")
    return last


async def test_the_daily_summary_on_the_page_and_over_mqtt(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    await broker.start()
    central = await start_central(SimCentralState(blocked={"66BAD66"}))
    settings = parse_settings(
        e2e_config(tmp_path / "data", central.url, extra=f"[mqtt]\nport = {broker.port}\n"),
        env={"GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN})
    gw = Gateway(settings)
    got: list[tuple[bool, dict[str, Any]]] = []
    watcher = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="monitoring"))
    topic = daily_topic("parking", "e2e-gate")
    watcher.subscribe(topic, lambda m: got.append((bool(m.retain), json.loads(m.payload))))
    watcher.start()
    await gw.start()
    site: web.AppRunner | None = None
    task: asyncio.Task[None] | None = None
    try:
        clock = gw.clock
        assert isinstance(clock, OffsetClock)
        set_wall(clock, NOON)
        assert (await drive(gw, "entry-1", "34ABC123"))["status"] == "completed"
        assert (await drive(gw, "entry-1", "66BAD66"))["status"] == "compensated"
        assert (await drive(gw, "exit-1", "34ABC123"))["status"] == "completed"

        # the page's endpoint, on a real server over this Gateway
        app = web.Application()
        app[GATEWAY] = gw
        app.router.add_get("/api/summary/daily", daily_summary_handler)
        site = web.AppRunner(app)
        await site.setup()
        tcp = web.TCPSite(site, "127.0.0.1", 0)
        await tcp.start()
        url = f"http://127.0.0.1:{site.addresses[0][1]}/api/summary/daily"
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as resp:  # today, by the gate's clock: DAY
                assert resp.status == 200
                today = await resp.json()
            async with http.get(url, params={"day": "2031-03-13"}) as resp:
                before = await resp.json()
            for bad in ("14/03/2031", "9999-12-31", "2031-02-30"):
                async with http.get(url, params={"day": bad}) as resp:
                    assert resp.status == 400, bad
        assert today["day"] == "2031-03-14" and today["gate_id"] == "e2e-gate"
        assert today["vehicles"]["in"] == 1 and today["vehicles"]["out"] == 1
        assert today["decisions"]["granted"] == 2 and today["decisions"]["denied"] == 1
        assert today["decisions"]["by_source"] == {"central": 3}
        assert today["denials"]["by_reason"] == {"not authorized: blocked": 1}
        assert today["sagas"] == {"completed": 2, "compensated": 1, "failed": 0}
        assert before["vehicles"] == {"in": 0, "out": 0, "by_lane": {}}

        # a second before midnight: the task publishes the day before at once, then the
        # day that ends, half a second after midnight
        set_wall(clock, MIDNIGHT - 1.0)
        assert gw.mqtt is not None

        def start() -> asyncio.Task[None]:
            return asyncio.create_task(publish_daily_summaries(
                gw.store, gw.mqtt, clock, gate_id="e2e-gate", prefix="parking",
                after_midnight_s=0.5, check_every_s=0.05))

        got.clear()  # (what the Gateway's own task published at start, once it has one)
        task = start()
        await until(lambda: [p for _, p in got if p["day"] == "2031-03-14"], 15,
                    "the summary of the day that ended")
        days = [p["day"] for _, p in got]
        assert days == ["2031-03-13", "2031-03-14"]
        published = got[-1][1]
        assert {k: v for k, v in published.items() if k != "made_at"} == today
        assert clock.wall() >= MIDNIGHT + 0.5

        # recorded once, as an event (the outbox carries it to the events topic too); the
        # quiet day before only published
        async def recorded() -> list[dict[str, Any]]:
            return [e["data"] for e in await gw.store.events_after(0, 1000)
                    if e["type"] == "daily_summary"]
        assert [e["day"] for e in await recorded()] == ["2031-03-14"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        got.clear()
        task = start()  # a restart: the same summary again, not a second record
        await until(lambda: got, 10, "the summary again after a restart")
        assert got[0][1] == published
        assert [e["day"] for e in await recorded()] == ["2031-03-14"]

        # monitoring that subscribes later gets it from the broker (retained)
        late: list[tuple[bool, dict[str, Any]]] = []
        later = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="late"))
        later.subscribe(topic, lambda m: late.append((bool(m.retain), json.loads(m.payload))))
        later.start()
        try:
            await until(lambda: late, 10, "the retained summary")
            assert late[0] == (True, published)
        finally:
            await later.stop()
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if site is not None:
            await site.cleanup()
        await gw.stop()
        await watcher.stop()
        await central.runner.cleanup()
        await broker.stop()


async def test_a_broker_that_refuses_the_topic_is_told_in_the_log_not_a_fault(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An ACL written for the contract's topics only refuses ``…/daily`` (PUBACK 0x87): the
    refusal is logged and the link does not list it as refused (which would make the gate
    unhealthy), and the task waits for the next day; the summary went out as an event."""
    broker = Broker(tmp_path, acl="topic read parking/#\ntopic write parking/gates/g/events\n")
    await broker.start()
    store = await Store.open(tmp_path / "g.sqlite3")
    clock = OffsetClock()
    set_wall(clock, NOON)
    await store.record_event(clock, "g", "vehicle_entered", {"saga_id": "s1"}, "entry-1")
    set_wall(clock, MIDNIGHT + 60.0)
    mqtt = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="g"))
    mqtt.start()
    task = asyncio.create_task(publish_daily_summaries(
        store, mqtt, clock, gate_id="g", prefix="parking", check_every_s=0.05))
    try:
        await until(lambda: any("refuses parking/gates/g/daily" in r.getMessage()
                                for r in caplog.records), 10, "the refusal in the log")
        assert mqtt.refusing == {} and not task.done()
        [event] = [e for e in await store.events_after(0, 100) if e["type"] == "daily_summary"]
        assert event["data"]["day"] == "2031-03-14" and event["data"]["vehicles"]["in"] == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await mqtt.stop()
        await store.close()
        await broker.stop()


async def test_a_gate_in_a_zone_publishes_its_day_after_its_own_midnight(
        tmp_path: Path) -> None:
    """A gate in Tokyo (UTC+9, ``gate.timezone``): a vehicle at 16:00 UTC on 13 March is at
    01:00 on the 14th there, so it is counted in the gate's 14 March; that day is published
    just after Tokyo's midnight (15:00 UTC on the 14th), not after UTC's."""
    tokyo_midnight = datetime(2031, 3, 14, 15, tzinfo=UTC).timestamp()  # 15 March 00:00 JST
    broker = Broker(tmp_path)
    await broker.start()
    store = await Store.open(tmp_path / "g.sqlite3")
    clock = OffsetClock()
    set_wall(clock, datetime(2031, 3, 13, 16, tzinfo=UTC).timestamp())
    await store.record_event(clock, "g", "vehicle_entered", {"saga_id": "s1"}, "entry-1")
    set_wall(clock, tokyo_midnight - 1.0)
    got: list[dict[str, Any]] = []
    watcher = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="monitoring"))
    watcher.subscribe(daily_topic("parking", "g"), lambda m: got.append(json.loads(m.payload)))
    watcher.start()
    mqtt = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="g"))
    mqtt.start()
    await watcher.wait_connected()
    task = asyncio.create_task(publish_daily_summaries(
        store, mqtt, clock, gate_id="g", prefix="parking", timezone="Asia/Tokyo",
        after_midnight_s=0.5, check_every_s=0.05))
    try:
        await until(lambda: [p for p in got if p["day"] == "2031-03-14"], 15,
                    "Tokyo's 14 March, after Tokyo's midnight")
        assert [p["day"] for p in got] == ["2031-03-13", "2031-03-14"]
        assert got[0]["vehicles"]["in"] == 0  # the UTC day of the vehicle is not Tokyo's
        day = got[1]
        assert day["timezone"] == "Asia/Tokyo" and day["vehicles"]["in"] == 1
        assert (day["from"], day["to"]) == ("2031-03-14T00:00:00.000+09:00",
                                            "2031-03-15T00:00:00.000+09:00")
        assert tokyo_midnight + 0.5 <= clock.wall() < MIDNIGHT
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await mqtt.stop()
        await watcher.stop()
        await store.close()
        await broker.stop()
