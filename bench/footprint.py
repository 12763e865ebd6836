"""Footprint of the daemon: memory and CPU with two lanes idle and under a steady stream of
vehicles, start-up time to READY, database growth per 1,000 vehicles, and the event and
outbox tables after a simulated day.

    python bench/footprint.py [--idle-s S] [--traffic-s S] [--every-s 2] [--quick]
                              [--json FILE]

The daemon runs as it runs at a gate (``python -m gateway run --config FILE``, its own
process) with two simulated lanes (entry, exit: mock pins, the simulated world at 4x, a
synthetic 1280x720 camera at 25 fps), against the sim central service in another process
on 127.0.0.1, in five set-ups: with and without the local plate reader (plain cameras and
the PP-OCR/onnxruntime reader; without it, ANPR cameras: OpenCV loaded, no model), with and
without telemetry to a real Mosquitto this benchmark starts, and the reader with the
broker on ANPR cameras' frames (the reader reads every burst all the same: the gate's
whole path without the sim's scene renderer, which runs in the daemon for plain cameras
and holds memory no gate has). For each:

- start-up: from the process's start to systemd's ``READY=1`` (the daemon is given a
  ``NOTIFY_SOCKET`` of this benchmark's own; the reader's model loads after READY, in the
  background: the time until it is ready is shown beside it);
- idle: S seconds with nothing happening (after the reader is ready); resident memory
  (VmRSS and PSS from /proc/PID/smaps_rollup) and CPU as a % of one core (utime + stime
  from /proc/PID/stat over the window), and the busiest threads;
- traffic: one vehicle every 2 s on each lane (``POST /api/sim/lanes/{id}/vehicles``;
  a lane whose previous vehicle has not yet passed is skipped that turn, so the sim's queue
  never grows), for S seconds: resident memory at the end and its peak, CPU.

Database growth is the database's size after a checkpoint (``page_count`` x ``page_size``
read from another connection, which counts what is still in the WAL) before and after the
traffic, per vehicle; the rows and bytes (``dbstat``) each table gains per vehicle give
the simulated day: 1,500 vehicles per lane (3,000), the tables' gain per vehicle times
3,000 plus the idle hours' gain, with retention as configured (nothing is old enough to
be cut within a day; the events' row cap binds after the days shown). The outbox holds an
event until the broker has it: with the broker up it is empty, with the broker down all
day it holds every event of the day (shown).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from bench.report import Report, parser  # noqa: E402
from gateway.plates.engine import REC_MODEL, packaged_model_dir  # noqa: E402
from gateway.plates.slim_model import prepare  # noqa: E402
from gateway.sim.traffic import random_plate  # noqa: E402
from tests.broker import Broker, free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
DAY_VEHICLES = 3000  # 1,500 per lane
MB = 2 ** 20
CONFIG = """
[gate]
id = "footprint"
data_dir = "{data}"
[central]
base_urls = ["{central}"]
[backup]
enabled = false
[telemetry]
enabled = {telemetry}
[mqtt]
port = {mqtt_port}
[plates]
enabled = {reader}
[web]
port = 0
[simulation]
enabled = true
time_scale = 4.0
reaction_s = 0.2
arm_travel_s = 1.0
# a driver waits 5 s (of real time) for the barrier: a plain camera's first frame of a new
# vehicle is a scene the sim renders (~0.5 s here), and the traffic is not a test of speed
patience_s = 20.0
stall_s = 4.0
[[zones]]
name = "A"
spaces = 9999
{lanes}
"""
LANE = """
[[lanes]]
id = "{id}"
direction = "{direction}"
[lanes.timings]
debounce_s = 0.02
arm_travel_s = 0.25
capture_timeout_s = 3.0
passage_timeout_s = 5.0
decision_timeout_s = 3.0
dropout_hold_s = 0.05
gap_hold_s = 0.3
[lanes.camera]
mode = "{mode}"
"""
LANES = ("entry-1", "exit-1")


# -- the process from outside -----------------------------------------------------------
# What the README's table shows (every figure with an aim besides); the JSON has them all.
_SETUPS = ("reader_broker", "reader_nobroker", "noreader_broker", "noreader_nobroker",
           "reader_broker_anpr", "reader_broker_fullmodel")
HEADLINES = frozenset({
    *(f"{s}.idle_rss_mb" for s in _SETUPS), *(f"{s}.traffic_rss_mb" for s in _SETUPS),
    "reader_broker.traffic_cpu_pct", "noreader_broker.traffic_cpu_pct",
    "reader_broker.idle_anon_mb", "reader_broker.traffic_anon_mb",
    "reader_broker.traffic_file_mb", "reader_broker_anpr.traffic_anon_mb",
    *(f"{s}.idle_grabbers_cpu_pct" for s in _SETUPS),
    "reader_broker.reader_load_s", "reader_broker.after_rss_mb", "db_growth_mb_per_1000",
    "day_events_rows", "day_events_mb", "day_outbox_rows_broker_down",
    "day_outbox_mb_broker_down"})

def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM (the peak), its anonymous and file-backed parts, and PSS, in MiB.

    VmRSS = RssAnon (the daemon's own: heap, frames, the model's tensors) + RssFile (the
    libraries' code and data mapped from their files) + RssShmem. RssFile is not the
    daemon's to choose: how many pages one touch maps depends on how the file sits in the
    page cache (large folios, fault-around), so the same import of cv2 is 25 MB of it in a
    virtual environment installed days ago and 51 MB in one installed a minute ago, with
    the same 17.5 MB anonymous in both."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["Pss"] = int(line.split()[1]) / 1024
    except OSError:
        out["Pss"] = out["VmRSS"]
    return out


def _stat_cpu(path: str) -> tuple[str, float]:
    text = Path(path).read_text()
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return comm, (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def cpu_s(pid: int) -> float:
    return _stat_cpu(f"/proc/{pid}/stat")[1]


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = _stat_cpu(str(task / "stat"))
        except (OSError, ValueError):
            continue
    return out


@dataclass
class Window:
    """CPU of the process (and of each thread) over a stretch of wall time."""

    pid: int
    t0: float = 0.0
    cpu0: float = 0.0
    threads0: dict[int, tuple[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.t0, self.cpu0 = time.monotonic(), cpu_s(self.pid)
        self.threads0 = thread_cpu(self.pid)

    def percent(self) -> float:
        return (cpu_s(self.pid) - self.cpu0) / (time.monotonic() - self.t0) * 100

    def threads_percent(self, prefix: str) -> float:
        """CPU % of one core of the threads whose OS name starts with ``prefix`` (the
        daemon names its threads: gateway/os_threads.py)."""
        wall = time.monotonic() - self.t0
        return sum(cpu - self.threads0.get(tid, ("", 0.0))[1]
                   for tid, (comm, cpu) in thread_cpu(self.pid).items()
                   if comm.startswith(prefix)) / wall * 100

    def busiest(self, n: int = 5) -> str:
        wall = time.monotonic() - self.t0
        now = thread_cpu(self.pid)
        used = sorted(((cpu - self.threads0.get(tid, ("", 0.0))[1], tid, comm)
                       for tid, (comm, cpu) in now.items()), reverse=True)
        return f"{len(now)} threads; busiest: " + ", ".join(
            f"{comm}[{tid}] {s / wall * 100:.2f}%" for s, tid, comm in used[:n])


# -- the database from another connection ---------------------------------------------------
def db_figures(path: Path) -> dict[str, Any]:
    """The size after a checkpoint (pages, WAL included) and each table's rows and bytes in
    use (its indexes' too; dbstat: the pages' bytes less their unused bytes)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        pages, size = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                       for p in ("page_count", "page_size"))
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_schema").fetchall())
        tables: dict[str, list[int]] = {}
        for name, pgsize in conn.execute(
                "SELECT name, sum(pgsize - unused) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            tables.setdefault(table, [0, 0])[1] += pgsize
        for table in list(tables):
            if table.startswith("sqlite_"):
                continue
            tables[table][0] = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        return {"bytes": pages * size, "tables": tables}
    finally:
        conn.close()


def files_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal"))
               if p.exists())


# -- the daemon ----------------------------------------------------------------------------
@contextmanager
def notify_socket(tmp: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp / "notify"))
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


class Daemon:
    def __init__(self, config: Path, notify: Path) -> None:
        self.config, self.notify = config, notify
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self._url = asyncio.Event()
        self.log: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, sock: socket.socket) -> float:
        """Start it; the seconds until READY=1."""
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify)}
        t0 = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "run", "--config", str(self.config), cwd=ROOT,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.create_task(self._read())
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(60):
            while True:
                message = (await loop.sock_recv(sock, 4096)).decode()
                if "READY=1" in message.split("\n"):
                    ready = time.monotonic() - t0
                    break
            await self._url.wait()  # logged before READY: already there
        return ready

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            m = re.search(r"web on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                self._url.set()
        if not self.url:
            raise RuntimeError("daemon exited:\n" + "\n".join(self.log[-30:]))

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 30)
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


@contextmanager
def sim_central_process() -> Iterator[tuple[str, Any]]:
    import subprocess

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.sim", "central", "--port", str(port)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.wait(10)


async def wait_reader(session: aiohttp.ClientSession, url: str, within_s: float) -> float:
    """The reader's load time once it is ready (0 when it is off)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        async with session.get(f"{url}/api/status") as resp:
            reader = (await resp.json())["plate_reader"]
        if reader is None:
            return 0.0
        if reader["ready"] or reader["fault"]:
            return float(reader["load_s"])
        await asyncio.sleep(0.1)
    raise TimeoutError("the plate reader did not load")


@dataclass
class Traffic:
    sent: int = 0
    skipped: int = 0
    done: int = 0
    inside: list[str] = field(default_factory=list)


async def lane_traffic(session: aiohttp.ClientSession, url: str, lane: str, every_s: float,
                       until: float, t: Traffic, rng: random.Random) -> None:
    """One vehicle every ``every_s`` on ``lane`` (entry: a new plate; exit: a plate that
    went in), a turn skipped while the previous one is still on its way."""
    previous: str | None = None
    next_at = time.monotonic()
    while next_at < until:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        next_at += every_s
        if previous is not None:
            async with session.get(f"{url}/api/sim/vehicles/{previous}") as resp:
                status = (await resp.json()).get("status")
            if status not in ("passed", "left"):
                t.skipped += 1
                continue
            t.done += 1
        entry = lane.startswith("entry")
        plate = random_plate(rng) if entry or not t.inside else t.inside.pop(0)
        async with session.post(f"{url}/api/sim/lanes/{lane}/vehicles",
                                json={"plate": plate, "behaviour": "pass"}) as resp:
            previous = (await resp.json())["vehicle_id"]
        t.sent += 1
        if entry:
            t.inside.append(plate)
    if previous is not None:  # the last one, given the time a vehicle takes
        for _ in range(50):
            async with session.get(f"{url}/api/sim/vehicles/{previous}") as resp:
                if (await resp.json()).get("status") in ("passed", "left"):
                    t.done += 1
                    break
            await asyncio.sleep(0.1)


async def settle(session: aiohttp.ClientSession, url: str, within_s: float = 10.0) -> None:
    """Until every lane is idle again and the outbox is empty (or ``within_s``)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        async with session.get(f"{url}/api/status") as resp:
            status = await resp.json()
        if all(lane["state"] == "idle" for lane in status["lanes"]) \
                and not status["outbox"]["pending"]:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)


@dataclass(frozen=True)
class Setup:
    reader: bool
    broker: bool
    # the reader's frames: "plain" cameras (a scene rendered per vehicle by the sim's
    # gateway/plates/render.py, in the daemon: its memory counts here although no gate has
    # it) or "anpr" cameras (a simple frame; with the reader, it reads them too)
    camera: str = "plain"
    # the recogniser: "cut" to plate characters, as a gate runs it after its first start
    # (gateway/plates/slim_model.py), or the "full" one shipped (the baseline: 18,710 classes)
    model: str = "cut"

    @property
    def key(self) -> str:
        return (f"{'reader' if self.reader else 'noreader'}_"
                f"{'broker' if self.broker else 'nobroker'}"
                f"{'_anpr' if self.reader and self.camera == 'anpr' else ''}"
                f"{'_fullmodel' if self.reader and self.model == 'full' else ''}")

    @property
    def words(self) -> str:
        reader = ("reader on ANPR frames" if self.camera == "anpr" else "with reader") \
            if self.reader else "no reader"
        full = ", the full model" if self.reader and self.model == "full" else ""
        return f"{reader}{full}, {'with' if self.broker else 'no'} broker"


SETUPS = {s.key: s for s in [Setup(r, b, "plain" if r else "anpr")
                              for r, b in itertools.product((True, False), (True, False))]
          + [Setup(True, True, "anpr"), Setup(True, True, model="full")]}


@dataclass
class Args:
    idle_s: float
    traffic_s: float
    every_s: float
    quick: bool


def seed_model(data: Path, setup: Setup, cut: Path) -> None:
    """The data directory as a gate's after its first start: the cut recogniser in
    ``models/``. For the full model, ``models`` is a file: the daemon cannot keep a cut one
    and loads the full model (saying why), as a gate whose data directory refused it."""
    data.mkdir(parents=True)
    if setup.reader and setup.model == "full":
        (data / "models").write_text("")
    else:
        (data / "models").mkdir()
        shutil.copy2(cut, data / "models" / cut.name)


async def measure(report: Report, setup: Setup, central: str, broker: Broker | None,
                  a: Args, cut: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gateway-footprint-") as tmp_name:
        tmp = Path(tmp_name)
        seed_model(tmp / "data", setup, cut)
        lanes = "".join(LANE.format(id=lane, direction=lane.split("-")[0],
                                    mode=setup.camera)
                        for lane in LANES)
        config = tmp / "footprint.toml"
        config.write_text(CONFIG.format(
            data=tmp / "data", central=central, telemetry=str(setup.broker).lower(),
            mqtt_port=broker.port if broker is not None else free_port(),
            reader=str(setup.reader).lower(), lanes=lanes))
        daemon = Daemon(config, tmp / "notify")
        db = tmp / "data" / "gateway.sqlite3"
        k, w = setup.key, setup.words
        with notify_socket(tmp) as sock:
            ready_s = await daemon.start(sock)
            try:
                async with aiohttp.ClientSession(
                        timeout=aiohttp.ClientTimeout(total=10)) as session:
                    load_s = await wait_reader(session, daemon.url, 60)
                    report.figure(f"{k}.ready_s", ready_s, "s", f"start-up to READY ({w})",
                                  aim=("<=", 3.0), detail=not (setup.reader and setup.broker
                                                               and setup.camera == "plain"))
                    if setup.reader:
                        report.figure(f"{k}.reader_load_s", load_s, "s",
                                      f"reader model loaded, after READY ({w})", detail=True)
                    await asyncio.sleep(0.5)  # the start's own work settles
                    out = await phases(report, setup, daemon, session, db, a)
            finally:
                await daemon.stop()
        out["files_bytes"] = files_bytes(db)
        return out


async def phases(report: Report, setup: Setup, daemon: Daemon,
                 session: aiohttp.ClientSession, db: Path, a: Args) -> dict[str, Any]:
    k, w, pid = setup.key, setup.words, daemon.pid
    db_before_idle = db_figures(db)
    window = Window(pid)
    await asyncio.sleep(a.idle_s)
    idle_cpu = window.percent()
    grabbers_cpu = window.threads_percent("grab ")
    idle = memory_mb(pid)
    report.figure(f"{k}.idle_rss_mb", idle["VmRSS"], "MB", f"resident, idle ({w})")
    headline = setup.reader and setup.broker and setup.camera == "plain"
    report.figure(f"{k}.idle_anon_mb", idle["RssAnon"], "MB",
                  f"of which anonymous, the daemon's own, idle ({w})", detail=not headline)
    report.figure(f"{k}.idle_pss_mb", idle["Pss"], "MB", f"PSS, idle ({w})", detail=True)
    report.figure(f"{k}.idle_cpu_pct", idle_cpu, "%", f"CPU of one core, idle ({w})",
                  aim=("<=", 1.0))
    report.figure(f"{k}.idle_grabbers_cpu_pct", grabbers_cpu, "%",
                  f"of which the cameras' grabbers, a wake per frame, 25 a second a lane ({w})",
                  detail=not headline)
    report.note(f"idle ({w}): {window.busiest()}")
    db_before = db_figures(db)
    t, rng = Traffic(), random.Random(13)
    window = Window(pid)
    until = time.monotonic() + a.traffic_s
    samples: list[dict[str, float]] = []
    drivers = [asyncio.create_task(lane_traffic(session, daemon.url, lane, a.every_s, until,
                                                t, rng)) for lane in LANES]
    while not all(d.done() for d in drivers):
        samples.append(memory_mb(pid))
        await asyncio.sleep(0.25)
    await asyncio.gather(*drivers)
    traffic_cpu = window.percent()
    await settle(session, daemon.url)
    after = memory_mb(pid)
    aim = ("<=", 150.0) if setup.reader and setup.broker else None
    # the first vehicles' samples too: what grows is the point
    report.figure(f"{k}.traffic_rss_mb", statistics.fmean(m["VmRSS"] for m in samples), "MB",
                  f"resident under traffic, mean ({w})", aim=aim)
    report.figure(f"{k}.traffic_peak_rss_mb", max(m["VmRSS"] for m in samples), "MB",
                  f"resident under traffic, peak ({w})", aim=aim)
    report.figure(f"{k}.traffic_anon_mb", statistics.fmean(m["RssAnon"] for m in samples),
                  "MB", f"of which anonymous, the daemon's own, under traffic, mean ({w})",
                  detail=not (setup.reader and setup.broker))
    report.figure(f"{k}.traffic_file_mb", statistics.fmean(m["RssFile"] for m in samples),
                  "MB", f"of which the libraries' files mapped, under traffic, mean ({w})",
                  detail=not (setup.reader and setup.broker))
    report.figure(f"{k}.traffic_pss_mb", statistics.fmean(m["Pss"] for m in samples), "MB",
                  f"PSS under traffic, mean ({w})", detail=True)
    report.figure(f"{k}.after_rss_mb", after["VmRSS"], "MB",
                  f"resident after the traffic, settled ({w})", detail=True)
    report.figure(f"{k}.traffic_cpu_pct", traffic_cpu, "%",
                  f"CPU of one core, 1 vehicle / {a.every_s:g} s / lane ({w})")
    report.note(f"traffic ({w}): {t.done} vehicles passed of {t.sent} sent, {t.skipped} "
                f"turns skipped (a lane still busy) in {a.traffic_s:g} s; {window.busiest()}")
    return {"idle_s": a.idle_s, "before_idle": db_before_idle, "before": db_before,
            "after": db_figures(db), "vehicles": t.done}


def per_vehicle(run: dict[str, Any], table: str) -> tuple[float, float]:
    """Rows a vehicle adds to ``table`` (the traffic's gain / its vehicles) and the bytes a
    row takes (in use, indexes included, at the end)."""
    rows0 = run["before"]["tables"].get(table, [0, 0])[0]
    rows1, used1 = run["after"]["tables"].get(table, [0, 0])
    return (rows1 - rows0) / max(1, run["vehicles"]), used1 / rows1 if rows1 else 0.0


def database_figures(report: Report, runs: dict[Setup, dict[str, Any]]) -> None:
    """Growth per 1,000 vehicles and the day, from the run with the reader and the broker;
    the outbox with the broker down from the one without it."""
    main = next((r for s, r in runs.items() if s.reader and s.broker), None) \
        or next(iter(runs.values()))
    n = max(1, main["vehicles"])
    growth = (main["after"]["bytes"] - main["before"]["bytes"]) / n * 1000
    report.figure("db_growth_mb_per_1000", growth / MB, "MB",
                  "database growth per 1,000 vehicles (after checkpoint)")
    report.note(f"database files at the end ({n} vehicles): "
                f"{main['files_bytes'] / MB:.2f} MB (the daemon checkpoints at its stop)")
    idle_gain = (main["before"]["tables"].get("events", [0, 0])[0]
                 - main["before_idle"]["tables"].get("events", [0, 0])[0])
    idle_per_day = max(0.0, idle_gain / main["idle_s"] * 86400)
    rows, per_row = per_vehicle(main, "events")
    day_rows = rows * DAY_VEHICLES + idle_per_day
    report.figure("day_events_rows", day_rows, "rows",
                  f"events after a day ({DAY_VEHICLES:,} vehicles)")
    report.figure("day_events_mb", day_rows * per_row / MB, "MB", "events after a day, bytes")
    report.note(f"events: {rows:.1f} a vehicle, {per_row:.0f} bytes each (indexes included), "
                f"{idle_per_day:,.0f} a day while idle; kept 30 days or 200,000 rows: at "
                f"{day_rows:,.0f} a day the row cap binds after {200_000 / day_rows:.0f} days")
    report.figure("day_outbox_rows_broker_up", main["after"]["tables"].get("outbox", [0])[0],
                  "rows", "outbox after the traffic, broker up")
    down = next((r for s, r in runs.items() if not s.broker), None)
    if down is not None:
        rows, _ = per_vehicle(down, "outbox")
        _, event_bytes = per_vehicle(down, "events")
        _, outbox_bytes = per_vehicle(down, "outbox")
        report.figure("day_outbox_rows_broker_down", rows * DAY_VEHICLES, "rows",
                      "outbox after a day with the broker down all day")
        report.figure("day_outbox_mb_broker_down", rows * DAY_VEHICLES * outbox_bytes / MB,
                      "MB", "outbox after a day with the broker down, bytes (its own rows)")
        report.note(f"the outbox's rows point at events, kept anyway ({event_bytes:.0f} bytes "
                    "each): with the broker down nothing is lost and the outbox itself is small")
    for table in ("sagas", "saga_steps", "vehicle_sessions", "offline_queue", "plate_cache"):
        if table in main["after"]["tables"]:
            rows, per_row = per_vehicle(main, table)
            report.note(f"{table} after a day: {rows * DAY_VEHICLES:,.0f} rows, "
                        f"{rows * DAY_VEHICLES * per_row / MB:.2f} MB")


async def main() -> None:
    p = parser(__doc__)
    p.add_argument("--idle-s", type=float, help="the idle window (30; quick 1.5)")
    p.add_argument("--traffic-s", type=float, help="the traffic window (90; quick 3)")
    p.add_argument("--every-s", type=float, default=2.0, help="a vehicle per lane this often")
    p.add_argument("--only", action="append", metavar="SETUP", choices=SETUPS,
                   help=f"only this set-up (repeatable): {', '.join(SETUPS)}")
    args = p.parse_args()
    a = Args(args.idle_s or (1.5 if args.quick else 30.0),
             args.traffic_s or (3.0 if args.quick else 90.0), args.every_s, args.quick)
    report = Report("footprint", "Footprint: the daemon's memory, CPU, start-up, database",
                    quick=args.quick, headlines=HEADLINES)
    setups = [SETUPS[key] for key in args.only] if args.only else \
        [Setup(True, True)] if args.quick else list(SETUPS.values())
    runs: dict[Setup, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="gateway-footprint-broker-") as broker_dir, \
            sim_central_process() as (central, _):
        t0 = time.monotonic()
        cut = prepare(packaged_model_dir() / REC_MODEL, Path(broker_dir) / "models")
        if not cut.slim:
            raise SystemExit(f"the recogniser could not be cut: {cut.note}")
        report.figure("model_cut_s", time.monotonic() - t0, "s", "cutting the recogniser to "
                      "plate characters (once, a gate's first start)", detail=True)
        broker = Broker(Path(broker_dir))
        await broker.start()
        try:
            for setup in setups:
                runs[setup] = await measure(report, setup, central, broker, a, cut.path)
        finally:
            await broker.stop()
    database_figures(report, runs)
    report.save(args.json)


if __name__ == "__main__":
    asyncio.run(main())
