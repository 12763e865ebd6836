"""Where an installed gateway lives, under a root ("/" on a gate, a temporary folder in tests).

    /opt/parking-gateway/releases/<version>/   one virtual environment per release
    /opt/parking-gateway/current -> releases/<version>   what the unit runs
    /opt/parking-gateway/previous -> releases/<version>  what --rollback goes back to
    /etc/parking-gateway/gateway.toml, environment       kept across upgrades and uninstall
    /var/lib/parking-gateway/gateway.sqlite3             the database (gate.data_dir)
    /var/lib/parking-gateway/backups/                    a copy taken before each upgrade
    /etc/systemd/system/parking-gateway.service
    /usr/local/bin/parking-gateway -> /opt/parking-gateway/current/bin/parking-gateway

The installer reads only two things from the configuration (with ``tomllib``, so that it
runs on a bare Python from a checkout): where the database is and where ``/healthz``
answers. Everything else is the daemon's business (``check-config``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from gateway.core.errors import GatewayError

UNIT_NAME = "parking-gateway.service"
SERVICE_USER = "parking-gateway"
DATABASE_NAME = "gateway.sqlite3"  # the daemon's name for it (Settings.db_path)


class InstallError(GatewayError):
    """An install, upgrade, rollback or uninstall could not be done; nothing was left
    half-switched (the message says what state the gate is in)."""


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def opt(self) -> Path:
        return self.root / "opt" / "parking-gateway"

    @property
    def releases(self) -> Path:
        return self.opt / "releases"

    @property
    def current(self) -> Path:
        return self.opt / "current"

    @property
    def previous(self) -> Path:
        return self.opt / "previous"

    @property
    def etc(self) -> Path:
        return self.root / "etc" / "parking-gateway"

    @property
    def config(self) -> Path:
        return self.etc / "gateway.toml"

    @property
    def environment(self) -> Path:
        return self.etc / "environment"

    @property
    def state(self) -> Path:
        return self.root / "var" / "lib" / "parking-gateway"

    @property
    def backups(self) -> Path:
        return self.state / "backups"

    @property
    def unit(self) -> Path:
        return self.root / "etc" / "systemd" / "system" / UNIT_NAME

    @property
    def command(self) -> Path:
        """``parking-gateway`` on the PATH: a link to the current release's."""
        return self.root / "usr" / "local" / "bin" / "parking-gateway"

    # relative, so that it resolves under any root
    COMMAND_TARGET = "../../../opt/parking-gateway/current/bin/parking-gateway"

    def inside(self, path: str | Path) -> Path:
        """A path from the configuration (as the daemon sees it) as the installer sees it:
        under the root, and relative paths from the unit's WorkingDirectory (the state
        directory)."""
        p = Path(path)
        if not p.is_absolute():
            return self.state / p
        if self.root == Path("/") or p.is_relative_to(self.root):
            return p
        return self.root / p.relative_to("/")


@dataclass(frozen=True)
class GateConfig:
    database: Path
    health_url: str | None  # None: the web server is on a random port (port = 0)


def read_config(layout: Layout) -> GateConfig:
    try:
        data = tomllib.loads(layout.config.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InstallError(f"{layout.config}: cannot read the configuration ({exc})") from None
    gate = data.get("gate", {})
    web = data.get("web", {})
    data_dir = layout.inside(str(gate.get("data_dir", "/var/lib/parking-gateway")))
    host = str(web.get("host", "127.0.0.1"))
    port = int(web.get("port", 8080))
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{port}/healthz" if port else None
    return GateConfig(database=data_dir / DATABASE_NAME, health_url=url)


def read_environment(path: Path) -> dict[str, str]:
    """The unit's ``EnvironmentFile=`` (KEY=VALUE lines), for running ``check-config`` with
    the same secrets the daemon gets."""
    env: dict[str, str] = {}
    if not path.exists():
        return env
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        env[key.strip()] = value.strip().strip('"').strip("'")
    return env
