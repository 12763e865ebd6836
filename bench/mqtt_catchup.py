"""Telemetry catch-up after a broker outage, against a local Mosquitto:
  the gate is connected; the broker stops; 500 events are recorded during the outage (they
  wait in the outbox); after the outage the broker starts again. Measured from the moment
  the broker accepts connections again:
    - to the gate's CONNACK (the reconnect wait: where the broker's return falls in the
      gate's backoff; while the port is closed its connects are refused, and those are
      retried at the short cap, ``reconnect_refused_max_s``, 1 s);
    - to the last of the events delivered (acknowledged by the broker: the outbox empty);
  and the link's connects/disconnects after the restart (1 and 0: no flapping), and that a
  persistent-session subscriber got every event (with no copy beyond the outbox's attempts).

    python bench/mqtt_catchup.py [--events 500] [--outage 30] [--gates 4]
                                 [--reconnect-max 5.0] [--quick] [--json FILE]

``--gates`` gates (each its own outbox and connection) ride out the same outage, so one run
gives as many samples of the reconnect wait (random: where the broker comes back within a
gate's jittered backoff). Aim: the last event delivered within 2 s of the broker's return.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from bench.report import Report, parser  # noqa: E402
from gateway.clock import SystemClock  # noqa: E402
from gateway.store import Store, events  # noqa: E402
from gateway.telemetry.mqtt import MqttConnection, MqttOptions  # noqa: E402
from gateway.telemetry.publisher import TelemetryPublisher  # noqa: E402
from tests.broker import Broker  # noqa: E402


class Subscriber:
    """Central monitoring with a persistent session: it misses nothing while it is down."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.copies: Counter[tuple[str, int]] = Counter()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-monitor",
                                  protocol=paho.MQTTv5)
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("bench/gates/+/events", 1)
        self.client.on_message = self._message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        if not msg.dup:  # the broker's own re-delivery to us is not the gate's doing
            event = json.loads(msg.payload)
            with self.lock:
                self.copies[(event["gate_id"], event["seq"])] += 1

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Gate:
    def __init__(self, name: str, port: int, tmp: Path, reconnect_max_s: float) -> None:
        self.name = name
        self.tmp = tmp
        self.mqtt = MqttConnection(MqttOptions("127.0.0.1", port, client_id=f"bench-{name}",
                                               reconnect_max_s=reconnect_max_s))
        self.sent: Counter[int] = Counter()
        self.connack_at: list[float] = []
        self.mqtt.on_connected.append(lambda: self.connack_at.append(time.monotonic()))
        publish = self.mqtt.publish

        def counting(topic: str, payload: bytes, **kw: Any) -> Any:
            if topic.endswith("/events"):
                self.sent[json.loads(payload)["seq"]] += 1
            return publish(topic, payload, **kw)

        self.mqtt.publish = counting  # type: ignore[method-assign]

    async def start(self) -> None:
        self.store = await Store.open(self.tmp / f"{self.name}.sqlite3")

        async def nothing() -> dict[str, object]:
            return {}

        self.publisher = TelemetryPublisher(self.mqtt, self.store, prefix="bench",
                                            gate_id=self.name, state=nothing,
                                            metrics=nothing, metrics_interval_s=3600)
        self.store.on_commit.append(self.publisher.changed)
        self.mqtt.start()
        await self.mqtt.wait_connected()
        self.publisher.start()

    async def record(self, n: int) -> None:
        clock = SystemClock()
        for i in range(n):
            await self.store.record_event(clock, self.name, "vehicle_detected", {"n": i})

    async def drained_at(self) -> float:
        while await self.store.read(events.outbox_pending):  # noqa: ASYNC110 - SQLite
            await asyncio.sleep(0.002)
        return time.monotonic()

    async def stop(self) -> None:
        await self.publisher.stop()
        await self.mqtt.stop()
        await self.store.close()


async def main() -> None:
    p = parser(__doc__)
    p.add_argument("--events", type=int, help="per gate (500; quick 100)")
    p.add_argument("--outage", type=float, help="seconds (30; quick 3)")
    p.add_argument("--gates", type=int, default=4)
    p.add_argument("--reconnect-max", type=float, help="seconds (5; quick 1)")
    args = p.parse_args()
    args.events = args.events or (100 if args.quick else 500)
    args.outage = args.outage or (3.0 if args.quick else 30.0)
    args.reconnect_max = args.reconnect_max or (1.0 if args.quick else 5.0)
    settle_s = 0.5 if args.quick else 2.0
    report = Report("mqtt_catchup", "Telemetry: catch-up after a broker outage",
                    quick=args.quick)
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        # sized as central monitoring's broker would be for its gates: Mosquitto keeps at
        # most 1,000 QoS 1 messages for a subscriber by default, and 4 gates catching up
        # at once send 2,000 while the subscriber may still be reconnecting (it dropped
        # some in one run of six: the broker's limit, not a gate's loss)
        broker = Broker(Path(tmp), persistent=True, extra=("max_queued_messages 100000",))
        await broker.start()
        subscriber = Subscriber(broker.port)
        gates = [Gate(f"g{i}", broker.port, Path(tmp), args.reconnect_max)
                 for i in range(args.gates)]
        try:
            for gate in gates:
                await gate.start()
            await asyncio.sleep(0.3)
            await broker.stop()
            t_down = time.monotonic()
            for gate in gates:
                await gate.record(args.events)
            await asyncio.sleep(max(0.0, args.outage - (time.monotonic() - t_down)))
            before = [(g.mqtt.connects, g.mqtt.disconnects) for g in gates]
            await broker.start()  # returns once it accepts connections
            t_up = time.monotonic()
            drained = await asyncio.wait_for(
                asyncio.gather(*(g.drained_at() for g in gates)), 60)
            await asyncio.sleep(settle_s)  # the subscriber catches up; a flap would show here
            after = [(g.mqtt.connects, g.mqtt.disconnects) for g in gates]
            total = args.events * len(gates)
            deadline = time.monotonic() + 20
            while len(subscriber.copies) < total and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        finally:
            for gate in gates:
                await gate.stop()
            subscriber.stop()
            await broker.stop()
    print(f"{len(gates)} gates, {args.events} events each recorded during a "
          f"{args.outage:g} s broker outage; reconnect_max_s = {args.reconnect_max:g}")
    print("  gate  broker up -> CONNACK  -> last event delivered  connects  disconnects")
    catchups = []
    for gate, (c0, d0), (c1, d1), done in zip(gates, before, after, drained, strict=True):
        connack = gate.connack_at[-1] - t_up
        catchups.append(done - t_up)
        print(f"  {gate.name:4}  {connack:17.2f} s  {done - t_up:21.2f} s  "
              f"{c1 - c0:8d}  {d1 - d0:11d}")
    got = set(subscriber.copies)
    missing = args.events * len(gates) - len(got)
    extra = sum(1 for (name, seq), n in subscriber.copies.items()
                if n > next(g for g in gates if g.name == name).sent[seq])
    report.figure("catchup_median_s", statistics.median(catchups), "s",
                  f"broker back → last of {args.events} events delivered, median of "
                  f"{len(gates)} gates")
    report.figure("catchup_max_s", max(catchups), "s", "… the slowest gate",
                  aim=("<=", 2.0))
    report.figure("missing", missing, "events", "events a subscriber missed", aim=("<=", 0))
    report.figure("extra_copies", extra, "events",
                  "copies beyond the outbox's attempts", aim=("<=", 0))
    report.figure("flaps", sum(d1 - d0 for (_, d0), (_, d1) in zip(before, after, strict=True)),
                  "", "disconnects after the broker's return", aim=("<=", 0))
    report.note(f"{len(gates)} gates, {args.outage:g} s outage, reconnect_max_s "
                f"{args.reconnect_max:g}: the reconnect wait is random within the backoff, "
                "and a refused connect is retried at the short cap (1 s), so the catch-up is "
                "at most about that plus the drain")
    report.save(args.json)

if __name__ == "__main__":
    asyncio.run(main())
