"""One demo-like daemon and one headless Debian Chromium per module (both cost seconds to
start): the embedded demo configuration as a process (its own sim central, a private
Mosquitto, the sim backup on it, the entry's plain camera read by the gate's own reader),
with no generated traffic and the simulated world 4x faster than real time. Each page
records its script errors, console errors and Content-Security-Policy violations; the
test ends by checking there were none."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from tests.broker import free_port
from tests.e2e.daemon import Daemon, demo_config, get, until

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
# the world 4x faster (as tests/e2e/daemon.e2e_config): the lane's arm travel is the
# world's divided by 4
FAST_WORLD = """[simulation]
enabled = true
time_scale = 4.0
reaction_s = 0.2
arm_travel_s = 1.0
patience_s = 20.0
stall_s = 4.0"""
FAST_LANE = """[lanes.timings]
arm_travel_s = 0.25
debounce_s = 0.01
dropout_hold_s = 0.05
gap_hold_s = 0.3"""
# recorded before any script of the page runs
WATCH_CSP = """window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));"""


@dataclass
class Gate:
    daemon: Daemon
    url: str
    http: aiohttp.ClientSession

    async def wait_ready(self) -> None:
        async def is_ready() -> bool:
            return ready(await get(self.http, f"{self.url}/api/status"))
        await until(is_ready, 30, "every service online and the plate reader loaded")


@dataclass
class Watched:
    """A page and what went wrong on it."""

    page: Page
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    async def clean(self, allowed: tuple[str, ...] = ()) -> None:
        """No CSP violation, no script error, no console error (except the ``allowed``
        ones, such as the 401 of an action refused on purpose)."""
        assert await self.page.evaluate("window.__csp") == []
        assert [e for e in self.errors if not any(a in e for a in allowed)] == []


def fast_demo_config(tmp: Path) -> Path:
    config = demo_config(tmp)
    text = config.read_text()
    for old, new, count in (("[simulation]\nenabled = true", FAST_WORLD, 1),
                            ("traffic = true", "traffic = false", 1),
                            # the breaker tries central again 3 s after it opened, not 10
                            ("reset_timeout_s = 10", "reset_timeout_s = 3", 1),
                            # a fixed port: a page follows the daemon through a restart
                            ("port = 0", f"port = {free_port()}", 1),
                            ("[lanes.timings]\narm_travel_s = 1.0", FAST_LANE, 2)):
        assert text.count(old) == count, old
        text = text.replace(old, new)
    config.write_text(text)
    return config


def ready(status: dict[str, Any]) -> bool:
    s = status["services"]
    return bool(s["central"]["circuit"] == "closed" and s["backup"]["circuit"] == "closed"
                and s["mqtt"]["connected"] and status["plate_reader"]
                and status["plate_reader"]["ready"])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gate(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gate]:
    daemon = Daemon(fast_demo_config(tmp_path_factory.mktemp("gate")))
    await daemon.start()
    g = None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            g = Gate(daemon, daemon.url, http)
            await g.wait_ready()
            yield g
    finally:
        last = g.daemon if g else daemon  # a test may have restarted it
        assert await last.stop() == 0, "\n".join(last.log[-40:])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: $GATEWAY_SCREENSHOT_DIR (make screenshots: docs/screenshots)
    or a temporary directory."""
    where = os.environ.get("GATEWAY_SCREENSHOT_DIR")
    folder = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {folder}")
    return folder


async def open_page(browser: Browser, url: str, viewport: dict[str, int] = DESKTOP) -> Watched:
    page = await browser.new_page(viewport={"width": viewport["width"],
                                            "height": viewport["height"]})
    watched = Watched(page)
    page.on("pageerror", lambda exc: watched.errors.append(f"pageerror: {exc}"))
    page.on("console", lambda m: watched.errors.append(f"console: {m.text}")
            if m.type == "error" else None)
    page.on("request", lambda r: watched.requests.append(r.url))
    page.on("response", lambda r: watched.errors.append(f"{r.status} {r.url}")
            if r.status >= 500 else None)
    await page.add_init_script(WATCH_CSP)
    await page.goto(url + "/")
    await page.wait_for_selector("#link[data-link='live']")
    return watched
