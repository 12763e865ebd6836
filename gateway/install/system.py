"""What needs root (the service user, its groups, owners) and running commands.

Under ``--root DIR`` nothing is done as root: each such step is recorded as "skipped (needs
root): …" and printed, so that a test (or a curious installer) sees what a real install
would do. File modes are set either way; owners only as root.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from gateway.install.layout import SERVICE_USER, InstallError, Layout

DEVICE_GROUPS = ("gpio", "dialout", "video")  # GPIO, serial loop detectors, cameras


class System:
    """Runs commands and the steps that need root; records them instead under ``--root``."""

    def __init__(self, layout: Layout, *, privileged: bool) -> None:
        self.layout = layout
        self.privileged = privileged
        self.skipped: list[str] = []

    def say(self, line: str) -> None:
        print(line, flush=True)

    def skip(self, what: str) -> None:
        self.skipped.append(what)
        self.say(f"    skipped (needs root): {what}")

    def run(self, cmd: Sequence[str | Path], *, env: dict[str, str] | None = None,
            check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
        argv = [str(c) for c in cmd]
        proc = subprocess.run(argv, env=env, text=True, capture_output=True, check=False)
        if not quiet and proc.stdout.strip():
            for line in proc.stdout.strip().splitlines():
                self.say(f"    {line}")
        if check and proc.returncode != 0:
            raise InstallError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                               f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def as_root(self, cmd: Sequence[str]) -> None:
        if self.privileged:
            self.run(cmd)
        else:
            self.skip(" ".join(cmd))

    def chown(self, path: Path, user: str = "root", group: str = SERVICE_USER) -> None:
        if self.privileged:
            shutil.chown(path, user, group)
        else:
            self.skip(f"chown {user}:{group} {path}")

    # -- the service user ----------------------------------------------------------------
    def ensure_user(self) -> None:
        if not self.privileged:
            self.skip(f"useradd --system --home /var/lib/parking-gateway --shell "
                      f"/usr/sbin/nologin {SERVICE_USER}")
            for group in DEVICE_GROUPS:
                self.skip(f"groupadd --system {group} (if missing); usermod -aG {group} "
                          f"{SERVICE_USER}")
            return
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            self.run(["useradd", "--system", "--home", "/var/lib/parking-gateway",
                      "--shell", "/usr/sbin/nologin", SERVICE_USER])
        for group in DEVICE_GROUPS:
            try:
                grp.getgrnam(group)
            except KeyError:
                # no gpio group off a Pi; the unit's SupplementaryGroups= names it, and a
                # unit naming a group that does not exist does not start (216/GROUP)
                self.run(["groupadd", "--system", group])
            self.run(["usermod", "-aG", group, SERVICE_USER])

    def remove_user(self) -> None:
        self.as_root(["userdel", SERVICE_USER])

    # -- configuration and state ---------------------------------------------------------
    def ensure_config(self, example: Path | None) -> list[str]:
        """/etc/parking-gateway: the configuration and the secrets, written once and then
        never touched by an upgrade. Returns what the operator should do next."""
        etc = self.layout.etc
        etc.mkdir(parents=True, exist_ok=True)
        etc.chmod(0o750)
        self.chown(etc)
        todo: list[str] = []
        config = self.layout.config
        if not config.exists():
            if example is None:
                todo.append(f"write {config} (config/example.toml explains every key)")
            else:
                shutil.copyfile(example, config)
                config.chmod(0o640)
                self.chown(config)
                self.say(f"==> {config}: written from {example.name}; edit it for this gate")
                todo.append(f"edit {config} for this gate's lanes, pins and central service")
        env = self.layout.environment
        if not env.exists():
            token = secrets.token_urlsafe(24)
            fd = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            with os.fdopen(fd, "w") as f:
                f.write(f"GATEWAY_ADMIN_TOKEN={token}\n# GATEWAY_MQTT_PASSWORD=\n")
            self.chown(env)
            self.say(f"==> {env}: a new admin token written (GATEWAY_ADMIN_TOKEN)")
        return todo

    def ensure_state(self) -> None:
        state = self.layout.state
        state.mkdir(parents=True, exist_ok=True)
        state.chmod(0o750)
        self.chown(state, SERVICE_USER, SERVICE_USER)
        self.layout.backups.mkdir(exist_ok=True)
        self.layout.backups.chmod(0o700)  # plates are personal data: root only
