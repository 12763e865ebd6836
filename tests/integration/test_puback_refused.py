"""A broker that refuses publishes (Mosquitto's ACL: PUBACK 0x87, not authorised, to a v5
client that stays connected): the refused events stay in the outbox, the refusal is counted,
reported and recorded once; once the broker accepts again (the ACL file swapped, SIGHUP) the
events arrive in ``seq`` order, with no gap and no repeat, and leave the outbox."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.clock import SystemClock, iso
from gateway.core.backoff import BackoffSchedule
from gateway.store import events
from gateway.store.store import Store
from gateway.telemetry.mqtt import MqttConnection, MqttOptions
from gateway.telemetry.publisher import TelemetryPublisher
from tests.broker import Broker
from tests.e2e.daemon import until

PREFIX = "parking"
GATE = "g1"
EVENTS = f"{PREFIX}/gates/{GATE}/events"
# the gate may publish its state, metrics and availability, but not its events
DENY = f"""
user gate
topic readwrite {PREFIX}/gates/{GATE}/state
topic readwrite {PREFIX}/gates/{GATE}/metrics
topic readwrite {PREFIX}/gates/{GATE}/availability

user monitor
topic read {PREFIX}/#
"""
ALLOW = DENY.replace("user monitor", f"topic readwrite {EVENTS}\n\nuser monitor")
N = 20


async def test_refused_events_stay_in_the_outbox_until_the_broker_accepts_them(tmp_path):
    broker = Broker(tmp_path, acl=DENY)
    await broker.start()
    store = await Store.open(tmp_path / "g.sqlite3")
    clock = SystemClock()
    received: list[dict[str, Any]] = []
    monitor = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="monitor",
                                         username="monitor"))
    monitor.subscribe(EVENTS, lambda m: received.append(json.loads(m.payload)))
    gate = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="gate",
                                      username="gate"))

    async def state() -> dict[str, Any]:
        return {"gate_id": GATE, "lanes": []}

    publisher = TelemetryPublisher(gate, store, prefix=PREFIX, gate_id=GATE, state=state,
                                   metrics=state, metrics_interval_s=3600)
    # retried soon in a test (in service: from a second up to half a minute)
    publisher.refusal_backoff = BackoffSchedule(initial_s=0.2, max_delay_s=0.5, retries=None,
                                                jitter=0.0)
    store.on_commit.append(publisher.changed)

    async def pending() -> int:
        return await store.read(events.outbox_pending)

    async def of(type_: str) -> list[dict[str, Any]]:
        return await store.read(lambda c: events.list_after(c, 0, 1000, type=type_))

    monitor.start()
    await monitor.wait_connected()
    gate.start()
    publisher.start()
    try:
        await gate.wait_connected()
        ts = iso(clock.wall())
        # in one commit: the first window carries them all
        await store.write(lambda c: [events.append(c, gate_id=GATE, type="test_event", ts=ts,
                                                   data={"i": i}, wall_synced=True)
                                     for i in range(N)])

        # -- refused: nothing leaves the outbox ------------------------------------------
        async def answered() -> bool:
            return await pending() != N  # the broker answered the first window

        await until(answered, what="the broker's answer to the first events")
        await asyncio.sleep(1.0)  # a few retries, all refused
        left = await pending()
        assert left >= N, f"{N - left} refused event(s) deleted from the outbox as delivered"
        assert received == []
        assert gate.connected and gate.reconnects == 0  # refused, not disconnected
        assert publisher.published == 0
        assert publisher.publishes_refused["Not authorized"] >= N
        assert "Not authorized" in gate.last_error  # in /api/status: services.mqtt.error
        assert publisher.refusing == "Not authorized"
        refused = await of("telemetry_refused")
        assert len(refused) == 1, "one fault per refusal episode, not one per refused publish"
        assert refused[0]["data"]["reason"] == "Not authorized"
        assert refused[0]["data"]["code"] == 0x87
        assert refused[0]["data"]["topic"] == EVENTS
        assert await of("telemetry_recovered") == []
        assert left == N + 1  # the refusal's own event waits its turn too

        # -- the ACL allows the events again ----------------------------------------------
        broker.set_acl(ALLOW)
        await broker.reload()
        await until(lambda: len(received) >= N + 2, what="every event delivered")

        async def drained() -> bool:
            return await pending() == 0

        await until(drained, what="the outbox emptied")
        await asyncio.sleep(0.3)  # nothing more arrives
        stored = await store.events_after(0, 1000)
        assert [e["seq"] for e in received] == [e["seq"] for e in stored] \
            == list(range(1, N + 3)), "in seq order, no gap, no repeat"
        assert [e["event_id"] for e in received] == [e["event_id"] for e in stored]
        assert [e["type"] for e in received[-2:]] == ["telemetry_refused",
                                                      "telemetry_recovered"]
        recovered = await of("telemetry_recovered")
        assert len(recovered) == 1
        assert recovered[0]["data"]["reason"] == "Not authorized"
        assert recovered[0]["data"]["refused"] == publisher.publishes_refused["Not authorized"]
        assert publisher.published == N + 2
        assert publisher.refusing is None
        assert gate.last_error == ""
        assert gate.reconnects == 0
    finally:
        await publisher.stop()
        await gate.stop()
        await monitor.stop()
        await store.close()
        await broker.stop()
