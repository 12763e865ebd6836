"""``parking-gateway export``: the gate's records for a time range, as CSV or JSON lines, for
the operator's own books.

What: ``sessions`` (a vehicle's stay: entered, left, its space and record ids), ``events``
(everything the gate reported, in ``seq`` order) and ``sagas`` (each vehicle's decision at a
lane: outcome, where the decision came from, every step). The range is ``[--from, --to)``:
a date (UTC) stands for the whole day, so ``--from 2026-12-01 --to 2026-12-01`` is that one
day; an RFC 3339 time (``2026-12-01T08:00:00+03:00``) is that instant.

Read-only: the live database is opened ``mode=ro`` (beside the running daemon: in WAL mode
a reader blocks no writer), inside one read transaction, so the files of one export agree
with each other; or a backup copy (``--database``). Rows are streamed from the query to the
file: a year of events never sits in memory. A file is written to a temporary name and
renamed when complete.

A CSV cell that starts with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return) is
read as a formula by a spreadsheet: a plate, a reason or a service's error is data, so such a
text cell gets a leading ``'`` (OWASP's advice). Numbers stay numbers. JSON lines carry the
values unchanged (JSON is not executed)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TextIO

from gateway.clock import iso
from gateway.core.errors import GatewayError
from gateway.store import reports
from gateway.store.schema import APPLICATION_ID

Format = Literal["csv", "jsonl"]
WHAT = ("sessions", "events", "sagas")
COLUMNS: dict[str, tuple[str, ...]] = {"sessions": reports.SESSION_COLUMNS,
                                       "events": reports.EVENT_COLUMNS,
                                       "sagas": reports.SAGA_COLUMNS}
QUERIES: dict[str, Callable[[Any, str, str], Iterator[dict[str, Any]]]] = {
    "sessions": reports.sessions_between, "events": reports.events_between,
    "sagas": reports.sagas_between}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportError(GatewayError):
    """Nothing (more) was written: the reason says what to change."""


# -- the range ------------------------------------------------------------------------------
def parse_bound(text: str, *, end: bool) -> str:
    """A bound as the database writes times. A date is the start of that UTC day, or as an
    end the start of the next (the day is included); a time needs its UTC offset."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return iso((start + timedelta(days=1 if end else 0)).timestamp())
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ExportError(f"{text!r}: give a date (2026-12-01, UTC) or an RFC 3339 time "
                          "(2026-12-01T08:00:00+03:00)") from None
    if moment.tzinfo is None:
        raise ExportError(f"{text!r}: a time needs its UTC offset (Z or +03:00): the "
                          "records are kept in UTC")
    return iso(moment.timestamp())


def parse_range(start: str, end: str) -> tuple[str, str]:
    lo, hi = parse_bound(start, end=False), parse_bound(end, end=True)
    if lo >= hi:
        raise ExportError(f"--from {start} is not before --to {end}")
    return lo, hi


# -- cells and lines --------------------------------------------------------------------------
def csv_cell(value: Any) -> Any:
    """One CSV cell: numbers as they are, structures as JSON, text neutralised."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                            separators=(",", ":"))
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_csv(rows: Iterable[dict[str, Any]], columns: tuple[str, ...], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow([csv_cell(row.get(c)) for c in columns])
        count += 1
    return count


def write_jsonl(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    count = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count


# -- files ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Written:
    what: str
    rows: int
    path: Path | None  # None: standard output


def file_name(what: str, start: str, end: str, fmt: str) -> str:
    """``events-2026-12-01-2026-12-31.csv``: the first and the last day in the range."""
    last = iso(datetime.fromisoformat(end).timestamp() - 0.001)
    return f"{what}-{start[:10]}-{last[:10]}.{fmt}"


def _open_database(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise ExportError(f"{path}: no database there (is gate.data_dir right?)")
    try:
        conn = reports.open_read_only(str(path.resolve()))
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.Error as exc:
        raise ExportError(f"{path}: cannot be opened read-only ({exc}). Run the export as "
                          "the daemon's user, or export from a copy: parking-gateway backup "
                          "COPY, then --database COPY") from None
    if app_id != APPLICATION_ID:
        conn.close()
        raise ExportError(f"{path}: not a parking gateway database")
    return conn


def _write(what: str, fmt: Format, rows: Iterator[dict[str, Any]], out: TextIO) -> int:
    return write_csv(rows, COLUMNS[what], out) if fmt == "csv" else write_jsonl(rows, out)


def _to_file(what: str, fmt: Format, rows: Iterator[dict[str, Any]], path: Path) -> int:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as out:
            count = _write(what, fmt, rows, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return count


def export(database: Path, kinds: list[str], start: str, end: str, fmt: Format,
           out: Path | None, stdout: TextIO = sys.stdout) -> list[Written]:
    """Write each of ``kinds`` for [start, end) (bounds from ``parse_range``): to ``stdout``
    (one kind only), to the file ``out`` (one kind), or into the directory ``out`` as
    ``<kind>-<from>-<to>.<fmt>``."""
    if len(kinds) > 1 and (out is None or not out.is_dir()):
        raise ExportError("several kinds of records go into a directory: --out DIR")
    if out is not None and not out.is_dir() and not out.parent.is_dir():
        raise ExportError(f"{out.parent}: no such directory")
    conn = _open_database(database)
    written = []
    try:
        conn.execute("BEGIN")  # one snapshot for every file of this export
        db = reports.records(conn)
        for what in kinds:
            rows = QUERIES[what](db, start, end)
            if out is None:
                written.append(Written(what, _write(what, fmt, rows, stdout), None))
                continue
            path = out / file_name(what, start, end, fmt) if out.is_dir() else out
            written.append(Written(what, _to_file(what, fmt, rows, path), path))
    except sqlite3.Error as exc:
        raise ExportError(f"{database}: reading failed: {exc}") from None
    except OSError as exc:
        raise ExportError(f"writing the export failed: {exc}") from None
    finally:
        conn.close()
    return written
