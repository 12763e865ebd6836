"""The monitor command against a real broker: events, state, availability, and the gaps
and repeats it must flag."""

from __future__ import annotations

import asyncio
import io
import json

from gateway.telemetry.monitor import run_monitor
from gateway.telemetry.mqtt import MqttConnection, MqttOptions
from tests.broker import Broker


async def test_monitor_flags_gaps_and_repeats(tmp_path):
    broker = Broker(tmp_path)
    await broker.start()
    out = io.StringIO()
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(run_monitor("127.0.0.1", broker.port, "g1", "parking", out,
                                           ready=ready.set, stop=stop))
    pub = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="pub"))
    pub.start()
    try:
        await asyncio.wait_for(asyncio.gather(ready.wait(), pub.wait_connected()), 10)
        await asyncio.sleep(0.1)  # the monitor's subscription reaches the broker
        await pub.publish("parking/gates/g1/availability", b"online", retain=True)
        await pub.publish("parking/gates/g1/state", json.dumps(
            {"occupancy": {"free": 9, "total": 10}, "lanes": [{"id": "entry-1",
                                                               "state": "idle"}],
             "outbox": {"pending": 0}}).encode(), retain=True)
        for seq, eid in ((1, "a"), (2, "b"), (2, "b"), (5, "e")):
            await pub.publish("parking/gates/g1/events", json.dumps(
                {"seq": seq, "event_id": eid, "type": "vehicle_detected", "ts": "",
                 "lane_id": "entry-1", "data": {}}).encode())
        await pub.publish("parking/gates/other/events", b'{"seq": 1}')  # not followed
        deadline = asyncio.get_running_loop().time() + 10
        while "gap: seq 3-4 missing" not in out.getvalue():
            assert asyncio.get_running_loop().time() < deadline, out.getvalue()
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
        await pub.stop()
        await broker.stop()
    text = out.getvalue()
    assert "availability online" in text and "9 free of 10" in text
    assert "!! repeat of seq 2" in text and "!! gap: seq 3-4 missing" in text
    assert "other" not in text
