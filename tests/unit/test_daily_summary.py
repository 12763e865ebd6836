"""The daily summary as a pure function of a day's event rows (gateway/ops/daily.py)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from gateway.core.errors import ConfigError
from gateway.ops.daily import MAX_REASONS, day_bounds, encode_summary, summarise, utc_day
from gateway.settings import parse_settings
from gateway.timezones import day_span, local_day, zone

DAY = date(2026, 12, 1)


def ev(type_: str, lane: str = "entry-1", synced: bool = True, **data: object) -> dict[str, Any]:
    return {"type": type_, "lane_id": lane, "wall_synced": synced, "data": data}


def test_a_day_of_vehicles_decisions_denials_and_faults() -> None:
    rows = [
        ev("entry_granted", source="central"), ev("vehicle_entered"),
        ev("saga_completed"),
        ev("entry_granted", source="cache"), ev("vehicle_entered"),
        ev("entry_denied", source="central", reason="not authorized: blocked"),
        ev("entry_denied", reason="lane_closed"),  # the lane's own decision
        ev("entry_denied", reason="no_plate_read"),
        ev("exit_granted", "exit-1", source="policy"), ev("vehicle_exited", "exit-1"),
        ev("saga_compensated"), ev("saga_failed"),
        ev("hardware_fault", device="camera", reason="no frame"),
        ev("hardware_fault", device="camera", reason="no frame"),
        ev("hardware_fault", "exit-1", device="arming_loop", reason="stuck"),
        ev("manual_open", who="anna"), ev("tailgating_detected", synced=False),
    ]
    s = summarise(DAY, rows, "gate-07")
    assert s["gate_id"] == "gate-07" and s["day"] == "2026-12-01" and s["timezone"] == "UTC"
    assert (s["from"], s["to"]) == ("2026-12-01T00:00:00.000+00:00",
                                    "2026-12-02T00:00:00.000+00:00")
    assert s["vehicles"] == {"in": 2, "out": 1,
                             "by_lane": {"entry-1": {"in": 2}, "exit-1": {"out": 1}}}
    assert s["decisions"] == {"granted": 3, "denied": 3,
                              "by_source": {"central": 2, "cache": 1, "lane": 2, "policy": 1}}
    assert s["denials"]["by_reason"] == {"not authorized: blocked": 1, "lane_closed": 1,
                                         "no_plate_read": 1}
    assert s["faults"] == {"total": 3, "by_device": {"camera": 2, "arming_loop": 1}}
    assert s["sagas"] == {"completed": 1, "compensated": 1, "failed": 1}
    assert s["manual_opens"] == 1 and s["tailgating"] == 1 and s["events_unsynced"] == 1
    # the reply's type describes every field summarise makes (it would refuse another)
    assert json.loads(encode_summary(s)) == s


def test_an_empty_day_is_all_zeros() -> None:
    s = summarise(DAY, [])
    assert s["vehicles"]["in"] == s["vehicles"]["out"] == 0
    assert s["decisions"] == {"granted": 0, "denied": 0, "by_source": {}}
    assert s["denials"]["by_reason"] == {} and s["faults"]["total"] == 0


def test_many_distinct_reasons_are_bounded() -> None:
    """Reasons may carry a service's words: a day of distinct ones must not make the
    retained message grow without bound."""
    rows = [ev("entry_denied", reason="common") for _ in range(5)]
    rows += [ev("entry_denied", reason=f"central error {i}") for i in range(100)]
    by_reason = summarise(DAY, rows)["denials"]["by_reason"]
    assert len(by_reason) == MAX_REASONS + 1 and by_reason["common"] == 5
    assert sum(by_reason.values()) == 105 and by_reason["other"] == 105 - 5 - (MAX_REASONS - 1)


def test_days_are_utc_days() -> None:
    assert utc_day(1764633599.999) == date(2025, 12, 1)  # 23:59:59.999 UTC
    assert utc_day(1764633600.0) == date(2025, 12, 2)
    assert day_bounds(date(2024, 2, 28))[1] == "2024-02-29T00:00:00.000+00:00"


def test_a_gate_in_a_zone_counts_its_own_days() -> None:
    """Istanbul is UTC+3 all year: its 1 December runs from 21:00 UTC on 30 November, so
    an event at 22:00 UTC on 30 November is of the gate's 1 December, not of the 30th."""
    start, end = day_bounds(DAY, zone("Europe/Istanbul"))
    assert (start, end) == ("2026-11-30T21:00:00.000+00:00", "2026-12-01T21:00:00.000+00:00")
    s = summarise(DAY, [ev("vehicle_entered")], "gate-07", "Europe/Istanbul")
    assert s["timezone"] == "Europe/Istanbul"
    assert (s["from"], s["to"]) == ("2026-12-01T00:00:00.000+03:00",
                                    "2026-12-02T00:00:00.000+03:00")
    assert json.loads(encode_summary(s)) == s
    late_evening_utc = datetime(2026, 11, 30, 22, tzinfo=UTC).timestamp()
    assert local_day(late_evening_utc, zone("Europe/Istanbul")) == DAY
    assert utc_day(late_evening_utc) == date(2026, 11, 30)


def test_days_a_clock_change_moves_are_23_and_25_hours() -> None:
    berlin = zone("Europe/Berlin")
    spring, autumn = day_span(date(2026, 3, 29), berlin), day_span(date(2026, 10, 25), berlin)
    assert spring[1] - spring[0] == 23 * 3600 and autumn[1] - autumn[0] == 25 * 3600
    s = summarise(date(2026, 3, 29), [], timezone="Europe/Berlin")
    assert (s["from"], s["to"]) == ("2026-03-29T00:00:00.000+01:00",
                                    "2026-03-30T00:00:00.000+02:00")


def test_a_zone_that_is_none_is_refused_with_what_to_write() -> None:
    for name in ("Europe/Atlantis", "", "../../etc/passwd", "/etc/localtime", "UTC+3"):
        with pytest.raises(ValueError, match="IANA name"):
            zone(name)
    with pytest.raises(ConfigError) as caught:
        parse_settings('[gate]\ntimezone = "Europe/Atlantis"\n', "/etc/parking-gateway/x.toml")
    (problem,) = caught.value.problems
    assert problem.startswith("/etc/parking-gateway/x.toml: gate.timezone: 'Europe/Atlantis'")
    assert "Europe/Istanbul" in problem
    assert parse_settings('[gate]\ntimezone = "Europe/Istanbul"\n').gate.timezone \
        == "Europe/Istanbul"
