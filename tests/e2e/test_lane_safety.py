"""The gate as a physical place: the daemon as a process, the simulator moving an arm and
vehicles with a length and a speed over the loops, vehicles of every behaviour on two lanes
(80 in `make test`, 300 in `make soak`). Then no vehicle was ever hit by the arm, every
vehicle's outcome is right, and the space table, the sessions and the central service's
records agree.

A second run reads the safety loop as the gateway once did (gpiozero's "active" taken as
"occupied" on the fail-safe wiring) with the barrier's interlock off: the same simulator
must then count collisions, which shows this test can fail.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.sim.central import SimCentralState
from gateway.sim.physics import BEHAVIOURS
from tests.conftest import start_central
from tests.e2e.daemon import Daemon, e2e_config, get, until

ENTERS = {"pass", "trailer", "motorbike", "stall_under_arm", "tailgate", "bumper"}
BACKS_OUT = {"back_out", "stall", "reverse"}
BLOCKED = "66BAD66"


class Gate:
    def __init__(self, daemon: Daemon, http: aiohttp.ClientSession) -> None:
        self.daemon = daemon
        self.http = http
        self.sent: list[dict[str, Any]] = []

    async def drive(self, lane: str, plate: str, behaviour: str, settle: bool = True) -> Any:
        url = self.daemon.url
        async with self.http.post(f"{url}/api/sim/lanes/{lane}/vehicles",
                                  json={"plate": plate, "behaviour": behaviour}) as resp:
            assert resp.status == 202, await resp.text()
            vid = (await resp.json())["vehicle_id"]

        async def finished() -> Any:
            v = await get(self.http, f"{url}/api/sim/vehicles/{vid}")
            return v if v["status"] in ("passed", "left") else None

        vehicle = await until(finished, 30)
        if settle:
            async def idle() -> bool:
                status = await get(self.http, f"{url}/api/status")
                lanes = {x["id"]: x["state"] for x in status["lanes"]}
                return bool(lanes[lane] == "idle")
            await until(idle, 30)
        self.sent.append({"lane": lane, "plate": plate, "behaviour": behaviour,
                          "vehicle_id": vid, "status": vehicle["status"]})
        return vehicle


@pytest.fixture
async def gate(tmp_path):
    central = await start_central(SimCentralState(blocked={BLOCKED}))
    config = tmp_path / "gateway.toml"
    text = e2e_config(tmp_path / "data", central.url, spaces=300)
    entry, exit_ = text.split('id = "exit-1"')
    # the exit lane has no limit switches: its arm's position is assumed, as at many gates
    exit_ = exit_.replace('[lanes.arm_open_limit]\nkind = "sim"\n', "").replace(
        '[lanes.arm_closed_limit]\nkind = "sim"\n', "")
    config.write_text(entry + 'id = "exit-1"' + exit_)
    daemon = Daemon(config)
    await daemon.start()
    async with aiohttp.ClientSession() as http:
        yield Gate(daemon, http), central.state, tmp_path / "data" / "gateway.sqlite3"
    try:
        assert await daemon.stop() == 0, "\n".join(daemon.log[-40:])
    finally:
        await central.runner.cleanup()


@pytest.mark.parametrize("count", [
    80,  # about 80 s: each behaviour at least twice, then a random mix
    pytest.param(300, marks=pytest.mark.soak),  # about 5 minutes, in make soak
])
@pytest.mark.timeout(900)  # vehicles in real time
async def test_vehicles_of_every_behaviour_no_collision_and_records_agree(gate, count):
    g, central, db_path = gate
    half = count // 2
    rng = random.Random(8)
    inside: list[str] = []  # plates the test knows are parked
    entering_done = asyncio.Event()

    async def entries(first: int, last: int) -> None:
        for i in range(first, last):
            behaviour = BEHAVIOURS[i % len(BEHAVIOURS)] if i < 2 * len(BEHAVIOURS) \
                else rng.choice(BEHAVIOURS)
            plate = BLOCKED if i % 10 == 7 else f"34E{i:04d}"
            v = await g.drive("entry-1", plate, behaviour)
            if plate != BLOCKED and behaviour in ENTERS:
                assert v["status"] == "passed", (behaviour, v)
                inside.append(plate)
            elif behaviour in BACKS_OUT or plate == BLOCKED:
                assert v["status"] == "left", (behaviour, v)
        entering_done.set()

    async def exits() -> None:
        n = 0
        while n < half:
            if not inside:
                if entering_done.is_set():
                    return
                await asyncio.sleep(0.05)
                continue
            plate = inside.pop(rng.randrange(len(inside)))
            # a follower at an exit would be an exit nobody entered: entries cover those
            behaviour = rng.choice([b for b in BEHAVIOURS if b not in ("tailgate", "bumper")])
            v = await g.drive("exit-1", plate, behaviour)
            n += 1
            if behaviour not in ENTERS:
                inside.append(plate)  # did not leave: still parked
                assert v["status"] == "left", (behaviour, v)

    await asyncio.gather(entries(0, half), exits())
    await entries(half, half + count - len(g.sent))  # exits ran out of parked cars: more in
    world = await get(g.http, f"{g.daemon.url}/api/sim/world")
    status = await get(g.http, f"{g.daemon.url}/api/status")
    assert world["collisions"] == 0 and status["simulation"]["collisions"] == 0
    arms = {lane["id"]: lane["arm"] for lane in status["lanes"]}
    assert arms["exit-1"]["assumed"] and not arms["entry-1"]["assumed"]
    assert len(g.sent) == count and {s["behaviour"] for s in g.sent} == set(BEHAVIOURS)
    events: list[Any] = []
    while batch := await get(g.http, f"{g.daemon.url}/api/events?limit=1000&after_seq="
                                     f"{events[-1]['seq'] if events else 0}"):
        events += batch
    types = Counter(e["type"] for e in events)
    assert types["lane_error"] == 0
    bumpers = sum(1 for s in g.sent if s["behaviour"] == "bumper" and s["plate"] != BLOCKED)
    assert types["tailgating_detected"] >= bumpers > 0
    followers = {(await get(g.http, f"{g.daemon.url}/api/sim/vehicles/{s['vehicle_id']}f"))
                 ["plate"] for s in g.sent if s["behaviour"] in ("tailgate", "bumper")}
    _check_records(g, central, db_path, inside, followers)


def _check_records(g: Gate, central: SimCentralState, db_path: Path, inside: list[str],
                   followers: set[str]) -> None:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        sessions = db.execute("SELECT plate, status, space_id FROM vehicle_sessions").fetchall()
        sagas = db.execute("SELECT kind, plate, status FROM sagas ORDER BY rowid").fetchall()
        allocated = {r[0]: r[1] for r in db.execute(
            "SELECT space_id, plate FROM spaces WHERE state='allocated'")}
    finally:
        db.close()
    parked = {plate: space for plate, state, space in sessions if state == "inside"}
    # every vehicle the test saw enter and not leave is parked, each in a space of its own;
    # the only others are tailgate followers that were let in with a saga of their own
    assert set(inside) <= set(parked)
    assert set(parked) - set(inside) <= followers
    assert sorted(allocated.values()) == sorted(parked) and len(set(parked.values())) == \
        len(parked)
    # each vehicle sent had one saga, in the order they were sent, with the right end
    for (kind, plate) in {(s["lane"].split("-")[0], s["plate"]) for s in g.sent}:
        theirs = [s for k, p, s in sagas if k == kind and p == plate]
        if plate == BLOCKED:
            assert "completed" not in theirs
            continue
        sends = [s["behaviour"] for s in g.sent if s["lane"].startswith(kind)
                 and s["plate"] == plate]
        expected = ["completed" if b in ENTERS else "compensated" for b in sends]
        assert theirs == expected, (kind, plate, sends)
    entries = Counter(r["license_plate"] for r in central.entries.values()
                      if r["status"] == "active")
    exits = Counter(r["license_plate"] for r in central.exits.values() if r["status"] == "active")
    entered = Counter(p for p, _, _ in sessions)
    assert entries == entered, "the central service's active entries are the gate's sessions"
    assert exits == Counter(p for p, state, _ in sessions if state == "exited")
    assert BLOCKED not in entries
    keys = Counter(r["idempotency_key"] for r in [*central.entries.values(),
                                                   *central.exits.values()])
    assert set(keys.values()) == {1}


async def test_without_the_guard_the_simulator_counts_collisions(tmp_path):
    central = await start_central(SimCentralState())
    config = tmp_path / "gateway.toml"
    config.write_text(e2e_config(tmp_path / "data", central.url))
    daemon = Daemon(config, env={"GATEWAY_TEST_UNGUARDED_SAFETY": "1"})
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            g = Gate(daemon, http)
            for i in range(10):
                await g.drive("entry-1", f"34U{i:04d}", "pass", settle=False)
                world = await get(http, f"{daemon.url}/api/sim/world")
                if world["collisions"]:
                    break
            assert world["collisions"] > 0, "the unguarded gate hit nothing: the test is blind"
    finally:
        await daemon.stop()
        await central.runner.cleanup()
