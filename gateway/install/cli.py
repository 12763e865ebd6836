"""``parking-gateway {install,upgrade,rollback,uninstall,releases}`` and
``python -m gateway.install …`` (what ``systemd/install.sh`` runs from a checkout, on the
system's Python: this package needs nothing beyond the standard library).

Exit codes as the daemon's: 0 done, 1 failed (an upgrade that was rolled back included),
2 the configuration was refused by the new release (nothing changed).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
from pathlib import Path
from typing import Any

from gateway.install import lifecycle
from gateway.install.layout import InstallError, Layout
from gateway.install.service import Systemctl
from gateway.install.system import System

COMMANDS = {
    "install": "install a release, or upgrade to it (with rollback if it does not get healthy)",
    "upgrade": "the same as install",
    "rollback": "go back to the previous release (and its database, if its schema needs it)",
    "uninstall": "remove the releases and the unit; --purge also the configuration and data",
    "releases": "list the installed releases",
}


def add_commands(sub: Any) -> None:
    """The installer's subcommands, on ``parking-gateway``'s parser or on its own."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", type=Path, default=Path("/"),
                        help="install under this folder instead of / (tests: no root, "
                        "no systemd; what needs root is printed, not done)")
    common.add_argument("--systemctl", metavar="COMMAND",
                        help="the systemctl to call (default: systemctl; with --root: none, "
                        "the calls are printed)")
    common.add_argument("--health-timeout", type=float, default=90.0, metavar="S",
                        help="how long a started release has to get healthy (default 90)")
    for name in ("install", "upgrade"):
        p = sub.add_parser(name, parents=[common], help=COMMANDS[name])
        what = p.add_mutually_exclusive_group()
        what.add_argument("--wheel", type=Path, help="a built parking_gateway-*.whl")
        what.add_argument("--source", type=Path,
                          help="a checkout to build the wheel from (default: this one)")
        p.add_argument("--lock", type=Path, help=f"requirements with hashes (default: "
                       f"{lifecycle.LOCK_FILE} of the checkout)")
        p.add_argument("--no-build-isolation", action="store_true",
                       help="build the wheel with the setuptools already installed")
        p.add_argument("--reuse-deps", type=Path, metavar="SITE_PACKAGES",
                       help="take the dependencies from this site-packages through a .pth "
                       "instead of installing them (offline tests; not for a gate)")
        p.add_argument("--start", action="store_true",
                       help="start (and enable) the service even if it was not running")
        p.add_argument("--keep", type=int, default=3,
                       help="releases kept, current and previous included (default 3)")
    sub.add_parser("rollback", parents=[common], help=COMMANDS["rollback"])
    un = sub.add_parser("uninstall", parents=[common], help=COMMANDS["uninstall"])
    un.add_argument("--purge", action="store_true",
                    help="also remove /etc/parking-gateway and /var/lib/parking-gateway "
                    "(the database and its backups) and the service user")
    sub.add_parser("releases", parents=[common], help=COMMANDS["releases"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.install", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_commands(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    root: Path = args.root.resolve()
    privileged = root == Path("/")
    if privileged and os.geteuid() != 0 and args.command != "releases":
        print("run as root (sudo), or give --root DIR", file=sys.stderr)
        return 1
    os.umask(0o022)  # the service user reads the releases (root's umask may be 077)
    layout = Layout(root)
    system = System(layout, privileged=privileged)
    command = args.systemctl if args.systemctl or not privileged else "systemctl"
    gate = lifecycle.Gate(layout, system, Systemctl(command, system), args.health_timeout)
    lock = None if args.command == "releases" else _one_at_a_time(layout)
    if lock == -1:
        return 1
    try:
        if args.command in ("install", "upgrade"):
            source = args.source
            if args.wheel is None and source is None and (
                    lifecycle.CHECKOUT / "pyproject.toml").exists():
                source = lifecycle.CHECKOUT
            return lifecycle.install(gate, lifecycle.InstallOptions(
                wheel=args.wheel, source=source, isolated_build=not args.no_build_isolation,
                lock=args.lock, reuse_deps=args.reuse_deps, start=args.start,
                keep=args.keep))
        if args.command == "rollback":
            return lifecycle.rollback(gate)
        if args.command == "uninstall":
            return lifecycle.uninstall(gate, args.purge)
        return lifecycle.list_releases(gate)
    except lifecycle.ConfigRefused as exc:
        print(f"refused, nothing changed: {exc}", file=sys.stderr)
        return 2
    except InstallError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if lock is not None:
            os.close(lock)
        if system.skipped:
            print(f"({len(system.skipped)} step(s) skipped: they need root; see above)")


def _one_at_a_time(layout: Layout) -> int:
    """An exclusive lock for the whole command (two upgrades at once would switch links and
    databases under each other); -1, said on stderr, when another one holds it."""
    path = layout.root / "run" / "parking-gateway-install.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        print(f"another install, upgrade, rollback or uninstall is running ({path})",
              file=sys.stderr)
        return -1
    return fd
