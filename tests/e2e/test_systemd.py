"""Running under systemd: readiness, watchdog and stopping notifications; the unit file."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from gateway.sim.central import SimCentralState
from tests.conftest import start_central
from tests.e2e.daemon import Daemon, e2e_config

ROOT = Path(__file__).resolve().parents[2]


async def test_ready_watchdog_and_stopping_are_notified(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    central = await start_central(SimCentralState())
    config = tmp_path / "gateway.toml"
    config.write_text(e2e_config(tmp_path / "data", central.url))
    daemon = Daemon(config, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    loop = asyncio.get_running_loop()
    messages: list[str] = []

    async def receive_until(word: str) -> None:
        while not any(word in m for m in messages):
            messages.append((await asyncio.wait_for(loop.sock_recv(sock, 1024), 10)).decode())

    try:
        await daemon.start()
        await receive_until("READY=1")
        await receive_until("WATCHDOG=1")
        assert await daemon.stop() == 0
        await receive_until("STOPPING=1")
    finally:
        sock.close()
        await central.runner.cleanup()
    assert messages[0].startswith("READY=1")


def test_unit_file_has_no_inline_comments_and_runs_the_console_script():
    unit = (ROOT / "systemd" / "parking-gateway.service").read_text()
    settings = [line for line in unit.splitlines() if "=" in line and not line.startswith("#")]
    for line in settings:
        assert " #" not in line and ";" not in line.split("=", 1)[1], line
    keys = dict(line.split("=", 1) for line in settings if not line.startswith("DeviceAllow"))
    assert keys["Type"] == "notify" and int(keys["WatchdogSec"]) > 0
    assert keys["ExecStart"].endswith("parking-gateway run --config "
                                      "/etc/parking-gateway/gateway.toml")
    assert keys["RestartPreventExitStatus"] == "2"
    assert "ProcSubset" not in keys  # gpiozero reads /proc
