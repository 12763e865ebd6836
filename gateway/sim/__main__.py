"""``python -m gateway.sim central --port N``: the simulated central plate service."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from gateway.sim.central import SimCentralState, make_app
from gateway.sim.faults import MODES, FaultRequest, Faults, SimServer


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
    args = parser.parse_args(argv)
    state = SimCentralState(permits=set(args.permit), blocked=set(args.block))
    asyncio.run(_serve(state, args))
    return 0


async def _serve(state: SimCentralState, args: argparse.Namespace) -> None:
    faults = Faults()
    server = SimServer(make_app(state, faults), faults, args.host, args.port)
    await server.start()
    await faults.set(FaultRequest(mode=args.fault, fail_fraction=args.fail_fraction,
                                  delay_s=args.delay))
    print(f"sim central listening on {server.url} (fault mode {faults.mode})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


if __name__ == "__main__":
    sys.exit(main())
