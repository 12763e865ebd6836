"""The reliability campaign's invariant checker.

It reads only what an outside observer has: the daemon's web API (``/api/status``,
``/api/sagas``, ``/api/spaces``, ``/api/events``, ``/api/sim/world``), the MQTT telemetry
stream a subscriber recorded for the whole run, and the simulated services' own records
(the sim central's records, the boards' relay levels after each kill, the vehicles'
fates as the simulated world reported them). Every broken invariant is a ``Violation``
with the evidence that shows it; nothing here asserts, so one run reports all of them.

Invariants:
- ``space``: no space held by two sessions (the sessions the saga log makes, against the
  space table, at the end);
- ``occupancy``: the spaces held are those of the vehicles inside, by the simulated
  world's view (a vehicle on a lane when the daemon was killed has no known fate: its
  plate is excused, and counted; so is a tailgater, which no saga let in);
- ``saga``: every saga terminal at the end;
- ``central``: every entry and exit exactly once at central per idempotency key unless
  compensated, and no live record at central for a compensated saga (nor for a saga the
  gateway does not know, nor one naming a local id);
- ``seq``: telemetry ``seq`` without a gap from the first to the last (repeats allowed,
  with the same event id), none missing before the first that the daemon still logs (a
  pruned prefix is excepted, and counted), none logged after the last;
- ``relays``: no relay energised while the daemon was down;
- ``collisions``: none, in any of the daemon's lives.
"""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gateway.sim.central import SimCentralState
from tests.e2e.daemon import until

Json = dict[str, Any]
TERMINAL = ("completed", "compensated", "failed")
RELAY_PINS = ("GPIO6", "GPIO7", "GPIO8", "GPIO9")  # open, close, green, red (SIM_PINS)


@dataclass(frozen=True)
class Violation:
    invariant: str
    what: str
    evidence: Json = field(default_factory=dict)

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.what} {self.evidence}"


@dataclass
class Vehicle:
    """One vehicle the campaign sent (or a follower the world added), as the world saw it:
    ``status`` is its last known one; ``ambiguous`` when the daemon died while it was on
    the lane (the simulated world died with it, so its fate is unknown)."""

    vehicle_id: str
    life: int  # which start of the daemon it belonged to
    lane: str  # entry-1 | exit-1
    plate: str
    behaviour: str
    status: str = "queued"
    ambiguous: bool = False
    follower: bool = False
    collisions: int = 0
    done_at: float = 0.0  # monotonic time the campaign saw it done

    @property
    def done(self) -> bool:
        return self.status in ("passed", "left")


@dataclass
class Observed:
    """What the campaign collected besides the API: the stream, the boards, the world."""

    events: list[Json] = field(default_factory=list)  # the MQTT telemetry stream, as received
    stream: Callable[[], list[Json]] | None = None  # the stream as received so far, now
    boards_after_kill: list[tuple[int, Json]] = field(default_factory=list)  # (kill, lanes)
    vehicles: list[Vehicle] = field(default_factory=list)  # in the order they were sent
    collisions_by_life: dict[int, int] = field(default_factory=dict)
    life: int = 1  # the daemon's current life (1: its first start)


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    figures: Json = field(default_factory=dict)

    def add(self, invariant: str, what: str, **evidence: Any) -> None:
        self.violations.append(Violation(invariant, what, evidence))

    def of(self, invariant: str) -> list[Violation]:
        return [v for v in self.violations if v.invariant == invariant]


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        resp.raise_for_status()
        return await resp.json()


async def check(http: aiohttp.ClientSession, base: str, central: SimCentralState,
                seen: Observed) -> Report:
    report = Report()
    status = await _get(http, f"{base}/api/status")
    spaces = await _get(http, f"{base}/api/spaces")
    world = await _get(http, f"{base}/api/sim/world")
    await _catch_up(http, base, seen)
    unique = _check_seq(report, seen.events)
    await _check_stream_complete(report, http, base, unique, seen)
    sagas = await _sagas(http, base, unique)
    _check_terminal(report, sagas)
    _check_central(report, central, sagas)
    details = await _details(http, base, sagas)
    _check_spaces(report, details, spaces, status)
    _check_occupancy(report, seen.vehicles, spaces, sagas)
    _check_relays(report, seen.boards_after_kill)
    _check_collisions(report, seen, world)
    report.figures.update({
        "sagas": dict(Counter(s["status"] for s in sagas.values())),
        "sagas_pruned": sum(1 for s in sagas.values() if s.get("pruned")),
        "central_entries": len(central.entries), "central_exits": len(central.exits),
        "outbox_dropped": status["outbox"]["dropped"],
        "offline_queue_dead": status["offline_queue"]["dead"],
    })
    return report


# -- telemetry ---------------------------------------------------------------------------
def _check_seq(report: Report, stream: list[Json]) -> dict[int, Json]:
    """Gaps between the first and the last ``seq`` received; a repeat must be the same
    event. The events by ``seq``."""
    unique: dict[int, Json] = {}
    repeats = 0
    for event in stream:
        seq = int(event["seq"])
        first = unique.get(seq)
        if first is None:
            unique[seq] = event
            continue
        repeats += 1
        if first["event_id"] != event["event_id"]:
            report.add("seq", f"seq {seq} carried two different events",
                       first=first["event_id"], second=event["event_id"])
    if not unique:
        report.add("seq", "no event arrived on the telemetry stream")
        return unique
    lo, hi = min(unique), max(unique)
    missing = [s for s in range(lo, hi + 1) if s not in unique]
    if missing:
        report.add("seq", f"{len(missing)} event(s) never arrived between seq {lo} and {hi}",
                   missing=_ranges(missing)[:10])
    report.figures.update({"events_received": len(unique), "event_repeats": repeats,
                           "first_seq": lo, "last_seq": hi})
    return unique


async def _catch_up(http: aiohttp.ClientSession, base: str, seen: Observed) -> None:
    """An event logged after the campaign's last look (a state change, a retry) is given
    the time to arrive before its absence counts."""
    stream = seen.stream
    if stream is None:
        return
    latest = await _get(http, f"{base}/api/events?after_seq="
                              f"{max((int(e['seq']) for e in seen.events), default=0)}"
                              "&limit=1000")
    if latest:
        wanted = int(latest[-1]["seq"])
        with contextlib.suppress(TimeoutError):
            await until(lambda: max((int(e["seq"]) for e in stream()), default=0)
                        >= wanted, 10.0)
        seen.events = stream()


async def _check_stream_complete(report: Report, http: aiohttp.ClientSession, base: str,
                                 unique: dict[int, Json], seen: Observed) -> None:
    """Nothing the daemon still has in its log is missing: not before the first event
    received (only a pruned prefix may be, counted), not after the last one."""
    oldest = await _get(http, f"{base}/api/events?after_seq=0&limit=1")
    kept_from = int(oldest[0]["seq"]) if oldest else max(unique, default=0) + 1
    first = min(unique, default=kept_from)
    if kept_from < first:
        report.add("seq", f"events {kept_from}-{first - 1}, still in the daemon's log, "
                   "never arrived before the first one received")
    report.figures["pruned_prefix"] = kept_from - 1
    last = max(unique, default=0)
    later = await _get(http, f"{base}/api/events?after_seq={last}&limit=1000")
    pending = int((await _get(http, f"{base}/api/status"))["outbox"]["pending"])
    if later and pending < len(later) and seen.stream is not None:
        # the daemon goes on logging while the checks run (a housekeeping pass, a state
        # change): an event logged after the catch-up is given its time to arrive too
        await _catch_up(http, base, seen)
        for event in seen.events:
            unique.setdefault(int(event["seq"]), event)
        last = max(unique, default=0)
        later = await _get(http, f"{base}/api/events?after_seq={last}&limit=1000")
        pending = int((await _get(http, f"{base}/api/status"))["outbox"]["pending"])
    report.figures["unsent_at_end"] = len(later) if later and pending >= len(later) else 0
    if later and pending < len(later):
        # logged after the last one received, and not waiting in the outbox either: lost
        # (an event logged in the last moment and still in the outbox is delivered at the
        # next connection: counted, not a violation)
        report.add("seq", f"{len(later)} logged event(s) after seq {last} never arrived",
                   first=later[0]["seq"], last=later[-1]["seq"], outbox_pending=pending)


def _ranges(values: list[int]) -> list[str]:
    """``[3, 4, 5, 9]`` -> ``["3-5", "9"]``."""
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return [f"{a}" if a == b else f"{a}-{b}" for a, b in runs]


# -- sagas and central -------------------------------------------------------------------
async def _sagas(http: aiohttp.ClientSession, base: str,
                 unique: dict[int, Json]) -> dict[str, Json]:
    """Every saga: the newest from the saga list, every other one the stream names."""
    sagas = {s["saga_id"]: s for s in await _get(http, f"{base}/api/sagas?limit=1000")}
    for state in ("running", "compensating"):
        for s in await _get(http, f"{base}/api/sagas?state={state}&limit=1000"):
            sagas[s["saga_id"]] = s
    named = {str(e["data"]["saga_id"]) for e in unique.values()
             if isinstance(e.get("data"), dict) and e["data"].get("saga_id")}
    for saga_id in sorted(named - sagas.keys()):
        async with http.get(f"{base}/api/sagas/{saga_id}") as resp:
            if resp.status == 200:
                sagas[saga_id] = await resp.json()
    # a terminal saga the daemon has since pruned (retention) is known by its events
    plates = {str(e["data"]["saga_id"]): e["data"]["license_plate"] for e in unique.values()
              if isinstance(e.get("data"), dict) and e["data"].get("saga_id")
              and e["data"].get("license_plate")}
    for e in unique.values():
        data = e.get("data") or {}
        saga_id = str(data.get("saga_id") or "")
        status = e["type"].removeprefix("saga_")
        if saga_id and saga_id not in sagas and status in TERMINAL:
            sagas[saga_id] = {"saga_id": saga_id, "kind": data.get("saga"), "status": status,
                              "plate": plates.get(saga_id, ""), "reason": data.get("reason"),
                              "created_at": e["ts"], "pruned": True}
    return sagas


async def _details(http: aiohttp.ClientSession, base: str,
                   sagas: dict[str, Json]) -> dict[str, Json]:
    """Each saga with its steps (what each step allocated, released, re-occupied)."""
    out: dict[str, Json] = {}
    for saga_id, saga in sagas.items():
        if saga.get("pruned"):
            out[saga_id] = saga  # its steps went with it
        elif saga["status"] in ("completed", "compensated"):
            out[saga_id] = await _get(http, f"{base}/api/sagas/{saga_id}")
    return out


def _check_terminal(report: Report, sagas: dict[str, Json]) -> None:
    for saga_id, s in sagas.items():
        if s["status"] not in TERMINAL:
            report.add("saga", f"saga {saga_id} is still {s['status']}",
                       kind=s["kind"], plate=s["plate"], reason=s.get("reason"))


def _check_central(report: Report, central: SimCentralState,
                   sagas: dict[str, Json]) -> None:
    live: dict[str, list[tuple[str, str, Json]]] = defaultdict(list)
    for kind, table in (("entry", central.entries), ("exit", central.exits)):
        for record_id, record in table.items():
            key = str(record.get("idempotency_key", ""))
            saga_id = key.split(":", 1)[0]
            if record.get("status") == "active":
                live[saga_id].append((kind, record_id, record))
            ref = str(record.get("entry_id") or "")
            if kind == "exit" and ref.startswith("local-"):
                report.add("central", f"exit record {record_id} names a local id",
                           entry_id=ref, key=key)
    for saga_id, records in live.items():
        saga = sagas.get(saga_id)
        if saga is None:
            report.add("central", f"live record(s) at central for saga {saga_id}, which "
                       "the gateway does not know", records=[r[1] for r in records])
            continue
        kinds = Counter(r[0] for r in records)
        if saga["status"] == "compensated":
            report.add("central", f"compensated {saga['kind']} saga {saga_id} has a live "
                       "record at central", plate=saga["plate"], records=[
                           (r[1], r[2]["idempotency_key"]) for r in records])
        elif kinds[saga["kind"]] > 1:
            report.add("central", f"{saga['kind']} saga {saga_id} recorded "
                       f"{kinds[saga['kind']]} times at central", plate=saga["plate"])
    for saga_id, saga in sagas.items():
        if saga["status"] == "completed" and not any(
                kind == saga["kind"] for kind, _, _ in live.get(saga_id, [])):
            report.add("central", f"completed {saga['kind']} saga {saga_id} has no live "
                       "record at central", plate=saga["plate"], reason=saga.get("reason"))


# -- spaces and occupancy ----------------------------------------------------------------
def _check_spaces(report: Report, details: dict[str, Json], spaces: list[Json],
                  status: Json) -> None:
    """Sessions from the saga log (an entry saga that completed opens one on the space it
    allocated; an exit saga that names it ends it when it completes, or puts it on the
    space it re-occupied when compensated), against the space table."""
    sessions: dict[str, Json] = {}
    for saga_id, saga in details.items():
        if saga["kind"] == "entry" and saga["status"] == "completed":
            space = _result(saga, "allocate_parking_space").get("space_id")
            sessions[saga_id] = {"plate": saga["plate"], "space": space, "exits": 0,
                                 "exit_sagas": []}
    pruned_exits: set[str] = set()  # plates with an exit saga that retention pruned
    for saga_id, saga in sorted(details.items(), key=lambda kv: kv[1]["created_at"]):
        if saga["kind"] != "exit":
            continue
        if saga.get("pruned"):  # its steps went with it: which session it ended is unknown
            if saga["status"] == "completed":
                pruned_exits.add(saga["plate"])
            continue
        entry = _result(saga, "release_parking_space").get("entry_saga_id")
        session = sessions.get(str(entry))
        if session is None:
            continue
        if saga["status"] == "completed":
            session["exits"] += 1
            session["exit_sagas"].append((saga_id, saga["created_at"]))
            if session["exits"] > 1:
                report.add("space", f"the session of {session['plate']} ended twice",
                           entry_saga=entry, exit_sagas=session["exit_sagas"])
        elif saga["status"] == "compensated":
            undo = _result(saga, "reoccupy_parking_space", "compensation")
            if undo:  # inside again: on the space it got back, or none (over capacity)
                session["space"] = undo.get("space_id")
    for session in sessions.values():
        if not session["exits"] and session["plate"] in pruned_exits:
            session["exits"] = 1  # a pruned exit of this plate: taken as its end
    live = {k: v for k, v in sessions.items() if not v["exits"]}
    table = {s["space_id"]: s for s in spaces if s["state"] == "allocated"}
    by_space: dict[str, list[str]] = defaultdict(list)
    over = {k for k, v in live.items() if v["space"] is None}  # let in, lot full: no space
    report.figures["over_capacity"] = len(over)
    report.figures["over_capacity_plates"] = sorted(live[k]["plate"] for k in over)
    for saga_id, session in live.items():
        if saga_id not in over:
            by_space[str(session["space"])].append(saga_id)
    for space, holders in by_space.items():
        if len(holders) > 1:
            report.add("space", f"space {space} held by {len(holders)} sessions",
                       plates=[live[h]["plate"] for h in holders], entry_sagas=holders)
    live_plates = {v["plate"] for v in live.values()}
    for saga_id, session in live.items():
        if saga_id in over:
            continue
        row = table.get(str(session["space"]))
        if row is None or row["plate"] != session["plate"]:
            report.add("space", f"the session of {session['plate']} holds "
                       f"{session['space']}, which the space table gives to "
                       f"{row['plate'] if row else 'nobody'}", entry_saga=saga_id)
    for space, row in table.items():
        if row["plate"] not in live_plates:
            report.add("space", f"space {space} is allocated to {row['plate']}, who has no "
                       "session", saga=row["saga_id"])
    by_plate = Counter(s["plate"] for s in table.values())
    for plate, n in by_plate.items():
        if n > 1:
            report.add("space", f"plate {plate} holds {n} spaces", spaces=[
                k for k, s in table.items() if s["plate"] == plate])
    if status["occupancy"]["allocated"] != len(table):
        report.add("space", "the status's occupancy disagrees with the space table",
                   status=status["occupancy"], table=len(table))
    report.figures["live_sessions"] = len(live)


def _result(saga: Json, step: str, phase: str = "forward") -> Json:
    for s in saga.get("steps", []):
        if s["name"] == step and s["phase"] == phase and s["status"] == "succeeded":
            return dict(s.get("result") or {})
    return {}


def _check_occupancy(report: Report, vehicles: list[Vehicle], spaces: list[Json],
                     sagas: dict[str, Json]) -> None:
    inside: dict[str, bool] = {}  # plate -> inside, by the world, in the order things happened
    ambiguous: set[str] = set()  # plates whose last vehicle's fate a kill made unknown
    tailgaters: set[str] = set()
    entered_by_saga = {s["plate"] for s in sagas.values()
                       if s["kind"] == "entry" and s["status"] == "completed"}
    for v in vehicles:
        if v.ambiguous:
            ambiguous.add(v.plate)
        elif v.status == "passed":
            ambiguous.discard(v.plate)  # driven through since: known again
            inside[v.plate] = v.lane.startswith("entry")
            if v.follower and v.lane.startswith("entry") and v.plate not in entered_by_saga:
                tailgaters.add(v.plate)  # under the raised arm, behind another: no saga
    world = {p for p, is_in in inside.items() if is_in} - ambiguous - tailgaters
    held = {s["plate"]: s["space_id"] for s in spaces if s["state"] == "allocated"}
    def seen(plate: str) -> list[str]:
        return [f"{v.vehicle_id}@{v.lane} life {v.life} {v.behaviour}: {v.status}"
                f"{' (fate unknown)' if v.ambiguous else ''}"
                for v in vehicles if v.plate == plate]

    over = set(report.figures.get("over_capacity_plates", []))  # let in with the lot full
    for plate in sorted(world - held.keys() - over):
        report.add("occupancy", f"{plate} is inside but holds no space", world=seen(plate))
    for plate in sorted(held.keys() - world - ambiguous - tailgaters):
        why = "never came in" if plate not in inside else "has left"
        report.add("occupancy", f"space {held[plate]} held for {plate}, which {why}",
                   world=seen(plate))
    report.figures.update({"inside": len(world), "spaces_held": len(held),
                           "fate_unknown": len(ambiguous), "tailgaters": len(tailgaters)})


# -- relays and collisions ---------------------------------------------------------------
def _check_relays(report: Report, boards: list[tuple[int, Json]]) -> None:
    for kill, lanes in boards:
        for lane, levels in lanes.items():
            on = [pin for pin in RELAY_PINS if levels.get(pin)]
            if on:
                report.add("relays", f"after kill {kill} and relays-off, lane {lane} still "
                           f"has {', '.join(on)} energised", board=levels)


def _check_collisions(report: Report, seen: Observed, world: Json) -> None:
    lives = dict(seen.collisions_by_life)
    lives[seen.life] = max(lives.get(seen.life, 0), int(world["collisions"]))  # running
    for life, n in sorted(lives.items()):
        if n:
            hit = [(v.vehicle_id, v.plate, v.behaviour) for v in seen.vehicles
                   if v.life == life and v.collisions]
            report.add("collisions", f"{n} collision(s) in the daemon's life {life}",
                       vehicles=hit)
