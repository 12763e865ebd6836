"""The demo shows everything: the embedded demo configuration, run as a process (its data
dir in a temporary directory, the web page on a free port, the sim central on a free
port), starts a private Mosquitto and the sim backup service on it, so every service is
online; then the README's walk-through (central in blackhole: the backup decides and the
breaker opens; the backup silent too: the cache decides and the record is queued; both
back: the queue drains); a stop leaves neither the broker running nor a relay energised."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.core.errors import ConfigError
from gateway.settings import parse_settings
from gateway.sim.private_broker import PrivateBroker
from hardware.sim import board_path
from tests.e2e.daemon import Daemon, demo_config, get, until

PLATE = "34KLM257"  # no O or I: the entry's reader may take them for 0 and 1




def alive(pid: int) -> bool:
    """Running (a zombie nobody has reaped yet is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def broker_pid(daemon: Daemon) -> int:
    m = next(re.search(r"mosquitto pid (\d+)", line) for line in daemon.log
             if "mosquitto pid" in line)
    assert m is not None
    return int(m.group(1))


def online(status: dict[str, Any]) -> bool:
    s = status["services"]
    return bool(s["central"]["circuit"] == "closed" and s["backup"]["circuit"] == "closed"
                and s["mqtt"]["connected"])


async def test_the_demo_starts_every_service_and_shows_each_fallback(
        tmp_path: Path) -> None:
    daemon = Daemon(demo_config(tmp_path))
    await daemon.start()
    pid = 0
    try:
        pid = broker_pid(daemon)
        assert alive(pid)
        assert (tmp_path / "data" / "mosquitto" / "mosquitto.conf").exists()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            await _walk_through(http, daemon.url)
    finally:
        code = await daemon.stop()
    assert code == 0, "\n".join(daemon.log[-30:])
    assert pid and not alive(pid), "the private broker outlived the daemon"
    for lane in ("entry-1", "exit-1"):
        levels = json.loads(board_path(tmp_path / "data", lane).read_text())
        assert not any(levels.values()), (lane, levels)


async def _walk_through(http: aiohttp.ClientSession, url: str) -> None:
    """The README's steps: every service online; central in blackhole, the backup decides
    and the breaker opens; the backup silent too, a parked car leaves on the cache and its
    record is queued; both back, the queue drains."""
    # the entry's camera gives frames only: wait for the gate's own reader, or the plate
    # goes to the services as an image that the backup cannot read
    status = await until(lambda: _status_if(
        http, url, lambda s: online(s) and bool(s["plate_reader"]["ready"])), 20)
    assert status["sim_backup"]["mode"] == "ok"
    assert not [p for p in status["problems"] if "private broker" in p]
    after = max((e["seq"] for e in await get(http, f"{url}/api/events?limit=1000")), default=0)
    await _post(http, f"{url}/api/sim/central/fault", {"mode": "blackhole"})
    await _post(http, f"{url}/api/sim/lanes/entry-1/vehicles", {"plate": PLATE}, 202)
    entry = await until(lambda: _saga_of(http, url, after, "entry"), 20, every_s=0.1)
    assert entry["type"] == "saga_completed", entry
    assert entry["data"]["sources"]["verify_license_plate"] == "backup", entry
    assert entry["data"]["sources"]["create_entry_record"] == "backup", entry
    await until(lambda: _status_if(
        http, url, lambda s: s["services"]["central"]["circuit"] == "open"), 15, every_s=0.1)
    await _post(http, f"{url}/api/sim/backup/fault", {"mode": "blackhole"})
    await _post(http, f"{url}/api/sim/lanes/exit-1/vehicles", {"plate": PLATE}, 202)
    exit_ = await until(lambda: _saga_of(http, url, after, "exit"), 20, every_s=0.1)
    assert exit_["type"] == "saga_completed", exit_
    assert exit_["data"]["sources"]["verify_license_plate"] == "cache", exit_
    assert exit_["data"]["sources"]["create_exit_record"] == "queue", exit_
    await _post(http, f"{url}/api/sim/backup/fault", {"mode": "ok"})
    await _post(http, f"{url}/api/sim/central/fault", {"mode": "ok"})
    await until(lambda: _status_if(http, url, lambda s: s["offline_queue"]["pending"] == 0
                                   and s["services"]["central"]["circuit"] == "closed"),
                20, every_s=0.1)


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any],
                expect: int = 200) -> None:
    async with http.post(url, json=body) as resp:
        assert resp.status == expect, await resp.text()


async def _saga_of(http: aiohttp.ClientSession, url: str, after: int,
                   kind: str) -> dict[str, Any] | None:
    """The finished saga of ``kind`` that let the test's plate in or out, after event
    ``after``."""
    found = await get(http, f"{url}/api/events?after_seq={after}&limit=1000")
    sagas = {e["data"].get("saga_id") for e in found
             if e["type"] in ("vehicle_entered", "vehicle_exited")
             and e["data"].get("license_plate") == PLATE}
    return next((e for e in found if e["type"].startswith("saga_")
                 and e["data"].get("saga") == kind and e["data"].get("saga_id") in sagas),
                None)


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


async def test_a_killed_daemon_takes_its_broker_with_it(tmp_path: Path) -> None:
    daemon = Daemon(demo_config(tmp_path))
    await daemon.start()
    pid = broker_pid(daemon)
    assert alive(pid)
    assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    await until(lambda: not alive(pid), 5)
