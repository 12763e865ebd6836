"""``systemd-analyze verify`` on the unit file, in a temporary root where the commands it
names exist (as the installer lays them out; test_install.py verifies the installed tree
too). systemd only warns, exit code 0, about a setting it cannot parse and then ignores it
(an inline comment, a misspelt value or key): any output at all fails the test."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.integration.fake_systemd import analyze_verify

REPO = Path(__file__).resolve().parents[2]
UNIT = "parking-gateway.service"


def stub_root(root: Path, unit_text: str) -> Path:
    """``root`` with the unit installed and an executable at each path its Exec*= lines
    name."""
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    (units / UNIT).write_text(unit_text)
    for line in unit_text.splitlines():
        if line.startswith("Exec") and "=" in line:
            command = root / shlex.split(line.split("=", 1)[1].lstrip("-@:+!"))[0][1:]
            command.parent.mkdir(parents=True, exist_ok=True)
            command.write_text("#!/bin/sh\n")
            command.chmod(0o755)
    return root


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    unit = (REPO / "systemd" / UNIT).read_text()
    assert "/opt/parking-gateway/current/bin/parking-gateway run" in unit
    assert analyze_verify(stub_root(tmp_path, unit)) == ""


def test_what_systemd_would_silently_ignore_is_reported(tmp_path):
    unit = (REPO / "systemd" / UNIT).read_text()
    broken = unit.replace("RestartSec=2\n", "RestartSec=2 # seconds\n").replace(
        "Type=notify\n", "Type=notfy\n")
    assert broken != unit
    said = analyze_verify(stub_root(tmp_path, broken))
    assert "Failed to parse service type, ignoring: notfy" in said
    assert "Failed to parse sec value, ignoring: 2 # seconds" in said


def test_a_command_that_is_not_there_is_reported(tmp_path):
    unit = (REPO / "systemd" / UNIT).read_text()
    root = stub_root(tmp_path, unit)
    (root / "opt" / "parking-gateway" / "current" / "bin" / "parking-gateway").unlink()
    assert "is not executable: No such file or directory" in analyze_verify(root)


def test_without_systemd_analyze_the_test_fails_naming_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to run on it
    with pytest.raises(pytest.fail.Exception) as failed:
        analyze_verify(stub_root(tmp_path / "root", (REPO / "systemd" / UNIT).read_text()))
    assert "systemd-analyze is not installed: install the Debian package systemd" in str(
        failed.value)
