"""The backup plate service over MQTT v5 request/response (contracts/mqtt.md).

A request goes to ``{p}/backup/v1/{operation}`` with a response topic, 16 random bytes of
correlation data and a message expiry of the call's deadline. Only a reply whose
correlation data matches a pending request resolves it; stray, late, duplicate and
malformed replies are dropped and counted. No reply within the deadline is a transient
failure, as is a broker that is not connected."""

from __future__ import annotations

import asyncio
import math
import os
from collections import Counter, OrderedDict
from typing import Any

import msgspec
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.core.errors import DeadlineExceeded, PermanentError, ServiceError, TransientError
from gateway.services.central import validate_reply
from gateway.telemetry.mqtt import MqttConnection

Json = dict[str, Any]
OPERATIONS = ("verify_license_plate", "create_entry_record", "cancel_entry_record",
              "create_exit_record", "cancel_exit_record")
MAX_REPLY = 64 * 1024


class Envelope(msgspec.Struct):
    ok: bool
    result: Any = None
    error: str = ""
    retryable: bool = True


class BackupClient:
    name = "alternative_license_plate_service"

    def __init__(self, mqtt: MqttConnection, prefix: str, gate_id: str) -> None:
        self.mqtt = mqtt
        self.prefix = prefix
        self.reply_topic = f"{prefix}/gates/{gate_id}/backup/replies"
        self.dropped: Counter[str] = Counter()  # stray, late, duplicate, malformed
        self._pending: dict[bytes, tuple[str, asyncio.Future[Json]]] = {}
        self._finished: OrderedDict[bytes, str] = OrderedDict()  # recent: answered|expired
        mqtt.subscribe(self.reply_topic, self._on_reply)

    async def call(self, operation: str, payload: Json, *, idempotency_key: str | None,
                   deadline_s: float) -> Json:
        if operation not in OPERATIONS:
            raise PermanentError(f"the backup service has no operation {operation!r}",
                                 service=self.name)
        if not self.mqtt.connected:
            raise TransientError("not connected to the MQTT broker", service=self.name)
        correlation = os.urandom(16)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = correlation
        props.MessageExpiryInterval = max(1, math.ceil(deadline_s))
        body = dict(payload)
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        fut: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._pending[correlation] = (operation, fut)
        try:
            self.mqtt.publish(f"{self.prefix}/backup/v1/{operation}",
                              msgspec.json.encode(body), qos=1, properties=props)
            return await asyncio.wait_for(fut, deadline_s)
        except TimeoutError:
            raise DeadlineExceeded(f"no reply within {deadline_s:g}s",
                                   service=self.name) from None
        finally:
            self._pending.pop(correlation, None)
            if correlation not in self._finished:
                self._remember(correlation, "expired")

    def _remember(self, correlation: bytes, how: str) -> None:
        self._finished[correlation] = how
        while len(self._finished) > 1000:
            self._finished.popitem(last=False)

    def _on_reply(self, msg: paho.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        correlation = getattr(props, "CorrelationData", None) if props else None
        pending = self._pending.get(correlation) if isinstance(correlation, bytes) else None
        if pending is None:
            seen = self._finished.get(correlation) if isinstance(correlation, bytes) else None
            self.dropped["duplicate" if seen == "answered" else
                         "late" if seen == "expired" else "stray"] += 1
            return
        operation, fut = pending
        if fut.done():
            self.dropped["duplicate"] += 1
            return
        try:
            outcome = decode_reply(operation, msg.payload, self.name)
        except MALFORMED:
            # a malformed reply never resolves anything: the request keeps waiting
            self.dropped["malformed"] += 1
            return
        assert correlation is not None
        self._remember(correlation, "answered")
        if isinstance(outcome, ServiceError):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)


# what decode_reply raises for a reply that is not one (RecursionError: nested too deeply)
MALFORMED = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, ValueError,
             TransientError, RecursionError)


def decode_reply(operation: str, payload: bytes | bytearray,
                 service: str) -> Json | ServiceError:
    """A reply's payload: the result checked against the contract, or the error the service
    answered with. Raises one of ``MALFORMED`` for a payload that is not a reply."""
    if len(payload) > MAX_REPLY:
        raise ValueError("reply too large")
    envelope = msgspec.json.decode(payload, type=Envelope)
    if envelope.ok:
        return validate_reply(operation, envelope.result)
    if envelope.retryable:
        return TransientError(f"backup: {envelope.error[:120]}", service=service)
    return PermanentError(f"backup: {envelope.error[:120]}", service=service)
