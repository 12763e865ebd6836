"""Install, upgrade, rollback and uninstall, in the order that keeps a gate recoverable.

An upgrade, step by step (each step says what it does on the terminal):

1. the new release is built beside the running one (the gate keeps working meanwhile);
2. ``check-config`` of the new release on the installed configuration: a refusal stops
   here, nothing else changed;
3. the service is stopped (relays off by the old release's ``ExecStopPost=``) and the
   database backed up with SQLite's online backup API: stopped first, so that no vehicle
   recorded between the backup and the switch can be lost by a rollback;
4. ``previous`` -> the old release, ``current`` -> the new one, the new release's unit
   installed; started; ``systemctl start`` returns on ``READY=1``, then ``/healthz`` is
   polled (see ``service.py``);
5. not healthy in time: stopped again, the database restored from the backup (the failed
   release's database kept aside under ``backups/``; an older release refuses a schema it
   does not know), the links and the unit put back, the old release started.

A rollback by hand does 3-5 for the previous release, restoring the backup only when the
database's schema is newer than that release knows (otherwise nothing recorded since the
upgrade is given up). Uninstall keeps the configuration and the data unless ``purge``.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.install import database, releases
from gateway.install.layout import UNIT_NAME, InstallError, Layout, read_config, read_environment
from gateway.install.releases import BuildOptions, Release
from gateway.install.service import Health, Systemctl, probe, wait_healthy
from gateway.install.system import System

CHECKOUT = Path(__file__).resolve().parents[2]  # the repository, when run from one
LOCK_FILE = "requirements.lock"
JOURNAL_HINT = "see: journalctl -u parking-gateway -n 50"


class ConfigRefused(InstallError):
    """The new release's ``check-config`` refused the installed configuration."""


@dataclass(frozen=True)
class InstallOptions:
    wheel: Path | None
    source: Path | None
    isolated_build: bool = True
    lock: Path | None = None
    reuse_deps: Path | None = None
    start: bool = False  # start (and enable) even if the service was not running
    keep: int = 3


@dataclass
class Gate:
    """What every step works on."""

    layout: Layout
    system: System
    systemctl: Systemctl
    health_timeout_s: float = 90.0

    def say(self, line: str) -> None:
        self.system.say(line)


def install(gate: Gate, opts: InstallOptions) -> int:
    layout, system = gate.layout, gate.system
    source = opts.source
    if opts.wheel is None and source is None:
        raise InstallError("nothing to install: give --wheel FILE or --source DIR")
    wheel = opts.wheel or releases.build_wheel(source or CHECKOUT, system,
                                               isolated=opts.isolated_build)
    try:
        system.ensure_user()
        todo = system.ensure_config(_found(source, "config/example.toml"))
        system.ensure_state()
        lock = opts.lock or _found(source, LOCK_FILE)
        new = releases.create(layout, wheel, _found(source, f"systemd/{UNIT_NAME}"),
                              BuildOptions(lock=lock, reuse_deps=opts.reuse_deps), system)
    finally:
        if opts.wheel is None:
            shutil.rmtree(wheel.parent)  # the wheel built for this install
    readme = _found(source, "README.md")
    if readme is not None:
        shutil.copyfile(readme, layout.opt / "README.md")  # the unit's Documentation=
    old = releases.linked(layout, layout.current)
    if old is not None and old.name == new.name:
        gate.say(f"==> {new.name} is already the current release: nothing to do")
        return 0
    if old is None:
        return _first_install(gate, new, opts, todo)
    code = _upgrade(gate, old, new, opts)
    releases.prune(layout, opts.keep, system)
    return code


def _found(source: Path | None, relative: str) -> Path | None:
    for base in (source, CHECKOUT):
        if base is not None and (base / relative).is_file():
            return base / relative
    return None


def _first_install(gate: Gate, new: Release, opts: InstallOptions, todo: list[str]) -> int:
    layout = gate.layout
    legacy = layout.opt / ".venv"  # the single-venv layout of the first install script
    running = gate.systemctl.is_active()  # that layout's service, still running
    if running or opts.start:
        check_config(gate, new)
    if running:
        gate.say("==> stopping the service running the old layout")
        gate.systemctl.stop()
        _backup(gate, read_config(layout).database, layout.backups /
                f"before-{new.name}.sqlite3")
    releases.switch(layout.current, new)
    _install_unit(gate, new)
    _link_command(gate)
    gate.say(f"==> installed release {new.name} (current -> releases/{new.name})")
    if legacy.exists():
        gate.say(f"    the old layout's files in {layout.opt} (.venv, gateway, hardware …) "
                 "are no longer used: remove them once this release runs")
    if not (running or opts.start):
        try:
            check_config(gate, new)
        except ConfigRefused as exc:
            gate.say(f"    the configuration needs work first:\n{exc}")
        for step in [*todo,
                     f"check it: parking-gateway check-config {layout.config}",
                     f"test the wiring: parking-gateway hw-test --config {layout.config}",
                     "then: systemctl enable --now parking-gateway"]:
            gate.say(f"    next: {step}")
        return 0
    gate.systemctl("enable", UNIT_NAME)
    healthy, seen = _start(gate, Health(None))
    gate.say(f"==> {new.name} {'is running' if healthy else 'did not get healthy'}: {seen}")
    if not healthy:
        gate.say(f"    {JOURNAL_HINT}")
    return 0 if healthy else 1


def check_config(gate: Gate, release: Release) -> None:
    layout = gate.layout
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **read_environment(
        layout.environment)}
    proc = gate.system.run([release.command(layout), "check-config", layout.config], env=env,
                           check=False)
    if proc.returncode != 0:
        raise ConfigRefused(f"release {release.name} refuses {layout.config} "
                            f"(check-config exit {proc.returncode}):\n{proc.stderr.strip()}")


def _upgrade(gate: Gate, old: Release, new: Release, opts: InstallOptions) -> int:
    layout = gate.layout
    gate.say(f"==> upgrading {old.name} -> {new.name}")
    check_config(gate, new)  # before anything is stopped
    config = read_config(layout)
    was_active = gate.systemctl.is_active()
    baseline = probe(config.health_url) if was_active else Health(None)
    before = releases.linked(layout, layout.previous)
    if was_active:
        gate.say(f"==> stopping {old.name} (/healthz was {baseline.describe()})")
        gate.systemctl.stop()
    saved = layout.backups / f"before-{new.name}.sqlite3"
    try:
        _backup(gate, config.database, saved)
    except InstallError:
        if was_active:
            gate.say(f"!!! the backup failed: starting {old.name} again, nothing switched")
            _start(gate, baseline)
        raise
    releases.switch(layout.previous, old)
    releases.switch(layout.current, new)
    _install_unit(gate, new)
    _link_command(gate)
    gate.say(f"==> current -> releases/{new.name}, previous -> releases/{old.name}")
    if not (was_active or opts.start):
        gate.say("==> the service was not running: not started "
                 "(systemctl start parking-gateway)")
        return 0
    healthy, seen = _start(gate, baseline)
    if healthy:
        gate.say(f"==> upgraded to {new.name}: {seen}")
        return 0
    gate.say(f"!!! {new.name} did not get healthy: {seen}; rolling back to {old.name}")
    gate.say(f"    {JOURNAL_HINT}")
    gate.systemctl.stop()
    _put_back(gate, config.database, saved, f"failed-{new.name}")
    releases.switch(layout.current, old)
    releases.switch(layout.previous, before)
    _install_unit(gate, old)
    healthy, seen = _start(gate, baseline)
    gate.say(f"==> rolled back to {old.name}: {seen}" if healthy else
             f"!!! rolled back to {old.name}, which did not get healthy either: {seen}")
    return 1


def rollback(gate: Gate) -> int:
    layout = gate.layout
    cur = releases.linked(layout, layout.current)
    prev = releases.linked(layout, layout.previous)
    if cur is None:
        raise InstallError(f"nothing installed under {layout.opt}")
    if prev is None:
        raise InstallError(f"no previous release to roll back to (current: {cur.name})")
    config = read_config(layout)
    saved = layout.backups / f"before-{cur.name}.sqlite3"
    version = database.schema_version(config.database)
    restore = version is not None and version > prev.schema
    if restore and (database.schema_version(saved) or prev.schema + 1) > prev.schema:
        raise InstallError(f"the database has schema {version}, {prev.name} knows up to "
                           f"{prev.schema}, and there is no backup from before "
                           f"{cur.name} ({saved}): nothing changed")
    gate.say(f"==> rolling back {cur.name} -> {prev.name}")
    was_active = gate.systemctl.is_active()
    if was_active:
        gate.systemctl.stop()
    if restore:
        kept = _put_back(gate, config.database, saved, f"rolled-back-from-{cur.name}")
        gate.say(f"    the database is back as it was before {cur.name} (schema "
                 f"{version} -> {database.schema_version(config.database)}); what was "
                 f"recorded since is kept in {kept}")
    elif version is not None:
        gate.say(f"    the database (schema {version}) suits {prev.name}: kept as it is")
    releases.switch(layout.current, prev)
    releases.switch(layout.previous, cur)
    _install_unit(gate, prev)
    if not was_active:
        gate.say("==> the service was not running: not started")
        return 0
    healthy, seen = _start(gate, Health(None))
    gate.say(f"==> rolled back to {prev.name}: {seen}" if healthy else
             f"!!! {prev.name} did not get healthy: {seen}\n    {JOURNAL_HINT}")
    return 0 if healthy else 1


def uninstall(gate: Gate, purge: bool) -> int:
    layout = gate.layout
    gate.say("==> stopping and disabling the service")
    gate.systemctl.stop()
    gate.systemctl("disable", UNIT_NAME, check=False)
    layout.unit.unlink(missing_ok=True)
    if layout.command.is_symlink() and os.readlink(layout.command) == Layout.COMMAND_TARGET:
        layout.command.unlink()
    gate.systemctl("daemon-reload")
    if layout.opt.exists():
        shutil.rmtree(layout.opt)
        gate.say(f"==> removed {layout.opt} (every release)")
    if purge:
        for path in (layout.etc, layout.state):
            shutil.rmtree(path, ignore_errors=True)
            gate.say(f"==> removed {path}")
        gate.system.remove_user()
    else:
        gate.say(f"==> kept {layout.etc} and {layout.state} (--purge removes them)")
    return 0


def list_releases(gate: Gate) -> int:
    layout = gate.layout
    cur = releases.linked(layout, layout.current)
    prev = releases.linked(layout, layout.previous)
    for r in releases.every(layout):
        mark = "current " if cur and r.name == cur.name else \
            "previous" if prev and r.name == prev.name else "        "
        gate.say(f"{mark} {r.name:<20} schema {r.schema:<3} installed {r.installed_at}")
    return 0


# -- helpers -------------------------------------------------------------------------------
def _start(gate: Gate, baseline: Health) -> tuple[bool, str]:
    gate.say("==> starting, then waiting for READY and /healthz")
    if not gate.systemctl.start():
        return False, "systemctl start failed (the daemon exited before READY)"
    return wait_healthy(gate.systemctl, read_config(gate.layout).health_url, baseline,
                        gate.health_timeout_s)


def _backup(gate: Gate, db: Path, saved: Path) -> None:
    saved.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not db.exists():
        saved.unlink(missing_ok=True)  # no database yet: a rollback removes the new one
        gate.say("==> no database yet: nothing to back up")
        return
    database.backup(db, saved)
    gate.say(f"==> database backed up to {saved} (schema {database.schema_version(saved)})")


def _put_back(gate: Gate, db: Path, saved: Path, label: str) -> Path:
    """The database as it was at ``saved`` (or none, if there was none); the one replaced
    is kept in the backups folder. Returns where."""
    kept = gate.layout.backups / f"{label}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}" \
        f".sqlite3"
    kept.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if db.exists():
        database.backup(db, kept)
    if saved.exists():
        database.restore(saved, db)
        gate.say(f"==> database restored from {saved} (the replaced one kept in {kept})")
    else:
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            path.unlink(missing_ok=True)
        gate.say(f"==> the new release's database removed (kept in {kept})")
    return kept


def _link_command(gate: Gate) -> None:
    link = gate.layout.command
    if link.is_symlink() and os.readlink(link) == Layout.COMMAND_TARGET:
        return
    if link.exists() or link.is_symlink():
        gate.say(f"    {link} exists and is not ours: left alone")
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(Layout.COMMAND_TARGET)
    gate.say(f"==> {link} -> /opt/parking-gateway/current/bin/parking-gateway")


def _install_unit(gate: Gate, release: Release) -> None:
    """The release's own unit file (it may name new paths or settings), if it has one."""
    unit = release.path(gate.layout) / UNIT_NAME
    target = gate.layout.unit
    if not unit.exists():
        if not target.exists():
            raise InstallError(f"no unit file in release {release.name} nor at {target}: "
                               "install from a checkout (systemd/install.sh)")
        return
    if target.exists() and target.read_bytes() == unit.read_bytes():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(unit, tmp)
    tmp.chmod(0o644)
    os.replace(tmp, target)
    gate.systemctl("daemon-reload")
