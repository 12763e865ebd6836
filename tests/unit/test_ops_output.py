"""What the operations commands print and write, as pure functions: the status summary,
export cells and bounds, the per-vehicle log line (gateway/ops/)."""

from __future__ import annotations

import csv
import io
import shlex
from typing import Any

import pytest

from gateway.core.errors import GatewayError
from gateway.ops.export import csv_cell, file_name, parse_bound, parse_range, write_csv
from gateway.ops.status_cli import base_url, exit_code, render
from gateway.ops.text import safe
from gateway.ops.vehicle_log import VehicleRecord, format_line, mask_plate
from gateway.sagas.policy import SagaOutcome

ESC = "\x1b"


def status(**over: object) -> dict[str, Any]:
    base = {
        "gate_id": "gate-01", "version": "0.1.0", "uptime_s": 3723.0, "wall_synced": False,
        "time": "2026-12-01T10:00:00.000+00:00", "healthy": True, "problems": [],
        "occupancy": {"total": 10, "free": 0, "allocated": 9, "out_of_service": 1,
                      "zones": [{"zone": "A", "total": 10, "free": 0, "full": True}]},
        "services": {"central": {"circuit": "open", "state": "paused",
                                 "summary": "paused after 3 failures, retrying in 12 s",
                                 "last_error": "timeout"},
                     "backup": {"circuit": "closed", "state": "online", "summary": "online"},
                     "mqtt": {"connected": False, "state": "offline",
                              "summary": "not connected to the broker"}},
        "outbox": {"pending": 4, "summary": "4 events wait for the broker"},
        "offline_queue": {"pending": 2, "dead": 1, "advice": "check the refused record"},
        "lanes": [{"id": "entry-1", "direction": "entry", "state": "fault",
                   "barrier": "closed", "mode": "closed",
                   "faults": {"arming_loop": "stuck occupied"},
                   "fault_fixes": {"arming_loop": "check the detector"},
                   "vehicle": None,
                   "last": {"saga_id": "s1", "license_plate": "34ABC123",
                            "status": "completed", "source": "cache",
                            "stages_ms": {"total": 267.3}}}],
    }
    base["clock"] = {"synced": False, "summary": "NOT synchronised: check timedatectl"}
    base["storage"] = {"summary": "database 1.2 MB, 310 MB free", "problem": None}
    return {**base, **over}


def test_the_summary_shows_what_the_page_shows() -> None:
    text = render(status(), [{"created_at": "2026-12-01T09:59:01.000+00:00",
                              "lane_id": "entry-1", "license_plate": "34ABC123",
                              "source": "cache", "duration_ms": 1088.0,
                              "outcome": "let in", "status": "completed"}])
    for words in ("gate gate-01", "up 1h 2m", "(clock NOT synchronised: check timedatectl)",
                  "HEALTHY", "storage       database 1.2 MB, 310 MB free",
                  "paused after 3 failures, retrying in 12 s", "(last error: timeout)",
                  "not connected to the broker", "4 events wait for the broker",
                  "2 waiting, 1 refused: check the refused record",
                  "0 free of 10", "zone A", "FULL", "mode closed",
                  "fault arming_loop: stuck occupied", "fix: check the detector",
                  "last: 34ABC123 completed, decided by cache, 267 ms to open",
                  "12-01 09:59:01", "let in", "1088 ms"):
        assert words in text, words
    assert ESC not in text  # no colour unless asked


def test_attention_lists_the_problems_and_sets_the_exit_code() -> None:
    s = status(healthy=False, problems=["central service: circuit open"])
    assert "NEEDS ATTENTION (1 problem(s))" in render(s, [])
    assert "  - central service: circuit open" in render(s, [])
    assert exit_code(s) == 1 and exit_code(status()) == 0
    assert exit_code({"lanes": []}) == 1  # no word on health is no good word


def test_colour_only_when_asked() -> None:
    assert f"{ESC}[32mHEALTHY{ESC}[0m" in render(status(), [], colour=True)


def test_outside_text_cannot_drive_the_terminal() -> None:
    evil = f"34ABC{ESC}]0;owned{chr(7)}{ESC}[2J\u202eevil\r\nforged line"
    s = status(problems=[evil], healthy=False)
    s["lanes"][0]["last"]["license_plate"] = evil
    text = render(s, [{"license_plate": evil, "outcome": evil, "lane_id": "x",
                       "created_at": evil}])
    assert ESC not in text and "\x07" not in text and "\u202e" not in text
    assert "\r" not in text
    forged = [line for line in text.splitlines() if "forged line" in line]
    assert len(forged) == 3  # the problem, the lane's last vehicle, the list
    assert all("evilforged line" in line for line in forged)  # never a line of its own
    assert safe("x" * 300, 10) == "x" * 9 + "…"


@pytest.mark.parametrize(("value", "cell"), [
    ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"),
    ("+SUM(A1)", "'+SUM(A1)"), ("-2+3", "'-2+3"), ("@cmd", "'@cmd"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("34ABC123", "34ABC123"), ("", ""),
    (None, ""), (True, "true"), (-5, -5), (1.5, 1.5),
    ({"reason": "=1"}, '{"reason":"=1"}'), ([], "[]"),
])
def test_csv_cells_are_data_not_formulas(value: object, cell: object) -> None:
    assert csv_cell(value) == cell


def test_a_written_csv_reads_back_as_the_same_text() -> None:
    out = io.StringIO()
    write_csv([{"plate": "=1+1", "reason": "a, \"b\"\nc", "n": 3}], ("plate", "reason", "n"),
              out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows == [["plate", "reason", "n"], ["'=1+1", "a, \"b\"\nc", "3"]]


def test_bounds_dates_are_whole_utc_days_and_times_need_an_offset() -> None:
    assert parse_range("2026-12-01", "2026-12-01") == ("2026-12-01T00:00:00.000+00:00",
                                                       "2026-12-02T00:00:00.000+00:00")
    assert parse_bound("2026-12-01T08:00:00+03:00", end=False) == \
        "2026-12-01T05:00:00.000+00:00"
    assert parse_bound("2026-12-01T08:00:00Z", end=True) == "2026-12-01T08:00:00.000+00:00"
    for bad in ("2026-12-01T08:00:00", "yesterday", "2026-13-01"):
        with pytest.raises(GatewayError):
            parse_bound(bad, end=False)
    with pytest.raises(GatewayError, match="not before"):
        parse_range("2026-12-02", "2026-12-01")
    assert file_name("events", *parse_range("2026-12-01", "2026-12-31"), "csv") == \
        "events-2026-12-01-2026-12-31.csv"


def outcome(status: str = "completed", reason: str = "all steps completed") -> SagaOutcome:
    return SagaOutcome("551ba848-e31f-42c5", "entry", status, reason,
                       sources={"verify_license_plate": "central"}, duration_ms=1087.95)


def test_the_vehicle_line() -> None:
    rec = VehicleRecord.of("entry-1", "entry", "34ABC123", outcome(), open_ms=267.3)
    assert format_line(rec, mask_plates=False) == (
        'vehicle lane=entry-1 direction=entry outcome="let in" source=central '
        "total_ms=1088 open_ms=267 plate=34ABC123 saga=551ba848")
    assert "plate=34A***23 " in format_line(rec, mask_plates=True)
    denied = VehicleRecord.of("entry-1", "entry", "66BAD66",
                              outcome("compensated", "not authorized: blocked"))
    line = format_line(denied, mask_plates=True)
    assert 'outcome="turned away: not authorized: blocked"' in line
    assert "open_ms" not in line and "plate=66B***66" in line


def test_masking_hides_the_middle_and_the_length() -> None:
    assert mask_plate("34ABC123") == mask_plate("34AXXXXXXX23") == "34A***23"
    assert mask_plate("AB123") == "***"


def test_a_plate_or_reason_cannot_forge_a_line_or_a_key() -> None:
    rec = VehicleRecord("entry-1", "entry", 'X\nvehicle lane=fake', 'a" source=forged',
                        "central", 5.0)
    line = format_line(rec, mask_plates=False)
    pairs = [token.split("=", 1) for token in shlex.split(line)[1:]]  # logfmt, as parsed
    assert "\n" not in line and [k for k, _ in pairs].count("source") == 1
    assert dict(pairs)["outcome"] == 'a" source=forged'
    assert 'outcome="a\\" source=forged"' in line and 'plate="Xvehicle lane=fake"' in line


def test_status_asks_the_address_the_configuration_gives() -> None:
    assert base_url("127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert base_url("0.0.0.0", 80) == base_url("::", 80) == "http://127.0.0.1:80"  # wildcards
    assert base_url("::1", 8080) == "http://[::1]:8080"
