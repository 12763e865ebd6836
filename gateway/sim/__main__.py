"""``python -m gateway.sim central --port N``: the simulated central plate service."""

from __future__ import annotations

import argparse
import sys

from aiohttp import web

from gateway.sim.central import SimCentralState, make_app


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
    args = parser.parse_args(argv)
    state = SimCentralState(permits=set(args.permit), blocked=set(args.block))
    print(f"sim central listening on http://{args.host}:{args.port}", flush=True)
    web.run_app(make_app(state), host=args.host, port=args.port, print=None,
                access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
