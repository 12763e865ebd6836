"""The web API under load: requests/s and latency of the daemon's read endpoints beside a
bare aiohttp handler, and what open pages on the event stream cost (issue 11).

    python bench/web_status.py [--quick] [--json PATH] [--connections N] [--seconds S]
                               [--rounds R] [--vehicles V] [--clients C] [--event-rate E]
                               [--window-s W]

Everything on 127.0.0.1, free ports, under one temporary directory removed at the end (also
on Ctrl-C); every process is a child of this one and dies with it.

1. History: V vehicles through the real saga runner (entry, and an exit for four in five)
   against the sim central service, with the lane's own events around each saga
   (vehicle_detected, barrier_opened, barrier_closed) and a camera frame in each saga's
   context, written to the daemon's SQLite before it starts (the outbox then emptied, as a
   daemon with a working broker would have it).
2. The daemon (``python -m gateway run``: simulation, two sim lanes, the sim central service
   inside it) on that database, and a bare aiohttp app returning a 50-byte JSON in its own
   process (same aiohttp, same asyncio loop, AppRunner with access_log=None as the daemon).
3. Load: for each target a separate load process (bench/web_load.py: an aiohttp client, N
   keep-alive connections, 1 s warm-up, then S s measured), R rounds taking the targets in
   turn (bare, /api/status, /api/events?limit=100, /api/vehicles?limit=50 if the daemon
   has it). Per target: requests/s, p50/p99/max, errors, the server process's CPU time per
   request (/proc/PID/stat: every thread), the load process's CPU use (near 100 % means the
   client, not the server, set the rate), the rest of the machine's CPU use meanwhile
   (/proc/stat: other work on a shared machine), the ratio to the bare handler's rate (aim:
   at least 0.5), overall and round by round, and the ratio of the bare handler's CPU per
   request to the target's (the rate ratio if each server had a CPU to itself: steadier
   than the rates when the machine is shared).
4. Event stream: events are produced at E per second (each a PUT /api/permits/{plate}: a
   permit write and a permit_changed event) for W s, with no page, with C clients on
   /api/events/stream (a separate process), and with none again. The daemon's CPU time
   over each window (the same length, production plus 1 s) gives the extra CPU per event
   per client and per event for all C; every client must receive every event (counted by
   seq against GET /api/events), with the delay from the PUT to each client's copy.

The figures are printed as a table and every measurement is written as JSON to
web_status.json in the system temp dir; the suite's figures go to ``--json``. The whole run
takes about two minutes on a quiet two-core machine; ``--quick`` (one short round, two
stream windows, 30 vehicles) about twenty seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from bench.report import Report  # noqa: E402
from bench.report import parser as bench_parser  # noqa: E402
from bench.web_load import die_with_parent  # noqa: E402
from gateway.clock import SystemClock  # noqa: E402
from gateway.core.steps import ENTRY, EXIT  # noqa: E402
from gateway.sagas.factory import build_registry, build_runner, central_session  # noqa: E402
from gateway.settings import Settings, parse_settings  # noqa: E402
from gateway.sim.central import SimCentralState, make_app  # noqa: E402
from gateway.sim.faults import Faults, SimServer  # noqa: E402
from gateway.sim.gate import InstantGate  # noqa: E402
from gateway.store import Store  # noqa: E402
from hardware.camera import encode_jpeg  # noqa: E402
from hardware.sim import render_frame  # noqa: E402

LOAD = str(ROOT / "bench" / "web_load.py")
TOKEN = "bench-web-token"
TICK = os.sysconf("SC_CLK_TCK")
AIM = 0.5
BARE = "bare aiohttp handler"
SPACES = 200  # a mid-sized car park; one vehicle in five of the history stays parked

CONFIG = """
[plates]
enabled = false
[gate]
id = "bench-gate"
data_dir = "{data}"
[central]
base_urls = ["{central}"]
[backup]
enabled = false
[web]
host = "127.0.0.1"
port = 0
[simulation]
enabled = true
start_central = true
[[zones]]
name = "A"
spaces = {spaces}
[[lanes]]
id = "entry-1"
direction = "entry"
[lanes.camera]
width = 320
height = 240
[[lanes]]
id = "exit-1"
direction = "exit"
[lanes.camera]
width = 320
height = 240
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu_s(pid: int) -> float:
    """utime + stime of every thread of ``pid`` (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy_s() -> float:
    """CPU time every CPU of the machine spent on anything but idling (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICK


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Child:
    """A child process whose stdout is read line by line (and kept, for errors)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: asyncio.Queue[str | None] = asyncio.Queue()
        self.log: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, stdin: bool = False) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, cwd=ROOT, env=self.env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            # a Ctrl-C is this process's to handle: it stops the children in turn
            start_new_session=True, preexec_fn=die_with_parent,
            limit=1 << 26)  # the SSE child's JSON line is long
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            del self.log[:-200]
            await self.lines.put(line)
        await self.lines.put(None)

    async def expect(self, match: Callable[[str], bool], within_s: float) -> str:
        async def wait() -> str:
            while True:
                line = await self.lines.get()
                if line is None:
                    raise RuntimeError(f"{self.name} exited:\n" + "\n".join(self.log[-30:]))
                if match(line):
                    return line

        return await asyncio.wait_for(wait(), within_s)

    def send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reader, 5)


async def write_history(settings: Settings, central_port: int, vehicles: int) -> dict[str, Any]:
    """V vehicles through the real runner (as a lane runs them) against the sim central
    service on the daemon's future central port, with the lane's own events around them."""
    faults = Faults()
    central = SimServer(make_app(SimCentralState(), faults), faults, "127.0.0.1", central_port)
    await central.start()
    store = await Store.open(settings.database_path, settings.zone_specs(), synchronous="off")
    session = central_session(settings)
    clock = SystemClock()
    runner = build_runner(settings, store, build_registry(settings, session, clock,
                                                          InstantGate()), clock)
    gate = settings.gate.id
    image = encode_jpeg(render_frame("34ABC123", 320, 240), 320, 80)
    image_b64 = base64.b64encode(image).decode()
    t0 = time.perf_counter()
    outcomes = {"entry": 0, "exit": 0, "failed": 0}
    try:
        for i in range(vehicles):
            plate = f"H{i:05d}"
            for direction, lane, definition in (("entry", "entry-1", ENTRY),
                                                ("exit", "exit-1", EXIT)):
                if direction == "exit" and i % 5 == 4:
                    break  # one in five stays parked
                await store.record_event(clock, gate, "vehicle_detected", {
                    "lane_id": lane, "direction": direction, "presence": 1}, lane)
                out = await runner.run(definition, {
                    "lane_id": lane, "license_plate": plate, "plate_confidence": 0.97,
                    "reading_source": "camera", "image_jpeg_b64": image_b64})
                outcomes[direction if out.succeeded else "failed"] += 1
                await store.record_event(clock, gate, "barrier_opened", {
                    "lane_id": lane, "saga_id": out.saga_id, "manual": False,
                    "stages_ms": {"frame": 41.3, "plate": 2.3, "decision": 10.2,
                                  "relay": 0.01, "total": 53.8}}, lane)
                await store.record_event(clock, gate, "barrier_closed", {
                    "lane_id": lane, "position": "confirmed"}, lane)
        # a daemon with a working broker has published these: the outbox is empty
        await store.write(lambda c: c.execute("DELETE FROM outbox"))
        counts = await store.read(lambda c: {
            "events": c.execute("SELECT count(*) FROM events").fetchone()[0],
            "sagas": c.execute("SELECT count(*) FROM sagas").fetchone()[0]})
    finally:
        await session.close()
        await store.close()
        await central.stop()
    return {**counts, **outcomes, "vehicles": vehicles, "seconds": time.perf_counter() - t0,
            "image_bytes": len(image)}


async def run_load(url: str, server_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    child = Child("load", [sys.executable, LOAD, "load", url, "-c", str(args.connections),
                           "-t", str(args.seconds), "-w",
                           "0.3" if args.quick else "1"])
    await child.start()
    try:
        await child.expect(lambda line: line == "measuring", 30)
        cpu0, busy0 = proc_cpu_s(server_pid), machine_busy_s()
        line = await child.expect(lambda line: line.startswith("{"), args.seconds + 30)
        cpu1, busy1 = proc_cpu_s(server_pid), machine_busy_s()
    finally:
        await child.stop()
    result: dict[str, Any] = json.loads(line)
    result["server_cpu_s"] = cpu1 - cpu0
    # the rest of the machine's work meanwhile: other processes (and this one)
    result["others_cpu_s"] = busy1 - busy0 - result["server_cpu_s"] - result["client_cpu_s"]
    return result


def merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one target: rates and CPU summed over the windows; the latencies are the
    worst round's (the child reports percentiles, not samples)."""
    n = sum(r["requests"] for r in rounds)
    window = sum(r["window_s"] for r in rounds)
    errors: dict[str, int] = {}
    for r in rounds:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return {
        "requests": n, "rate": n / window, "window_s": window, "errors": errors,
        "rates_by_round": [round(r["rate"], 1) for r in rounds],
        "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
        "p99_ms": max(r["p99_ms"] for r in rounds), "max_ms": max(r["max_ms"] for r in rounds),
        "server_cpu_ms_per_request": 1000 * sum(r["server_cpu_s"] for r in rounds) / max(n, 1),
        "server_cpu_share": sum(r["server_cpu_s"] for r in rounds) / window,
        "client_cpu_share": sum(r["client_cpu_s"] for r in rounds) / window,
        "others_cpu_share": max(0.0, sum(r["others_cpu_s"] for r in rounds) / window),
        "body_bytes": rounds[-1]["body_bytes"]}


async def max_seq(session: aiohttp.ClientSession, url: str) -> int:
    seq = 0
    while True:
        async with session.get(f"{url}/api/events?after_seq={seq}&limit=1000") as resp:
            batch = await resp.json()
        if not batch:
            return seq
        seq = batch[-1]["seq"]


async def seqs_after(session: aiohttp.ClientSession, url: str, after: int) -> list[int]:
    seqs: list[int] = []
    while True:
        async with session.get(f"{url}/api/events?after_seq={after}&limit=1000") as resp:
            batch = await resp.json()
        if not batch:
            return seqs
        seqs += [e["seq"] for e in batch]
        after = batch[-1]["seq"]


async def stream_window(url: str, daemon_pid: int, clients: int, index: int,
                        args: argparse.Namespace) -> dict[str, Any]:
    """Events at a steady rate for window_s, with ``clients`` on the stream; the daemon's CPU
    over production + 1 s (the same length whatever the clients)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session:
        after = await max_seq(session, url)
        sse = None
        if clients:
            sse = Child("sse", [sys.executable, LOAD, "sse", url, "-n", str(clients),
                                "--after", str(after)])
            await sse.start(stdin=True)
        try:
            if sse is not None:
                await sse.expect(lambda line: line == "connected", 30)
            await asyncio.sleep(0.5)  # the streams' first reads are done
            n = max(1, round(args.event_rate * args.window_s))
            sent: dict[str, float] = {}
            put_ms: list[float] = []
            cpu0 = proc_cpu_s(daemon_pid)
            t0 = time.monotonic()
            for i in range(n):
                await asyncio.sleep(max(0.0, t0 + i / args.event_rate - time.monotonic()))
                plate = f"W{index}X{i:05d}"
                sent[plate] = time.monotonic()
                async with session.put(f"{url}/api/permits/{plate}", json={"kind": "staff"},
                                       headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
                put_ms.append((time.monotonic() - sent[plate]) * 1000)
            produced_s = time.monotonic() - t0
            await asyncio.sleep(max(0.0, t0 + args.window_s + 1.0 - time.monotonic()))
            cpu = proc_cpu_s(daemon_pid) - cpu0
            cpu_end = time.monotonic()
            wall = cpu_end - t0
            expected = await seqs_after(session, url, after)
            result: dict[str, Any] = {
                "clients": clients, "events": len(expected), "permit_puts": n,
                "produced_s": produced_s, "cpu_window_s": wall, "daemon_cpu_s": cpu,
                "put_p50_ms": pct(put_ms, 0.5), "put_p99_ms": pct(put_ms, 0.99)}
            if sse is not None:
                sse.send(f"until {expected[-1] if expected else after}")
                got = json.loads(await sse.expect(lambda line: line.startswith("{"), 60))
                want = set(expected)
                complete = sum(1 for s in got["seqs"] if set(s) >= want)
                duplicates = sum(len(s) - len(set(s)) for s in got["seqs"])
                delays = [(at - sent[plate]) * 1000 for arrivals in got["arrivals"]
                          for plate, at in arrivals.items() if plate in sent]
                # a copy sent after the CPU window closed was not counted in it
                late = sum(1 for arrivals in got["arrivals"] for at in arrivals.values()
                           if at > cpu_end)
                result.update({
                    "clients_with_every_event": complete,
                    "events_received": sum(len(s) for s in got["seqs"]),
                    "events_missing": sum(len(want - set(s)) for s in got["seqs"]),
                    "duplicates": duplicates, "stream_errors": got["client_errors"],
                    "protocol_errors": got["bad"],
                    "delay_p50_ms": pct(delays, 0.5), "delay_p99_ms": pct(delays, 0.99),
                    "delay_max_ms": max(delays, default=float("nan")),
                    "copies_after_cpu_window": late})
        finally:
            if sse is not None:
                await sse.stop()
    return result


async def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    central_port = free_port()
    config = CONFIG.format(data=tmp / "data", central=f"http://127.0.0.1:{central_port}",
                           spaces=SPACES)
    (tmp / "bench.toml").write_text(config)
    settings = parse_settings(config, "bench.toml")
    history = await write_history(settings, central_port, args.vehicles)
    print(f"history: {history['vehicles']} vehicles ({history['entry']} entries, "
          f"{history['exit']} exits, {history['failed']} failed), {history['events']} events, "
          f"{history['sagas']} sagas in the log, written in {history['seconds']:.1f} s")
    env = {**os.environ, "GATEWAY_ADMIN_TOKEN": TOKEN}
    daemon = Child("daemon", [sys.executable, "-m", "gateway", "run", "--config",
                              str(tmp / "bench.toml")], env)
    bare = Child("bare", [sys.executable, LOAD, "bare"])
    children = [daemon, bare]
    try:
        await daemon.start()
        found = await daemon.expect(lambda line: "web on http://" in line, 60)
        url = found.split("web on ")[1].split()[0]
        await bare.start()
        bare_port = int((await bare.expect(lambda line: line.startswith("listening"), 30))
                        .split()[1])
        targets = {BARE: (f"http://127.0.0.1:{bare_port}/bare", bare.pid),
                   "GET /api/status": (f"{url}/api/status", daemon.pid),
                   "GET /api/events?limit=100": (f"{url}/api/events?limit=100", daemon.pid),
                   "GET /api/vehicles?limit=50": (f"{url}/api/vehicles?limit=50", daemon.pid)}
        notes: list[str] = []
        async with aiohttp.ClientSession() as session:
            for name, (target, _pid) in list(targets.items()):
                async with session.get(target) as resp:
                    body = await resp.text()
                    if resp.status != 200 or resp.content_type != "application/json":
                        del targets[name]  # a 404 when the daemon has no such endpoint
                        notes.append(f"{name}: {resp.status} {resp.content_type} "
                                     f"{body[:120]!r}, not measured")
            await asyncio.sleep(1.0)
            idle0 = proc_cpu_s(daemon.pid)
            await asyncio.sleep(2.0)
            idle_share = (proc_cpu_s(daemon.pid) - idle0) / 2.0
        for note in notes:
            print(f"note: {note}")
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (target, pid) in targets.items():
                rounds[name].append(await run_load(target, pid, args))
        http = {name: merge(rs) for name, rs in rounds.items()}
        base = http[BARE]
        for name, r in http.items():
            r["ratio_to_bare"] = r["rate"] / base["rate"]
            # the same round's bare rate: a neighbour's burst of work hits both alike
            r["ratios_by_round"] = [round(x["rate"] / b["rate"], 3)
                                    for x, b in zip(rounds[name], rounds[BARE], strict=True)]
            # what the rates would be if each server had a CPU to itself
            r["cpu_ratio_to_bare"] = (base["server_cpu_ms_per_request"]
                                      / r["server_cpu_ms_per_request"])
        windows = []
        plan = [0, args.clients] if args.quick else [0, args.clients, 0]
        for index, clients in enumerate(plan):
            windows.append(await stream_window(url, daemon.pid, clients, index, args))
    finally:
        for child in children:
            await child.stop()
    return {"history": history, "http": http, "stream_windows": windows, "notes": notes,
            "daemon_idle_cpu_share": idle_share, "daemon_log_tail": daemon.log[-5:]}


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    http = results["http"]
    print(f"\nHTTP: {args.connections} keep-alive connections from a separate load process, "
          f"{args.rounds} round(s) of {args.seconds:g} s per target (after 1 s warm-up); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"  {'target':27} {'req/s':>6} {'x bare':>6} {'p50 ms':>6} {'p99 ms':>6} "
          f"{'max ms':>6} {'errors':>6} {'bytes':>6} {'CPU/req':>8} {'x bare':>6} "
          f"{'server':>6} {'client':>6} {'others':>6}")
    for name, r in http.items():
        print(f"  {name:27} {r['rate']:6.0f} {r['ratio_to_bare']:6.2f} {r['p50_ms']:6.1f} "
              f"{r['p99_ms']:6.1f} {r['max_ms']:6.0f} {sum(r['errors'].values()):6d} "
              f"{r['body_bytes']:6d} {r['server_cpu_ms_per_request']:5.3f} ms "
              f"{r['cpu_ratio_to_bare']:6.2f} {r['server_cpu_share']:6.0%} "
              f"{r['client_cpu_share']:6.0%} {r['others_cpu_share']:6.0%}")
    print("  (CPU/req: the server process's CPU time per request, every thread; its x bare is "
          "the bare handler's CPU/req over it, the rate ratio with a CPU each; server, client, "
          "others: share of a CPU used by the server, the load process, everything else)")
    for name, r in http.items():
        if name == BARE:
            continue
        verdict = "met" if r["ratio_to_bare"] >= AIM else "MISSED"
        print(f"  {name}: {r['ratio_to_bare']:.2f} x the bare handler's rate (aim >= {AIM}: "
              f"{verdict}); by round {r['ratios_by_round']}; {r['cpu_ratio_to_bare']:.2f} by "
              "CPU per request")
    bare = http[BARE]
    if bare["client_cpu_share"] > 0.9:
        print(f"  the load process used {bare['client_cpu_share']:.0%} of a CPU against the "
              "bare handler: the client, not the server, set that rate (the ratio is "
              "flattered; compare the CPU per request)")
    busy = max(r["others_cpu_share"] for r in http.values())
    if busy > 0.25:
        print(f"  other work took up to {busy:.0%} of a CPU while measuring: the rates are "
              "lower than on a quiet machine; the ratios and the CPU per request hold better")
    print(f"  the idle daemon uses {results['daemon_idle_cpu_share']:.1%} of a CPU "
          "(two sim lanes, no vehicle)")
    windows = results["stream_windows"]
    print(f"\nEvent stream: {args.event_rate:g} events/s for {args.window_s:g} s (each a PUT "
          "/api/permits: a permit write and a permit_changed event), daemon CPU over "
          f"{args.window_s + 1:g} s")
    print(f"  {'clients':>7} {'events':>6} {'daemon CPU s':>12} {'CPU/event ms':>12} "
          f"{'every event':>11} {'delay p50 ms':>12} {'p99 ms':>7} {'PUT p99 ms':>10}")
    for w in windows:
        every = f"{w['clients_with_every_event']}/{w['clients']}" if w["clients"] else "-"
        delay = (f"{w['delay_p50_ms']:12.1f} {w['delay_p99_ms']:7.1f}" if w["clients"]
                 else f"{'-':>12} {'-':>7}")
        print(f"  {w['clients']:7d} {w['events']:6d} {w['daemon_cpu_s']:12.2f} "
              f"{1000 * w['daemon_cpu_s'] / max(w['events'], 1):12.3f} {every:>11} {delay} "
              f"{w['put_p99_ms']:10.1f}")
    s = results["stream"]
    print(f"  {s['clients']} clients cost {s['extra_cpu_ms_per_event']:.3f} ms of daemon CPU per "
          f"event in all, {s['extra_cpu_ms_per_event_per_client']:.4f} ms per event per client "
          f"(the {s['clients']}-client window minus the mean of the 0-client windows)")
    for w in windows:
        if w["clients"] and w["copies_after_cpu_window"]:
            print(f"  {w['copies_after_cpu_window']} copies reached their client after the CPU "
                  "window closed: the CPU per event is understated")
        if w["clients"] and (w["events_missing"] or w["duplicates"] or w["stream_errors"]
                             or w["protocol_errors"]):
            print(f"  STREAM PROBLEM: {w['events_missing']} events missing, "
                  f"{w['duplicates']} duplicates, errors {w['stream_errors']} "
                  f"{w['protocol_errors']}")
    for note in results["notes"]:
        print(f"  note: {note}")
    src = results["source"]
    if src["commit"]:
        print(f"\nmeasured: commit {src['commit'][:12]}"
              + (f" with {len(src['changed_files'])} file(s) changed in the working tree"
                 if src["changed_files"] else ""))
    else:
        print(f"\nmeasured: the files under {ROOT} (not a git checkout)")


def source() -> dict[str, Any]:
    """The commit measured, and whether the working tree differed from it."""
    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain").splitlines()]
    return {"commit": git("rev-parse", "HEAD"), "changed_files": changed}


def summarise_stream(windows: list[dict[str, Any]]) -> dict[str, Any]:
    base = [w["daemon_cpu_s"] / max(w["events"], 1) for w in windows if not w["clients"]]
    loaded = [w for w in windows if w["clients"]]
    per_event = statistics.fmean(w["daemon_cpu_s"] / max(w["events"], 1) for w in loaded)
    clients = loaded[0]["clients"]
    extra = per_event - statistics.fmean(base)
    return {"clients": clients, "baseline_cpu_ms_per_event": 1000 * statistics.fmean(base),
            "cpu_ms_per_event_with_clients": 1000 * per_event,
            "extra_cpu_ms_per_event": 1000 * extra,
            "extra_cpu_ms_per_event_per_client": 1000 * extra / clients,
            "every_client_every_event": all(w["clients_with_every_event"] == w["clients"]
                                            for w in loaded)}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, help="per target per round (3; quick 0.7)")
    parser.add_argument("--rounds", type=int, help="rounds over the targets (3; quick 1)")
    parser.add_argument("--vehicles", type=int, help="history (400; quick 30)")
    parser.add_argument("--clients", type=int, default=20, help="event-stream clients")
    parser.add_argument("--event-rate", type=float, default=25.0, help="events per second")
    parser.add_argument("--window-s", type=float, help="event production per window (8; "
                        "quick 1.5)")
    args = parser.parse_args()
    for name, full, quick in (("seconds", 3.0, 0.7), ("rounds", 3, 1), ("vehicles", 400, 30),
                              ("window_s", 8.0, 1.5)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-web-"))
    try:
        results = asyncio.run(run_main(args, tmp))
    except KeyboardInterrupt:
        print("interrupted: every process stopped, temporary files removed", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["stream"] = summarise_stream(results["stream_windows"])
    results["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results["machine"] = {"cpus": os.cpu_count(), "loadavg_end": os.getloadavg()}
    results["source"] = source()
    report(results, args)
    raw = Path(tempfile.gettempdir()) / "web_status.json"
    raw.write_text(json.dumps(results, indent=2))
    print(f"\nevery measurement written to {raw}")
    figures(results, Report("web_status", "Web API under load and the event stream",
                            quick=args.quick)).save(args.json)


def figures(results: dict[str, Any], rep: Report) -> Report:
    """The suite's figures: the rates beside the bare handler's, and the stream's cost."""
    http = results["http"]
    rep.figure("bare_rate", http[BARE]["rate"], "req/s", "bare aiohttp handler (baseline)")
    for name, r in http.items():
        if name == BARE:
            continue
        key = name.split("?")[0].strip("/").replace("/", "_")
        rep.figure(f"{key}_rate", r["rate"], "req/s", f"{name}")
        rep.ratio(f"{key}_ratio", r["ratio_to_bare"], f"{name} ÷ bare handler, by rate",
                  of="bare_rate", aim=(">=", AIM))
        rep.ratio(f"{key}_cpu_ratio", r["cpu_ratio_to_bare"],
                  f"{name} ÷ bare handler, by CPU per request", of="bare_rate")
        rep.figure(f"{key}_p99_ms", r["p99_ms"], "ms", f"{name}, p99")
    s = results["stream"]
    rep.figure("stream_cpu_ms_per_event_per_client", s["extra_cpu_ms_per_event_per_client"],
               "ms", f"event stream: daemon CPU per event per client ({s['clients']} clients)")
    rep.figure("stream_every_event", 100.0 if s["every_client_every_event"] else 0.0, "%",
               "event stream: clients that got every event", aim=(">=", 100.0))
    rep.figure("idle_cpu", results["daemon_idle_cpu_share"] * 100, "%",
               "idle daemon, two sim lanes: share of one core")
    return rep


async def run_main(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await bench(args, tmp)


if __name__ == "__main__":
    main()
