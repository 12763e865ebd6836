"""The daily summary as a pure function of a day's event rows (gateway/ops/daily.py)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from gateway.ops.daily import MAX_REASONS, day_bounds, encode_summary, summarise, utc_day

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
