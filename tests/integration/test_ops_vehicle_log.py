"""The per-vehicle journal line on a running gate: a real Gateway (sim lanes), vehicles
through the simulated world, the line as the log shows it (``gateway.vehicle`` logger), with
``[logging] mask_plates = true``. About 4 s (a Gateway start, two vehicles)."""

from __future__ import annotations

import logging
import re
import shlex
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.settings import parse_settings
from gateway.sim.central import SimCentralState
from tests.conftest import start_central
from tests.e2e.daemon import e2e_config, until


async def test_one_line_per_vehicle_with_the_plate_masked(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    central = await start_central(SimCentralState(blocked={"66BAD66"}))
    settings = parse_settings(e2e_config(tmp_path / "data", central.url,
                                         extra="[logging]\nmask_plates = true\n"))
    gw = Gateway(settings)
    caplog.set_level(logging.INFO, logger="gateway.vehicle")
    await gw.start()
    try:
        assert gw.sim is not None
        lane = gw.lanes["entry-1"]
        for plate in ("34ABC123", "66BAD66"):
            gw.sim.add_vehicle("entry-1", plate, "pass")

            def decided(p: str = plate) -> bool:
                return bool(lane.last.get("license_plate") == p)
            await until(decided, 15, f"{plate}'s saga")
        def logged() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.name == "gateway.vehicle"]

        lines = (await until(lambda: len(logged()) >= 2 and logged(), 5, "two lines"))[:2]
    finally:
        await gw.stop()
        await central.runner.cleanup()
    let_in, denied = (dict(t.split("=", 1) for t in shlex.split(line)[1:]) for line in lines)
    assert let_in["lane"] == "entry-1" and let_in["direction"] == "entry"
    assert let_in["outcome"] == "let in" and let_in["source"] == "central"
    assert let_in["plate"] == "34A***23" and re.fullmatch(r"\d+", let_in["total_ms"])
    assert re.fullmatch(r"\d+", let_in["open_ms"])  # the arming loop to the open pulse
    assert denied["outcome"] == "turned away: not authorized: blocked"
    assert denied["plate"] == "66B***66" and "open_ms" not in denied
    assert not any("34ABC123" in line or "66BAD66" in line for line in lines)
