"""Telemetry drain rate against a local Mosquitto, in one run:
  - the outbox drain (SQLite outbox -> QoS 1 publish -> broker ack -> removed from the
    outbox) for a backlog of N events;
  - raw paho-mqtt QoS 1 publishing of the same payloads (its own network thread, all acks
    awaited) as the ceiling, with as many publishes unacknowledged as the broker takes (its
    CONNACK's Receive Maximum: 20 for Mosquitto), as the outbox keeps to;
  - the ratio, and how long a day of a busy gate takes to drain;
  - in detail, the gateway's MQTT link alone (``MqttConnection`` publishing the same
    payloads from memory, no outbox, the same window): what the outbox itself costs.

The gateway's link reads, decodes PUBACKs and writes in bulk (gateway/telemetry/pahoclient.py:
one ``recv`` per burst of PUBACKs instead of three or four per packet, no reason-code and
property objects built for an accepted publish, queued publishes joined into one ``send``),
so it does less per message than paho-mqtt as shipped: the ratio can exceed 1.

The drain is timed until the publisher has removed all N from the outbox (its own count,
read on the loop; then checked in SQLite), not by asking SQLite every few milliseconds: such
a poll waits on, and delays, the drain's own reads and commits on the store's one thread.
Each side runs ``--rounds`` times, alternately (the machine is shared); the medians are
compared. Raw paho with 200 unacknowledged, beyond the broker's Receive Maximum (what this
benchmark used to compare with; a stricter broker disconnects such a client), is reported
beside it.

    python bench/telemetry_drain.py [--events N] [--rounds R] [--quick] [--json FILE]
Aim: at least 70% of the raw rate; a day of a busy gate drained in under a minute.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench.report import Report, parser  # noqa: E402
from gateway.store import Store, events  # noqa: E402
from gateway.telemetry.mqtt import MqttConnection, MqttOptions  # noqa: E402
from gateway.telemetry.publisher import TelemetryPublisher  # noqa: E402
from tests.broker import Broker  # noqa: E402

BUSY_DAY_EVENTS = 3000 * 9  # 3,000 vehicles a day, about 9 events each
WINDOW = TelemetryPublisher.__init__.__kwdefaults__["inflight"]  # the outbox's own window


def fill(conn, n: int) -> None:
    for i in range(n):
        events.append(conn, gate_id="bench", type="vehicle_detected", lane_id="entry-1",
                      ts="2026-11-25T14:00:00.000+00:00",
                      data={"lane_id": "entry-1", "direction": "entry", "n": i})


async def outbox_rate(port: int, n: int, tmp: Path) -> float:
    store = await Store.open(tmp / "drain.sqlite3")
    await store.write(lambda c: fill(c, n))
    mqtt = MqttConnection(MqttOptions("127.0.0.1", port, client_id="bench-gate"))

    async def nothing() -> dict[str, object]:
        return {}

    publisher = TelemetryPublisher(mqtt, store, prefix="bench", gate_id="g", state=nothing,
                                   metrics=nothing, metrics_interval_s=3600)
    mqtt.start()
    await mqtt.wait_connected()
    await asyncio.sleep(0.2)
    t0 = time.perf_counter()
    publisher.start()
    while publisher.published < n:  # noqa: ASYNC110 - a counter, no event to await
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - t0
    left = await store.read(events.outbox_pending)
    await publisher.stop()
    await mqtt.stop()
    await store.close()
    if left:
        raise RuntimeError(f"{left} events still in the outbox after {n} were counted sent")
    return n / elapsed


async def link_rate(port: int, payloads: list[bytes], window: int) -> float:
    """The gateway's MQTT link alone: the payloads from memory, ``window`` unacknowledged
    at most (as the outbox keeps), no SQLite."""
    mqtt = MqttConnection(MqttOptions("127.0.0.1", port, client_id="bench-link"))
    mqtt.start()
    await mqtt.wait_connected()
    await asyncio.sleep(0.2)
    flying: deque[asyncio.Future[None]] = deque()
    t0 = time.perf_counter()
    for p in payloads:
        if len(flying) >= window:
            await flying.popleft()
        flying.append(mqtt.publish("bench/link/events", p, qos=1))
    for fut in flying:
        await fut
    elapsed = time.perf_counter() - t0
    await mqtt.stop()
    return len(payloads) / elapsed


def receive_maximum(port: int) -> int:
    """The broker's Receive Maximum, from its CONNACK (65,535 when it names none)."""
    got: list[int] = []
    done = threading.Event()

    def on_connect(client, userdata, flags, reason, props):
        got.append(getattr(props, "ReceiveMaximum", 65535))
        done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-quota",
                         protocol=paho.MQTTv5)
    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    done.wait(10)
    client.loop_stop()
    client.disconnect()
    return got[0]


def raw_rate(port: int, payloads: list[bytes], inflight: int) -> float:
    done = threading.Event()
    acked = 0
    lock = threading.Lock()

    def on_publish(client, userdata, mid, rc, props):
        nonlocal acked
        with lock:
            acked += 1
            if acked == len(payloads):
                done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw",
                         protocol=paho.MQTTv5)
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    for p in payloads:
        client.publish("bench/raw/events", p, qos=1)
    done.wait(120)
    elapsed = time.perf_counter() - t0
    client.loop_stop()
    client.disconnect()
    return len(payloads) / elapsed


async def main() -> None:
    p = parser(__doc__)
    p.add_argument("--events", type=int, help="backlog (10,000; quick 1,000)")
    p.add_argument("--rounds", type=int, help="of each side, alternately (3; quick 1)")
    args = p.parse_args()
    n = args.events or (1000 if args.quick else 10_000)
    rounds = args.rounds or (1 if args.quick else 3)
    report = Report("telemetry_drain", "Telemetry: outbox drain to a local Mosquitto (QoS 1)",
                    quick=args.quick)
    drains: list[float] = []
    raws: list[float] = []
    beyond: list[float] = []
    links: list[float] = []
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        broker = Broker(Path(tmp))
        await broker.start()
        try:
            quota = await asyncio.to_thread(receive_maximum, broker.port)
            sample = {"seq": 1, "event_id": "x" * 36, "gate_id": "bench",
                      "type": "vehicle_detected", "ts": "2026-11-25T14:00:00.000+00:00",
                      "lane_id": "entry-1", "wall_synced": True,
                      "data": {"lane_id": "entry-1", "direction": "entry", "n": 1}}
            payloads = [msgspec.json.encode({**sample, "seq": i}) for i in range(n)]
            for i in range(rounds):
                run = Path(tmp) / f"round{i}"
                run.mkdir()
                drains.append(await outbox_rate(broker.port, n, run))
                raws.append(await asyncio.to_thread(raw_rate, broker.port, payloads,
                                                    min(quota, 65535)))
                beyond.append(await asyncio.to_thread(raw_rate, broker.port, payloads, 200))
                links.append(await link_rate(broker.port, payloads, WINDOW))
        finally:
            await broker.stop()
    drain, raw, raw_200, link = (statistics.median(x) for x in (drains, raws, beyond, links))
    print(f"  backlog of {n} events; the broker's Receive Maximum {quota}; medians of "
          f"{rounds} round(s)")
    report.figure("outbox_rate", drain, "events/s",
                  "outbox drain (SQLite → publish → ack → removed)")
    report.figure("raw_rate", raw, "events/s",
                  f"raw paho-mqtt QoS 1, same payloads, {quota} in flight (ceiling)")
    report.ratio("outbox_vs_raw", drain / raw, "outbox drain ÷ raw paho-mqtt", of="raw_rate",
                 aim=(">=", 0.7))
    report.figure("raw_200_rate", raw_200, "events/s",
                  "raw paho-mqtt, 200 in flight (beyond the broker's Receive Maximum)",
                  detail=True)
    report.ratio("outbox_vs_raw_200", drain / raw_200, "outbox drain ÷ raw, 200 in flight",
                 of="raw_200_rate", detail=True)
    report.figure("link_rate", link, "events/s",
                  "the gateway's MQTT link alone, same payloads from memory (no outbox)",
                  detail=True)
    report.ratio("outbox_vs_link", drain / link,
                 "outbox drain ÷ its link alone (the outbox's own cost)", of="link_rate",
                 detail=True)
    report.figure("busy_day_s", BUSY_DAY_EVENTS / drain, "s",
                  f"a busy day ({BUSY_DAY_EVENTS:,} events) drained", aim=("<=", 60.0))
    report.save(args.json)

if __name__ == "__main__":
    asyncio.run(main())
