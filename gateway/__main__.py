"""Command line: ``python -m gateway check-config``. Exit codes: 0 clean stop,
2 configuration error, 1 anything else."""

from __future__ import annotations

import argparse
import os
import sys

from gateway.core.errors import ConfigError
from gateway.settings import load_settings

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _check_config(path: str) -> int:
    try:
        settings = load_settings(path, os.environ)
    except ConfigError as exc:
        print(f"{len(exc.problems)} problem(s) in the configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{path}: OK (gate {settings.gate.id}, {len(settings.lanes)} lane(s), "
          f"{sum(z.spaces for z in settings.zones)} spaces)")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="parking-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("path")
    args = parser.parse_args(argv)
    return _check_config(args.path)


if __name__ == "__main__":
    sys.exit(main())
