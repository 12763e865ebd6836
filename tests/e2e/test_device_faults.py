"""Broken devices are reported faults, never a crash of the daemon: a lane on GPIO where
there is none, a serial port that does not exist, a camera that never opens."""

from __future__ import annotations

import aiohttp

from gateway.sim.central import SimCentralState
from tests.conftest import start_central
from tests.e2e.daemon import Daemon, e2e_config, get, until

BROKEN_LANES = """
[[lanes]]
id = "gpio-1"
direction = "entry"
[lanes.arming_loop]
kind = "gpio"
pin = 17
[lanes.safety_loop]
kind = "gpio"
pin = 27
[lanes.barrier]
kind = "gpio"
open_pin = 22
close_pin = 23
[lanes.camera]
kind = "none"

[[lanes]]
id = "serial-1"
direction = "exit"
[lanes.timings]
debounce_s = 0.01
[lanes.arming_loop]
kind = "serial"
port = "/nonexistent/ttyLOOP"
channel = 1
[lanes.safety_loop]
kind = "serial"
port = "/nonexistent/ttyLOOP"
channel = 2
[lanes.camera]
kind = "opencv"
source = "/nonexistent/camera.mp4"
"""


async def test_broken_devices_are_faults_and_the_other_lanes_work(tmp_path):
    central = await start_central(SimCentralState())
    config = tmp_path / "gateway.toml"
    config.write_text(e2e_config(tmp_path / "data", central.url, BROKEN_LANES))
    daemon = Daemon(config)
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            url = daemon.url

            async def faults_reported():
                evs = await get(http, f"{url}/api/events?limit=500")
                found = {(e["lane_id"], e["data"].get("device")) for e in evs
                         if e["type"] == "hardware_fault"}
                want = {("gpio-1", "lane"), ("serial-1", "camera"), ("serial-1", "arming_loop"),
                        ("serial-1", "safety_loop")}
                return want <= found and evs
            events = await until(faults_reported, 15)
            gpio = next(e for e in events if e["lane_id"] == "gpio-1")
            assert "no GPIO here" in gpio["data"]["reason"]
            async with http.get(f"{url}/healthz") as r:
                assert r.status == 503
                problems = (await r.json())["problems"]
            assert any("gpio-1" in p for p in problems)
            status = await get(http, f"{url}/api/status")
            lanes = {lane["id"]: lane for lane in status["lanes"]}
            assert lanes["gpio-1"]["state"] == "fault"
            # an exit lane whose loops cannot be heard keeps its arm up (policy.exit_on_fault)
            assert lanes["serial-1"]["state"] == "held_open"
            assert lanes["serial-1"]["barrier"] == "open"
            # the working lane still lets a vehicle in
            async with http.post(f"{url}/api/sim/lanes/entry-1/vehicles",
                                 json={"plate": "34ABC123"}) as r:
                vid = (await r.json())["vehicle_id"]

            async def passed():
                v = await get(http, f"{url}/api/sim/vehicles/{vid}")
                return v["status"] == "passed"
            await until(passed)
    finally:
        assert await daemon.stop() == 0
        await central.runner.cleanup()
