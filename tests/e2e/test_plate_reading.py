"""The gate's own plate reader end to end (issue 10): the daemon as a process with plain sim
cameras (frames only, the plate rendered into the scene), the sim central on 127.0.0.1.

- central up: the local reading goes to central as the hint, with its source and
  confidence, and central decides;
- central down, no backup: a permit holder cached from an earlier visit enters on the
  local reading, an unknown plate falls to the policy (deny);
- the records queued meanwhile reach central later, with the plate the gate read."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from gateway.sim.central import SimCentralState
from tests.conftest import start_central
from tests.e2e.daemon import Daemon, e2e_config, get, until
from tests.e2e.test_gate_cycle import drive


@pytest.fixture
async def world(tmp_path):
    state = SimCentralState(permits={"06PRM001"})
    central = await start_central(state)
    config = tmp_path / "gateway.toml"
    config.write_text(e2e_config(tmp_path / "data", central.url, camera="plain", plates=True))
    daemon = Daemon(config)
    await daemon.start()
    async with aiohttp.ClientSession() as http:
        async def reader_ready() -> bool:
            status = await get(http, f"{daemon.url}/api/status")
            return bool(status["plate_reader"] and status["plate_reader"]["ready"])
        await until(reader_ready, 30)
        yield daemon, http, state, central.url
    try:
        assert await daemon.stop() == 0, "\n".join(daemon.log[-40:])
    finally:
        await central.runner.cleanup()


def entries_for(state: SimCentralState, plate: str) -> list[dict[str, Any]]:
    return [r for r in state.entries.values() if r["license_plate"] == plate]


async def test_a_plain_camera_is_read_at_the_gate(world):
    daemon, http, state, central_url = world
    url = daemon.url
    # central up: the hint is the gate's reading, and central decides
    assert (await drive(daemon, http, "entry-1", "34ABC123"))["status"] == "passed"
    (hint,) = [r for r in state.verify_requests if r.get("license_plate") == "34ABC123"]
    assert hint["reading_source"] == "local" and hint["reading_confidence"] >= 0.8
    (saga,) = [s for s in await get(http, f"{url}/api/sagas") if s["plate"] == "34ABC123"]
    detail = await get(http, f"{url}/api/sagas/{saga['saga_id']}")
    (verify,) = [s for s in detail["steps"] if s["name"] == "verify_license_plate"]
    assert verify["result"]["reading"]["source"] == "local"
    lanes = {lane["id"]: lane for lane in (await get(http, f"{url}/api/status"))["lanes"]}
    assert lanes["entry-1"]["reading"]["license_plate"] == "34ABC123"
    async with http.get(f"{url}/api/lanes/entry-1/plate.jpg") as r:
        assert r.status == 200 and r.content_type == "image/jpeg"
        assert (await r.read())[:2] == b"\xff\xd8"
    reads = [e["data"] for e in await get(http, f"{url}/api/events?limit=1000")
             if e["type"] == "local_reading"]
    assert [r["license_plate"] for r in reads] == ["34ABC123"]

    # a permit holder's visit while central is up: its answer is cached
    assert (await drive(daemon, http, "entry-1", "06PRM001"))["status"] == "passed"
    assert (await drive(daemon, http, "exit-1", "06PRM001"))["status"] == "passed"
    before = len(entries_for(state, "06PRM001"))
    async with http.post(f"{central_url}/_sim/fault", json={"mode": "refuse"}) as r:
        assert r.status == 200
    # central down, no backup: the permit holder enters on the local reading
    assert (await drive(daemon, http, "entry-1", "06PRM001"))["status"] == "passed"
    # an unknown plate falls to the policy: denied
    assert (await drive(daemon, http, "entry-1", "99ZZZ99", "back_out"))["status"] == "left"
    sagas = {s["plate"]: s for s in await get(http, f"{url}/api/sagas")}
    assert sagas["99ZZZ99"]["status"] == "compensated"
    async with http.post(f"{central_url}/_sim/fault", json={"mode": "ok"}) as r:
        assert r.status == 200

    # the queued entry reaches central with the plate the gate read
    async def synced() -> bool:
        return len(entries_for(state, "06PRM001")) == before + 1
    await until(synced, 30)

