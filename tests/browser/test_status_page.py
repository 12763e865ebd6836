"""The status page in headless Chromium against the daemon: it renders the lanes, a button
sends a vehicle, events arrive live over SSE, and outside text is shown, never run."""

from __future__ import annotations

import aiohttp
from playwright.async_api import async_playwright

from gateway.sim.central import SimCentralState
from tests.conftest import start_central
from tests.e2e.daemon import ADMIN_TOKEN, Daemon, e2e_config

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]


async def test_page_is_live_and_escapes_outside_text(tmp_path):
    central = await start_central(SimCentralState())
    config = tmp_path / "gateway.toml"
    config.write_text(e2e_config(tmp_path / "data", central.url))
    daemon = Daemon(config)
    await daemon.start()
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                               args=ARGS)
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(daemon.url + "/")
            await page.wait_for_selector("#lane-entry-1 .state")
            assert await page.text_content("#free") == "10 free"
            # a vehicle sent from the page drives in; its events arrive over SSE
            await page.click("#lane-entry-1 button:text('pass')")
            await page.wait_for_selector("#events td:text('vehicle_entered')", timeout=10_000)
            await page.wait_for_function(
                "document.getElementById('free').textContent === '9 free'", timeout=10_000)
            # text from outside is shown as text
            markup = "<img src=x onerror=window.pwned=1>"
            async with aiohttp.ClientSession() as http, http.post(
                    f"{daemon.url}/api/lanes/exit-1/open",
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                    json={"who": "op", "why": markup}) as resp:
                assert resp.status == 200
            await page.wait_for_selector("#events td:text('manual_open')", timeout=10_000)
            details = await page.inner_text("#events")
            assert markup in details
            assert await page.evaluate("window.pwned === undefined")
            assert await page.locator("#events img").count() == 0
            assert errors == []
            await browser.close()
    finally:
        assert await daemon.stop() == 0
        await central.runner.cleanup()
