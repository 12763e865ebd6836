"""``systemctl reload parking-gateway`` (what the README tells an operator to run after
editing gateway.toml), through ``tests/integration/fake_systemd.py`` as systemd 252 does
it: the repository's unit file, its ``ExecReload=`` run with ``$MAINPID`` against the
daemon the unit started (a real process). The daemon reloads (its event), and tells
systemd ``RELOADING=1`` (with ``MONOTONIC_USEC=``) and then ``READY=1`` with the outcome as
its status line, so the unit is "reloading" until the new settings are in force and active
again after."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

from gateway.sim.central import SimCentralState
from tests.broker import free_port
from tests.conftest import start_central
from tests.e2e.daemon import ADMIN_TOKEN, e2e_config, until
from tests.integration.fake_systemd import calls

REPO = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).with_name("fake_systemd.py")
UNIT = "parking-gateway.service"


def gate_root(root: Path, unit_text: str, central_url: str, port: int) -> Path:
    """``root`` laid out as the installer does it, the release being this checkout run by
    the test's interpreter."""
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    (root / "etc" / "systemd" / "system" / UNIT).write_text(unit_text)
    command = root / "opt" / "parking-gateway" / "current" / "bin" / "parking-gateway"
    command.parent.mkdir(parents=True)
    command.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{sys.executable}" -m gateway '
                       '"$@"\n')
    command.chmod(0o755)
    etc = root / "etc" / "parking-gateway"
    etc.mkdir()
    config = e2e_config(root / "var" / "lib" / "parking-gateway", central_url,
                        "[permits]\nsync = false\n")
    (etc / "gateway.toml").write_text(config.replace("port = 0", f"port = {port}"))
    (etc / "environment").write_text(f"GATEWAY_ADMIN_TOKEN={ADMIN_TOKEN}\n")
    return root


async def systemctl(root: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(FAKE), *args, env={**os.environ, "FAKE_SYSTEMD_ROOT": str(root)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = (await asyncio.wait_for(proc.communicate(), 120))[0].decode()
    assert proc.returncode is not None
    return proc.returncode, out


def events(port: int, type_: str) -> list[Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/events?limit=1000",
                                timeout=5) as resp:
        return [e for e in json.load(resp) if e["type"] == type_]


async def test_systemctl_reload_runs_the_units_reload_and_the_daemon_reloads(tmp_path):
    central = await start_central(SimCentralState())
    port = free_port()
    root = gate_root(tmp_path, (REPO / "systemd" / UNIT).read_text(), central.url, port)
    try:
        code, out = await systemctl(root, "start", UNIT)
        assert code == 0, out + (root / "run" / "fake-systemd" / f"{UNIT}.journal").read_text()
        mainpid = (root / "run" / "fake-systemd" / f"{UNIT}.mainpid").read_text().strip()
        config = root / "etc" / "parking-gateway" / "gateway.toml"
        config.write_text(config.read_text().replace(f"port = {port}", f"port = {free_port()}")
                          + '[logging]\nlevel = "debug"\n')
        mark = len(calls(root))

        code, out = await systemctl(root, "reload", UNIT)
        assert code == 0, out  # systemd 252 without ExecReload=: "not applicable"
        assert f"ExecReload /usr/bin/kill -HUP {mainpid}" in calls(root)[mark:]
        [reloaded] = await until(lambda: events(port, "config_reloaded"), 15,
                                 "a config_reloaded event")
        assert reloaded["data"]["applied"] == ["logging.level"]
        assert reloaded["data"]["needs_restart"] == ["web.port"]  # (still on ``port``)
        ready = "notify READY=1 STATUS=serving 2 lane(s); reloaded, a restart is needed " \
            "for web.port"
        await until(lambda: ready in calls(root)[mark:], 10, "READY=1 after the reload")
        said = [c for c in calls(root)[mark:] if c.startswith("notify ")]
        assert said[0].startswith("notify RELOADING=1 MONOTONIC_USEC=") and \
            said[1:] == [ready], said
        code, out = await systemctl(root, "is-active", UNIT)
        assert (code, out.strip()) == (0, "active")
    finally:
        await systemctl(root, "stop", UNIT)
        await central.runner.cleanup()
    *_, exited, after = calls(root)
    assert exited == "exited 0" and after.startswith("ExecStopPost "), (exited, after)


async def test_without_a_reload_command_systemd_252_refuses_the_reload(tmp_path):
    # what the unit did before ExecReload=: the fake models systemd's refusal, so the test
    # above fails on it
    unit = "\n".join(line for line in (REPO / "systemd" / UNIT).read_text().splitlines()
                     if not line.startswith("ExecReload="))
    root = gate_root(tmp_path, unit, "http://127.0.0.1:9", free_port())
    code, out = await systemctl(root, "reload", UNIT)
    assert code == 1
    assert f"Job type reload is not applicable for unit {UNIT}" in out
