"""Telemetry to central monitoring (contracts/mqtt.md): events from the durable outbox in
``seq`` order (QoS 1, removed from the outbox only on the broker's acknowledgement, a
bounded window in flight), the retained state snapshot on change (rate-limited), periodic
metrics, and the retained availability: ``online`` after the state on every (re)connect,
``offline`` by the last will, or with the reason ``clean_stop`` when the daemon stops.

A broker may acknowledge a publish with a failure reason code (a v5 PUBACK >= 0x80: its ACL
does not allow the topic, a quota, a size limit) and stay connected. A refused event is not
delivered: it stays in the outbox with every event after it, and the outbox sends it again
after a backoff (``refusal_backoff``), one event at a time until the broker accepts one,
then the full window again. Every refused publish is counted in ``publishes_refused`` by
reason; a refusal episode is recorded once, as a ``telemetry_refused`` event (reason, code,
topic, the first refused ``seq``), and its end, when an event is accepted again, as
``telemetry_recovered`` (reason, how many publishes were refused); ``refusing`` is the
reason while it lasts. Those events wait their turn in the outbox like any other."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, NoReturn

import msgspec
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.clock import Clock, SystemClock
from gateway.core.backoff import BackoffSchedule
from gateway.store import events
from gateway.store.store import Store
from gateway.telemetry.mqtt import MqttConnection, PublishRefused

log = logging.getLogger(__name__)
Json = dict[str, Any]
# how a supervisor starts a loop: spawn(name, factory) -> the task that runs it
Spawn = Callable[[str, Callable[[], Awaitable[Any]]], "asyncio.Task[Any]"]
VOLATILE = ("uptime_s", "time")  # not a change worth a new retained state
# how soon events the broker refused are sent again (the broker is not told to re-read its
# ACL; someone fixes it): from a second, doubling, to half a minute
REFUSAL_BACKOFF = BackoffSchedule(initial_s=1.0, max_delay_s=30.0, retries=None, jitter=0.3)


class _EventRefused(Exception):
    def __init__(self, seq: int, refusal: PublishRefused) -> None:
        super().__init__(str(refusal))
        self.seq = seq
        self.refusal = refusal


def availability_topic(prefix: str, gate_id: str) -> str:
    return f"{prefix}/gates/{gate_id}/availability"


class TelemetryPublisher:
    def __init__(self, mqtt: MqttConnection, store: Store, *, prefix: str, gate_id: str,
                 state: Callable[[], Awaitable[Json]], metrics: Callable[[], Awaitable[Json]],
                 inflight: int = 200, state_min_interval_s: float = 1.0,
                 metrics_interval_s: float = 30.0,
                 discovery: list[tuple[str, bytes]] | None = None,
                 discovery_prefix: str = "homeassistant", clock: Clock | None = None,
                 refusal_backoff: BackoffSchedule = REFUSAL_BACKOFF) -> None:
        self.mqtt = mqtt
        self.store = store
        self.gate_id = gate_id
        self.clock: Clock = clock or SystemClock()  # for the refusal events' time stamps
        self.refusal_backoff = refusal_backoff
        base = f"{prefix}/gates/{gate_id}"
        self.topic_events = f"{base}/events"
        self.topic_state = f"{base}/state"
        self.topic_metrics = f"{base}/metrics"
        self.topic_availability = availability_topic(prefix, gate_id)
        self.state = state
        self.metrics = metrics
        self.inflight = inflight
        self.state_min_interval_s = state_min_interval_s
        self.metrics_interval_s = metrics_interval_s
        self.published = 0
        self.publishes_refused: Counter[str] = Counter()  # by the broker's reason
        self.refusing: str | None = None  # the reason, during a refusal episode
        self._episode_refused = 0
        self._refused_in_a_row = 0  # retries refused since the last accepted event
        self._wake = asyncio.Event()
        self._state_dirty = asyncio.Event()
        self._last_state: Json | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        mqtt.on_connected.append(self._announce)
        self.discovery = discovery or []
        if self.discovery:
            mqtt.subscribe(f"{discovery_prefix}/status", self._ha_status)

    def start(self, spawn: Spawn | None = None) -> None:
        """Start the events, state and metrics loops; with ``spawn`` (the daemon's
        supervisor) each runs under it, restarted if it fails. ``stop()`` stops them."""
        loops = (("telemetry events", self._drain), ("telemetry state", self._states),
                 ("telemetry metrics", self._metrics))
        if spawn is None:
            self._tasks = [asyncio.create_task(loop(), name=name) for name, loop in loops]
        else:
            self._tasks = [spawn(name, loop) for name, loop in loops]

    def changed(self) -> None:
        """Something was committed: new events to send, maybe a new state."""
        self._wake.set()
        self._state_dirty.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def clean_stop_message(self) -> tuple[str, bytes, bool, Properties]:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = ("reason", "clean_stop")
        return self.topic_availability, b"offline", True, props

    # -- on every (re)connect: the state first, then "online" ---------------------------
    async def _announce(self) -> None:
        try:
            snapshot = await self.state()
            await self._publish_state(snapshot, force=True)
            self._send_discovery()
            await self.mqtt.publish(self.topic_availability, b"online", qos=1, retain=True)
        except PublishRefused as refusal:
            self.publishes_refused[refusal.reason] += 1  # logged and reported by the link
            return
        except ConnectionError:
            return  # lost again at once: the next connect announces
        self._wake.set()

    def _send_discovery(self) -> None:
        for topic, payload in self.discovery:
            self.mqtt.publish(topic, payload, qos=1, retain=True)

    def _ha_status(self, msg: Any) -> None:
        if bytes(msg.payload) == b"online" and self.mqtt.connected:
            self._send_discovery()  # Home Assistant restarted: it needs them again

    async def _publish_state(self, snapshot: Json, *, force: bool = False) -> None:
        stable = {k: v for k, v in snapshot.items() if k not in VOLATILE}
        if not force and stable == self._last_state:
            return
        await self.mqtt.publish(self.topic_state, msgspec.json.encode(snapshot), qos=1,
                                retain=True)
        self._last_state = stable

    async def _states(self) -> None:
        while True:
            await self._state_dirty.wait()
            self._state_dirty.clear()
            if self.mqtt.connected:
                try:
                    await self._publish_state(await self.state())
                except PublishRefused as refusal:
                    self.publishes_refused[refusal.reason] += 1  # sent again on a change
                except ConnectionError:
                    pass
            await asyncio.sleep(self.state_min_interval_s)  # the rate limit

    async def _metrics(self) -> None:
        while True:
            await asyncio.sleep(self.metrics_interval_s)
            if self.mqtt.connected:
                self.mqtt.publish(self.topic_metrics, msgspec.json.encode(await self.metrics()),
                                  qos=0)

    # -- events --------------------------------------------------------------------------
    async def _drain(self) -> None:
        while True:
            await self.mqtt.wait_connected()
            try:
                await self._drain_connected()
            except _EventRefused as refused:
                await self._refused(refused)  # still in the outbox: sent again after a wait
            except ConnectionError:
                continue  # what was not acknowledged is still in the outbox

    async def _refused(self, refused: _EventRefused) -> None:
        if self.refusing is None:
            refusal = refused.refusal
            self.refusing = refusal.reason
            log.warning("telemetry: the broker refuses events from seq %d on: %s",
                        refused.seq, refusal)
            await self._record("telemetry_refused", {
                "reason": refusal.reason, "code": refusal.code, "topic": refusal.topic,
                "seq": refused.seq})
        self._refused_in_a_row += 1
        delay = self.refusal_backoff.next_delay(self._refused_in_a_row, 0.0, random.random())
        # a new connection tries again at once (another broker, another session)
        lost = asyncio.ensure_future(self.mqtt.wait_disconnected())
        try:
            await asyncio.wait({lost}, timeout=self.refusal_backoff.max_delay_s
                               if delay is None else delay)
        finally:
            lost.cancel()

    async def _recovered(self) -> None:
        reason, self.refusing = self.refusing, None
        log.warning("telemetry: the broker accepts events again (%d publish(es) refused)",
                    self._episode_refused)
        await self._record("telemetry_recovered", {"reason": reason,
                                                   "refused": self._episode_refused})
        self._episode_refused = 0

    async def _record(self, type_: str, data: Json) -> None:
        await self.store.record_event(self.clock, self.gate_id, type_, data)

    async def _drain_connected(self) -> None:
        """Publish in ``seq`` order with up to ``inflight`` events unacknowledged or not yet
        removed; remove from the outbox what the broker acknowledged, in order."""
        flying: dict[int, asyncio.Future[None]] = {}  # by seq, oldest first
        pending_acks: list[int] = []
        removal: list[asyncio.Future[int]] = []  # the commit under way, if any
        try:
            await self._pump(flying, pending_acks, removal)
        finally:
            # acknowledged before the connection went: removed before the outbox is read
            # again from its start, so not sent again
            if removal:
                self.published += await removal.pop()
            if pending_acks:
                self.published += await self._remove(list(pending_acks))

    async def _remove(self, seqs: list[int]) -> int:
        await self.store.write(partial(events.mark_published, seqs=seqs))
        return len(seqs)

    async def _pump(self, flying: dict[int, asyncio.Future[None]], pending_acks: list[int],
                    removal: list[asyncio.Future[int]]) -> None:
        """The pipeline, no stage waiting on another: the next events are read while the
        last ones are in flight, and what the broker acknowledged is removed in one commit
        per batch (one fsync per batch, not per event: whatever was acknowledged while the
        last commit ran) while more are published. The commit under way stays in
        ``removal`` for the caller."""
        cursor = 0
        ahead: deque[tuple[int, bytes]] = deque()  # read, not yet published
        reading: asyncio.Future[list[tuple[int, bytes]]] | None = None
        removing = 0  # events in the commit under way
        exhausted = False  # the last read found nothing after the cursor
        try:
            while self.mqtt.connected:
                # while the broker refuses, one event at a time: what it accepts after one it
                # refused would be sent again, and arrive out of order
                window = 1 if self.refusing is not None else self.inflight
                room = window - len(flying)
                if len(pending_acks) + removing >= window:
                    room = 0  # acknowledged, not yet removed: a crash sends these again
                while ahead and room > 0:
                    seq, payload = ahead.popleft()
                    flying[seq] = self.mqtt.publish(self.topic_events, payload, qos=1)
                    room -= 1
                if exhausted and self._wake.is_set():
                    exhausted = False  # something new was committed
                # read ahead by two windows, refilled when one is left: a read waits on the
                # store's thread behind the removal committing (an fsync), and the events
                # read must not run out before it is answered
                depth = 1 if self.refusing is not None else 2 * window
                if reading is None and not exhausted and len(ahead) < max(1, depth // 2):
                    self._wake.clear()  # what is committed from now on: this read or the next
                    reading = asyncio.ensure_future(self.store.read(partial(
                        events.outbox_payloads, after_seq=cursor, limit=depth - len(ahead))))
                waits: set[asyncio.Future[Any]] = set(removal)
                if reading is not None:
                    waits.add(reading)
                if flying:
                    waits.add(next(iter(flying.values())))  # acknowledged in order
                if not waits:
                    await self._idle()
                    exhausted = False  # read again, woken or not (every 5 s at least)
                    continue
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if reading is not None and reading.done():
                    batch = reading.result()
                    reading = None
                    if batch:
                        ahead.extend(batch)
                        cursor = batch[-1][0]
                    else:
                        exhausted = True
                await self._take_acks(flying, pending_acks)
                if removal and removal[0].done():
                    self.published += removal.pop().result()
                    removing = 0
                if pending_acks and not removal:
                    removing = len(pending_acks)
                    removal.append(asyncio.ensure_future(self._remove(list(pending_acks))))
                    pending_acks.clear()
        finally:
            if reading is not None:
                reading.cancel()

    async def _idle(self) -> None:
        """Nothing to send: until something is committed, the link goes, or 5 s pass."""
        waiter = asyncio.ensure_future(self._wake.wait())
        lost = asyncio.ensure_future(self.mqtt.wait_disconnected())
        try:
            await asyncio.wait({waiter, lost}, timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            lost.cancel()

    async def _take_acks(self, flying: dict[int, asyncio.Future[None]],
                         pending_acks: list[int]) -> None:
        """Move the acknowledged events at the head of ``flying`` to ``pending_acks``;
        raises on the first one refused or lost (QoS 1 acknowledgements come back in order
        on one connection)."""
        acked = 0
        for seq, fut in flying.items():
            if not fut.done():
                break
            exc = fut.exception()
            if isinstance(exc, PublishRefused):
                if acked:
                    self._refused_in_a_row = 0  # a new refusal, not another retry
                self._drop(flying, acked, pending_acks)
                await self._refusal(seq, exc, flying)
            if exc is not None:
                for other in flying.values():  # all lost with the connection
                    if other.done():
                        other.exception()
                self._drop(flying, acked, pending_acks)
                raise ConnectionError(str(exc))
            acked += 1
        if acked:
            self._drop(flying, acked, pending_acks)
            self._refused_in_a_row = 0
            if self.refusing is not None:
                await self._recovered()

    @staticmethod
    def _drop(flying: dict[int, asyncio.Future[None]], n: int, into: list[int]) -> None:
        for _ in range(n):
            seq = next(iter(flying))
            del flying[seq]
            into.append(seq)

    async def _refusal(self, seq: int, refusal: PublishRefused,
                       flying: dict[int, asyncio.Future[None]]) -> NoReturn:
        """The broker refused ``seq``: it and every event after it stay in the outbox (those
        it accepted after it too: the stream stays in order, at worst with a repeat). Wait
        until the rest in flight is answered, so that nothing is in flight twice."""
        later = [fut for s, fut in flying.items() if s > seq]
        if later:
            await asyncio.wait(later)  # answered, or failed with the connection
        for s, fut in flying.items():
            exc = None if s < seq or fut.cancelled() else fut.exception()
            if isinstance(exc, PublishRefused):
                self.publishes_refused[exc.reason] += 1
                self._episode_refused += 1
        raise _EventRefused(seq, refusal)
