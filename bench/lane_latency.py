"""Lane latency on simulated hardware: loop trigger -> open pulse, with each stage's share;
and the camera pipeline's CPU time per vehicle at 720p and 1080p.

    python bench/lane_latency.py [--vehicles N] [--delay-ms D]

The daemon runs in this process with sim lanes (mock pins, a synthetic 720p camera at
25 fps); the sim central service is an aiohttp server on 127.0.0.1 in the same process,
first answering at once, then with D ms added to every answer. "frame" is the camera burst
(frames taken after the trigger), "decision" is the saga up to the open (two round trips
to the central service and the allocation).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from gateway.app import Gateway  # noqa: E402
from gateway.settings import parse_settings  # noqa: E402
from gateway.sim.central import SimCentralState, make_app  # noqa: E402
from hardware.camera import encode_jpeg, find_plate_region, sharpness  # noqa: E402
from hardware.sim import render_frame  # noqa: E402

CONFIG = """
[gate]
id = "bench"
data_dir = "{data}"
[central]
base_urls = ["{url}"]
[backup]
enabled = false
[web]
port = 0
[simulation]
enabled = true
time_scale = 10.0
reaction_s = 0.02
arm_travel_s = 0.05
[[zones]]
name = "A"
spaces = 2000
[[lanes]]
id = "entry-1"
direction = "entry"
[lanes.timings]
debounce_s = 0.02
arm_travel_s = 0.05
dropout_hold_s = 0.02
gap_hold_s = 0.1
[lanes.camera]
burst = 3
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run_lane(vehicles: int, delay_ms: float) -> list[dict[str, float]]:
    state = SimCentralState(delay_s=delay_ms / 1000)
    central = web.AppRunner(make_app(state), access_log=None)
    await central.setup()
    site = web.TCPSite(central, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{central.addresses[0][1]}"
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        gw = Gateway(parse_settings(CONFIG.format(data=tmp, url=url), "bench.toml"))
        await gw.start()
        try:
            assert gw.sim is not None
            controller = gw.lanes["entry-1"]
            for i in range(vehicles + 1):  # the first warms everything up
                vehicle = gw.sim.add_vehicle("entry-1", f"L{i:05d}", "pass")
                await vehicle.done.wait()
                await controller.idle.wait()
            return list(controller.latencies)[1:]
        finally:
            await gw.stop()
            await central.cleanup()


def camera_cpu(width: int, height: int, burst: int = 3, rounds: int = 30) -> float:
    frames = [render_frame("34ABC123", width, height) for _ in range(burst)]
    t0 = time.thread_time()
    for _ in range(rounds):
        best = max(frames, key=sharpness)
        region = find_plate_region(best)
        crop = best
        if region is not None:
            x, y, w, h = region
            crop = best[y:y + h, x:x + w]
        encode_jpeg(crop, 1280, 80)
        encode_jpeg(best, 1280, 80)  # the whole frame too, as when no plate is found
    return (time.thread_time() - t0) / rounds


def report(title: str, lat: list[dict[str, float]], zero_delay: bool) -> None:
    total = [x["total"] for x in lat]
    print(f"{title}: {len(lat)} vehicles, loop trigger -> open pulse "
          f"p50 {pct(total, 50):7.2f} ms  p99 {pct(total, 99):7.2f} ms  max {max(total):7.2f} ms")
    for stage in ("frame", "plate", "decision", "relay"):
        values = [x.get(stage, 0.0) for x in lat]
        share = statistics.fmean(values) / statistics.fmean(total) * 100
        print(f"    {stage:9} p50 {pct(values, 50):7.2f} ms  p99 {pct(values, 99):7.2f} ms  "
              f"({share:4.1f}% of the mean)")
    if zero_delay:
        # with the central answering at once, everything but the camera burst is the
        # gateway's own work (plus two loopback round trips, which it cannot shed)
        own = [x["total"] - x.get("frame", 0.0) for x in lat]
        print(f"    gateway's own share (all but the camera burst, central at 0 ms) "
              f"p99 {pct(own, 99):6.2f} ms (aim: under 20 ms)")


async def main() -> None:
    # a vehicle cut short at shutdown is not news in a benchmark
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser()
    parser.add_argument("--vehicles", type=int, default=40)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    args = parser.parse_args()
    report("sim central at 0 ms", await run_lane(args.vehicles, 0), True)
    report(f"sim central at +{args.delay_ms:g} ms",
           await run_lane(args.vehicles, args.delay_ms), False)
    for w, h in ((1280, 720), (1920, 1080)):
        print(f"camera pipeline CPU per vehicle at {h}p (burst of 3): "
              f"{camera_cpu(w, h) * 1000:6.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
