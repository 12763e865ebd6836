"""A simulated backup plate service over MQTT v5: answers ``{p}/backup/v1/+`` requests on
their response topic with their correlation data, with the same decisions and idempotency
as the simulated central service. Modes: ``ok``, ``blackhole`` (never answers), ``error``
(``ok: false``, retryable), ``garbage`` (a reply that is not JSON), ``slow`` (answers after
``delay_s``), ``duplicate`` (answers twice), and two forgeries: ``forge_correlation`` (the
genuine reply is replaced by one with correlation data that matches no request, and a
refusal in it) and ``forge_plate`` (a verify reply with the right correlation data, for
another plate than the one asked about, always authorised)."""

from __future__ import annotations

import asyncio
import json
import os
import random
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.sim.central import SimCentralState
from gateway.telemetry.mqtt import MqttConnection

BACKUP_MODES = ("ok", "blackhole", "error", "garbage", "oversized", "slow", "duplicate",
                "forge_correlation", "forge_plate")
FORGED_PLATE = "99FORGED99"


class SimBackup:
    def __init__(self, mqtt: MqttConnection, prefix: str = "parking",
                 state: SimCentralState | None = None) -> None:
        self.mqtt = mqtt
        self.prefix = prefix
        self.state = state or SimCentralState()
        self.mode = "ok"
        self.delay_s = 2.0
        self.fail_fraction = 0.0  # on top of any mode: this share answers an error
        self.requests = 0
        self.forged = 0  # replies forged by the forge_* modes
        self._rng = random.Random()
        mqtt.subscribe(f"{prefix}/backup/v1/+", self._on_request)

    def _on_request(self, msg: paho.MQTTMessage) -> None:
        self.requests += 1
        asyncio.get_running_loop().create_task(self._answer(msg))

    async def _answer(self, msg: paho.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        topic = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        if not topic or self.mode == "blackhole":
            return
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)
        operation = msg.topic.rsplit("/", 1)[-1]
        try:
            body: dict[str, Any] = json.loads(msg.payload)
            status, reply = self._handle(operation, body)
        except (ValueError, KeyError) as exc:
            status, reply = 400, {"error": str(exc)}
        if self.mode == "error" or (self.fail_fraction
                                    and self._rng.random() < self.fail_fraction):
            payload = json.dumps({"ok": False, "error": "backup unavailable",
                                  "retryable": True}).encode()
        elif self.mode == "garbage":
            payload = b"\xff\xfenot json"
        elif self.mode == "oversized":
            payload = b'{"ok": true, "result": {"pad": "' + b"x" * 200_000 + b'"}}'
        elif self.mode == "forge_plate" and operation == "verify_license_plate":
            self.forged += 1
            payload = json.dumps({"ok": True, "result": {
                "license_plate": FORGED_PLATE, "authorized": True, "reason": "permit",
                "confidence": 0.99, "cacheable_for_s": 3600.0}}).encode()
        elif status >= 400:
            payload = json.dumps({"ok": False, "error": reply.get("error", "refused"),
                                  "retryable": status >= 500}).encode()
        else:
            payload = json.dumps({"ok": True, "result": reply}).encode()
        out = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if self.mode == "forge_correlation":
            self.forged += 1
            correlation = os.urandom(16)  # matches nothing the gateway is waiting for
            payload = json.dumps({"ok": False, "error": "forged", "retryable": False}).encode()
        if correlation is not None:
            out.CorrelationData = correlation
        for _ in range(2 if self.mode == "duplicate" else 1):
            self.mqtt.publish(topic, payload, qos=1, properties=out)

    def _handle(self, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        key = str(body.get("idempotency_key", ""))
        if operation == "verify_license_plate":
            return self.state.verify(body)
        if operation in ("create_entry_record", "create_exit_record"):
            return self.state.create(operation.split("_")[1], key, body)
        if operation in ("cancel_entry_record", "cancel_exit_record"):
            kind = operation.split("_")[1]
            return self.state.cancel(kind, key, str(body.get(f"{kind}_id", "")))
        return 404, {"error": f"no operation {operation}"}
