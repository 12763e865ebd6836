"""A gate whose wall clock is not synchronised (a Pi without a battery clock starts in 1970
until NTP sets it) says so in plain words, with what to check, on the page's problems
(/api/status) while its vehicles still go through; /healthz stays 200 (a restart or a
rolled-back upgrade would not fix the clock), as for low free space. Once the time service
has synchronised the clock the warning is gone."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import Gateway
from gateway.clock import SystemClock
from gateway.settings import parse_settings
from gateway.web.app import make_app
from tests.e2e.daemon import ADMIN_TOKEN, e2e_config, until

Client = TestClient[Any, Any]


class RtcLessClock(SystemClock):
    """A board without a battery clock: its wall time began at 1970-01-01 at boot and is
    not synchronised until the time service says so (``ntp_synced``)."""

    def __init__(self) -> None:
        super().__init__()
        self.booted = time.monotonic()
        self.ntp_synced = False

    def wall(self) -> float:
        return 60.0 + time.monotonic() - self.booted

    def wall_synced(self) -> bool:
        return self.ntp_synced


@pytest.fixture
async def gate(tmp_path: Path, sim_central: Any,
               aiohttp_client: Callable[[Any], Awaitable[Client]],
               ) -> AsyncIterator[tuple[RtcLessClock, Client]]:
    clock = RtcLessClock()
    gw = Gateway(parse_settings(e2e_config(tmp_path, sim_central.url,
                                           "[permits]\nsync = false\n"),
                                env={"GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}), clock)
    await gw.start()
    try:
        yield clock, await aiohttp_client(make_app(gw))
    finally:
        await gw.stop()


def _clock_words(problems: list[str]) -> list[str]:
    return [p for p in problems if p.startswith("clock:")]


async def test_an_unsynchronised_clock_is_a_warning_with_what_to_check(gate) -> None:
    clock, client = gate
    status = await (await client.get("/api/status")).json()
    assert status["wall_synced"] is False and status["time"].startswith("1970-01-01")
    [words] = _clock_words(status["problems"])
    assert "not synchronised" in words and "may be wrong" in words
    for what in ("timedatectl", "NTP", "RTC"):
        assert what in words, what
    healthz = await client.get("/healthz")
    assert healthz.status == 200
    assert (await healthz.json()) == {"healthy": True, "problems": []}

    # the gate still works: a vehicle goes through
    resp = await client.post("/api/sim/lanes/entry-1/vehicles", json={"plate": "34CLK01"})
    vid = (await resp.json())["vehicle_id"]

    async def passed() -> bool:
        vehicle = await (await client.get(f"/api/sim/vehicles/{vid}")).json()
        return bool(vehicle["status"] == "passed")
    await until(passed, 20, "34CLK01 through the entry")

    clock.ntp_synced = True  # the time service set the clock
    status = await (await client.get("/api/status")).json()
    assert status["wall_synced"] is True and _clock_words(status["problems"]) == []
