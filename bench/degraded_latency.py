"""Decision latency when the central service fails, in one run.

    python bench/degraded_latency.py [--vehicles N]

Scenarios: central healthy; central refusing connections; central blackholed (the first
vehicles, then after its breaker opened); backup only (central refusing, the backup service
answering over MQTT through a local Mosquitto); cache only (both down). For each: the
decision latency (saga start -> barrier open) p50/p99/max, and the time to fallback (how
long the verification took when its answer did not come from the central service).
Aim: no decision later than the decision deadline; once the breaker is open, a cached or
backup answer adds under 50 ms beyond the backup's own round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.clock import SystemClock  # noqa: E402
from gateway.core.steps import ENTRY, EXIT  # noqa: E402
from gateway.sagas.factory import build_registry, build_runner, central_session  # noqa: E402
from gateway.services.backup import BackupClient  # noqa: E402
from gateway.settings import parse_settings  # noqa: E402
from gateway.sim.backup import SimBackup  # noqa: E402
from gateway.sim.central import SimCentralState, make_app  # noqa: E402
from gateway.sim.faults import FaultRequest, Faults, SimServer  # noqa: E402
from gateway.sim.gate import InstantGate  # noqa: E402
from gateway.store import Store, saga_log  # noqa: E402
from gateway.telemetry.mqtt import MqttConnection, MqttOptions  # noqa: E402
from tests.broker import Broker  # noqa: E402

DECISION_DEADLINE_S = 1.0


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main() -> None:
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser()
    parser.add_argument("--vehicles", type=int, default=30)
    args = parser.parse_args()
    n = args.vehicles
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        broker = Broker(Path(tmp))
        await broker.start()
        state, faults = SimCentralState(), Faults()
        central = SimServer(make_app(state, faults), faults, "127.0.0.1", 0)
        await central.start()
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
deadline_s = 0.3
retry_count = 1
backoff_initial_s = 0.02
decision_deadline_s = {DECISION_DEADLINE_S}
failure_threshold = 3
reset_timeout_s = 600
[backup]
enabled = true
deadline_s = 0.5
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
        store = await Store.open(settings.database_path, settings.zone_specs())
        session = central_session(settings)
        clock = SystemClock()
        def fresh_runner():  # new breakers per scenario
            registry = build_registry(settings, session, clock, InstantGate(), backup_client)
            return build_runner(settings, store, registry, clock)

        plates = iter(f"B{i:05d}" for i in range(100_000))

        async def warm(runner, count: int) -> list[str]:
            """Plates seen (and cached) while healthy, then gone out again."""
            await faults.set(FaultRequest(mode="ok"))
            backup.mode = "ok"
            out = []
            for _ in range(count):
                plate = next(plates)
                await runner.run(ENTRY, {"lane_id": "entry-1", "license_plate": plate})
                await runner.run(EXIT, {"lane_id": "exit-1", "license_plate": plate})
                out.append(plate)
            return out

        async def measure(name: str, runner, vehicles: list[str]) -> None:
            lat, fallback = [], []
            sources: dict[str, int] = {}
            for plate in vehicles:
                outcome = await runner.run(ENTRY, {"lane_id": "entry-1",
                                                   "license_plate": plate})
                saga = await store.read(partial(saga_log.get, saga_id=outcome.saga_id))
                steps = {s["name"]: s for s in saga["steps"] if s["phase"] == "forward"}
                open_at = sum(steps[k]["duration_ms"] or 0 for k in
                              ("verify_license_plate", "allocate_parking_space",
                               "create_entry_record") if k in steps)
                lat.append(open_at)
                src = outcome.sources.get("verify_license_plate", "-")
                sources[src] = sources.get(src, 0) + 1
                if src != "central":
                    fallback.append(steps["verify_license_plate"]["duration_ms"] or 0)
                await runner.run(EXIT, {"lane_id": "exit-1", "license_plate": plate})
            fb = (f"  time to fallback p50 {pct(fallback, 50):6.1f} ms" if fallback else "")
            late = sum(1 for x in lat if x > DECISION_DEADLINE_S * 1000)
            print(f"{name:34} decision p50 {pct(lat, 50):7.1f} ms  p99 {pct(lat, 99):7.1f} ms"
                  f"  max {max(lat):7.1f} ms  over deadline {late}{fb}  sources {sources}")

        r = fresh_runner()
        await measure("central healthy", r, [next(plates) for _ in range(n)])

        r = fresh_runner()
        cached = await warm(r, n)
        await faults.set(FaultRequest(mode="refuse"))
        await measure("central refusing (backup up)", r, cached)

        r = fresh_runner()
        cached = await warm(r, n)
        await faults.set(FaultRequest(mode="blackhole"))
        await measure("central blackholed: first 3", r, cached[:3])
        await measure("central blackholed: breaker open", r, cached[3:])

        r = fresh_runner()
        await faults.set(FaultRequest(mode="refuse"))
        await measure("backup only (central refusing)", r, [next(plates) for _ in range(n)])

        r = fresh_runner()
        cached = await warm(r, n)
        await faults.set(FaultRequest(mode="refuse"))
        backup.mode = "blackhole"
        await measure("cache only (both down)", r, cached)
        print(f"decision deadline {DECISION_DEADLINE_S * 1000:.0f} ms; central call deadline "
              f"300 ms, backup call deadline 500 ms")

        await session.close()
        await store.close()
        await gate_mqtt.stop()
        await svc_mqtt.stop()
        await central.stop()
        await broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
