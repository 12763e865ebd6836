"""Shared fixtures: real servers on 127.0.0.1, real SQLite files."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

from gateway.sim.central import SimCentralState, make_app

# Hypothesis keeps the examples it found outside the repository (tests/fuzz adds its
# fuzz and soak profiles on top of this one). The parent is Hypothesis' own default, not
# whatever profile it picked for itself: with CI set in the environment it loads its `ci`
# profile (derandomize, no database), which our database contradicts, so schemathesis
# refused to build its tests; the suite runs the same with or without CI set.
settings.register_profile("gateway", parent=settings.get_profile("default"),
                          database=DirectoryBasedExampleDatabase(
    os.path.join(tempfile.gettempdir(), "gateway-hypothesis")))
settings.load_profile("gateway")


@dataclass
class RunningCentral:
    url: str
    state: SimCentralState
    runner: web.AppRunner


@pytest.fixture
async def sim_central() -> AsyncIterator[RunningCentral]:
    state = SimCentralState()
    runner = web.AppRunner(make_app(state), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield RunningCentral(f"http://127.0.0.1:{port}", state, runner)
    await runner.cleanup()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--crash-rounds", type=int, default=8,
                     help="random-instant SIGKILL rounds of the crash test (make soak: more)")


async def start_central(state: SimCentralState, port: int = 0) -> RunningCentral:
    runner = web.AppRunner(make_app(state), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return RunningCentral(f"http://127.0.0.1:{runner.addresses[0][1]}", state, runner)
