"""Decision time when the central service fails, in one run: healthy, refusing, blackholed
(the first vehicle, then the steady state with its breaker open), backup only, cache only.

    python bench/degraded_latency.py [--quick] [--json FILE] [--vehicles N]

The gateway's saga engine (its orchestrator, breakers, fallback chain and saga log on a
real SQLite file, ``synchronous=FULL``) runs in this process with an instant gate; the sim
central service is an aiohttp server on 127.0.0.1 in a separate process (``python -m
gateway.sim central``), its faults switched over HTTP (``POST /_sim/fault``): ``refuse``
closes its port, ``blackhole`` accepts connections and requests and never answers. The
backup service answers over MQTT through a local Mosquitto (``tests/broker.py``; the sim
backup runs in this process).

A vehicle's decision time is its entry saga's start -> the barrier's open (verify, allocate,
create the entry record, each step in the saga log); its time to fallback is how long the
verification took when its answer did not come from central. The plates were seen (and
cached) while central was healthy, then left, so a cached answer exists.

Central blackholed: the first vehicle waits until its calls' deadlines or the decision
deadline give way to a fallback; the breaker opens after ``failure_threshold`` failed calls
and the steady state's vehicles go to the fallback at once. The full run uses the product's
default central settings (call deadline 0.8 s, 2 retries, decision deadline 2.5 s, breaker
after 5 failures); ``--quick`` shortens them (0.3 s, 1 retry, 1 s, 3; the backup's
deadline 1 s -> 0.5 s) to stay brief.
Aim: no decision later than the decision deadline; with the breaker open, p99 ≤ 50 ms.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import Report, parser  # noqa: E402

Json = dict[str, Any]
QUICK = """deadline_s = 0.3
retry_count = 1
backoff_initial_s = 0.02
decision_deadline_s = 1.0
failure_threshold = 3
[backup]
deadline_s = 0.5
"""


# What the README's table shows (every figure with an aim besides); the JSON has them all.
HEADLINES = frozenset({
    "healthy_p50_ms", "healthy_p99_ms", "blackholed_first_fallback_ms",
    "blackholed_until_open", "blackholed_steady_p50_ms", "blackholed_steady_fallback_p50_ms",
    "refusing_p50_ms", "backup_only_p50_ms", "cache_only_p50_ms"})

def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Central:
    """The sim central service in its own process on a fixed port: ``refuse`` stops the
    process (nothing listens: connections are refused), ``ok`` starts it again if need be,
    any other mode is switched over HTTP."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "gateway.sim", "central", "--port", str(self.port)]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        self.process.stdout.readline()  # "listening"

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait()
            self.process = None

    def fault(self, mode: str) -> None:
        if mode == "refuse":
            self.stop()
            return
        if self.process is None:
            self.start()
        request = urllib.request.Request(f"{self.url}/_sim/fault",
                                         json.dumps({"mode": mode}).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as reply:
            reply.read()


class TimedGate:
    """The saga's ``gate_service``: the barrier opens at once, and says when it was asked."""

    name = "gate_service"

    def __init__(self) -> None:
        self.opened_at = 0.0

    async def call(self, operation: str, payload: Json, *, idempotency_key: str | None,
                   deadline_s: float) -> Json:
        if operation == "open_barrier":
            self.opened_at = time.perf_counter()
            return {"opened": True}
        return {"passed": True}


@dataclass
class Vehicle:
    decision_ms: float | None  # None: no barrier opened
    fallback_ms: float | None  # the verification's time when not answered by central
    circuit: str  # central's breaker after this vehicle


@dataclass
class Measured:
    vehicles: list[Vehicle] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)

    def decisions(self, start: int = 0) -> list[float]:
        return [v.decision_ms for v in self.vehicles[start:] if v.decision_ms is not None]

    def fallbacks(self, start: int = 0) -> list[float]:
        return [v.fallback_ms for v in self.vehicles[start:] if v.fallback_ms is not None]


def main() -> None:
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    p = parser(__doc__)
    p.add_argument("--vehicles", type=int, help="per scenario (default 40; quick: 4)")
    args = p.parse_args()
    n = args.vehicles or (4 if args.quick else 40)
    report = Report("degraded_latency", "Decision time with the central service down",
                    quick=args.quick, headlines=HEADLINES)
    central = Central()
    central.start()
    try:
        asyncio.run(scenarios(report, central, n, args.quick))
    finally:
        central.stop()
    load = os.getloadavg()[0]
    report.note(f"load average {load:.1f} at the end, on {os.cpu_count()} cores (figures "
                "measured on a busy machine have long tails)")
    report.save(args.json)


async def scenarios(report: Report, central: Central, n: int, quick: bool) -> None:
    from gateway.clock import SystemClock
    from gateway.core.steps import ENTRY, EXIT
    from gateway.sagas.factory import build_registry, build_runner, central_session
    from gateway.sagas.runner import SagaRunner
    from gateway.services.backup import BackupClient
    from gateway.services.central import CentralPool
    from gateway.settings import parse_settings
    from gateway.sim.backup import SimBackup
    from gateway.store import Store, saga_log
    from gateway.telemetry.mqtt import MqttConnection, MqttOptions
    from tests.broker import Broker

    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        broker = Broker(Path(tmp))
        await broker.start()
        gate_mqtt = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="gate"))
        svc_mqtt = MqttConnection(MqttOptions("127.0.0.1", broker.port, client_id="backup"))
        backup_client = BackupClient(gate_mqtt, "parking", "bench")
        backup = SimBackup(svc_mqtt)
        gate_mqtt.start()
        svc_mqtt.start()
        await asyncio.gather(gate_mqtt.wait_connected(), svc_mqtt.wait_connected())
        await asyncio.sleep(0.1)
        settings = parse_settings(f"""
[gate]
id = "bench"
data_dir = "{tmp}"
[central]
base_urls = ["{central.url}"]
{QUICK if quick else ""}
[simulation]
enabled = true
[[zones]]
name = "A"
spaces = 5000
[[lanes]]
id = "entry-1"
direction = "entry"
[[lanes]]
id = "exit-1"
direction = "exit"
""", "bench.toml")
        c = settings.central
        deadline_ms = c.decision_deadline_s * 1000
        store = await Store.open(settings.database_path, settings.zone_specs())
        session = central_session(settings)
        clock = SystemClock()
        gate = TimedGate()

        def fresh_runner() -> SagaRunner:  # new breakers per scenario
            registry = build_registry(settings, session, clock, gate, backup_client)
            return build_runner(settings, store, registry, clock)

        plates = iter(f"B{i:05d}" for i in range(1_000_000))

        async def fault(mode: str) -> None:
            await asyncio.to_thread(central.fault, mode)

        async def warm(runner: SagaRunner, count: int) -> list[str]:
            """Plates seen (and cached) while healthy, then gone out again."""
            await fault("ok")
            backup.mode = "ok"
            out = []
            for _ in range(count):
                plate = next(plates)
                await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": plate})
                await runner.run(EXIT, {"lane_id": "exit-1", "license_plate": plate})
                out.append(plate)
            return out

        async def measure(runner: SagaRunner, vehicles: list[str]) -> Measured:
            got = Measured()
            pool = runner.registry.remote["license_plate_service"]
            assert isinstance(pool, CentralPool)
            for plate in vehicles:
                gate.opened_at = 0.0
                t0 = time.perf_counter()
                outcome = await runner.run(ENTRY, {"lane_id": "entry-1",
                                                   "license_plate": plate})
                circuit = pool.circuit()
                decision = (gate.opened_at - t0) * 1000 if gate.opened_at else None
                src = outcome.sources.get("verify_license_plate", "-")
                got.sources[src] = got.sources.get(src, 0) + 1
                fallback = None
                if src != "central":
                    saga = await store.read(partial(saga_log.get, saga_id=outcome.saga_id))
                    assert saga is not None
                    verify = [s for s in saga["steps"] if s["phase"] == "forward"
                              and s["name"] == "verify_license_plate"]
                    fallback = float(verify[0]["duration_ms"] or 0) if verify else None
                got.vehicles.append(Vehicle(decision, fallback, circuit))
                await runner.run(EXIT, {"lane_id": "exit-1", "license_plate": plate})
            return got

        late = 0

        def figures(key: str, label: str, m: Measured, *, fallback: bool = True) -> None:
            nonlocal late
            decisions = m.decisions()
            if not decisions:
                report.note(f"{label}: no barrier opened ({m.sources})")
                return
            late += sum(1 for x in decisions if x > deadline_ms)
            report.figure(f"{key}_p50_ms", pct(decisions, 50), "ms", f"{label}: decision p50")
            report.figure(f"{key}_p99_ms", pct(decisions, 99), "ms", f"{label}: decision p99")
            if fallback and m.fallbacks():
                report.figure(f"{key}_fallback_p50_ms", pct(m.fallbacks(), 50), "ms",
                              f"{label}: time to fallback p50")
            print(f"    answers from {m.sources}", flush=True)

        figures("healthy", "central healthy",
                await measure(fresh_runner(), [next(plates) for _ in range(n)]), fallback=False)

        # blackholed: the first vehicles until the breaker opens, then the steady state
        r = fresh_runner()
        cached = await warm(r, n + 4)
        await fault("blackhole")
        m = await measure(r, cached)
        await fault("ok")  # lets go of the held requests
        opened = next((i for i, v in enumerate(m.vehicles) if v.circuit == "open"),
                      len(m.vehicles))
        late += sum(1 for x in m.decisions() if x > deadline_ms)
        first = m.vehicles[0]
        if first.decision_ms is not None:
            report.figure("blackholed_first_ms", first.decision_ms, "ms",
                          "central blackholed: the first vehicle's decision",
                          aim=("<=", deadline_ms))
        if first.fallback_ms is not None:
            report.figure("blackholed_first_fallback_ms", first.fallback_ms, "ms",
                          "central blackholed: the first vehicle's time to fallback")
        report.figure("blackholed_until_open", opened + 1, "vehicles",
                      "central blackholed: vehicles until its breaker opened")
        steady = m.decisions(opened + 1)
        if steady:
            report.figure("blackholed_steady_p50_ms", pct(steady, 50), "ms",
                          "central blackholed, breaker open: decision p50")
            report.figure("blackholed_steady_p99_ms", pct(steady, 99), "ms",
                          "central blackholed, breaker open: decision p99", aim=("<=", 50.0))
        if m.fallbacks(opened + 1):
            report.figure("blackholed_steady_fallback_p50_ms",
                          pct(m.fallbacks(opened + 1), 50), "ms",
                          "central blackholed, breaker open: time to fallback p50")
        if not steady:
            report.note("central blackholed: its breaker never opened, or no barrier opened")
        print(f"    answers from {m.sources}; decisions of the first vehicles (ms): "
              f"{', '.join(f'{v.decision_ms or 0:.0f}' for v in m.vehicles[:opened + 2])}",
              flush=True)

        # refusing (its process stopped): plates cached while it answered, the backup up;
        # then plates never seen (the backup answers); then the backup blackholed too
        cached = await warm(fresh_runner(), 2 * n)
        await fault("refuse")
        figures("refusing", "central refusing", await measure(fresh_runner(), cached[:n]))
        figures("backup_only", "backup only (central refusing)",
                await measure(fresh_runner(), [next(plates) for _ in range(n)]))
        backup.mode = "blackhole"
        figures("cache_only", "cache only (central refusing, backup blackholed)",
                await measure(fresh_runner(), cached[n:]))
        report.figure("over_deadline", late, "vehicles",
                      f"decisions later than the decision deadline ({deadline_ms:.0f} ms)",
                      aim=("<=", 0))
        report.note(f"decision deadline {deadline_ms:.0f} ms, central call deadline "
                    f"{c.deadline_s * 1000:.0f} ms × {c.retry_count + 1} attempts, breaker "
                    f"after {c.failure_threshold} failures, backup deadline "
                    f"{settings.backup.deadline_s * 1000:.0f} ms"
                    + (" (quick: shortened)" if quick else " (the product's defaults)"))
        report.note("central in a separate process on 127.0.0.1; the backup through a local "
                    "Mosquitto, answered in this process")

        await session.close()
        await store.close()
        await gate_mqtt.stop()
        await svc_mqtt.stop()
        await broker.stop()


if __name__ == "__main__":
    main()
