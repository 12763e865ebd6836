"""The command line: hw-test on simulated and on broken devices, run with a bad config."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path

from gateway.hw_test import hw_test
from gateway.settings import load_default, parse_settings
from hardware.build import SIM_PINS
from hardware.sim import sim_factory

ROOT = Path(__file__).resolve().parents[2]


async def test_hw_test_on_simulated_devices_pulses_and_saves_a_shot(tmp_path):
    text = (ROOT / "config" / "demo.toml").read_text().replace(
        'data_dir = "./data/demo"', f'data_dir = "{tmp_path}"')
    out = io.StringIO()
    assert await hw_test(parse_settings(text, "demo.toml"), 0.05, True, out) == 0
    report = out.getvalue()
    assert "pulsing the open relay" in report and "pulsed the close relay" in report
    assert (tmp_path / "hw-test-entry-1.jpg").read_bytes()[:2] == b"\xff\xd8"


async def test_hw_test_reports_a_device_that_does_not_answer(tmp_path):
    settings = parse_settings(f"""
[gate]
data_dir = "{tmp_path}"
[[lanes]]
id = "entry-1"
direction = "entry"
[lanes.arming_loop]
kind = "serial"
port = "{tmp_path}/ttyNONE"
[lanes.safety_loop]
kind = "gpio"
pin = 27
[lanes.barrier]
kind = "gpio"
open_pin = 22
close_pin = 23
[lanes.camera]
kind = "none"
""", "t.toml")
    out = io.StringIO()
    assert await hw_test(settings, 0, False, out) == 1
    assert "FAULT" in out.getvalue() and "safety loop on GPIO 27" in out.getvalue()


def test_run_with_a_bad_config_exits_2_naming_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[web]\nport = 'eighty'\n")
    proc = subprocess.run([sys.executable, "-m", "gateway", "run", "--config", str(bad)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "web.port" in proc.stderr and str(bad) in proc.stderr


def test_the_embedded_default_is_the_demo_config():
    assert load_default().gate.id == "demo-gate"


async def test_hw_test_prints_loop_changes(tmp_path):
    text = (ROOT / "config" / "demo.toml").read_text().replace(
        'data_dir = "./data/demo"', f'data_dir = "{tmp_path}"')
    settings = parse_settings(text, "demo.toml")
    out = io.StringIO()
    factory = sim_factory()
    watching = asyncio.Event()
    task = asyncio.create_task(hw_test(settings, 0.3, False, out, factory=factory,
                                       on_watch=watching.set))
    await watching.wait()
    factory.pin(SIM_PINS.arming).drive_low()  # the detector closes its contact
    factory.pin(SIM_PINS.arming).drive_high()
    assert await task == 0
    report = out.getvalue()
    assert "arming loop OCCUPIED" in report and "arming loop clear" in report


def test_run_on_a_foreign_database_is_a_clear_error_and_the_file_is_kept(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    db = data / "gateway.sqlite3"
    db.write_bytes(b"not a database, an operator's notes\n" * 10)
    before = db.read_bytes()
    config = tmp_path / "g.toml"
    config.write_text(f'[gate]\ndata_dir = "{data}"\n[telemetry]\nenabled = false\n'
                      '[backup]\nenabled = false\n')
    proc = subprocess.run([sys.executable, "-m", "gateway", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 1
    assert "left untouched" in proc.stderr and "Traceback" not in proc.stderr
    assert db.read_bytes() == before


def test_run_with_the_web_port_taken_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "g.toml"
        config.write_text(f'[gate]\ndata_dir = "{tmp_path / "data"}"\n[web]\nport = {port}\n'
                          '[telemetry]\nenabled = false\n[backup]\nenabled = false\n')
        proc = subprocess.run([sys.executable, "-m", "gateway", "run", "--config",
                               str(config)], capture_output=True, text=True, timeout=60,
                              cwd=ROOT)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
