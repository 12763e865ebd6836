"""The daily summary: vehicles in and out, decisions by where they came from, denials by
reason, faults, for one day, from the events the gate recorded that day.

Days are the gate's days in ``gate.timezone`` (default "UTC"; an operator sets the zone of
the lot, e.g. "Europe/Istanbul", so that "today" starts at the lot's midnight). It is a
setting, not the Pi's own zone, which is often whatever its image shipped with. Every
record stays stamped in UTC; the summary says its zone and its bounds as instants
(``from``/``to``, RFC 3339 with the zone's offset), so central monitoring can add gates in
several zones up; an export's dates are UTC dates.

- ``summarise`` is pure: a day and its event rows in, the summary out (tested without a
  database).
- ``daily_summary_handler``: ``GET /api/summary/daily?day=YYYY-MM-DD`` (default: today so
  far), for the page.
- ``publish_daily_summaries``: a supervised task. Once the wall clock is synchronised it
  makes sure the summary of the day before is recorded (a ``daily_summary`` event, once per
  day: through the durable outbox to the events topic, never lost while the broker is
  down; not for a quiet day) and publishes it retained on ``{p}/gates/{gate}/daily``
  (QoS 1), then sleeps until ``after_midnight_s`` past the gate's next midnight. After a
  restart it publishes the day before again (the retained message is the same). A broker
  that refuses the topic is logged, not a fault of the gate: the next try is the next day.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from gateway.clock import Clock, iso
from gateway.store import events, reports
from gateway.store.store import Store
from gateway.telemetry.mqtt import MqttConnection, PublishRefused
from gateway.timezones import day_span, local_day, zone

log = logging.getLogger(__name__)
Json = dict[str, Any]
MAX_REASONS = 20  # denial reasons kept by name; the rest are added up as "other"
EVENT_TYPE = "daily_summary"


# -- the reply's type (the page's endpoint encodes through it; the OpenAPI document can name
# it, as gateway/web/schemas.py's types are named there)
class _Reply(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class DailyVehicles(_Reply):
    in_: int = msgspec.field(name="in")
    out: int
    by_lane: dict[str, dict[str, int]]  # lane -> {"in": n} or {"out": n}


class DailyDecisions(_Reply):
    granted: int
    denied: int
    by_source: dict[str, int]  # central, backup, cache, permits, policy, lane (its own)


class DailyDenials(_Reply):
    by_reason: dict[str, int]  # the 20 most frequent by name, the rest as "other"


class DailyFaults(_Reply):
    total: int
    by_device: dict[str, int]


class DailySagas(_Reply):
    completed: int
    compensated: int
    failed: int


class DailySummary(_Reply):
    """One day at a gate, in its zone (``gate.timezone``)."""

    gate_id: str
    day: str  # YYYY-MM-DD
    timezone: str  # "UTC" or the IANA name of the gate's zone
    from_: str = msgspec.field(name="from")  # RFC 3339 in the zone: its midnight, included
    to: str  # RFC 3339 in the zone: the next midnight, excluded
    vehicles: DailyVehicles
    decisions: DailyDecisions
    denials: DailyDenials
    faults: DailyFaults
    sagas: DailySagas
    manual_opens: int
    tailgating: int
    events_unsynced: int  # stamped by an unsynchronised clock: maybe of another day
    made_at: str | UnsetType = UNSET  # when the recorded (published) summary was made


def encode_summary(summary: Json) -> bytes:
    """JSON through ``DailySummary``: a field it does not describe raises."""
    return msgspec.json.encode(msgspec.convert(summary, DailySummary))


def day_bounds(day: date, tz: tzinfo | None = None) -> tuple[str, str]:
    """The day's first instant and the next day's, in UTC (what records are stamped in and
    compared with)."""
    start, end = day_span(day, tz or zone("UTC"))
    return iso(start), iso(end)


def _in_zone(wall: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(wall, tz).isoformat(timespec="milliseconds")


def utc_day(wall: float) -> date:
    return local_day(wall, zone("UTC"))


def _top(counts: Counter[str], limit: int = MAX_REASONS) -> dict[str, int]:
    kept = dict(counts.most_common(limit))
    rest = sum(counts.values()) - sum(kept.values())
    return {**kept, "other": rest} if rest else kept


def summarise(day: date, rows: Iterable[Json], gate_id: str = "", timezone: str = "UTC",
              ) -> Json:
    """The summary of ``day`` in the zone named ``timezone`` from its event rows (``type``,
    ``lane_id``, ``wall_synced``, ``data``; as ``reports.summary_events`` yields them), in
    one pass."""
    tz = zone(timezone)
    start_s, end_s = day_span(day, tz)
    counts: Counter[str] = Counter()
    by_lane: dict[str, Counter[str]] = {}
    sources: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    unsynced = 0
    for row in rows:
        type_, data = str(row["type"]), row.get("data") or {}
        counts[type_] += 1
        unsynced += not row.get("wall_synced", True)
        lane = row.get("lane_id") or ""
        if type_ in ("vehicle_entered", "vehicle_exited"):
            by_lane.setdefault(lane, Counter())["in" if type_ == "vehicle_entered"
                                                else "out"] += 1
        elif type_.endswith(("_granted", "_denied")):
            # a denial without a service's answer (lane closed, plate unreadable) was the
            # lane's own decision
            sources[str(data.get("source") or "lane")] += 1
            if type_.endswith("_denied"):
                reasons[str(data.get("reason") or "unknown")] += 1
        elif type_ == "hardware_fault":
            faults[str(data.get("device") or "unknown")] += 1
    granted = counts["entry_granted"] + counts["exit_granted"]
    denied = counts["entry_denied"] + counts["exit_denied"]
    return {
        "gate_id": gate_id, "day": day.isoformat(), "timezone": timezone,
        "from": _in_zone(start_s, tz), "to": _in_zone(end_s, tz),
        "vehicles": {"in": counts["vehicle_entered"], "out": counts["vehicle_exited"],
                     "by_lane": {k: dict(v) for k, v in sorted(by_lane.items())}},
        "decisions": {"granted": granted, "denied": denied, "by_source": dict(sources)},
        "denials": {"by_reason": _top(reasons)},
        "faults": {"total": sum(faults.values()), "by_device": dict(faults)},
        "sagas": {"completed": counts["saga_completed"],
                  "compensated": counts["saga_compensated"], "failed": counts["saga_failed"]},
        "manual_opens": counts["manual_open"], "tailgating": counts["tailgating_detected"],
        # stamped by a clock that was not synchronised: they may belong to another day
        "events_unsynced": unsynced,
    }


async def daily_summary(store: Store, day: date, gate_id: str, timezone: str = "UTC") -> Json:
    """Read and count on the database thread, streaming the day's events."""
    start, end = day_bounds(day, zone(timezone))
    return await store.read(lambda conn: summarise(
        day, reports.summary_events(conn, start, end), gate_id, timezone))


FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


async def daily_summary_handler(request: web.Request) -> web.Response:
    """``GET /api/summary/daily?day=YYYY-MM-DD``: one day's summary in the gate's zone
    (default: today there)."""
    from gateway.web.http import GATEWAY, error

    gw = request.app[GATEWAY]
    timezone = gw.settings.gate.timezone
    text = request.query.get("day")
    try:
        if text is not None and not FULL_DATE.fullmatch(text):  # RFC 3339 full-date only
            raise ValueError(text)
        day = date.fromisoformat(text) if text is not None else local_day(
            gw.clock.wall(), zone(timezone))
        day_bounds(day, zone(timezone))  # 9999-12-31 has no next midnight
    except (ValueError, OverflowError):
        return error(400, f"day: expected a date YYYY-MM-DD before 9999-12-31, got "
                          f"{(text or '')[:40]!r}")
    body = await daily_summary(gw.store, day, gw.settings.gate.id, timezone)
    return web.Response(body=encode_summary(body), content_type="application/json")


def daily_topic(prefix: str, gate_id: str) -> str:
    return f"{prefix}/gates/{gate_id}/daily"


def _quiet(summary: Json) -> bool:
    """A day with nothing to tell (no vehicle, decision, saga or fault)."""
    return not (summary["vehicles"]["in"] or summary["vehicles"]["out"]
                or summary["decisions"]["granted"] or summary["decisions"]["denied"]
                or summary["faults"]["total"] or any(summary["sagas"].values()))


async def recorded_summary(store: Store, clock: Clock, gate_id: str, day: date,
                           timezone: str = "UTC") -> Json:
    """The summary of ``day`` as recorded (a ``daily_summary`` event, written once: looked
    for and written in one transaction); a quiet day is published but not recorded (a new
    gate's first start adds no event)."""
    found = await store.read(lambda c: reports.daily_summary_event(c, day.isoformat()))
    if found is not None:
        return found
    summary = await daily_summary(store, day, gate_id, timezone)
    summary["made_at"] = ts = iso(clock.wall())
    if _quiet(summary):
        return summary
    synced = clock.wall_synced()

    def record(conn: sqlite3.Connection) -> Json:
        already = reports.daily_summary_event(conn, day.isoformat())
        if already is not None:
            return already
        events.append(conn, gate_id=gate_id, type=EVENT_TYPE, ts=ts, data=summary,
                      wall_synced=synced)
        return summary

    recorded = await store.write(record)
    if recorded is summary:
        log.info("daily summary of %s: %d in, %d out, %d denied, %d fault(s)",
                 summary["day"], summary["vehicles"]["in"], summary["vehicles"]["out"],
                 summary["decisions"]["denied"], summary["faults"]["total"])
    return recorded


async def _publish_retained(mqtt: MqttConnection, topic: str, payload: bytes) -> bool:
    """Once the broker acknowledges it (QoS 1, retained): True. A broker that refuses the
    topic (an ACL written for the contract's topics only) is told in the log, and the link's
    list of refused topics forgets it: the topic is an addition, and its refusal is no
    fault of the gate (the summary still goes out as an event). False then."""
    while True:
        await mqtt.wait_connected()
        try:
            await mqtt.publish(topic, payload, qos=1, retain=True)
            return True
        except PublishRefused as refusal:
            mqtt.refusing.pop(topic, None)
            log.warning("daily summary: the broker refuses %s (%s); allow the topic to have "
                        "it retained there (it is sent as a daily_summary event too)",
                        topic, refusal)
            return False
        except ConnectionError:
            continue  # lost meanwhile: again once connected


async def _until_wall(clock: Clock, target: float, every_s: float) -> None:
    """Sleep until the wall clock reaches ``target``, looking at it every ``every_s``: the
    wall clock may jump (NTP), the sleep runs on the monotonic one."""
    while (left := target - clock.wall()) > 0:
        await clock.sleep(min(left, every_s))


async def publish_daily_summaries(store: Store, mqtt: MqttConnection, clock: Clock, *,
                                  gate_id: str, prefix: str, timezone: str = "UTC",
                                  after_midnight_s: float = 300.0,
                                  check_every_s: float = 60.0) -> None:
    """The supervised task (see the module's docstring); runs until cancelled."""
    topic = daily_topic(prefix, gate_id)
    tz = zone(timezone)
    while True:
        while not clock.wall_synced():  # a 1970 clock has no "yesterday"
            await clock.sleep(check_every_s)
        now = clock.wall()
        today = local_day(now, tz)
        summary = await recorded_summary(store, clock, gate_id, today - timedelta(days=1),
                                         timezone)
        await _publish_retained(mqtt, topic, encode_summary(summary))
        _, midnight = day_span(today, tz)
        await _until_wall(clock, midnight + after_midnight_s, check_every_s)
