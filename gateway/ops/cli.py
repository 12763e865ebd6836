"""The operations commands' part of the command line (``gateway/__main__.py`` adds them):
``status``, ``backup`` and ``export``. Exit codes: 0 done (``status``: healthy), 1 not done
(``status``: needs attention), 2 a configuration error (``status``: the daemon unreachable).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.core.errors import ConfigError
from gateway.ops.text import safe

COMMANDS = ("status", "backup", "export")
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def add_commands(sub: Any) -> None:
    """Add the parsers to ``sub`` (an ``argparse`` sub-parsers action)."""
    st = sub.add_parser("status", help="the operator's summary of the running daemon: "
                        "exit 0 healthy, 1 needs attention, 2 unreachable")
    where = st.add_mutually_exclusive_group()
    where.add_argument("--url", help="the daemon's web address (default: from the "
                       "configuration, http://127.0.0.1:8080)")
    where.add_argument("--config", help="configuration file (its [web] host and port)")
    bk = sub.add_parser("backup", help="an online copy of the database, safe while the "
                        "daemon runs")
    bk.add_argument("dest", help="the copy's file name (or a directory: a file named by "
                    "the time)")
    bk.add_argument("--config", help="configuration file (default: "
                    "/etc/parking-gateway/gateway.toml, else the embedded demo)")
    bk.add_argument("--force", action="store_true", help="replace an existing file")
    ex = sub.add_parser("export", help="sessions, events or sagas of a time range as CSV "
                        "or JSON lines (read-only)")
    ex.add_argument("--from", dest="start", required=True,
                    help="first UTC date (2026-12-01) or an RFC 3339 time")
    ex.add_argument("--to", dest="end", required=True,
                    help="last UTC date (included) or an RFC 3339 time (excluded)")
    ex.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    ex.add_argument("--what", choices=("sessions", "events", "sagas", "all"),
                    default="sessions")
    ex.add_argument("--out", help="a file, or a directory (a file per kind, named by "
                    "the range); default: standard output")
    ex.add_argument("--config", help="configuration file (default: "
                    "/etc/parking-gateway/gateway.toml, else the embedded demo)")
    ex.add_argument("--database", help="export from this copy (parking-gateway backup) "
                    "instead of the live database")


def _settings(path: str | None) -> Any:
    from gateway.ops.config import ops_settings

    try:
        return ops_settings(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def _status(args: argparse.Namespace) -> int:
    from gateway.ops import status_cli

    url = args.url
    if url is None:
        settings = _settings(args.config)
        if settings is None:
            return EXIT_CONFIG
        url = status_cli.base_url(settings.web.host, settings.web.port)
    return status_cli.main(url)


def _backup(args: argparse.Namespace) -> int:
    from gateway.ops.backup import BackupError, backup_database

    settings = _settings(args.config)
    if settings is None:
        return EXIT_CONFIG
    try:
        done = backup_database(settings.database_path, Path(args.dest), force=args.force)
    except BackupError as exc:
        print(f"backup: {safe(exc, 500)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{done.path}: {done.bytes / 1e6:.1f} MB ({done.pages} pages) in "
          f"{done.seconds:.2f} s, integrity ok")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from gateway.ops.export import WHAT, ExportError, export, parse_range

    if args.database:
        database = Path(args.database)
    else:
        settings = _settings(args.config)
        if settings is None:
            return EXIT_CONFIG
        database = settings.database_path
    try:
        start, end = parse_range(args.start, args.end)
        written = export(database, list(WHAT) if args.what == "all" else [args.what],
                         start, end, args.format, Path(args.out) if args.out else None)
    except ExportError as exc:
        print(f"export: {safe(exc, 500)}", file=sys.stderr)
        return EXIT_FAILED
    for w in written:
        print(f"{w.rows} {w.what} from {start} to {end}"
              + (f" -> {w.path}" if w.path else ""), file=sys.stderr)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    return {"status": _status, "backup": _backup, "export": _export}[args.command](args)
