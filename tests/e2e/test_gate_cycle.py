"""The daemon as a separate process on a temp data dir, driven through the simulation
API; then the space table, the sessions, the events and the central records must agree."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.sim.central import SimCentralState
from tests.conftest import start_central
from tests.e2e.daemon import ADMIN_TOKEN, Daemon, e2e_config, get, until


@pytest.fixture
async def world(tmp_path):
    state = SimCentralState(blocked={"66BAD66"})
    central = await start_central(state)
    config = tmp_path / "gateway.toml"
    config.write_text(e2e_config(tmp_path / "data", central.url))
    daemon = Daemon(config)
    await daemon.start()
    async with aiohttp.ClientSession() as http:
        yield daemon, http, state, tmp_path
    try:
        assert await daemon.stop() == 0, "\n".join(daemon.log[-40:])
    finally:
        await central.runner.cleanup()


async def drive(daemon: Daemon, http: aiohttp.ClientSession, lane: str, plate: str,
                behaviour: str = "pass") -> Any:
    async with http.post(f"{daemon.url}/api/sim/lanes/{lane}/vehicles",
                         json={"plate": plate, "behaviour": behaviour}) as resp:
        assert resp.status == 202, await resp.text()
        vid = (await resp.json())["vehicle_id"]

    async def finished():
        v = await get(http, f"{daemon.url}/api/sim/vehicles/{vid}")
        return v if v["status"] in ("passed", "left") else None

    vehicle = await until(finished)

    async def settled():
        status = await get(http, f"{daemon.url}/api/status")
        running = await get(http, f"{daemon.url}/api/sagas?state=running")
        comp = await get(http, f"{daemon.url}/api/sagas?state=compensating")
        idle = all(lane["state"] == "idle" for lane in status["lanes"])
        return idle and not running and not comp
    await until(settled)
    return vehicle


async def test_entries_exits_back_outs_denials_and_tailgating_agree(world):
    daemon, http, central, tmp_path = world
    url = daemon.url
    assert (await drive(daemon, http, "entry-1", "34ABC123"))["status"] == "passed"
    assert (await drive(daemon, http, "entry-1", "06XYZ99", "back_out"))["status"] == "left"
    assert (await drive(daemon, http, "entry-1", "66BAD66"))["status"] == "left"  # blocked
    # a second car right behind it: under the held arm, reported (bumper to bumper)
    assert (await drive(daemon, http, "entry-1", "35KLM77", "bumper"))["status"] == "passed"
    assert (await drive(daemon, http, "exit-1", "34ABC123"))["status"] == "passed"
    assert (await drive(daemon, http, "exit-1", "35KLM77", "back_out"))["status"] == "left"

    events = await get(http, f"{url}/api/events?limit=1000")
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    types = Counter(e["type"] for e in events)
    assert types["vehicle_entered"] == 2 and types["vehicle_exited"] == 1
    assert types["entry_denied"] == 1 and types["tailgating_detected"] == 1
    assert types["vehicle_backed_out"] == 2
    assert types["barrier_opened"] == types["barrier_closed"] == 5

    spaces = await get(http, f"{url}/api/spaces")
    allocated = {s["plate"]: s["space_id"] for s in spaces if s["state"] == "allocated"}
    assert set(allocated) == {"35KLM77"}
    status = await get(http, f"{url}/api/status")
    assert status["occupancy"]["allocated"] == 1 and status["healthy"]

    # the central service saw each record once, and it agrees with the gate
    entries = {r["license_plate"]: r for r in central.entries.values()}
    assert entries["34ABC123"]["status"] == "active"
    assert entries["06XYZ99"]["status"] == "cancelled"
    assert entries["35KLM77"]["status"] == "active"
    assert "66BAD66" not in entries
    exits = {r["license_plate"]: r for r in central.exits.values()}
    assert exits["34ABC123"]["status"] == "active"
    assert exits["35KLM77"]["status"] == "cancelled"
    assert all(n == 1 for n in Counter(
        r["idempotency_key"] for r in [*central.entries.values(), *central.exits.values()]
    ).values())

    db = sqlite3.connect(f"file:{tmp_path / 'data' / 'gateway.sqlite3'}?mode=ro", uri=True)
    sessions = {r[0]: (r[1], r[2]) for r in db.execute(
        "SELECT plate, status, space_id FROM vehicle_sessions")}
    db.close()
    assert sessions["34ABC123"][0] == "exited"
    assert sessions["35KLM77"] == ("inside", allocated["35KLM77"])
    assert set(sessions) == {"34ABC123", "35KLM77"}
    await _the_operator_sees_the_same(daemon, http)


async def _the_operator_sees_the_same(daemon: Daemon, http: aiohttp.ClientSession) -> None:
    """The page's view of those six vehicles: the vehicle list, a saga view, the latencies."""
    url = daemon.url
    listed = (await get(http, f"{url}/api/vehicles"))["vehicles"]
    assert [(v["license_plate"], v["kind"]) for v in listed] == [
        ("35KLM77", "exit"), ("34ABC123", "exit"), ("35KLM77", "entry"),
        ("66BAD66", "entry"), ("06XYZ99", "entry"), ("34ABC123", "entry")]
    by = {(v["license_plate"], v["kind"]): v for v in listed}
    assert by[("34ABC123", "entry")]["outcome"] == "let in"
    assert by[("34ABC123", "exit")]["outcome"] == "let out"
    assert by[("34ABC123", "entry")]["source"] == "central"
    backed_out = by[("06XYZ99", "entry")]
    assert backed_out["compensated"] and backed_out["outcome"].startswith("turned away")
    assert not by[("34ABC123", "entry")]["compensated"]
    denied = by[("66BAD66", "entry")]
    assert denied["status"] != "completed" and not denied["compensated"]
    # the saga view of the vehicle that backed out: its compensation and its events
    saga = await get(http, f"{url}/api/sagas/{backed_out['saga_id']}")
    phases = {(s["name"], s["phase"]) for s in saga["steps"]}
    assert {("release_parking_space", "compensation"),
            ("cancel_entry_record", "compensation")} <= phases
    assert "vehicle_backed_out" in {e["type"] for e in saga["events"]}
    assert all(e["data"].get("saga_id") == saga["saga_id"] for e in saga["events"])
    assert "image_jpeg_b64" not in saga["context"]
    latency = await get(http, f"{url}/api/latency")
    # five opens, and the denied vehicle up to its decision (it had no open, no total)
    opened = [v for v in latency["vehicles"] if v["opened"]]
    refused = [v for v in latency["vehicles"] if not v["opened"]]
    assert len(opened) == 5 and len(refused) == 1, latency
    assert all(v["total"] >= v["decision"] > 0 for v in opened)
    assert refused[0]["decision"] > 0 and "total" not in refused[0]
    status = await get(http, f"{url}/api/status")
    assert status["services"]["central"]["state"] == "online"
    assert status["services"]["central"]["summary"].startswith("online, answers in")
    lanes = {lane["id"]: lane for lane in status["lanes"]}
    assert lanes["exit-1"]["last"]["license_plate"] == "35KLM77"
    assert lanes["entry-1"]["vehicle"] is None
    assert status["occupancy"]["zones"][0]["free"] == status["occupancy"]["free"]
    # the data disk in one place, and the clock
    assert status["storage"]["usage"]["database_bytes"] > 0
    assert status["storage"]["summary"].startswith("database ")
    assert status["clock"]["synced"] is True
    async with http.get(f"{url}/metrics") as r:
        text = await r.text()
    assert 'parking_storage_bytes{part="database"}' in text
    assert "parking_clock_synced 1.0" in text


async def test_bad_requests_admin_and_manual_open(world):
    daemon, http, _, _ = world
    url = daemon.url
    async with http.post(f"{url}/api/sim/lanes/nope/vehicles", json={"plate": "X1"}) as r:
        assert r.status == 404
    for body in ({"plate": "<b>x</b>"}, {"plate": "X1", "behaviour": "fly"}, {"x": 1}):
        async with http.post(f"{url}/api/sim/lanes/entry-1/vehicles", json=body) as r:
            assert r.status == 400, body
    async with http.post(f"{url}/api/sim/lanes/entry-1/vehicles", data=b"{not json") as r:
        assert r.status == 400
    async with http.post(f"{url}/api/lanes/entry-1/open", json={}) as r:
        assert r.status == 401
    async with http.post(f"{url}/api/lanes/entry-1/open", json={},
                         headers={"Authorization": "Bearer wrong"}) as r:
        assert r.status == 401
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with http.post(f"{url}/api/lanes/entry-1/open", headers=auth,
                         json={"who": "tester", "why": "e2e"}) as r:
        assert r.status == 200, await r.text()
    async with http.post(f"{url}/api/lanes/entry-1/open", headers=auth, json={}) as r:
        assert r.status == 200 and (await r.json())["opened"]  # always possible
    async with http.post(f"{url}/api/spaces/A-003/state", headers=auth,
                         json={"state": "out_of_service"}) as r:
        assert r.status == 200
    async with http.post(f"{url}/api/spaces/Z-999/state", headers=auth,
                         json={"state": "free"}) as r:
        assert r.status == 404
    events = await get(http, f"{url}/api/events?limit=1000")
    manual = [e for e in events if e["type"] == "manual_open"]
    assert manual and manual[0]["data"]["who"] == "tester"
    status = await get(http, f"{url}/api/status")
    assert status["occupancy"]["out_of_service"] == 1
    assert ADMIN_TOKEN not in "\n".join(daemon.log)
    async with http.get(f"{url}/healthz") as r:
        assert r.status == 200
    async with http.get(f"{url}/") as r:  # the first paint names the gate and its lanes
        page = await r.text()
    assert "e2e-gate" in page and "entry-1" in page and "exit-1" in page


async def test_metrics_are_prometheus(world):
    # the OpenAPI document is held true by tests/integration/test_openapi.py
    daemon, http, _, _ = world
    await drive(daemon, http, "entry-1", "34ABC123")
    async with http.get(f"{daemon.url}/metrics") as r:
        text = await r.text()
        assert r.status == 200 and r.content_type == "text/plain"
    assert 'parking_spaces{state="allocated"} 1.0' in text
    assert 'parking_sagas{status="completed"} 1.0' in text
    assert "parking_circuit_state" in text and "parking_healthy 1.0" in text


async def test_permits_are_edited_at_the_gate_with_the_admin_token(world):
    daemon, http, _, _ = world
    url = f"{daemon.url}/api/permits"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with http.put(f"{url}/34RES1", json={"kind": "resident"}) as r:
        assert r.status == 401  # no token: nothing changes
    assert (await get(http, url))["permits"] == []
    async with http.put(f"{url}/34 res 1", json={"kind": "staff", "note": "caretaker"},
                        headers=auth) as r:
        assert r.status == 200 and (await r.json())["license_plate"] == "34RES1"
    for bad, body in (("34RES1", {"valid_from": "tomorrow"}),
                      ("34RES1", {"valid_from": "2026-12-02T10:00:00+00:00",
                                  "valid_until": "2026-12-01T10:00:00+00:00"}),
                      ("<b>x", {}), ("34RES1", {"kind": "vip"})):
        async with http.put(f"{url}/{bad}", json=body, headers=auth) as r:
            assert r.status == 400, (bad, body, await r.text())
    (permit,) = (await get(http, url))["permits"]
    assert (permit["plate"], permit["kind"], permit["source"], permit["note"]) == \
        ("34RES1", "staff", "local", "caretaker")
    async with http.delete(f"{url}/34RES1", headers=auth) as r:
        assert r.status == 200
    async with http.delete(f"{url}/34RES1", headers=auth) as r:
        assert r.status == 404
    types = [e["type"] for e in await get(http, f"{daemon.url}/api/events?limit=1000")]
    assert types.count("permit_changed") == 2


def thread_names(pid: int) -> set[str]:
    return {(t / "comm").read_text().strip() for t in Path(f"/proc/{pid}/task").iterdir()}


async def test_the_daemons_threads_are_named_in_the_os(world):
    """What ``top -H`` shows a technician: each thread by what it does, not "python"."""
    daemon, http, _, _ = world
    assert (await drive(daemon, http, "entry-1", "34ABC123"))["status"] == "passed"
    assert daemon.proc is not None
    names = thread_names(daemon.proc.pid)
    assert {"grab entry-1", "grab exit-1", "camwatch entry-", "camwatch exit-1",
            "asyncio_0", "sqlite"} <= names, names
