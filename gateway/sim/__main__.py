"""``python -m gateway.sim central --port N``: the simulated central plate service."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from gateway.sim.backup import BACKUP_MODES, SimBackup
from gateway.sim.central import SimCentralState, make_app
from gateway.sim.faults import MODES, FaultRequest, Faults, SimServer
from gateway.telemetry.mqtt import MqttConnection, MqttOptions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.sim")
    sub = parser.add_subparsers(dest="service", required=True)
    central = sub.add_parser("central", help="the simulated central plate service (HTTP)")
    central.add_argument("--host", default="127.0.0.1")
    central.add_argument("--port", type=int, default=9000)
    central.add_argument("--permit", action="append", default=[], metavar="PLATE",
                         help="a plate with a permit (repeatable)")
    central.add_argument("--block", action="append", default=[], metavar="PLATE",
                         help="a blocked plate (repeatable)")
    central.add_argument("--fault", choices=MODES, default="ok",
                         help="start in this fault mode (switch later: POST /_sim/fault)")
    central.add_argument("--fail-fraction", type=float, default=0.0)
    central.add_argument("--delay", type=float, default=2.0, help="seconds, for --fault slow")
    backup = sub.add_parser("backup", help="the simulated backup plate service (MQTT v5)")
    backup.add_argument("--mqtt", default="127.0.0.1:1883", metavar="HOST:PORT")
    backup.add_argument("--prefix", default="parking")
    backup.add_argument("--mode", choices=BACKUP_MODES, default="ok")
    args = parser.parse_args(argv)
    if args.service == "backup":
        asyncio.run(_serve_backup(args))
        return 0
    state = SimCentralState(permits=set(args.permit), blocked=set(args.block))
    asyncio.run(_serve(state, args))
    return 0


async def _until_signalled() -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve_backup(args: argparse.Namespace) -> None:
    host, _, port = args.mqtt.rpartition(":")
    conn = MqttConnection(MqttOptions(host or "127.0.0.1", int(port), client_id="sim-backup"))
    backup = SimBackup(conn, args.prefix)
    backup.mode = args.mode
    conn.start()
    print(f"sim backup on mqtt://{args.mqtt} (prefix {args.prefix}, mode {args.mode})",
          flush=True)
    try:
        await _until_signalled()
    finally:
        await conn.stop()


async def _serve(state: SimCentralState, args: argparse.Namespace) -> None:
    faults = Faults()
    server = SimServer(make_app(state, faults), faults, args.host, args.port)
    await server.start()
    await faults.set(FaultRequest(mode=args.fault, fail_fraction=args.fail_fraction,
                                  delay_s=args.delay))
    print(f"sim central listening on {server.url} (fault mode {faults.mode})", flush=True)
    try:
        await _until_signalled()
    finally:
        await server.stop()


if __name__ == "__main__":
    sys.exit(main())
