"""The MQTT link across outages, against a real Mosquitto (and small TCP peers that misbehave):
after a broker restart the link connects once and stays up (no flapping); reconnect delays
are jittered and capped at the configured maximum, a refused TCP connect (the broker's port
closed while it restarts) at a short cap, so the link is back soon after the port reopens;
the failure count resets only on a CONNACK (a peer that accepts TCP and never answers keeps
the link backing off to the full cap); packets that arrive together are all handled at
once; no more QoS 1 publishes are unacknowledged than the broker's Receive Maximum; and
after an outage every outbox event reaches a subscriber once per delivery attempt of the
outbox, with no extra copy from paho's own re-send of unacknowledged QoS 1 messages."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import statistics
import threading
import time
from collections import Counter
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.clock import SystemClock
from gateway.store import events
from gateway.store.store import Store
from gateway.telemetry.mqtt import MqttConnection, MqttOptions
from gateway.telemetry.publisher import TelemetryPublisher
from tests.broker import Broker
from tests.e2e.daemon import until

PREFIX = "parking"
GATE = "g1"
EVENTS = f"{PREFIX}/gates/{GATE}/events"


class LinkCounter:
    """Counts the link's connects (CONNACKs, by the on_connected hook) and disconnects."""

    def __init__(self, conn: MqttConnection) -> None:
        self.connects = 0
        self.disconnects = 0
        conn.on_connected.append(self._connected)
        self._task = asyncio.create_task(self._watch(conn))

    def _connected(self) -> None:
        self.connects += 1

    async def _watch(self, conn: MqttConnection) -> None:
        while True:
            await conn.wait_connected()
            await conn.wait_disconnected()
            self.disconnects += 1

    def close(self) -> None:
        self._task.cancel()


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One MQTT packet: its first byte and its body."""
    head = (await reader.readexactly(1))[0]
    size = shift = 0
    while True:
        byte = (await reader.readexactly(1))[0]
        size |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return head, await reader.readexactly(size)


def publish_packet(topic: bytes, payload: bytes) -> bytes:
    """A v5 QoS 0 PUBLISH, no properties (short: one length byte)."""
    body = len(topic).to_bytes(2, "big") + topic + b"\x00" + payload
    return bytes([0x30, len(body)]) + body


class Peer:
    """A TCP server on 127.0.0.1 that records when each connection arrives and then either
    closes it at once (``close``), reads and never answers (no CONNACK), or (``burst``)
    accepts the connection, answers the first SUBSCRIBE with its SUBACK and two messages on
    ``t`` in one write, and then says nothing more."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.accepted: list[float] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.append(asyncio.get_running_loop().time())
        try:
            if self.mode == "close":
                return
            if self.mode == "burst":
                await read_packet(reader)  # CONNECT
                writer.write(b"\x20\x03\x00\x00\x00")  # CONNACK: success, no properties
                kind, body = await read_packet(reader)
                assert kind == 0x82, kind  # SUBSCRIBE: its message id, then the rest
                suback = body[:2] + b"\x00\x01"  # no properties, QoS 1 granted
                writer.write(bytes([0x90, len(suback)]) + suback + publish_packet(b"t", b"m1")
                             + publish_packet(b"t", b"m2"))
            while await reader.read(4096):
                pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


class Proxy:
    """A TCP relay in front of the broker. While ``hold`` is set, nothing the broker sends
    reaches the client (its PUBACKs are held back); ``cut`` closes every relayed pair."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.hold = False
        self.connections = 0
        self.pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self.pairs.append((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, held: bool) -> None:
            try:
                while data := await src.read(65536):
                    if held and self.hold:
                        continue  # dropped: as if lost with the connection
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))

    def cut(self) -> None:
        for a, b in self.pairs:
            a.close()
            b.close()
        self.pairs.clear()

    async def stop(self) -> None:
        self.cut()
        assert self.server is not None
        self.server.close()


class Monitor:
    """Central monitoring: a persistent session (clean_start False, a session expiry), so it
    misses nothing while it or the broker is down; paho's own thread, fast reconnects."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.copies: Counter[int] = Counter()  # first deliveries by the broker, per seq
        self.redelivered: Counter[int] = Counter()  # the broker's own re-deliveries (DUP)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="monitor",
                                  protocol=paho.MQTTv5)
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(EVENTS, qos=1)
        self.client.on_message = self._message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        seq = json.loads(msg.payload)["seq"]
        with self.lock:
            (self.redelivered if msg.dup else self.copies)[seq] += 1

    def seen(self) -> set[int]:
        with self.lock:
            return set(self.copies) | set(self.redelivered)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def outbox_publisher(gate: MqttConnection, store: Store) -> TelemetryPublisher:
    """The gateway's telemetry publisher over ``gate``, woken by ``store``'s commits (a bare
    state and no metrics of its own to speak of)."""
    async def state() -> dict[str, Any]:
        return {"gate_id": GATE, "lanes": []}

    publisher = TelemetryPublisher(gate, store, prefix=PREFIX, gate_id=GATE, state=state,
                                   metrics=state, metrics_interval_s=3600)
    store.on_commit.append(publisher.changed)
    return publisher


def slow_network(monkeypatch: Any, port: int, delay_s: float) -> None:
    """TCP connects to ``port`` take ``delay_s`` (a distant broker, a lost SYN sent again, a
    TLS handshake): connection set-up spans a tick of the misc loop (1 s)."""
    real = socket.create_connection

    def connect(address: Any, *args: Any, **kw: Any) -> socket.socket:
        if address[1] == port:
            time.sleep(delay_s)  # in the connect's worker thread
        return real(address, *args, **kw)

    monkeypatch.setattr(socket, "create_connection", connect)


async def test_after_a_broker_restart_the_link_connects_once_and_stays_up(tmp_path,
                                                                          monkeypatch):
    broker = Broker(tmp_path)
    await broker.start()
    slow_network(monkeypatch, broker.port, 1.2)
    gate = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="gate"))
    links = LinkCounter(gate)
    gate.start()
    try:
        await asyncio.wait_for(gate.wait_connected(), 10)
        assert (links.connects, links.disconnects) == (1, 0)
        for _ in range(2):  # the first outage, and one after it
            await broker.stop()
            await asyncio.wait_for(gate.wait_disconnected(), 10)
            await asyncio.sleep(3.0)  # a few failed attempts, each misc tick without a socket
            before = links.connects
            await broker.start()
            await until(lambda: gate.connected, 15, "connected again")
            await asyncio.sleep(4.0)  # several misc ticks: the new link must survive them
            assert gate.connected
            assert links.connects == before + 1, f"flapping: {links.connects - before} connects"
            assert links.disconnects == links.connects - 1
    finally:
        links.close()
        await gate.stop()
        await broker.stop()


async def test_reconnect_delays_are_jittered_and_capped(tmp_path):
    peer = Peer("close")  # accepts, closes at once: every attempt fails before a CONNACK
    await peer.start()
    gate = MqttConnection(MqttOptions("127.0.0.1", peer.port, client_id="gate",
                                      reconnect_initial_s=0.1, reconnect_max_s=0.4))
    gate.start()
    try:
        await until(lambda: len(peer.accepted) >= 12, 15, "twelve attempts")
        gaps = [b - a for a, b in zip(peer.accepted, peer.accepted[1:], strict=False)]
        capped = gaps[3:]  # 0.1, 0.2, 0.4: from the fourth attempt at the cap
        assert max(gaps) <= 0.4 + 0.3, gaps  # the cap, and a connect under load
        assert min(capped) >= 0.4 * 0.5 - 0.05, gaps  # at most half of it is jitter
        assert max(capped) - min(capped) > 0.03, f"not jittered: {gaps}"
        assert statistics.pstdev(capped) > 0.01, gaps
        assert not gate.connected and gate.failures >= 11
    finally:
        await gate.stop()
        await peer.stop()


async def test_the_failure_count_resets_only_on_a_connack(tmp_path):
    peer = Peer("silent")  # accepts TCP, reads, never sends a CONNACK
    await peer.start()
    gate = MqttConnection(MqttOptions("127.0.0.1", peer.port, client_id="gate",
                                      connect_timeout_s=0.3, reconnect_initial_s=0.1,
                                      reconnect_max_s=1.0))
    gate.start()
    try:
        await until(lambda: len(peer.accepted) >= 5, 15, "five attempts")
        gaps = [b - a for a, b in zip(peer.accepted, peer.accepted[1:], strict=False)]
        # each gap: the CONNACK wait (0.3 s) and a delay that keeps growing (0.1, 0.2, 0.4,
        # 0.8, each at least half of that): a TCP accept is not a success
        assert gaps[3] > gaps[0] + 0.2, gaps
        assert all(0.3 <= g <= 0.3 + 1.0 + 0.4 for g in gaps), gaps
        assert not gate.connected and gate.failures >= 4
        assert "CONNACK" in gate.last_error
        # a real broker's CONNACK resets the count
        broker = Broker(tmp_path)
        await broker.start()
        gate.o.port = broker.port
        await until(lambda: gate.connected, 10, "connected to the broker")
        assert gate.failures == 0
        await gate.stop()
        await broker.stop()
    finally:
        await gate.stop()
        await peer.stop()


def attempts(conn: MqttConnection) -> list[float]:
    """When each connect attempt of ``conn`` starts (its TCP connect, in a worker thread)."""
    started: list[float] = []
    connect = conn._connect

    def timed(client: paho.Client) -> None:
        started.append(time.monotonic())
        connect(client)

    conn._connect = timed  # type: ignore[method-assign]
    return started


async def test_a_refused_connect_is_retried_at_the_short_cap(tmp_path):
    # the broker restarts: its port is closed (connects refused) for longer than the full
    # backoff takes to reach its cap; the gate keeps trying about once a second, so it is
    # back within about that second of the port reopening, not up to reconnect_max_s later
    broker = Broker(tmp_path)
    await broker.start()
    gate = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="gate",
                                      reconnect_initial_s=0.5, reconnect_max_s=5.0,
                                      reconnect_refused_max_s=1.0))
    started = attempts(gate)
    gate.start()
    try:
        await asyncio.wait_for(gate.wait_connected(), 10)
        await broker.stop()
        await asyncio.wait_for(gate.wait_disconnected(), 10)
        await asyncio.sleep(8.0)  # the full backoff would be at its 5 s cap by now
        assert gate.refused_connects >= 6, gate.refused_connects
        retries = started[2:]  # the refused ones (the first two: the connect, the loss's)
        down = [b - a for a, b in itertools.pairwise(retries)]
        assert max(down) <= 1.0 + 0.5, down  # the short cap, and a connect under load
        await broker.start()  # returns once the port accepts
        back = time.monotonic()
        await until(lambda: gate.connected, 10, "connected again")
        assert time.monotonic() - back <= 1.0 + 1.0  # the full cap's waits: 2.5 to 5 s
        assert gate.failures == 0
    finally:
        await gate.stop()
        await broker.stop()


async def test_a_peer_that_accepts_and_never_answers_backs_off_to_the_full_cap(tmp_path):
    peer = Peer("silent")  # TCP accepted: not a refused connect, whatever the short cap
    await peer.start()
    gate = MqttConnection(MqttOptions("127.0.0.1", peer.port, client_id="gate",
                                      connect_timeout_s=0.2, reconnect_initial_s=0.1,
                                      reconnect_max_s=1.2, reconnect_refused_max_s=0.2))
    gate.start()
    try:
        await until(lambda: len(peer.accepted) >= 7, 20, "seven attempts")
        gaps = [b - a for a, b in zip(peer.accepted, peer.accepted[1:], strict=False)]
        # 0.1, 0.2, 0.4, 0.8, then 1.2: each at least half of that, after the 0.2 s wait
        # for a CONNACK; at the short cap every gap would be under 0.2 + 0.2 + load
        assert min(gaps[4:]) >= 0.2 + 1.2 * 0.5 - 0.05, gaps
        assert gate.refused_connects == 0 and not gate.connected
    finally:
        await gate.stop()
        await peer.stop()


async def test_packets_that_arrive_together_are_all_handled():
    """The link reads what the socket holds at once, and paho takes a bounded number of
    packets from it per call (one, with nothing in flight): the rest is handled at once,
    not when more data arrives (here none ever does)."""
    peer = Peer("burst")
    await peer.start()
    conn = MqttConnection(MqttOptions("127.0.0.1", peer.port, client_id="gate"))
    got: list[bytes] = []
    both = asyncio.Event()

    def handler(msg: paho.MQTTMessage) -> None:
        got.append(bytes(msg.payload))
        if len(got) == 2:
            both.set()

    conn.subscribe("t", handler)
    conn.start()
    try:
        await asyncio.wait_for(both.wait(), 5)
    finally:
        await conn.stop()
        await peer.stop()
    assert got == [b"m1", b"m2"]


async def test_no_more_events_unacknowledged_than_the_broker_takes(tmp_path):
    # the broker's CONNACK says how many QoS 1 publishes it takes unacknowledged (its
    # Receive Maximum, here 5); with every PUBACK held back, that many reach it, and the
    # rest wait (a broker that enforces it would disconnect a gate that sent more)
    broker = Broker(tmp_path, persistent=True)
    with broker.config.open("a") as conf:
        conf.write("max_inflight_messages 5\n")  # Mosquitto's Receive Maximum, too
    await broker.start()
    proxy = Proxy(broker.port)
    await proxy.start()
    monitor = Monitor(broker.port)
    store = await Store.open(tmp_path / "g.sqlite3")
    gate = MqttConnection(MqttOptions("127.0.0.1", proxy.port, client_id="gate"))

    publisher = outbox_publisher(gate, store)
    gate.start()
    try:
        await asyncio.wait_for(gate.wait_connected(), 10)
        assert gate.receive_maximum == 5
        await until(lambda: monitor.client.is_connected(), 10, "monitor connected")
        await asyncio.sleep(0.5)  # the announce's publishes (state, online) answered
        clock = SystemClock()
        for i in range(30):
            await store.record_event(clock, GATE, "vehicle_detected", {"n": i})
        proxy.hold = True
        publisher.start()
        await until(lambda: len(monitor.seen()) >= 5, 10, "the first five at the monitor")
        await asyncio.sleep(1.0)  # time for more, were more sent
        assert monitor.seen() == {1, 2, 3, 4, 5}
        proxy.hold = False
        proxy.cut()  # the held PUBACKs are lost: the outbox sends them again

        async def drained() -> bool:
            return await store.read(events.outbox_pending) == 0

        await until(drained, 15, "the outbox drained")
        assert monitor.seen() == set(range(1, 31))
    finally:
        await publisher.stop()
        await gate.stop()
        monitor.stop()
        await proxy.stop()
        await store.close()
        await broker.stop()


async def test_after_an_outage_each_event_arrives_once_per_outbox_attempt(tmp_path):
    n = 15  # within paho's window of unacknowledged QoS 1 publishes (20)
    broker = Broker(tmp_path, persistent=True)
    await broker.start()
    proxy = Proxy(broker.port)
    await proxy.start()
    monitor = Monitor(broker.port)
    store = await Store.open(tmp_path / "g.sqlite3")
    gate = MqttConnection(MqttOptions("127.0.0.1", proxy.port, client_id="gate"))
    sent: Counter[int] = Counter()  # every publish of an event by the outbox, per seq
    publish = gate.publish

    def counting(topic: str, payload: bytes, **kw: Any) -> Any:
        if topic == EVENTS:
            sent[json.loads(payload)["seq"]] += 1
        return publish(topic, payload, **kw)

    gate.publish = counting  # type: ignore[method-assign]

    publisher = outbox_publisher(gate, store)
    gate.start()
    try:
        await asyncio.wait_for(gate.wait_connected(), 10)
        await until(lambda: monitor.client.is_connected(), 10, "monitor connected")
        await asyncio.sleep(0.2)
        clock = SystemClock()
        for i in range(n):
            await store.record_event(clock, GATE, "vehicle_detected", {"n": i})
        proxy.hold = True  # the broker gets every event; the gate sees no PUBACK
        publisher.start()
        await until(lambda: len(monitor.seen()) >= n, 10,
                    f"all events at the monitor: {monitor.copies} {sent}")
        assert await store.read(events.outbox_pending) == n  # none acknowledged yet
        # the outage: the broker restarts (its sessions persist), the link is cut
        await broker.stop()
        proxy.cut()
        proxy.hold = False
        await asyncio.wait_for(gate.wait_disconnected(), 10)
        await asyncio.sleep(1.0)
        await broker.start()
        await until(lambda: gate.connected, 15, "the gate connected again")

        async def drained() -> bool:
            return await store.read(events.outbox_pending) == 0

        await until(drained, 15, "the outbox drained")
        await asyncio.sleep(1.0)  # anything else in flight lands
        seqs = sorted(sent)
        assert len(seqs) == n and set(seqs) <= monitor.seen()
        assert all(sent[s] >= 2 for s in seqs), sent  # before the outage, and after it
        extra = {s: (monitor.copies[s], sent[s]) for s in seqs if monitor.copies[s] > sent[s]}
        assert not extra, f"copies beyond the outbox's attempts (seq: copies, attempts): {extra}"
    finally:
        await publisher.stop()
        await gate.stop()
        monitor.stop()
        await proxy.stop()
        await store.close()
        await broker.stop()
