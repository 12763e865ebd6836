"""``python -m gateway monitor --mqtt HOST:PORT [--gate ID]``: a terminal view for a
technician or a central operator. Follows one gate or all gates: availability, occupancy,
each event as it comes, and every gap or repeat in ``seq`` (flagged with ``!!``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable
from typing import Any, TextIO

import paho.mqtt.client as paho

from gateway.core.seqcheck import SeqTracker
from gateway.telemetry.mqtt import MqttConnection, MqttOptions


class Monitor:
    def __init__(self, out: TextIO, prefix: str = "parking") -> None:
        self.out = out
        self.prefix = prefix
        self.trackers: dict[str, SeqTracker] = {}
        self.occupancy: dict[str, Any] = {}

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def handle(self, msg: paho.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        if len(parts) < 4 or parts[-3] != "gates":
            return
        gate, kind = parts[-2], parts[-1]
        try:
            text = bytes(msg.payload).decode("utf-8")
        except UnicodeDecodeError:
            self.line(f"{gate:12} !! {kind}: not UTF-8 ({len(msg.payload)} bytes)")
            return
        if kind == "availability":
            reason = dict(getattr(msg.properties, "UserProperty", []) or []).get("reason", "")
            self.line(f"{gate:12} availability {text}" + (f" ({reason})" if reason else ""))
            return
        try:
            data = json.loads(text) if kind in ("events", "state", "metrics") else None
        except ValueError:
            self.line(f"{gate:12} !! {kind}: not JSON")
            return
        if kind == "state" and isinstance(data, dict):
            occ = data.get("occupancy", {})
            lanes = ", ".join(f"{lane.get('id')} {lane.get('state')}"
                              for lane in data.get("lanes", []))
            self.line(f"{gate:12} state: {occ.get('free')} free of {occ.get('total')}; "
                      f"{lanes}; outbox {data.get('outbox', {}).get('pending')}")
        elif kind == "events" and isinstance(data, dict):
            tracker = self.trackers.setdefault(gate, SeqTracker())
            for finding in tracker.observe(int(data.get("seq", 0)),
                                           str(data.get("event_id", ""))):
                self.line(f"{gate:12} !! {finding}")
            details = " ".join(f"{k}={v}" for k, v in (data.get("data") or {}).items()
                               if k != "lane_id")
            self.line(f"{gate:12} {data.get('seq'):>6} {str(data.get('ts', ''))[11:23]} "
                      f"{data.get('lane_id') or '-':8} {data.get('type')} {details}"[:200])


async def run_monitor(host: str, port: int, gate: str | None, prefix: str, out: TextIO,
                      username: str = "", password: str = "",
                      ready: Callable[[], None] | None = None,
                      stop: asyncio.Event | None = None) -> int:
    monitor = Monitor(out, prefix)
    conn = MqttConnection(MqttOptions(host, port, client_id="", username=username,
                                      password=password))
    conn.subscribe(f"{prefix}/gates/{gate or '+'}/#", monitor.handle)
    conn.on_connected.append(lambda: monitor.line(f"connected to {host}:{port}"))
    conn.start()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(RuntimeError, ValueError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        await conn.wait_connected()
        ready()
    await stop.wait()
    await conn.stop()
    return 0
