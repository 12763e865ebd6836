"""The gate end to end: loop to open pulse on simulated hardware, split by stage, and the
gateway's own share of it; the camera pipeline's CPU time per vehicle at 720p and 1080p.

    python bench/lane_latency.py [--quick] [--json FILE] [--vehicles N] [--delay-ms D]

The daemon (``gateway.app.Gateway``) runs in this process with one sim entry lane (mock
pins, a synthetic 720p ANPR camera at 25 fps taking a burst of 3 frames, the gate's own
plate reader loaded and comparing its reading with the camera's, as configured by
default), its saga log on a real SQLite file (``synchronous=FULL``); the sim central
service is an aiohttp server on 127.0.0.1 in a separate process (``python -m gateway.sim
central``), first answering at once, then with D ms added to every answer (the own share
must not move with it). Vehicles come one at a time; the first warms everything up.

Stages are the lane's own marks (``LaneController.latencies``: the figures of
``/api/latency`` and ``parking_stage_latency_seconds``), each from the previous mark:

  frame      loop (the vehicle accepted, after the loop's debounce) -> the burst's frames
             in hand
  plate      -> the plate known (sharpest frame chosen, JPEG encoded, the reading taken)
  decision   -> the saga asks the lane to open (verify with central, allocate, create the
             entry record, each step in the saga log)
  relay      -> the open pulse commanded
  total      loop -> open pulse commanded

Beside them, ``relay energised``: the open pulse command -> the open relay's output set
(the lane's pulse task does it at the event loop's next turn; the barrier's relay ``set``
wrapped in place to read the moment).

The gateway's own share of one vehicle = (loop -> open relay energised) - frame wait -
central round trips, where
``frame wait`` is the time the capture waited for the burst's frames after the trigger
(``hardware.camera.capture``'s ``timings_ms["frames"]``: the camera's frame interval, which
no code can shorten) and ``central round trips`` the time spent inside the central
service's calls made between the loop and the open pulse (``CentralPool.stats``: each call
from its start to its decoded, checked reply). What is left is the gateway's own work: the
hops between the loop, the capture thread and the event loop, choosing and encoding the
frame, the reading, the lane machine, the saga log's commits (fsync) and the allocation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import Report, parser  # noqa: E402

if TYPE_CHECKING:  # imported once the central service's process is starting (some 2 s)
    from hardware.camera import CaptureSettings, Shot
    from hardware.camera_grabber import LatestFrameGrabber

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
patience_s = 200.0
[[zones]]
name = "A"
spaces = 5000
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
STAGES = ("frame", "plate", "decision", "relay")
Row = dict[str, float]


# What the README's table shows (every figure with an aim besides); the JSON has them all.
HEADLINES = frozenset({
    "up_frame_p50_ms", "up_plate_p50_ms", "up_decision_p50_ms", "up_frame_wait_p50_ms",
    "up_central_p50_ms", "up_pin_p50_ms", "up_total_p50_ms", "up_total_p99_ms",
    "up_own_p50_ms", "slow_total_p50_ms", "slow_own_p50_ms", "camera_cpu_720p_ms"})

def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def set_fault(url: str, mode: str, delay_s: float = 0.0) -> None:
    body = json.dumps({"mode": mode, "delay_s": delay_s}).encode()
    request = urllib.request.Request(f"{url}/_sim/fault", body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        reply.read()


class FrameWaits:
    """The capture's own timings of each burst (read, not re-measured): the lane calls
    ``capture`` through its module, so this wraps it there."""

    NAME = "capture"

    def __init__(self) -> None:
        import gateway.services.lane as lane_module

        self.waits_ms: list[float] = []
        self._module = lane_module
        self._capture: Callable[[LatestFrameGrabber, CaptureSettings], Shot] = getattr(
            lane_module, self.NAME)

    def __enter__(self) -> FrameWaits:
        def capture(grabber: LatestFrameGrabber, s: CaptureSettings) -> Shot:
            shot = self._capture(grabber, s)
            self.waits_ms.append(shot.timings_ms.get("frames", 0.0))
            return shot

        setattr(self._module, self.NAME, capture)
        return self

    def __exit__(self, *exc: object) -> None:
        setattr(self._module, self.NAME, self._capture)


class RelayEdges:
    """When the barrier's open relay is energised (the lane's open pulse command starts a
    task that does it, at the event loop's next turn): its ``set`` wrapped, in place."""

    NAME = "set"

    def __init__(self, barrier: object) -> None:
        self.at: list[float] = []
        relay = getattr(barrier, "open_relay", None)
        if relay is None:
            return
        setter: Callable[[bool], None] = getattr(relay, self.NAME)

        def set_(on: bool) -> None:
            if on:
                self.at.append(time.monotonic())
            setter(on)

        setattr(relay, self.NAME, set_)


async def run_lane(url: str, phases: list[tuple[str, float, int]], *,
                   reader: bool = True) -> dict[str, tuple[int, list[Row]]]:
    """Each phase: (name, the central's added delay in ms, vehicles). One daemon for all;
    its first vehicle warms up (a new connection, first queries). ``reader``: the gate's
    plate reader loaded (its model takes some 4 s) before the first vehicle; else none."""
    from gateway.app import Gateway
    from gateway.services.central import CentralPool
    from gateway.settings import parse_settings

    out: dict[str, tuple[int, list[Row]]] = {}
    config = CONFIG if reader else CONFIG.replace("[backup]", "[plates]\nenabled = false\n"
                                                              "[backup]")
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp, FrameWaits() as waits:
        gw = Gateway(parse_settings(config.format(data=tmp, url=url), "bench.toml"))
        await gw.start()
        try:
            assert gw.sim is not None
            pool = gw.runner.registry.remote["license_plate_service"]
            assert isinstance(pool, CentralPool)
            for _ in range(200):  # the reader's model loads in the background
                if gw.reader is None or gw.reader.ready or gw.reader.fault:
                    break
                await asyncio.sleep(0.05)
            controller = gw.lanes["entry-1"]
            energised = RelayEdges(controller.devices.barrier)
            plates = iter(f"L{i:05d}" for i in range(1_000_000))
            first = True
            for name, delay_ms, vehicles in phases:
                await asyncio.to_thread(set_fault, url, "slow" if delay_ms else "ok",
                                        delay_ms / 1000)
                rows: list[Row] = []
                for _ in range(vehicles + first):
                    waits.waits_ms.clear()
                    energised.at.clear()
                    seen = len(controller.latencies)
                    vehicle = gw.sim.add_vehicle("entry-1", next(plates), "pass")
                    await vehicle.done.wait()
                    await controller.idle.wait()
                    if len(controller.latencies) == seen or first:
                        first = False
                        continue
                    record = dict(controller.latencies[-1])
                    opened = record["at"]
                    loop = opened - record["total"] / 1000
                    rtt = sum(c.duration_s for c in pool.stats.calls
                              if c.at >= loop - 1e-6 and c.at + c.duration_s <= opened + 1e-6)
                    record["frame_wait"] = sum(waits.waits_ms)
                    record["central"] = rtt * 1000
                    record["pin"] = (energised.at[0] - opened) * 1000 if energised.at else 0.0
                    record["own"] = (record["total"] + record["pin"] - record["frame_wait"]
                                     - record["central"])
                    rows.append(record)
                out[name] = (vehicles, rows)
        finally:
            await gw.stop()
    return out


def camera_cpu(width: int, height: int, burst: int = 3, rounds: int = 30) -> float:
    """CPU seconds per vehicle of the capture's own work: the sharpest of the burst, its
    plate region, the crop and the frame encoded (the frames themselves are the camera's)."""
    from hardware.camera import encode_jpeg, find_plate_region, sharpness
    from hardware.sim import render_frame

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
        encode_jpeg(best, 1280, 80)
    return (time.thread_time() - t0) / rounds


def report_phase(report: Report, key: str, label: str, got: tuple[int, list[Row]], *,
                 stages: bool) -> None:
    sent, rows = got
    if len(rows) < sent:
        report.note(f"{label}: {len(rows)} of {sent} vehicles let through (the others "
                    "drove away or were refused: not counted)")
    if not rows:
        return
    total = [r["total"] for r in rows]
    if stages:
        for stage in STAGES:
            values = [r.get(stage, 0.0) for r in rows]
            for p in (50, 99):
                report.figure(f"{key}_{stage}_p{p}_ms", pct(values, p), "ms",
                              f"{label}: {stage} stage p{p}")
        frame_wait = [r["frame_wait"] for r in rows]
        central = [r["central"] for r in rows]
        report.figure(f"{key}_frame_wait_p50_ms", pct(frame_wait, 50), "ms",
                      f"{label}: camera frame wait p50 (burst of 3 at 25 fps)")
        report.figure(f"{key}_frame_wait_p99_ms", pct(frame_wait, 99), "ms",
                      f"{label}: camera frame wait p99")
        pin = [r["pin"] for r in rows]
        report.figure(f"{key}_pin_p50_ms", pct(pin, 50), "ms",
                      f"{label}: open pulse command to relay energised p50")
        report.figure(f"{key}_pin_p99_ms", pct(pin, 99), "ms",
                      f"{label}: open pulse command to relay energised p99")
        report.figure(f"{key}_central_p50_ms", pct(central, 50), "ms",
                      f"{label}: central round trips p50 (2 calls)")
        report.figure(f"{key}_central_p99_ms", pct(central, 99), "ms",
                      f"{label}: central round trips p99")
    for p in (50, 99):
        report.figure(f"{key}_total_p{p}_ms", pct(total, p), "ms",
                      f"{label}: loop to open pulse p{p}")
    own = [r["own"] for r in rows]
    report.figure(f"{key}_own_p50_ms", pct(own, 50), "ms", f"{label}: gateway's own share p50")
    report.figure(f"{key}_own_p99_ms", pct(own, 99), "ms", f"{label}: gateway's own share p99",
                  aim=("<=", 20.0))
    parts = {"frame − wait": [r.get("frame", 0.0) - r["frame_wait"] for r in rows],
             "plate": [r.get("plate", 0.0) for r in rows],
             "decision − central": [r.get("decision", 0.0) - r["central"] for r in rows],
             "relay": [r.get("relay", 0.0) for r in rows],
             "relay energised": [r["pin"] for r in rows]}
    print("    own share by stage (p50/p99 ms): " + ", ".join(
        f"{k} {pct(v, 50):.1f}/{pct(v, 99):.1f}" for k, v in parts.items()), flush=True)
    mean = statistics.fmean(total)
    shares = ", ".join(f"{s} {statistics.fmean(r.get(s, 0.0) for r in rows) / mean:.0%}"
                       for s in STAGES)
    print(f"    {len(rows)} vehicles; of the mean total: {shares}; own share "
          f"{statistics.fmean(own) / mean:.0%}", flush=True)


def main() -> None:
    # a vehicle cut short at shutdown is not news in a benchmark
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    p = parser(__doc__)
    p.add_argument("--vehicles", type=int,
                   help="with central up (default 60; quick: 3); a third as many at +D ms")
    p.add_argument("--delay-ms", type=float, default=50.0,
                   help="the central's added delay in the second phase")
    args = p.parse_args()
    n = args.vehicles or (3 if args.quick else 60)
    report = Report("lane_latency", "The gate end to end: loop to open pulse, by stage",
                    quick=args.quick, headlines=HEADLINES)
    port = free_port()
    command = [sys.executable, "-m", "gateway.sim", "central", "--port", str(port)]
    central = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert central.stdout is not None
        central.stdout.readline()  # "listening"
        url = f"http://127.0.0.1:{port}"
        got = asyncio.run(run_lane(url, [("up", 0.0, n), ("slow", args.delay_ms,
                                                          max(2, n // 3))],
                                   reader=not args.quick))
    finally:
        central.terminate()
        central.wait()
    report_phase(report, "up", "central up", got["up"], stages=True)
    report_phase(report, "slow", f"central +{args.delay_ms:g} ms", got["slow"], stages=False)
    rounds = 3 if args.quick else 30
    for w, h in ((1280, 720), (1920, 1080)):
        report.figure(f"camera_cpu_{h}p_ms", camera_cpu(w, h, rounds=rounds) * 1000, "ms",
                      f"camera pipeline CPU per vehicle at {h}p (burst of 3)")
    if args.quick:
        report.note("quick: without the gate's plate reader (its model takes some 4 s to "
                    "load); the full run has it, comparing its reading after the decision")
    report.note("own share = loop to the open relay energised - camera frame wait - central "
                "round trips (time inside the central calls); central in a separate process "
                "on 127.0.0.1; loop = the vehicle accepted after the 20 ms debounce")
    load = os.getloadavg()[0]
    report.note(f"load average {load:.1f} at the end, on {os.cpu_count()} cores (figures "
                "measured on a busy machine have long tails)")
    report.save(args.json)


if __name__ == "__main__":
    main()
