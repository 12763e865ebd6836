"""A daemon killed with SIGKILL while a relay is energised: the board keeps the output
driven (as a Raspberry Pi's kernel does, modelled by the simulated board's state file)
until ``relays-off`` (systemd's ``ExecStopPost=``) drives it de-energised."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import aiohttp

from gateway.sim.central import SimCentralState
from hardware.build import SIM_PINS
from hardware.sim import board_path
from tests.conftest import start_central
from tests.e2e.daemon import ROOT, Daemon, long_pulse_config, until

OPEN = f"GPIO{SIM_PINS.open_relay}"
CLOSE = f"GPIO{SIM_PINS.close_relay}"


async def test_relays_off_de_energises_what_a_killed_daemon_left_on(tmp_path):
    central = await start_central(SimCentralState())
    config = tmp_path / "gateway.toml"
    config.write_text(long_pulse_config(tmp_path / "data", central.url))
    board = board_path(tmp_path / "data", "entry-1")
    daemon = Daemon(config)
    await daemon.start()
    try:
        assert json.loads(board.read_text())[OPEN] is False  # de-energised from the start
        async with aiohttp.ClientSession() as http, http.post(
                f"{daemon.url}/api/sim/lanes/entry-1/vehicles",
                json={"plate": "34ABC123"}) as resp:
            assert resp.status == 202
        await until(lambda: json.loads(board.read_text()).get(OPEN), 15)
        assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        await central.runner.cleanup()
    assert json.loads(board.read_text())[OPEN] is True  # still driven after the crash
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "relays-off", "--config", str(config), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = (await proc.communicate())[0].decode()
    assert proc.returncode == 0, output
    levels = json.loads(board.read_text())
    assert levels[OPEN] is False and levels[CLOSE] is False
    assert "entry-1: open relay de-energised" in output
