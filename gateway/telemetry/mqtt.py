"""One MQTT v5 connection driven from the asyncio loop (no paho background thread): paho's
socket callbacks register the socket with the loop, ``loop_read``/``loop_write``/
``loop_misc`` run on it. We track acknowledgements by message id. The blocking TCP connect
runs in a worker thread so an unreachable broker never stalls the gate. The client is paho's
with its reads, PUBACK decoding and writes done in bulk (gateway/telemetry/pahoclient.py);
the publishes a burst of PUBACKs lets out are written in the same turn of the loop.

We own the reconnects, and each attempt is its own paho client (clean start, no session):
a callback, a socket or a misc tick of an attempt that is over cannot touch the next one,
and paho has nothing of an earlier connection to send again. An attempt succeeds only with
the broker's CONNACK (within ``connect_timeout_s`` of the TCP connect; a peer that accepts
TCP and never answers is a failed attempt). ``failures`` counts the attempts since the last
CONNACK (a lost connection is the first); the delay before the next attempt doubles from
``reconnect_initial_s`` up to ``reconnect_max_s``, each one jittered (up to
``reconnect_jitter`` of it taken off at random) so that gates that lost the same broker do
not come back in lockstep. After a TCP connect that was refused (nothing listens on the
port: the broker is restarting, or its host is up without it) the cap is
``reconnect_refused_max_s`` (1 s) instead: such an attempt costs the broker nothing, and a
gate must not sleep through most of the broker's return. Every attempt that reached a
listener and failed (no CONNACK in time, a CONNACK that refuses, a TLS failure, a timeout,
an unreachable host) keeps the full backoff, so a broker that is up and struggling, or a
peer that accepts TCP and never answers, is not hammered. With the broker down a gate makes
about one attempt a second: a worker-thread hop, a new paho client and a refused connect.

No more QoS 1 publishes are unacknowledged at once than the broker takes: the Receive
Maximum of its CONNACK (Mosquitto's is 20; 65,535, no limit in practice, when it names
none), which paho itself ignores. paho holds the rest back and sends them, in order, as
acknowledgements come in.

A QoS 1 publish that the connection loses fails with a ``ConnectionError``, and so does one
made while not connected: nothing is queued or re-sent here (paho's own re-send of
unacknowledged messages on a reconnect would duplicate what the caller sends again).

A QoS 1 publish is delivered only when its PUBACK says so: a v5 broker may acknowledge with
a failure reason code (>= 0x80: not authorised by its ACL, quota exceeded, packet too large)
and stay connected. Such a publish completes with ``PublishRefused``, is counted in
``refused`` by reason, and ``last_error`` names it until that topic is accepted again (or
the connection is made again). The caller (the outbox) alone retries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.core.backoff import BackoffSchedule
from gateway.sim.planted import planted
from gateway.telemetry.pahoclient import Client

log = logging.getLogger(__name__)
MessageHandler = Callable[[paho.MQTTMessage], None]
RECEIVE_MAXIMUM = 65535  # MQTT v5's, when a CONNACK names none


class PublishRefused(ConnectionError):
    """The broker acknowledged a publish with a failure reason code: not delivered, and the
    connection is still up. A ``ConnectionError`` so that every caller that takes a lost
    publish as undelivered does so for a refused one too."""

    def __init__(self, topic: str, reason: ReasonCode) -> None:
        self.topic = topic
        self.reason = str(reason)  # paho's name, e.g. "Not authorized"
        self.code = int(reason.value)
        super().__init__(f"the broker refused a publish to {topic}: {self.reason} "
                         f"(0x{self.code:02X})")


def _fail(fut: asyncio.Future[None], exc: BaseException) -> None:
    # marked retrieved at once: a publish nobody awaits (discovery, a backup request) must
    # not end up as "exception never retrieved" (a refusal is logged and counted here, a
    # loss shows as the link's); whoever awaits it still gets the exception. (Not a done
    # callback per publish: one more loop callback for every acknowledged event.)
    fut.set_exception(exc)
    fut.exception()


@dataclass
class MqttOptions:
    host: str
    port: int
    client_id: str
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: str = ""
    keepalive_s: int = 30
    connect_timeout_s: float = 3.0
    will: tuple[str, bytes, bool] | None = None  # topic, payload, retain
    will_reason: str = ""  # an MQTT v5 user property "reason" on the last will
    reconnect_initial_s: float = 0.5  # the first delay after a failed attempt or a loss
    reconnect_max_s: float = 5.0  # the cap on the delay between attempts
    # the cap after a refused TCP connect (nothing listens: the broker is restarting)
    reconnect_refused_max_s: float = 1.0
    reconnect_jitter: float = 0.5  # the part of each delay taken off at random


class MqttConnection:
    def __init__(self, options: MqttOptions) -> None:
        self.o = options
        self.connected = False
        self._link_error = ""
        self.reconnects = 0  # attempts after the first
        self.failures = 0  # attempts failed since the last CONNACK (a loss counts as one)
        self.connects = 0  # CONNACKs that accepted the connection
        self.receive_maximum = RECEIVE_MAXIMUM  # the broker's, by its last CONNACK
        self.disconnects = 0  # accepted connections lost
        self.refused: Counter[str] = Counter()  # refused publishes, by reason
        self.refusing: dict[str, str] = {}  # topic -> reason, until accepted again
        self.on_connected: list[Callable[[], Awaitable[None] | None]] = []
        self._handlers: list[tuple[str, MessageHandler]] = []
        self._acks: dict[int, tuple[str, asyncio.Future[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._misc: asyncio.Task[None] | None = None
        self._loop_thread = 0
        self._fds: set[int] = set()  # the current client's socket, as the loop watches it
        self._closed = False
        self._backoff = BackoffSchedule(
            initial_s=options.reconnect_initial_s, max_delay_s=options.reconnect_max_s,
            retries=None, jitter=options.reconnect_jitter)
        self._refused_backoff = BackoffSchedule(
            initial_s=options.reconnect_initial_s,
            max_delay_s=min(options.reconnect_refused_max_s, options.reconnect_max_s),
            retries=None, jitter=options.reconnect_jitter)
        self.refused_connects = 0  # TCP connects refused (nothing listening)
        self._lost = asyncio.Event()
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._down.set()
        self.client = self._make_client()

    @property
    def last_error(self) -> str:
        """Why the link does not work, else which publishes the broker refuses."""
        if self._link_error or not self.refusing:
            return self._link_error
        return "the broker refuses publishes: " + ", ".join(
            f"{topic}: {reason}" for topic, reason in sorted(self.refusing.items()))

    @last_error.setter
    def last_error(self, value: str) -> None:
        self._link_error = value

    def _make_client(self) -> Client:
        c = Client(CallbackAPIVersion.VERSION2, client_id=self.o.client_id,
                   protocol=paho.MQTTv5)
        c.connect_timeout = self.o.connect_timeout_s
        c.max_queued_messages_set(0)  # paho never drops a publish (the outbox tracks acks)
        if self.o.username:
            c.username_pw_set(self.o.username, self.o.password or None)
        if self.o.tls:
            c.tls_set(ca_certs=self.o.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        if self.o.will:
            topic, payload, retain = self.o.will
            props = None
            if self.o.will_reason:
                props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
                props.UserProperty = ("reason", self.o.will_reason)
            c.will_set(topic, payload, qos=1, retain=retain, properties=props)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        return c

    # -- life cycle --------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._task = self._loop.create_task(self._run(), name="mqtt")

    async def stop(self, last_words: tuple[str, bytes, bool, Properties | None] | None = None
                   ) -> None:
        """Disconnect cleanly; ``last_words`` (topic, payload, retain) is published first
        (a clean stop's own availability message, distinct from the last will)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.connected and last_words is not None:
            topic, payload, retain, props = last_words
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(self.publish(topic, payload, qos=1, retain=retain,
                                                    properties=props), 2.0)
        if self.connected:
            self.client.disconnect()  # written, and the socket closed, by the loop
        else:
            self._closed = True  # what an attempt still in its worker thread does is ignored
            self._retire()  # an attempt under way: its socket is closed
        if self._misc is not None:
            self._misc.cancel()
        for _, fut in self._acks.values():
            if not fut.done():
                fut.cancel()

    async def wait_connected(self) -> None:
        await self._up.wait()

    async def wait_disconnected(self) -> None:
        await self._down.wait()

    async def _run(self) -> None:
        assert self._loop is not None
        while True:
            self._lost.clear()
            client = self._new_client()
            refused = False
            try:
                await self._loop.run_in_executor(None, self._connect, client)
            except (OSError, ssl.SSLError, ValueError) as exc:
                # the port is closed: no broker spent anything on this attempt
                refused = isinstance(exc, ConnectionRefusedError)
                self.refused_connects += refused
                self.last_error = f"cannot reach the broker {self.o.host}:{self.o.port}: {exc}"
            else:
                self._misc = self._loop.create_task(self._misc_loop(client), name="mqtt misc")
                try:
                    await self._connected_until_lost(client)
                finally:
                    self._misc.cancel()
            self.failures += 1
            self.reconnects += 1
            backoff = self._refused_backoff if refused else self._backoff
            delay = backoff.next_delay(self.failures, 0.0, random.random())
            await asyncio.sleep(backoff.max_delay_s if delay is None else delay)

    async def _connected_until_lost(self, client: paho.Client) -> None:
        """The CONNACK within ``connect_timeout_s`` (else the attempt failed), then the
        connection until it is lost."""
        up = asyncio.ensure_future(self._up.wait())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({up, lost}, timeout=self.o.connect_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            up.cancel()
            lost.cancel()
        if not self.connected:
            if not self._lost.is_set():
                self.last_error = (f"no CONNACK from the broker {self.o.host}:{self.o.port} "
                                   f"within {self.o.connect_timeout_s:g} s")
            self._retire()  # a late CONNACK must not make a dead attempt connected
            return
        await self._lost.wait()

    def _new_client(self) -> paho.Client:
        self._retire()
        self.client = self._make_client()
        return self.client

    def _retire(self) -> None:
        """Stop watching the current client's socket and close it (a client whose
        connection paho closed itself has none)."""
        if self._loop is None:
            return  # never started
        for fd in self._fds:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
        self._fds.clear()
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _connect(self, client: paho.Client) -> None:
        # in a worker thread: a TCP connect to a distant broker can block for seconds. A
        # clean start: nothing of an earlier session is resumed (we subscribe again).
        client.connect(self.o.host, self.o.port, keepalive=self.o.keepalive_s,
                       clean_start=True)

    # -- socket plumbing (paho calls these; they may come from the connect thread) -------
    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            fn(*args)  # on the loop already (the usual case): no wake-up pipe write
        elif not self._loop.is_closed():  # a client collected after the loop ended: nothing
            self._loop.call_soon_threadsafe(fn, *args)

    def _current(self, client: paho.Client) -> bool:
        """A callback of the current attempt's client (not one that is over)."""
        return client is self.client and not self._closed

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # Small packets back to back (a PUBACK, then a reply) must not wait for Nagle and
        # the peer's delayed ACK: that cost 40 ms per hop of a request/response.
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # by file descriptor: the socket may be closed (and its number reused by the next
        # attempt's) before the loop runs what is called from the connect's thread
        self._call(self._add_reader, client, sock.fileno())

    def _add_reader(self, client: Client, fd: int) -> None:
        assert self._loop is not None
        if not self._current(client):
            return  # retired meanwhile: its socket is closed
        self._fds.add(fd)
        self._loop.add_reader(fd, self._read, client)

    def _read(self, client: Client) -> None:
        if not self._current(client):
            return
        try:
            rc = client.loop_read()
            if rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_AGAIN, paho.MQTT_ERR_NO_CONN):
                self._lose(f"read failed: {paho.error_string(rc)}")
                return
            if client.want_write():
                # what the acknowledgements let out (paho sends the publishes it held back
                # for the broker's Receive Maximum): now, not on the loop's next turn
                self._write(client)
        finally:
            if client.buffered() and self._current(client):
                # read from the socket, not yet by paho (it takes a bounded number of
                # packets per call): the socket's readiness no longer says so. Also after a
                # callback raised: those bytes are in no socket to wake the reader again
                assert self._loop is not None
                self._loop.call_soon(self._read, client)

    def _write(self, client: paho.Client) -> None:
        if self._current(client):
            client.loop_write()

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # paho calls this before it closes the socket: its number is still valid here (a
        # retired client's socket is closed and no longer watched: nothing to do)
        if client is self.client:
            self._call(self._remove, client, sock.fileno())

    def _remove(self, client: paho.Client, fd: int) -> None:
        assert self._loop is not None
        if client is not self.client or fd not in self._fds:
            return
        self._fds.discard(fd)
        self._loop.remove_reader(fd)
        self._loop.remove_writer(fd)

    def _on_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if client is self.client:
            self._call(self._add_writer, client, sock.fileno())

    def _add_writer(self, client: paho.Client, fd: int) -> None:
        assert self._loop is not None
        if self._current(client) and fd in self._fds:
            self._loop.add_writer(fd, self._write, client)

    def _on_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if client is self.client:
            self._call(self._remove_writer, client, sock.fileno())

    def _remove_writer(self, client: paho.Client, fd: int) -> None:
        assert self._loop is not None
        if client is self.client and fd in self._fds:
            self._loop.remove_writer(fd)

    async def _misc_loop(self, client: paho.Client) -> None:
        """Keepalive for one attempt's client, from its TCP connect until it is over. With
        no socket (paho closed it and reported the loss) there is nothing to do."""
        while self._current(client):
            if client.loop_misc() == paho.MQTT_ERR_CONN_LOST:
                self._lose("keepalive: no answer from the broker")
            await asyncio.sleep(1.0)

    def _lose(self, why: str) -> None:
        if self.connected:
            self.last_error = why
            self.disconnects += 1
        self.connected = False
        self._up.clear()
        self._down.set()
        self._lost.set()
        # acknowledgements that can no longer come: the outbox sends those again
        for _, fut in self._acks.values():
            if not fut.done():
                _fail(fut, ConnectionError(why))
        self._acks.clear()

    # -- protocol callbacks (on the loop thread, from loop_read) -------------------------
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Properties | None) -> None:
        if not self._current(client):
            return
        if reason.is_failure:  # not a success: the failure count goes on
            self.last_error = f"the broker refused the connection: {reason}"
            log.warning("mqtt: %s", self.last_error)
            self._lose(self.last_error)
            return
        # no more QoS 1 publishes unacknowledged than the broker takes (its Receive Maximum;
        # 65,535 when it names none, as many as there are message ids): paho holds the rest
        # back, in order, and sends each as an acknowledgement makes room
        quota = getattr(properties, "ReceiveMaximum", RECEIVE_MAXIMUM)
        self.receive_maximum = quota
        # paho's own default (20) would hold back what the broker takes; "no limit" (0)
        # spares paho a walk over every message in flight on each acknowledgement. Set
        # behind paho's setter, which refuses once connected: this client has sent nothing
        # yet (a new client per attempt), so nothing is in flight or held back to recount.
        client._max_inflight_messages = 0 if quota >= RECEIVE_MAXIMUM else quota
        self.connected = True
        self.failures = 0  # counted from CONNACKs only
        self.connects += 1
        self.last_error = ""
        self.refusing.clear()  # a new session: the broker says again what it refuses
        self._up.set()
        self._down.clear()
        for topic, _ in self._handlers:
            client.subscribe(topic, qos=1)
        assert self._loop is not None
        for hook in self.on_connected:
            result = hook()
            if asyncio.iscoroutine(result):
                self._loop.create_task(result)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Properties | None) -> None:
        if self._current(client):
            self._lose(f"disconnected: {reason}")

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if not self._current(client):
            return
        for topic, handler in self._handlers:
            if paho.topic_matches_sub(topic, msg.topic):
                try:
                    handler(msg)
                except Exception:
                    log.exception("mqtt: handler for %s failed", topic)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Properties | None) -> None:
        if not self._current(client):
            return  # an earlier client's message ids mean nothing now
        entry = self._acks.pop(mid, None)
        if entry is None:
            return
        topic, fut = entry
        # campaign switch (tests/reliability): a refusal taken for a delivery
        refused = reason.is_failure and not planted("ignore_puback_codes")
        if refused:  # a v5 PUBACK >= 0x80: received, not accepted
            refusal = PublishRefused(topic, reason)
            self.refused[refusal.reason] += 1
            if self.refusing.get(topic) != refusal.reason:
                log.warning("mqtt: %s", refusal)  # once per topic and reason, not per message
            self.refusing[topic] = refusal.reason
            if not fut.done():
                _fail(fut, refusal)
            return
        self.refusing.pop(topic, None)
        if not fut.done():
            fut.set_result(None)

    # -- API ---------------------------------------------------------------------------
    def subscribe(self, topic: str, handler: MessageHandler) -> None:
        self._handlers.append((topic, handler))
        if self.connected:
            self.client.subscribe(topic, qos=1)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                properties: Properties | None = None) -> asyncio.Future[None]:
        """Publish; the future completes when the broker acknowledges (QoS 1), with
        ``PublishRefused`` when it acknowledges with a failure reason code, with a
        ``ConnectionError`` when the connection is lost first or is not up (nothing is
        queued for a later connection: the caller sends it again)."""
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        if not self.connected:
            _fail(fut, ConnectionError(
                f"not connected to the broker: {self.last_error or 'connecting'}"))
            return fut
        info = self.client.publish(topic, payload, qos=qos, retain=retain,
                                   properties=properties)
        if qos == 0 or info.rc != paho.MQTT_ERR_SUCCESS:
            if info.rc == paho.MQTT_ERR_SUCCESS:
                fut.set_result(None)
            else:
                _fail(fut, ConnectionError(paho.error_string(info.rc)))
            return fut
        self._acks[info.mid] = (topic, fut)
        return fut

