"""The reliability campaign: the daemon as a process, a real Mosquitto, the simulated
central and backup services, mixed traffic on both lanes, and a seeded random schedule of
faults; then the invariant checker (``invariants.py``) over what an outside observer saw.

A round applies one fault for a few seconds while traffic runs, then lifts it; a SIGKILL
of the daemon may come at a random instant of any round (and is a round's fault of its
own). After each kill ``relays-off`` runs, as systemd's ``ExecStopPost=`` does, the boards
are read (no relay may be energised while the daemon is down), and the daemon starts
again. Everything random comes from the plan's seed: the fault kinds, their lengths and
instants, the plates and behaviours, the gaps between vehicles. (The processes' own
timing is not seeded: two runs of one seed follow the same schedule, not the same
interleaving.)
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.sim.backup import SimBackup
from gateway.sim.central import SimCentralState
from gateway.sim.central import make_app as make_central
from gateway.sim.faults import FaultRequest, Faults, SimServer
from gateway.sim.physics import BEHAVIOURS
from gateway.sim.traffic import random_plate
from gateway.telemetry.mqtt import MqttConnection, MqttOptions
from hardware.sim import board_path, read_board
from tests.broker import Broker
from tests.e2e.daemon import ADMIN_TOKEN, ROOT, Daemon, e2e_config, until
from tests.reliability.invariants import Observed, Report, Vehicle, check

GATE = "e2e-gate"
PREFIX = "parking"
LANES = ("entry-1", "exit-1")
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CENTRAL_MODES = {"central_refuse": ("refuse", 0.0), "central_blackhole": ("blackhole", 0.0),
                 "central_garbage": ("garbage", 0.0), "central_500": ("error500", 0.0),
                 "central_commit_no_reply": ("commit_no_reply", 0.0),
                 "central_flapping": ("ok", 0.5), "central_slow": ("slow", 0.0),
                 "central_oversized": ("oversized", 0.0)}
BACKUP_MODES = {"backup_silent": "blackhole", "backup_slow": "slow",
                "backup_forge_correlation": "forge_correlation",
                "backup_forge_plate": "forge_plate"}
FAULT_KINDS = ("kill", "broker_stop", "broker_refuse", *CENTRAL_MODES, *BACKUP_MODES,
               "disk_full", "clock_back")
ALLOW = f"""
user gate
topic readwrite {PREFIX}/#

user backup
topic readwrite {PREFIX}/#

user monitor
topic read {PREFIX}/#
"""
# the gate may still ask the backup and publish its state, not its events
REFUSE = f"""
user gate
topic readwrite {PREFIX}/backup/#
topic readwrite {PREFIX}/gates/{GATE}/backup/#
topic readwrite {PREFIX}/gates/{GATE}/state
topic readwrite {PREFIX}/gates/{GATE}/availability
topic readwrite {PREFIX}/gates/{GATE}/metrics
topic read {PREFIX}/gates/{GATE}/cmd/#

user backup
topic readwrite {PREFIX}/#

user monitor
topic read {PREFIX}/#
"""


@dataclass(frozen=True)
class Plan:
    seed: int
    rounds: int
    round_s: tuple[float, float] = (2.5, 4.5)
    kill_chance: float = 0.25  # a kill at a random instant of a round, on top of its fault
    kinds: tuple[str, ...] = FAULT_KINDS
    schedule: tuple[str, ...] = ()  # fixed fault kinds, one per round (else drawn)
    planted: tuple[str, ...] = ()
    vehicle_gap_s: tuple[float, float] = (0.2, 0.8)
    behaviours: tuple[str, ...] = BEHAVIOURS
    exit_share: float = 0.45
    min_stay_s: float = 3.0  # real seconds a car that passed the entry stays before leaving
    blocked_share: float = 0.05
    min_kills: int = 0  # the schedule adds kills at the end of rounds to reach it
    drain_s: float = 60.0
    extra_config: str = ""  # more tables for the daemon's configuration
    config_edits: tuple[tuple[str, str], ...] = ()  # (old, new) lines of the configuration
    patience_s: float = 12.0  # world seconds a driver waits for the arm (3 s real)


@dataclass
class Outcome:
    plan: Plan
    report: Report
    kills: int
    faults: Counter[str]
    vehicles: int
    seconds: float
    log_tail: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {"seed": self.plan.seed, "rounds": self.plan.rounds, "kills": self.kills,
                "faults": dict(sorted(self.faults.items())), "vehicles": self.vehicles,
                "violations": len(self.report.violations), "seconds": round(self.seconds, 1),
                **self.report.figures}


RESULTS: list[tuple[str, Outcome]] = []  # printed by conftest's terminal summary


class Monitor:
    """Central monitoring: a subscriber to the events topic with a persistent session, for
    the whole run (the broker keeps its queue while it restarts); paho's own thread."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="campaign-monitor",
                                  protocol=paho.MQTTv5)
        self.client.username_pw_set("monitor")
        self.client.reconnect_delay_set(0.05, 0.5)
        topic = f"{PREFIX}/gates/{GATE}/events"
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = self._message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.events.append(json.loads(msg.payload))

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)

    def last_seq(self) -> int:
        with self.lock:
            return max((int(e["seq"]) for e in self.events), default=0)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def campaign_config(data_dir: Path, central_url: str, broker_port: int,
                    planted: tuple[str, ...], extra: str = "") -> str:
    text = e2e_config(data_dir, central_url, spaces=40, extra=f"""
[mqtt]
host = "127.0.0.1"
port = {broker_port}
username = "gate"
keepalive_s = 5
reconnect_max_s = 1.0
[telemetry]
state_min_interval_s = 0.5
[policy]
entry_when_unverifiable = "allow"
{extra}""")
    text = text.replace("[backup]\nenabled = false", "[backup]\nenabled = true\ndeadline_s = 0.5")
    text = text.replace("patience_s = 4.8", "patience_s = 12.0")
    return text.replace("time_scale = 4.0",
                        f"time_scale = 4.0\nplanted_faults = {json.dumps(list(planted))}")


class Campaign:
    def __init__(self, tmp: Path, plan: Plan) -> None:
        self.tmp = tmp
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.data = tmp / "data"
        self.central_state = SimCentralState()
        self.central_faults = Faults(rng=random.Random(plan.seed + 1))
        self.central = SimServer(make_central(self.central_state, self.central_faults),
                                 self.central_faults, "127.0.0.1", 0)
        (tmp / "broker").mkdir()
        self.broker = Broker(tmp / "broker", persistent=True, acl=ALLOW)
        self.seen = Observed()
        self.faults: Counter[str] = Counter()
        self.kills = 0
        self.up = asyncio.Event()
        self.stopping = False
        self.plates: set[str] = set()
        self.config = tmp / "gateway.toml"
        self.daemon = Daemon(self.config)
        self.http: aiohttp.ClientSession
        self.monitor: Monitor
        self.backup_conn: MqttConnection
        self.backup: SimBackup
        self.daemon_faults: dict[str, Any] = {}  # applied inside the daemon (and re-applied)

    # -- set-up and tear-down ------------------------------------------------------------
    async def start(self) -> None:
        await self.central.start()
        await self.broker.start()
        self.monitor = Monitor(self.broker.port)
        self.backup_conn = MqttConnection(MqttOptions(
            "127.0.0.1", self.broker.port, client_id="sim-backup", username="backup",
            reconnect_max_s=0.5))
        # the backup is another way to the same records: it shares central's state
        self.backup = SimBackup(self.backup_conn, PREFIX, state=self.central_state)
        self.backup.delay_s = 2.0
        self.backup_conn.start()
        text = campaign_config(self.data, self.central.url, self.broker.port,
                               self.plan.planted, self.plan.extra_config)
        edits = (("patience_s = 12.0", f"patience_s = {self.plan.patience_s}"),
                 *self.plan.config_edits)
        for old, new in edits:
            assert old in text, f"no {old!r} in the configuration"
            text = text.replace(old, new)
        self.config.write_text(text)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        await self.daemon.start()
        self.up.set()

    async def close(self) -> None:
        if self.daemon.proc is not None and self.daemon.proc.returncode is None:
            await self.daemon.stop()
        (self.tmp / "daemon.log").write_text("\n".join(self.daemon.log) + "\n")  # evidence
        await self.http.close()
        self.monitor.stop()
        await self.backup_conn.stop()
        await self.broker.stop()
        await self.central.stop()

    # -- the run -------------------------------------------------------------------------
    async def run(self) -> Outcome:
        started = time.monotonic()
        await self.start()
        try:
            traffic = asyncio.create_task(self._traffic())
            tracker = asyncio.create_task(self._track())
            for i in range(self.plan.rounds):
                await self._round(i)
            while self.kills < self.plan.min_kills:
                await self._kill()
            self.stopping = True
            await traffic
            await self._lift_all()
            problems = await self._drain()
            tracker.cancel()
            await asyncio.gather(tracker, return_exceptions=True)
            self.seen.events = self.monitor.snapshot()
            self.seen.stream = self.monitor.snapshot
            report = await check(self.http, self.daemon.url, self.central_state, self.seen)
            for what in problems:
                report.add("drain", what)
        finally:
            await self.close()
        report.figures.update({"central_calls_faulted": self.central_faults.injected,
                               "backup_requests": self.backup.requests,
                               "backup_replies_forged": self.backup.forged})
        return Outcome(self.plan, report, self.kills, self.faults,
                       sum(not v.follower for v in self.seen.vehicles),
                       time.monotonic() - started, self.daemon.log[-40:])

    async def _round(self, i: int) -> None:
        kind = (self.plan.schedule[i % len(self.plan.schedule)] if self.plan.schedule
                else self.rng.choice(self.plan.kinds))
        length = self.rng.uniform(*self.plan.round_s)
        kill_at = self.rng.uniform(0.1, length) if (
            "kill" in kind.split("+") or self.rng.random() < self.plan.kill_chance) else None
        kinds = [k for k in kind.split("+") if k != "kill"]  # "a+b": both at once
        if any(k in BACKUP_MODES for k in kinds) and not any(k in CENTRAL_MODES for k in kinds):
            kinds.append("central_refuse")  # the backup is asked only when central fails
        for k in kinds:
            await self._apply(k)
            self.faults[k] += 1
        t0 = time.monotonic()
        if kill_at is not None:
            await asyncio.sleep(kill_at)  # the schedule's instant, not an event to await
            await self._kill()
        await asyncio.sleep(max(0.0, length - (time.monotonic() - t0)))
        for k in kinds:
            await self._lift(k)

    # -- faults --------------------------------------------------------------------------
    async def _apply(self, kind: str) -> None:
        if kind == "broker_stop":
            await self.broker.stop()
        elif kind == "broker_refuse":
            self.broker.set_acl(REFUSE)
            await self.broker.reload()
        elif kind in CENTRAL_MODES:
            mode, fraction = CENTRAL_MODES[kind]
            await self.central_faults.set(FaultRequest(mode=mode, fail_fraction=fraction,
                                                       delay_s=1.5))
        elif kind in BACKUP_MODES:
            self.backup.mode = BACKUP_MODES[kind]
        elif kind == "disk_full":
            await self._daemon_fault({"disk_full": True})
        elif kind == "clock_back":
            # an NTP step back (seconds to minutes, still synchronised), or a board that
            # lost its time (days to a year back, and says it is not synchronised)
            if self.rng.random() < 0.5:
                await self._daemon_fault({"wall_offset_s": -self.rng.uniform(1, 600)})
            else:
                await self._daemon_fault({"wall_offset_s": -self.rng.uniform(1, 400) * 86400,
                                          "wall_synced": False})

    async def _lift(self, kind: str) -> None:
        if kind == "broker_stop":
            await self.broker.start()
        elif kind == "broker_refuse":
            self.broker.set_acl(ALLOW)
            await self.broker.reload()
        elif kind in CENTRAL_MODES:
            await self.central_faults.set(FaultRequest())
        elif kind in BACKUP_MODES:
            self.backup.mode = "ok"
        elif kind == "disk_full":
            await self._daemon_fault({"disk_full": False})
        elif kind == "clock_back":
            await self._daemon_fault({"wall_offset_s": 0.0, "wall_synced": None})

    async def _lift_all(self) -> None:
        if self.broker.proc is None:
            await self.broker.start()
        self.broker.set_acl(ALLOW)
        await self.broker.reload()
        await self.central_faults.set(FaultRequest())
        self.backup.mode = "ok"
        await self._daemon_fault({"disk_full": False, "wall_offset_s": 0.0, "wall_synced": None})

    async def _daemon_fault(self, change: dict[str, Any]) -> None:
        """Switch a fault inside the daemon; kept, and applied again after a restart (a
        full disk stays full when the daemon is restarted)."""
        self.daemon_faults.update(change)
        await self.up.wait()
        async with self.http.post(f"{self.daemon.url}/api/sim/faults", json=change,
                                  headers=AUTH) as resp:
            assert resp.status == 200, await resp.text()

    async def _kill(self) -> None:
        self.up.clear()
        await self.daemon.stop(signal.SIGKILL)
        self.kills += 1
        life = self.seen.life
        for v in self.seen.vehicles:
            if v.life == life and not v.done:
                v.ambiguous = True  # the world died with the daemon: its fate is unknown
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "relays-off", "--config", str(self.config),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        await proc.communicate()
        self.seen.boards_after_kill.append((self.kills, {
            lane: read_board(board_path(self.data, lane)) for lane in LANES}))
        self.seen.life = life + 1
        await self.daemon.start()
        self.up.set()
        if any(v is not None and v is not False and v != 0.0
               for v in self.daemon_faults.values()):
            await self._daemon_fault(dict(self.daemon_faults))

    # -- traffic and the world's view ------------------------------------------------------
    def _inside(self) -> list[str]:
        """Plates to send to the exit lane: those inside, by the world, and those whose fate
        a kill made unknown (driving them out makes it known again); none on a lane now."""
        state: dict[str, bool] = {}
        on_lane: set[str] = set()
        for v in self.seen.vehicles:
            if v.follower:
                continue
            if not v.done and not v.ambiguous:
                on_lane.add(v.plate)
            elif v.ambiguous or v.status == "passed":
                state[v.plate] = v.ambiguous or v.lane == "entry-1"
                if v.lane == "entry-1" and not v.ambiguous and \
                        time.monotonic() - v.done_at < self.plan.min_stay_s:
                    on_lane.add(v.plate)  # still parking: nobody leaves the moment they pass
        return sorted(p for p, maybe_in in state.items() if maybe_in and p not in on_lane)

    def _busy(self, lane: str) -> bool:
        return any(v.lane == lane and v.life == self.seen.life and not v.done
                   and not v.follower for v in self.seen.vehicles)

    async def _traffic(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.rng.uniform(*self.plan.vehicle_gap_s))
            await self.up.wait()
            inside = self._inside()
            if inside and self.rng.random() < self.plan.exit_share:
                lane, plate = "exit-1", self.rng.choice(inside)
            else:
                lane, plate = "entry-1", self._new_plate()
            behaviour = self.rng.choice(self.plan.behaviours)
            if self._busy(lane):
                continue
            try:
                async with self.http.post(
                        f"{self.daemon.url}/api/sim/lanes/{lane}/vehicles",
                        json={"plate": plate, "behaviour": behaviour}) as resp:
                    if resp.status != 202:
                        continue
                    vid = (await resp.json())["vehicle_id"]
            except (aiohttp.ClientError, OSError, TimeoutError):
                continue  # killed meanwhile
            self.seen.vehicles.append(Vehicle(vid, self.seen.life, lane, plate, behaviour))
            if behaviour in ("tailgate", "bumper"):
                self.seen.vehicles.append(Vehicle(f"{vid}f", self.seen.life, lane, "",
                                                  f"{behaviour}_follower", follower=True))

    def _new_plate(self) -> str:
        while True:
            plate = random_plate(self.rng)
            if plate not in self.plates:
                self.plates.add(plate)
                if self.rng.random() < self.plan.blocked_share:
                    self.central_state.blocked.add(plate)
                return plate

    async def _track(self) -> None:
        """Each vehicle's fate as the world reports it, and the world's collisions."""
        while True:
            await asyncio.sleep(0.2)  # a polling interval: the world is another process
            if not self.up.is_set():
                continue
            life = self.seen.life
            try:
                await self._track_once(life)
            except (aiohttp.ClientError, OSError, TimeoutError, KeyError):
                continue  # killed meanwhile: the kill marks what was still on a lane

    async def _track_once(self, life: int) -> None:
        base = self.daemon.url
        async with self.http.get(f"{base}/api/sim/world") as resp:
            world = await resp.json()
        if self.seen.life != life:
            return
        self.seen.collisions_by_life[life] = int(world["collisions"])
        for v in self.seen.vehicles:
            if v.life != life or v.done or v.ambiguous:
                continue
            async with self.http.get(f"{base}/api/sim/vehicles/{v.vehicle_id}") as resp:
                if resp.status != 200:
                    continue  # a follower the world has not made yet
                data = await resp.json()
            if self.seen.life == life and not v.ambiguous:
                v.status, v.plate = data["status"], data["plate"]
                if v.done:
                    v.done_at = time.monotonic()
                v.collisions = int(data["collisions"])

    async def _drain(self) -> list[str]:
        """Wait until the gate has settled, everything has been sent and the monitor has
        it all; what did not happen in time is reported (the checker then says why)."""
        base = self.daemon.url
        problems: list[str] = []

        async def status() -> dict[str, Any]:
            async with self.http.get(f"{base}/api/status") as resp:
                result: dict[str, Any] = await resp.json()
                return result

        async def settled() -> bool:
            for state in ("running", "compensating"):
                async with self.http.get(f"{base}/api/sagas?state={state}&limit=1") as resp:
                    if await resp.json():
                        return False
            s = await status()
            return (s["offline_queue"]["pending"] == 0 and s["outbox"]["pending"] == 0
                    and all(v.done or v.ambiguous or v.life != self.seen.life
                            for v in self.seen.vehicles))

        async def delivered() -> bool:
            async with self.http.get(f"{base}/api/events?after_seq="
                                     f"{self.monitor.last_seq()}&limit=1") as resp:
                return not await resp.json()

        for name, cond in (("the gate settled (no saga in flight, queue and outbox empty, "
                            "lanes clear)", settled), ("the monitor received every event",
                                                       delivered)):
            try:
                await until(cond, self.plan.drain_s, every_s=0.2)
            except TimeoutError:
                problems.append(f"not within {self.plan.drain_s:g}s: {name}")
        return problems
