"""SIGHUP and SIGTERM as systemd sends them, to the daemon as a process.

SIGHUP reads the file again: what can change while the gate runs is applied (a policy
changes who is let in at once), what cannot is said in the log and an event, and a file
with errors changes nothing. SIGTERM lets a saga that is writing a record to the central
service get its answer and commit it, lets no new vehicle in (one arriving meanwhile is
refused before anything is done for it), de-energises the relays (no ``relays-off``
needed) and exits 0 promptly."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.sim.central import SimCentralState, make_app
from hardware.build import SIM_PINS
from hardware.sim import board_path
from tests.e2e.daemon import Daemon, e2e_config, get, long_pulse_config, until

OPEN = f"GPIO{SIM_PINS.open_relay}"
CLOSE = f"GPIO{SIM_PINS.close_relay}"


async def _events(http: aiohttp.ClientSession, daemon: Daemon, type_: str) -> list[Any]:
    return [e for e in await get(http, f"{daemon.url}/api/events?limit=1000")
            if e["type"] == type_]


async def _drive(http: aiohttp.ClientSession, daemon: Daemon, plate: str) -> str:
    async with http.post(f"{daemon.url}/api/sim/lanes/entry-1/vehicles",
                         json={"plate": plate}) as r:
        vid = (await r.json())["vehicle_id"]

    async def done() -> str | None:
        v = await get(http, f"{daemon.url}/api/sim/vehicles/{vid}")
        return str(v["status"]) if v["status"] in ("passed", "left") else None

    return str(await until(done, 20, f"{plate} passed or left"))


async def test_sighup_applies_a_policy_at_once_and_names_what_needs_a_restart(tmp_path):
    # the central service refuses every call: a new plate is unverifiable
    central = await _central(SimCentralState())
    config = tmp_path / "gateway.toml"
    text = e2e_config(tmp_path / "data", central.url,
                      '[policy]\nentry_when_unverifiable = "deny"\n')
    config.write_text(text)
    daemon = Daemon(config)
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{central.url}/_sim/fault", json={"mode": "refuse"}) as r:
                assert r.status == 200
            assert await _drive(http, daemon, "34NEW01") == "left"  # denied: unverifiable
            config.write_text(text.replace('entry_when_unverifiable = "deny"',
                                           'entry_when_unverifiable = "allow"')
                              .replace("port = 0", "port = 18080")
                              .replace("passage_timeout_s = 1.0", "passage_timeout_s = 1.5")
                              + '[logging]\nlevel = "debug"\n')
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGHUP)
            reloaded = await until(lambda: _events(http, daemon, "config_reloaded"), 10,
                                   "a config_reloaded event")
            data = reloaded[0]["data"]
            assert {"policy.entry_when_unverifiable", "logging.level",
                    "lanes[0].timings.passage_timeout_s",
                    "lanes[1].timings.passage_timeout_s"} <= set(data["applied"])
            assert data["needs_restart"] == ["web.port"]
            assert any("needs a restart to take effect: web.port" in line
                       for line in daemon.log)
            assert await _drive(http, daemon, "34NEW02") == "passed"  # the new policy
            # a file with an error changes nothing, and the gate goes on
            config.write_text(text.replace('entry_when_unverifiable = "deny"',
                                           'entry_when_unverifiable = "maybe"'))
            daemon.proc.send_signal(signal.SIGHUP)
            failed = await until(lambda: _events(http, daemon, "config_reload_failed"), 10,
                                 "a config_reload_failed event")
            assert "entry_when_unverifiable" in " ".join(failed[0]["data"]["problems"])
            assert await _drive(http, daemon, "34NEW03") == "passed"  # still "allow"
    finally:
        assert await daemon.stop() == 0, "\n".join(daemon.log[-30:])
        await central.runner.cleanup()


class _Central:
    """The sim central service with a gate in front of its entry records: a record
    arrives, and is answered only when the test lets it."""

    def __init__(self, state: SimCentralState) -> None:
        self.state = state
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.url = ""
        self.runner: web.AppRunner

    @web.middleware
    async def hold(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/v1/entries" \
                and not self.release.is_set():
            self.arrived.set()
            await self.release.wait()
        response: web.StreamResponse = await handler(request)
        return response


async def _central(state: SimCentralState) -> _Central:
    central = _Central(state)
    app = make_app(state)
    app.middlewares.insert(0, central.hold)
    central.runner = web.AppRunner(app, handle_signals=False)
    await central.runner.setup()
    await web.TCPSite(central.runner, "127.0.0.1", 0).start()
    central.url = f"http://127.0.0.1:{central.runner.addresses[0][1]}"
    return central


def _with_second_entry(text: str) -> str:
    """``text`` (an ``e2e_config``) with a lane entry-2 like entry-1."""
    start, end = text.index('[[lanes]]\nid = "entry-1"'), text.index('[[lanes]]\nid = "exit-1"')
    return text[:end] + text[start:end].replace('"entry-1"', '"entry-2"') + text[end:]


def _saga(db: Path, plate: str) -> tuple[str, str, int]:
    """(status, reason, barrier_opened events) of ``plate``'s one saga."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        [(saga_id, status, reason)] = conn.execute(
            "SELECT saga_id, status, reason FROM sagas WHERE plate = ?", (plate,)).fetchall()
        opened = conn.execute("SELECT count(*) FROM events WHERE type = 'barrier_opened' "
                              "AND data LIKE ?", (f"%{saga_id}%",)).fetchone()[0]
        return status, reason, opened
    finally:
        conn.close()


def _steps(db: Path, plate: str) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {f"{r[0]}:{r[1]}": r[2] for r in conn.execute(
            "SELECT st.name, st.phase, st.status FROM saga_steps st JOIN sagas s "
            "USING (saga_id) WHERE s.plate = ?", (plate,))}
    finally:
        conn.close()


async def test_sigterm_lets_a_record_being_written_get_its_answer_and_commit_it(tmp_path):
    state = SimCentralState()
    central = await _central(state)
    config = tmp_path / "gateway.toml"
    data_dir = tmp_path / "data"
    # deadlines long enough that the held record is answered, not timed out
    config.write_text(_with_second_entry(e2e_config(data_dir, central.url)).replace(
        "deadline_s = 0.5", "deadline_s = 5.0\ndecision_deadline_s = 6.0"))
    daemon = Daemon(config)
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            central.release.clear()  # the next entry record is held at the service
            async with http.post(f"{daemon.url}/api/sim/lanes/entry-1/vehicles",
                                 json={"plate": "34STP01"}) as r:
                assert r.status == 202
            async with asyncio.timeout(10):
                await central.arrived.wait()
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGTERM)
            await until(lambda: any("stopping" in line for line in daemon.log), 5,
                        "the daemon saying it is stopping")
            # a new vehicle while the stop waits for that answer (up to STOP_DRAIN_S, 3 s;
            # a vehicle's saga starts ~0.1 s after it is sent): refused, nothing done
            async with http.post(f"{daemon.url}/api/sim/lanes/entry-2/vehicles",
                                 json={"plate": "34STP02"}) as r:
                assert r.status == 202
                late = (await r.json())["vehicle_id"]
            await until(lambda: _events(http, daemon, "saga_refused_stopping"), 2.5,
                        "the vehicle arriving during the stop refused")
            vehicle = await get(http, f"{daemon.url}/api/sim/vehicles/{late}")
            assert vehicle["status"] != "passed", vehicle
            started = time.monotonic()
            central.release.set()  # the service answers while the daemon stops
            code = await asyncio.wait_for(daemon.proc.wait(), 20)
            took = time.monotonic() - started
            await daemon.stop()  # (it has exited: no second signal)
            assert code == 0, "\n".join(daemon.log[-30:])
    finally:
        await central.runner.cleanup()
    print(f"stop after the held record was answered: {took:.2f} s")
    assert took < 5.0
    # the answer was committed before the exit: the record's id is in the log, not an
    # unknown outcome, and the barrier was never asked to open
    steps = _steps(data_dir / "gateway.sqlite3", "34STP01")
    assert steps["create_entry_record:forward"] == "succeeded", steps
    assert "open_barrier:forward" not in steps
    assert len(state.entries) == 1  # none for the vehicle that came during the stop
    # finished, undone before any step did anything: nothing left for recovery
    assert _saga(data_dir / "gateway.sqlite3", "34STP02") == (
        "compensated", "the gateway is stopping", 0)
    assert "succeeded" not in _steps(data_dir / "gateway.sqlite3", "34STP02").values()
    assert json.loads(board_path(data_dir, "entry-2").read_text())[OPEN] is False
    # the next start compensates it: the car never got through
    central2 = await _central(state)
    config.write_text(config.read_text().replace(central.url, central2.url))
    daemon = Daemon(config)
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            async def compensated() -> bool:
                sagas = await get(http, f"{daemon.url}/api/sagas")
                return any(s["plate"] == "34STP01" and s["status"] == "compensated"
                           for s in sagas)
            await until(compensated, 15, "the stopped saga compensated at the next start")
        entry = next(iter(state.entries.values()))
        assert entry["status"] == "cancelled" and len(state.entries) == 1
    finally:
        assert await daemon.stop() == 0
        await central2.runner.cleanup()


async def test_sigterm_de_energises_a_relay_that_is_on(tmp_path):
    central = await _central(SimCentralState())
    config = tmp_path / "gateway.toml"
    config.write_text(long_pulse_config(tmp_path / "data", central.url))
    board = board_path(tmp_path / "data", "entry-1")
    daemon = Daemon(config)
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http, http.post(
                f"{daemon.url}/api/sim/lanes/entry-1/vehicles",
                json={"plate": "34REL01"}) as resp:
            assert resp.status == 202
        # the board keeps its outputs after the process, as a Pi's kernel does: what it
        # shows after the exit is what the daemon itself drove
        await until(lambda: json.loads(board.read_text()).get(OPEN), 15, "the open relay on")
    finally:
        code = await daemon.stop()
        await central.runner.cleanup()
    assert code == 0, "\n".join(daemon.log[-30:])
    levels = json.loads(board.read_text())
    assert levels[OPEN] is False and levels[CLOSE] is False, levels
