"""An ANPR camera's reading decides at once; the gate's own reading of the same burst
(``plates.compare_anpr``) is taken after the lane decided, never before it (issue 13, item
4: the reader's hundreds of ms were on the loop-to-open path, and its CPU beside the
decision slowed it). A real Gateway with the simulated ANPR camera and lane, the real plate
reader, the sim central on 127.0.0.1. About 6 s (the reader's model loads first).
"""

from __future__ import annotations

from pathlib import Path

from gateway.app import Gateway
from gateway.settings import parse_settings
from gateway.store import events
from tests.conftest import RunningCentral
from tests.e2e.daemon import e2e_config, until


async def test_an_anpr_lane_opens_before_the_gates_own_reading_is_taken(
        tmp_path: Path, sim_central: RunningCentral) -> None:
    s = parse_settings(e2e_config(tmp_path, sim_central.url, camera="anpr", plates=True))
    gw = Gateway(s)
    await gw.start()
    try:
        assert gw.reader is not None and gw.sim is not None
        await until(lambda: gw.reader is not None and (gw.reader.ready or gw.reader.fault),
                    30, "the reader's model")
        assert gw.reader.ready, gw.reader.fault
        lane = gw.lanes["entry-1"]
        gw.sim.add_vehicle("entry-1", "34ABC123", "pass")

        async def seen() -> list[tuple[str, dict[str, object]]]:
            rows = await gw.store.read(lambda c: events.list_after(c, 0, 1000))
            return [(e["type"], e["data"]) for e in rows if e["lane_id"] == "entry-1"]

        await until(lambda: lane.last_reading, 15, "the gate's own reading")
        kinds = [kind for kind, _ in await until(seen, 5, "the lane's events")]
        assert "barrier_opened" in kinds and "local_reading" in kinds, kinds
        assert kinds.index("barrier_opened") < kinds.index("local_reading"), kinds
        assert lane.last_reading["used"] == "camera"
        last = await until(lambda: lane.last.get("license_plate") == "34ABC123" and lane.last,
                           10, "the vehicle's saga")
        assert last["status"] == "completed"
        assert last["sources"].get("verify_license_plate") == "central"
    finally:
        await gw.stop()
