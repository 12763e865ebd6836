"""An ANPR camera's reading decides at once; the gate's own reading of the same burst
(``plates.compare_anpr``) is taken after the lane decided, never before it (issue 13, item
4: the reader's hundreds of ms were on the loop-to-open path, and its CPU beside the
decision slowed it). A real Gateway with the simulated ANPR camera and lane, the real plate
reader, the sim central on 127.0.0.1. About 6 s (the reader's model loads first).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.settings import parse_settings
from gateway.store import events
from gateway.web.image_routes import lane_crop
from tests.conftest import RunningCentral
from tests.e2e.daemon import e2e_config, until


@pytest.fixture
async def gw(tmp_path: Path, sim_central: RunningCentral) -> AsyncIterator[Gateway]:
    """A gate with the simulated ANPR camera and its own reader, the model loaded."""
    gate = Gateway(parse_settings(e2e_config(tmp_path, sim_central.url, camera="anpr",
                                             plates=True)))
    await gate.start()
    try:
        await until(lambda: gate.reader is not None and (gate.reader.ready or gate.reader.fault),
                    30, "the reader's model")
        assert gate.reader is not None and gate.reader.ready, gate.reader
        yield gate
    finally:
        await gate.stop()


async def test_an_anpr_lane_opens_before_the_gates_own_reading_is_taken(gw: Gateway) -> None:
    assert gw.sim is not None
    lane = gw.lanes["entry-1"]
    gw.sim.add_vehicle("entry-1", "34ABC123", "pass")

    async def reading_recorded() -> list[str]:
        # the event, not lane.last_reading: the lane sets that at once and its event is
        # committed after (it is written by a task of its own)
        rows = await gw.store.read(lambda c: events.list_after(c, 0, 1000))
        kinds = [e["type"] for e in rows if e["lane_id"] == "entry-1"]
        return kinds if "local_reading" in kinds else []

    kinds = await until(reading_recorded, 15, "the gate's own reading in the lane's events")
    assert "barrier_opened" in kinds, kinds
    assert kinds.index("barrier_opened") < kinds.index("local_reading"), kinds
    assert lane.last_reading["used"] == "camera"
    last = await until(lambda: lane.last.get("license_plate") == "34ABC123" and lane.last,
                       10, "the vehicle's saga")
    assert last["status"] == "completed", last
    assert last["sources"].get("verify_license_plate") == "central"


async def test_the_tile_never_shows_the_last_cars_crop_beside_the_next_car(
        gw: Gateway, sim_central: RunningCentral) -> None:
    """On an ANPR lane the gate's own crop of a vehicle comes after its decision: while the
    next vehicle is being decided, the tile's crop must not be the one before's (the page
    showed the last plate's crop beside the new plate)."""
    try:
        assert gw.sim is not None
        lane = gw.lanes["entry-1"]
        gw.sim.add_vehicle("entry-1", "34ABC123", "pass")
        await until(lambda: lane.last_crop is not None
                    and lane.last.get("license_plate") == "34ABC123", 15, "the first car")
        first = lane.last_crop
        await until(lambda: lane.lane.state.value == "idle", 10, "the lane at rest")
        sim_central.state.delay_s = 1.0  # the next decision takes a second
        gw.sim.add_vehicle("entry-1", "06TRK742", "pass")
        await until(lambda: lane.lane.saga_id is not None, 10, "the next car being decided")
        crop = lane_crop(gw, "entry-1")
        assert crop is None or crop["of"] == "decision", crop
        assert lane.last_crop is not first
    finally:
        sim_central.state.delay_s = 0.0
