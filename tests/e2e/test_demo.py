"""The demo shows everything: the embedded demo configuration, run as a process (its data
dir in a temporary directory, the web page on a free port, the sim central on a free
port), starts a private Mosquitto and the sim backup service on it, so every service is
online; the sim central switched to blackhole, a vehicle is decided by the backup; a stop
leaves neither the broker running nor a relay energised."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.core.errors import ConfigError
from gateway.settings import embedded_default_text, parse_settings
from gateway.sim.private_broker import PrivateBroker
from hardware.sim import board_path
from tests.broker import free_port
from tests.e2e.daemon import Daemon, get, until

PLATE = "34DMO042"


def demo_config(tmp: Path) -> Path:
    text = embedded_default_text()
    for old, new in (('data_dir = "./data/demo"', f'data_dir = "{tmp / "data"}"'),
                     ("port = 8080", "port = 0"),
                     ("http://127.0.0.1:9000", f"http://127.0.0.1:{free_port()}")):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    config = tmp / "demo.toml"
    config.write_text(text)
    return config


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def online(status: dict[str, Any]) -> bool:
    s = status["services"]
    return bool(s["central"]["circuit"] == "closed" and s["backup"]["circuit"] == "closed"
                and s["mqtt"]["connected"])


async def test_the_demo_starts_every_service_and_the_backup_decides(
        tmp_path: Path) -> None:
    daemon = Daemon(demo_config(tmp_path))
    await daemon.start()
    pid = 0
    try:
        m = next(re.search(r"mosquitto pid (\d+)", line) for line in daemon.log
                 if "mosquitto pid" in line)
        assert m is not None
        pid = int(m.group(1))
        assert alive(pid)
        assert (tmp_path / "data" / "mosquitto" / "mosquitto.conf").exists()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            status = await until(lambda: _status_if(http, daemon.url, online), 15)
            assert status["sim_backup"]["mode"] == "ok"
            assert not [p for p in status["problems"] if "private broker" in p]
            events = await get(http, f"{daemon.url}/api/events?limit=1000")
            after = max((e["seq"] for e in events), default=0)
            async with http.post(f"{daemon.url}/api/sim/central/fault",
                                 json={"mode": "blackhole"}) as resp:
                assert resp.status == 200
            async with http.post(f"{daemon.url}/api/sim/lanes/entry-1/vehicles",
                                 json={"plate": PLATE}) as resp:
                assert resp.status == 202

            async def decided_by_backup() -> dict[str, Any] | None:
                found = await get(http, f"{daemon.url}/api/events?after_seq={after}"
                                        "&limit=1000")
                return next((e for e in found if e["type"].startswith("saga_")
                             and "backup" in (e["data"].get("sources") or {}).values()),
                            None)

            event = await until(decided_by_backup, 20, every_s=0.1)
            assert event["data"]["sources"].get("verify_license_plate") == "backup", event
    finally:
        code = await daemon.stop()
    assert code == 0, "\n".join(daemon.log[-30:])
    assert pid and not alive(pid), "the private broker outlived the daemon"
    for lane in ("entry-1", "exit-1"):
        levels = json.loads(board_path(tmp_path / "data", lane).read_text())
        assert not any(levels.values()), (lane, levels)


async def _status_if(http: aiohttp.ClientSession, url: str,
                     check: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    status = await get(http, f"{url}/api/status")
    return status if check(status) else None


def test_the_private_broker_and_the_sim_backup_need_simulation() -> None:
    for key in ("private_broker", "start_backup"):
        with pytest.raises(ConfigError) as exc:
            parse_settings(f"[simulation]\nenabled = false\n{key} = true\n", "t.toml")
        assert f"simulation.{key}: only with simulation.enabled = true" in str(exc.value)


async def test_a_missing_mosquitto_is_a_fault_not_a_crash(tmp_path: Path) -> None:
    broker = PrivateBroker(tmp_path, binary=str(tmp_path / "no-such-mosquitto"))
    assert await broker.start() is False
    assert broker.fault.startswith("private broker: cannot run") and broker.pid is None
    await broker.stop()  # nothing to stop, no error
