"""Telemetry to central monitoring (contracts/mqtt.md): events from the durable outbox in
``seq`` order (QoS 1, removed from the outbox only on the broker's acknowledgement, a
bounded window in flight), the retained state snapshot on change (rate-limited), periodic
metrics, and the retained availability: ``online`` after the state on every (re)connect,
``offline`` by the last will, or with the reason ``clean_stop`` when the daemon stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import msgspec
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.store import events
from gateway.store.store import Store
from gateway.telemetry.mqtt import MqttConnection

log = logging.getLogger(__name__)
Json = dict[str, Any]
VOLATILE = ("uptime_s", "time")  # not a change worth a new retained state
ACK_BATCH = 100  # acknowledged events removed from the outbox per commit


def availability_topic(prefix: str, gate_id: str) -> str:
    return f"{prefix}/gates/{gate_id}/availability"


class TelemetryPublisher:
    def __init__(self, mqtt: MqttConnection, store: Store, *, prefix: str, gate_id: str,
                 state: Callable[[], Awaitable[Json]], metrics: Callable[[], Awaitable[Json]],
                 inflight: int = 200, state_min_interval_s: float = 1.0,
                 metrics_interval_s: float = 30.0,
                 discovery: list[tuple[str, bytes]] | None = None,
                 discovery_prefix: str = "homeassistant") -> None:
        self.mqtt = mqtt
        self.store = store
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
        self._wake = asyncio.Event()
        self._state_dirty = asyncio.Event()
        self._last_state: Json | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        mqtt.on_connected.append(self._announce)
        self.discovery = discovery or []
        if self.discovery:
            mqtt.subscribe(f"{discovery_prefix}/status", self._ha_status)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._drain(), name="telemetry events"),
                       asyncio.create_task(self._states(), name="telemetry state"),
                       asyncio.create_task(self._metrics(), name="telemetry metrics")]

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
                with contextlib.suppress(ConnectionError):
                    await self._publish_state(await self.state())
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
            except ConnectionError:
                continue  # what was not acknowledged is still in the outbox

    async def _drain_connected(self) -> None:
        """Publish in ``seq`` order with up to ``inflight`` unacknowledged; remove from the
        outbox what the broker acknowledged, in order."""
        flying: dict[int, asyncio.Future[None]] = {}
        pending_acks: list[int] = []
        try:
            await self._pump(flying, pending_acks)
        finally:
            if pending_acks:  # acknowledged before the connection went: not sent again
                await self.store.write(partial(events.mark_published, seqs=pending_acks))
                self.published += len(pending_acks)

    async def _pump(self, flying: dict[int, asyncio.Future[None]],
                    pending_acks: list[int]) -> None:
        cursor = 0
        while self.mqtt.connected:
            room = self.inflight - len(flying)
            # refill in chunks, not one event per acknowledgement
            refill = room > 0 and (room >= self.inflight // 4 or not flying)
            batch = await self.store.read(partial(events.outbox_batch, after_seq=cursor,
                                                  limit=room)) if refill else []
            for event in batch:
                payload = msgspec.json.encode({k: event[k] for k in (
                    "seq", "event_id", "gate_id", "type", "ts", "lane_id", "data",
                    "wall_synced")})
                flying[event["seq"]] = self.mqtt.publish(self.topic_events, payload, qos=1)
                cursor = event["seq"]
            if not flying:
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                lost = asyncio.ensure_future(self.mqtt.wait_disconnected())
                try:
                    await asyncio.wait({waiter, lost}, timeout=5.0,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    lost.cancel()
                continue
            # QoS 1 acknowledgements come back in order on one connection: wait for the
            # oldest, then take every one already done, and remove them in one commit
            # (one fsync per batch, not per event)
            await asyncio.wait([flying[min(flying)]])
            acked = []
            for seq in sorted(flying):
                fut = flying[seq]
                if not fut.done():
                    break
                if fut.exception() is not None:
                    for other in flying.values():  # all lost with the connection
                        if other.done():
                            other.exception()
                    raise ConnectionError(str(fut.exception()))
                acked.append(seq)
            pending_acks.extend(acked)
            for seq in acked:
                del flying[seq]
            if pending_acks and (len(pending_acks) >= ACK_BATCH or not flying):
                done_seqs = list(pending_acks)
                pending_acks.clear()
                await self.store.write(partial(events.mark_published, seqs=done_seqs))
                self.published += len(done_seqs)
