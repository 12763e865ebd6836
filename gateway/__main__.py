"""Command line: ``python -m gateway {run,check-config,hw-test,relays-off,monitor}``.
Exit codes: 0 clean stop, 2 configuration error, 1 anything else."""

from __future__ import annotations

import argparse
import os
import sys

from gateway.core.errors import ConfigError, GatewayError
from gateway.install import cli as installer
from gateway.ops import cli as ops
from gateway.settings import config_warnings, load_default, load_settings, mqtt_password

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _check_config(path: str) -> int:
    try:
        settings = load_settings(path, os.environ)
    except ConfigError as exc:
        print(f"{len(exc.problems)} problem(s) in the configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    for warning in config_warnings(settings):
        print(f"warning: {warning}")
    print(f"{path}: OK (gate {settings.gate.id}, {len(settings.lanes)} lane(s), "
          f"{sum(z.spaces for z in settings.zones)} spaces)")
    return EXIT_OK


def _run(path: str | None) -> int:
    from gateway.app import run_daemon

    try:
        settings = load_settings(path, os.environ) if path else load_default(os.environ)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    try:
        return int(run_daemon(settings))
    except GatewayError as exc:  # the database, the web port …: say what, not a traceback
        print(f"cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _hw_test(path: str, seconds: float, pulse: bool) -> int:
    import asyncio

    from gateway.hw_test import hw_test

    try:
        settings = load_settings(path, os.environ)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(hw_test(settings, seconds, pulse, sys.stdout))


def _relays_off(path: str) -> int:
    from gateway.relays_off import relays_off

    try:
        settings = load_settings(path, os.environ)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    return relays_off(settings, sys.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="parking-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("--config", help="configuration file (default: the embedded demo)")
    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("path")
    hw = sub.add_parser("hw-test", help="installer's check of loops, relays and camera")
    hw.add_argument("--config", required=True)
    hw.add_argument("--seconds", type=float, default=10.0,
                    help="how long to watch the loops (default 10)")
    hw.add_argument("--pulse", action="store_true",
                    help="also pulse the barrier relays and the lights")
    off = sub.add_parser("relays-off", help="drive every relay de-energised (systemd's "
                         "ExecStopPost=, after any exit of the daemon)")
    off.add_argument("--config", required=True)
    mon = sub.add_parser("monitor", help="follow gates over MQTT: events, state, seq gaps")
    mon.add_argument("--mqtt", default="127.0.0.1:1883", metavar="HOST:PORT")
    mon.add_argument("--gate", help="one gate id (default: all gates)")
    mon.add_argument("--prefix", default="parking")
    mon.add_argument("--username", default="")
    ops.add_commands(sub)  # status, backup, export (gateway/ops/cli.py)
    installer.add_commands(sub)  # install, upgrade, rollback, uninstall, releases
    args = parser.parse_args(argv)
    if args.command in installer.COMMANDS:
        return installer.run(args)
    if args.command in ops.COMMANDS:
        return ops.run(args)
    if args.command == "monitor":
        import asyncio

        from gateway.telemetry.monitor import run_monitor

        host, _, port = args.mqtt.rpartition(":")
        return asyncio.run(run_monitor(host or "127.0.0.1", int(port), args.gate, args.prefix,
                                       sys.stdout, args.username,
                                       mqtt_password(os.environ)))
    if args.command == "check-config":
        return _check_config(args.path)
    if args.command == "hw-test":
        return _hw_test(args.config, args.seconds, args.pulse)
    if args.command == "relays-off":
        return _relays_off(args.config)
    return _run(args.config)


if __name__ == "__main__":
    sys.exit(main())
