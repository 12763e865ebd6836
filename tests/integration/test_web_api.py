"""Every route of the web API, in-process: a real Gateway (simulated lanes, a real SQLite
file under tmp_path, the sim central on 127.0.0.1) behind pytest-aiohttp's
``aiohttp_client(make_app(gateway))``. Each JSON reply is checked against the OpenAPI
document's schema for its route and status (jsonschema, independent of the msgspec types
the handlers encode with) and decoded strictly into its type; admin routes refuse with no
token, a wrong one, or none configured (401, nothing changed) and act with it (recorded
with who and why); bodies over the limit are a JSON 413, malformed ones a 400 with the
reason; unknown lanes, spaces, sagas and vehicles 404; the plate in a path is validated;
the event stream streams in-process. The daemon-as-process tests stay for the end to end
(tests/e2e/). A gateway starts in about 0.1 s, so each test has its own (the ~20 s of this
file are the simulated vehicles)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema_rs
import msgspec
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import Gateway
from gateway.settings import parse_settings
from gateway.web import schemas as s
from gateway.web.app import make_app
from gateway.web.http import MAX_BODY
from gateway.web.openapi import OPENAPI
from tests.broker import free_port
from tests.e2e.daemon import ADMIN_TOKEN, e2e_config, until

QUIET = "[permits]\nsync = false\n"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
Client = TestClient[Any, Any]
ClientFactory = Callable[[Any], Awaitable[Client]]


def _template(path: str) -> str:
    """The document's path for a request path (``/api/sagas/x`` -> ``/api/sagas/{saga_id}``)."""
    bare = path.split("?")[0]
    for template in OPENAPI["paths"]:
        pattern = re.sub(r"\\{[a-z_]+\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, bare):
            return str(template)
    raise AssertionError(f"{bare} is not in the document")


async def checked(resp: aiohttp.ClientResponse, status: int, type_: Any = None) -> Any:
    """The reply, after checking its status, that the document lists that status for the
    route with the reply's media type, and (JSON) that the body is valid against the
    document's schema and decodes strictly into ``type_`` (``Error`` for an error); the
    headers the document requires (the security headers) are there."""
    body = await resp.read()
    assert resp.status == status, (resp.method, resp.url, resp.status, body[:300])
    op = OPENAPI["paths"][_template(resp.url.path)][resp.method.lower()]
    documented = op["responses"].get(str(status))
    assert documented is not None, (resp.method, resp.url.path, status, "not documented")
    for header, spec in documented.get("headers", {}).items():
        assert not spec.get("required") or header in resp.headers, (resp.url.path, header)
    if "content" not in documented:  # 304
        assert body == b"", (resp.url.path, status, body[:100])
        return body
    media = resp.content_type
    assert media in documented["content"], (resp.url.path, status, media)
    if media != "application/json":
        return body
    schema = {**documented["content"][media]["schema"], "components": OPENAPI["components"]}
    value = msgspec.json.decode(body)
    errors = [e.message for e in jsonschema_rs.Draft202012Validator(schema).iter_errors(value)]
    assert not errors, (resp.url.path, errors[:5])
    if type_ is None and status >= 400:
        type_ = s.Error
    return msgspec.json.decode(body, type=type_) if type_ is not None else value


@pytest.fixture
async def gateway(tmp_path: Path, sim_central: Any) -> AsyncIterator[Gateway]:
    gw = Gateway(parse_settings(e2e_config(tmp_path, sim_central.url, QUIET),
                                env={"GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


@pytest.fixture
async def client(gateway: Gateway, aiohttp_client: ClientFactory) -> Client:
    return await aiohttp_client(make_app(gateway))


async def drive(client: Client, lane: str, plate: str, behaviour: str = "pass") -> s.SimVehicle:
    """A simulated vehicle through the lane, each of its states read as the API gives it."""
    resp = await client.post(f"/api/sim/lanes/{lane}/vehicles",
                             json={"plate": plate, "behaviour": behaviour})
    vid = (await checked(resp, 202, s.SimVehicleAccepted)).vehicle_id

    async def done() -> s.SimVehicle | None:
        vehicle = await checked(await client.get(f"/api/sim/vehicles/{vid}"), 200,
                                s.SimVehicle)
        await checked(await client.get("/api/sim/world"), 200, s.SimWorld)
        await checked(await client.get("/api/status"), 200, s.Status)
        return vehicle if vehicle.status in ("passed", "left") else None

    vehicle: s.SimVehicle = await until(done, 20, f"{behaviour} vehicle {plate} done", 0.05)
    return vehicle


async def settled(client: Client) -> None:
    async def idle() -> bool:
        sagas = await checked(await client.get("/api/sagas?state=running"), 200, list[s.Saga])
        status = await checked(await client.get("/api/status"), 200, s.Status)
        return not sagas and all(lane.state == "idle" for lane in status.lanes)
    await until(idle, 10, "no saga running and every lane idle")


async def events_of(client: Client, type_: str) -> list[s.Event]:
    events = await checked(await client.get("/api/events?limit=1000"), 200, list[s.Event])
    return [e for e in events if e.type == type_]


# -- read routes -------------------------------------------------------------------------
async def test_read_routes_answer_in_their_schema(client: Client) -> None:
    assert (await drive(client, "entry-1", "34ABC123")).status == "passed"
    assert (await drive(client, "entry-1", "06XYZ99", "back_out")).status == "left"
    assert (await drive(client, "exit-1", "34ABC123")).status == "passed"
    await settled(client)

    health = await checked(await client.get("/healthz"), 200, s.Health)
    assert health.healthy and health.problems == []
    status = await checked(await client.get("/api/status"), 200, s.Status)
    assert status.gate_id == "e2e-gate" and [lane.id for lane in status.lanes] == \
        ["entry-1", "exit-1"]
    entry = status.lanes[0]
    assert entry.last.status == "compensated" and entry.last.license_plate == "06XYZ99"
    assert status.occupancy.zones and status.occupancy.zones[0].zone == "A"
    assert status.simulation is not None and status.sim_central is None  # an outside central

    events = await checked(await client.get("/api/events?after_seq=0&limit=5"), 200,
                           list[s.Event])
    assert [e.seq for e in events] == sorted(e.seq for e in events) and len(events) == 5
    later = await checked(await client.get(f"/api/events?after_seq={events[-1].seq}"), 200,
                          list[s.Event])
    assert later and later[0].seq > events[-1].seq
    spaces = await checked(await client.get("/api/spaces"), 200, list[s.Space])
    assert len(spaces) == 10 and all(space.state == "free" for space in spaces)

    sagas = await checked(await client.get("/api/sagas"), 200, list[s.Saga])
    assert {(x.kind, x.status) for x in sagas} == \
        {("entry", "completed"), ("entry", "compensated"), ("exit", "completed")}
    (completed,) = await checked(await client.get("/api/sagas?state=completed&limit=1"), 200,
                                 list[s.Saga])
    assert completed.status == "completed"
    backed_out = next(x for x in sagas if x.status == "compensated")
    detail = await checked(await client.get(f"/api/sagas/{backed_out.saga_id}"), 200,
                           s.SagaDetail)
    assert any(step.phase == "compensation" for step in detail.steps)
    assert any(step.attempt_log for step in detail.steps)
    assert {e.type for e in detail.events} >= {"saga_compensated"}
    assert "image_jpeg_b64" not in detail.context
    assert {image.kind for image in detail.images} == {"crop", "frame"}
    for image in detail.images:  # the frame needs the token ([images] public = "crops")
        if not image.public:
            await checked(await client.get(image.url), 401, s.Error)
        jpeg = await checked(await client.get(image.url, headers=AUTH), 200)
        assert jpeg.startswith(b"\xff\xd8") and len(jpeg) == image.bytes

    vehicles = await checked(await client.get("/api/vehicles?limit=2"), 200, s.VehicleList)
    assert [v.license_plate for v in vehicles.vehicles] == ["34ABC123", "06XYZ99"]
    assert vehicles.vehicles[1].compensated and vehicles.vehicles[0].kind == "exit"
    latency = await checked(await client.get("/api/latency"), 200, s.Latency)
    assert {row.lane_id for row in latency.vehicles} == {"entry-1", "exit-1"}
    assert all(row.total is not msgspec.UNSET for row in latency.vehicles)
    permits = await checked(await client.get("/api/permits"), 200, s.PermitList)
    assert permits.permits == []

    world = await checked(await client.get("/api/sim/world"), 200, s.SimWorld)
    assert set(world.arm) == {"entry-1", "exit-1"} and world.collisions == 0
    metrics = await checked(await client.get("/metrics"), 200)
    assert b"parking_healthy 1.0" in metrics
    assert (await client.get("/api/openapi.json")).status == 200
    assert await (await client.get("/api/openapi.json")).json() == OPENAPI
    page = await checked(await client.get("/"), 200)
    assert b"entry-1" in page
    for link in re.findall(rb'/static/[a-z.]+\?v=[0-9a-f]+', page):  # the page's own files
        resp = await client.get(link.decode())
        await checked(resp, 200)
        assert "immutable" in resp.headers["Cache-Control"]
        again = await client.get(link.decode(), headers={"If-None-Match": resp.headers["ETag"]})
        await checked(again, 304)


async def test_vehicles_of_every_kind_are_described(client: Client) -> None:
    """Vehicles that pass through states a plain pass does not (a follower, a long
    vehicle, a reversing one, a stall): every reply read while they move is in its
    schema (``drive`` reads the vehicle, the world and the status at each step)."""
    runs = [("entry-1", [("34TLG001", "tailgate"), ("34RVS002", "reverse")]),
            ("exit-1", [("34TRL003", "trailer"), ("34MTB004", "motorbike")])]

    async def lane_runs(lane: str, vehicles: list[tuple[str, str]]) -> None:
        for plate, behaviour in vehicles:
            await drive(client, lane, plate, behaviour)

    await asyncio.gather(*(lane_runs(lane, vehicles) for lane, vehicles in runs))
    await settled(client)
    world = await checked(await client.get("/api/sim/world"), 200, s.SimWorld)
    assert world.collisions == 0
    await checked(await client.get("/api/vehicles"), 200, s.VehicleList)
    for saga in await checked(await client.get("/api/sagas"), 200, list[s.Saga]):
        await checked(await client.get(f"/api/sagas/{saga.saga_id}"), 200, s.SagaDetail)


async def test_the_event_stream_streams_each_event_with_its_seq(
        client: Client, gateway: Gateway) -> None:
    first = await gateway.store.record_event(gateway.clock, "e2e-gate", "test_tick", {"n": 1})
    async with client.get(f"/api/events/stream?after_seq={first['seq'] - 1}") as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        await gateway.store.record_event(gateway.clock, "e2e-gate", "test_tick", {"n": 2})
        seen: list[s.Event] = []
        async with asyncio.timeout(5):
            while len(seen) < 2:
                line = (await resp.content.readline()).rstrip(b"\n")
                if line.startswith(b"id: "):
                    seq = int(line[4:])
                elif line.startswith(b"data: "):
                    event = msgspec.json.decode(line[6:], type=s.Event)
                    assert event.seq == seq
                    seen.append(event)
    assert [(e.type, e.data) for e in seen] == [("test_tick", {"n": 1}), ("test_tick", {"n": 2})]
    # a page that reconnects resumes after the last id it saw
    headers = {"Last-Event-ID": str(seen[0].seq)}
    async with client.get("/api/events/stream", headers=headers) as resp:
        async with asyncio.timeout(5):
            while not (line := await resp.content.readline()).startswith(b"data: "):
                pass
        assert msgspec.json.decode(line[6:], type=s.Event).seq == seen[1].seq


# -- admin routes ------------------------------------------------------------------------
ADMIN_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/admin/check", None),
    ("POST", "/api/lanes/entry-1/open", {"who": "mallory", "why": "no token"}),
    ("POST", "/api/lanes/entry-1/mode", {"mode": "closed"}),
    ("POST", "/api/spaces/A-001/state", {"state": "out_of_service"}),
    ("PUT", "/api/permits/34RES1", {"kind": "staff"}),
    ("DELETE", "/api/permits/34RES1", None),
    ("POST", "/api/sim/faults", {"wall_synced": False}),
]


# the events an admin or simulation call would record (the daemon records others of its own)
ACTIONS = {"manual_open", "lane_mode_changed", "lane_mode_refused", "space_state_changed",
           "permit_changed", "vehicle_detected"}


async def _snapshot(client: Client) -> Any:
    """What an admin or simulation call would change."""
    status = await checked(await client.get("/api/status"), 200, s.Status)
    return (
        [(lane.mode, lane.barrier, lane.state) for lane in status.lanes],
        status.wall_synced,
        [x.state for x in await checked(await client.get("/api/spaces"), 200, list[s.Space])],
        await checked(await client.get("/api/permits"), 200, s.PermitList),
        [e.seq for e in await checked(await client.get("/api/events?limit=1000"), 200,
                                      list[s.Event]) if e.type in ACTIONS],
    )


NOT_THE_TOKEN: list[dict[str, str]] = [
    {}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}, {"Authorization": ADMIN_TOKEN},
    {"Authorization": f"Basic {ADMIN_TOKEN}"}, {"X-Admin-Token": ADMIN_TOKEN}]


async def test_admin_routes_refuse_without_the_token_and_change_nothing(client: Client) -> None:
    await settled(client)
    before = await _snapshot(client)
    for headers in NOT_THE_TOKEN:
        for method, path, body in ADMIN_CALLS:
            resp = await client.request(method, path, json=body, headers=headers)
            refused = await checked(resp, 401, s.Error)
            assert refused.error == "a valid admin token is required", (headers, path)
    # a token in the URL is never taken
    resp = await client.get(f"/api/admin/check?token={ADMIN_TOKEN}")
    await checked(resp, 401, s.Error)
    assert await _snapshot(client) == before


async def test_admin_routes_refuse_when_no_token_is_configured(
        tmp_path: Path, sim_central: Any, aiohttp_client: ClientFactory) -> None:
    gw = Gateway(parse_settings(e2e_config(tmp_path, sim_central.url, QUIET), env={}))
    await gw.start()
    try:
        client = await aiohttp_client(make_app(gw))
        before = await _snapshot(client)
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
            for method, path, body in ADMIN_CALLS:
                resp = await client.request(method, path, json=body, headers=headers)
                assert (await checked(resp, 401, s.Error)).error == \
                    "no admin token is configured"
        assert await _snapshot(client) == before
    finally:
        await gw.stop()


async def test_admin_routes_act_with_the_token_and_record_who_and_why(client: Client) -> None:
    await settled(client)
    ok = await checked(await client.get("/api/admin/check", headers=AUTH), 200, s.AdminCheck)
    assert ok.ok is True

    opened = await checked(await client.post("/api/lanes/exit-1/open", headers=AUTH,
                                             json={"who": "ops", "why": "ambulance"}),
                           200, s.ManualOpenReply)
    assert opened.lane_id == "exit-1"
    (manual,) = await events_of(client, "manual_open")
    assert (manual.data["who"], manual.data["why"]) == ("ops", "ambulance")

    closed = await checked(await client.post("/api/lanes/entry-1/mode", headers=AUTH,
                                             json={"mode": "closed", "who": "ops",
                                                   "why": "works"}), 200, s.LaneModeReply)
    assert (closed.mode, closed.changed, closed.reason) == ("closed", True, "")
    status = await checked(await client.get("/api/status"), 200, s.Status)
    assert status.lanes[0].mode == "closed"
    (changed,) = await events_of(client, "lane_mode_changed")
    assert (changed.data["who"], changed.data["mode"]) == ("ops", "closed")
    again = await checked(await client.post("/api/lanes/entry-1/mode", headers=AUTH, json={}),
                          200, s.LaneModeReply)
    assert (again.mode, again.changed) == ("normal", True)

    space = await checked(await client.post("/api/spaces/A-001/state", headers=AUTH,
                                            json={"state": "out_of_service", "who": "ops",
                                                  "why": "paint"}), 200, s.SpaceStateReply)
    assert space.state == "out_of_service"
    spaces = await checked(await client.get("/api/spaces"), 200, list[s.Space])
    assert spaces[0].space_id == "A-001" and spaces[0].state == "out_of_service"
    (space_event,) = await events_of(client, "space_state_changed")
    assert space_event.data["why"] == "paint"

    put = await client.put("/api/permits/34 res-1", headers=AUTH, json={
        "kind": "delivery", "valid_from": "2026-12-01T08:00:00z",
        "valid_until": "2026-12-01T18:00:00+01:00", "note": "parcels", "who": "ops"})
    permit = await checked(put, 200, s.PermitSet)
    assert (permit.license_plate, permit.valid_from) == ("34RES1", "2026-12-01T08:00:00Z")
    listed = await checked(await client.get("/api/permits"), 200, s.PermitList)
    assert [(p.plate, p.kind, p.source, p.note) for p in listed.permits] == \
        [("34RES1", "delivery", "local", "parcels")]
    deleted = await checked(await client.request("DELETE", "/api/permits/34RES1",
                                                 headers=AUTH, json={"why": "left"}),
                            200, s.PermitDeleted)
    assert deleted.deleted
    await checked(await client.delete("/api/permits/34RES1", headers=AUTH), 404, s.Error)
    assert [e.data["action"] for e in await events_of(client, "permit_changed")] == \
        ["set", "deleted"]

    faults = await checked(await client.post("/api/sim/faults", headers=AUTH,
                                             json={"wall_synced": False}), 200, s.DaemonFaults)
    assert faults.wall_synced is False
    status = await checked(await client.get("/api/status"), 200, s.Status)
    assert status.wall_synced is False


async def test_an_allocated_space_cannot_be_taken_out_of_service(client: Client) -> None:
    await drive(client, "entry-1", "34ABC123")
    await settled(client)
    taken = next(x for x in await checked(await client.get("/api/spaces"), 200, list[s.Space])
                 if x.state == "allocated")
    resp = await client.post(f"/api/spaces/{taken.space_id}/state", headers=AUTH,
                             json={"state": "out_of_service"})
    assert "allocated" in (await checked(resp, 409, s.Error)).error


# -- bodies, parameters, unknown things --------------------------------------------------
BODY_ROUTES: list[tuple[str, str, bool]] = [
    ("POST", "/api/lanes/entry-1/open", True),
    ("POST", "/api/lanes/entry-1/mode", True),
    ("POST", "/api/spaces/A-001/state", True),
    ("PUT", "/api/permits/34RES1", True),
    ("DELETE", "/api/permits/34RES1", True),
    ("POST", "/api/sim/lanes/entry-1/vehicles", False),
    ("POST", "/api/sim/backup/fault", False),
    ("POST", "/api/sim/faults", True),
]


async def test_bodies_over_the_limit_are_a_json_413(client: Client) -> None:
    for method, path, admin in BODY_ROUTES:
        if path == "/api/sim/backup/fault":
            continue  # no sim backup in this daemon: 404 before the body is read
        big = b'{"why": "' + b"x" * MAX_BODY + b'"}'
        resp = await client.request(method, path, data=big, headers={
            **(AUTH if admin else {}), "Content-Type": "application/json"})
        error = await checked(resp, 413, s.Error)
        assert error.error == f"the body is larger than {MAX_BODY} bytes"
    # at the limit: read, then judged on what it says
    padded = b'{"state": "free"}'.ljust(MAX_BODY, b" ")
    resp = await client.post("/api/spaces/A-002/state", data=padded, headers=AUTH)
    assert (await checked(resp, 200, s.SpaceStateReply)).state == "free"


MALFORMED: list[tuple[str, str, bytes, str]] = [
    ("POST", "/api/lanes/entry-1/open", b"not json", "malformed"),
    ("POST", "/api/lanes/entry-1/open", b'{"who": 5}', "who"),
    ("POST", "/api/lanes/entry-1/open", b'{"who": ""}', "who"),
    ("POST", "/api/lanes/entry-1/open", b'{"why": "' + b"w" * 201 + b'"}', "why"),
    ("POST", "/api/lanes/entry-1/mode", b'{"mode": "open"}', "mode"),
    ("POST", "/api/lanes/entry-1/open", b'{"by": "me"}', "unknown field"),
    ("POST", "/api/spaces/A-001/state", b"{}", "state"),
    ("POST", "/api/spaces/A-001/state", b'{"state": "allocated"}', "state"),
    ("PUT", "/api/permits/34RES1", b'{"kind": "vip"}', "kind"),
    ("PUT", "/api/permits/34RES1", b'{"valid_from": "tomorrow"}', "RFC 3339"),
    ("PUT", "/api/permits/34RES1", b'{"valid_from": ""}', "RFC 3339"),
    ("PUT", "/api/permits/34RES1", b'{"valid_until": "2026-12-01"}', "RFC 3339"),
    ("PUT", "/api/permits/34RES1", b'{"valid_until": "2026-13-01T00:00:00Z"}', "RFC 3339"),
    ("PUT", "/api/permits/34RES1", b'{"valid_from": "2026-12-02T00:00:00Z", '
                                   b'"valid_until": "2026-12-01T00:00:00Z"}', "after"),
    ("POST", "/api/sim/lanes/entry-1/vehicles", b'{"plate": "34abc123"}', "plate"),
    ("POST", "/api/sim/lanes/entry-1/vehicles", b'{"plate": "A", "behaviour": "fly"}',
     "behaviour"),
    ("POST", "/api/sim/lanes/entry-1/vehicles", b"[]", "object"),
    ("POST", "/api/sim/faults", b'{"wall_offset_s": 1e300}', "wall_offset_s"),
    ("POST", "/api/sim/faults", b'{"disk_full": "yes"}', "disk_full"),
]


async def test_a_malformed_body_is_a_400_with_the_reason(client: Client) -> None:
    before = await _snapshot(client)
    for method, path, body, reason in MALFORMED:
        resp = await client.request(method, path, data=body, headers=AUTH)
        error = await checked(resp, 400, s.Error)
        assert reason.lower() in error.error.lower(), (body, error.error)
    assert await _snapshot(client) == before


async def test_a_plate_in_the_path_is_validated_and_kept_in_one_form(client: Client) -> None:
    for raw in ("1234567890123", "<b>x", "34%20ABC%3C", "-", "%20", "ı", "٣٤ABC", "34ABC%0A",
                "34_ABC"):
        for method in ("PUT", "DELETE"):
            resp = await client.request(method, f"/api/permits/{raw}", headers=AUTH, json={})
            assert "plate" in (await checked(resp, 400, s.Error)).error, raw
    assert (await checked(await client.get("/api/permits"), 200, s.PermitList)).permits == []
    for raw, kept in (("34ABC123", "34ABC123"), ("34 abc-123", "34ABC123"), ("a", "A"),
                      ("1-2-3-4-5-6-7-8-9-0-1-2", "123456789012")):
        resp = await client.put(f"/api/permits/{raw}", headers=AUTH, json={})
        assert (await checked(resp, 200, s.PermitSet)).license_plate == kept
    listed = await checked(await client.get("/api/permits"), 200, s.PermitList)
    assert [p.plate for p in listed.permits] == ["123456789012", "34ABC123", "A"]


UNKNOWN: list[tuple[str, str, bool]] = [
    ("GET", "/api/sagas/no-such-saga", False),
    ("GET", "/api/lanes/no-such-lane/plate.jpg", False),
    ("GET", "/api/lanes/entry-1/plate.jpg", False),  # no local reading yet
    ("POST", "/api/lanes/no-such-lane/open", True),
    ("POST", "/api/lanes/no-such-lane/mode", True),
    ("POST", "/api/spaces/Z-999/state", True),
    ("POST", "/api/sim/lanes/no-such-lane/vehicles", False),
    ("GET", "/api/sim/vehicles/no-such-vehicle", False),
    ("POST", "/api/sim/central/fault", False),  # the central is outside this daemon
    ("POST", "/api/sim/backup/fault", False),  # and there is no sim backup
    ("GET", "/static/no-such-file.js", False),
    ("GET", "/api/sagas/no-such-saga/images/crop.jpg", True),
]


async def test_unknown_things_are_a_json_404(client: Client) -> None:
    for method, path, admin in UNKNOWN:
        body = {"state": "free"} if "spaces" in path else {"plate": "A"} \
            if "vehicles" in path else {}
        resp = await client.request(method, path, json=body, headers=AUTH if admin else {})
        await checked(resp, 404, s.Error)


async def test_query_integers_are_checked_and_clamped(client: Client) -> None:
    for path in ("/api/events?after_seq=x", "/api/events?limit=1.5", "/api/sagas?limit=ten",
                 "/api/vehicles?limit=", "/api/latency?limit=0x10",
                 "/api/events/stream?after_seq=y"):
        error = await checked(await client.get(path), 400, s.Error)
        assert "must be an integer" in error.error, path
    await drive(client, "entry-1", "34ABC123")
    for path in ("/api/events?limit=-5", "/api/sagas?limit=-1", "/api/vehicles?limit=-1"):
        assert (await checked(await client.get(path), 200)) in ([], {"vehicles": []})
    big = await checked(await client.get(f"/api/events?after_seq={10**30}&limit={10**30}"),
                        200, list[s.Event])
    assert big == []


# -- the types hold the shape ------------------------------------------------------------
async def test_encoding_through_the_type_keeps_the_shape_and_refuses_a_new_field(
        client: Client, gateway: Gateway) -> None:
    """The status snapshot is also the MQTT state payload: encoding it through ``Status``
    gives back exactly what ``Gateway.status()`` built (no field added, none dropped); a
    field the type does not describe is refused (a 500 on the route), not sent."""
    await drive(client, "entry-1", "34ABC123")
    status = await gateway.status()
    plain = msgspec.json.decode(msgspec.json.encode(status))
    assert msgspec.json.decode(s.encode(status, s.Status)) == plain
    with pytest.raises(msgspec.ValidationError, match="unknown field `new_field`"):
        s.encode({**status, "new_field": 1}, s.Status)
    lane = {**status["lanes"][0], "new_field": 1}
    with pytest.raises(msgspec.ValidationError, match=r"\$\.lanes\[0\]"):
        s.encode({**status, "lanes": [lane]}, s.Status)


# -- with and without the simulation -----------------------------------------------------
async def test_the_simulation_routes_are_404_when_the_daemon_does_not_simulate(
        tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    """A gate with real hardware (here: no lanes at all) and no simulation."""
    config = f"""
[gate]
id = "real-gate"
data_dir = "{tmp_path}"
[central]
base_urls = ["http://127.0.0.1:{free_port()}"]
[web]
port = 0
[[zones]]
name = "A"
spaces = 3
"""
    gw = Gateway(parse_settings(config, env={"GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}))
    await gw.start()
    try:
        client = await aiohttp_client(make_app(gw))
        for method, path, admin in (
                ("GET", "/api/sim/world", False), ("GET", "/api/sim/vehicles/v1", False),
                ("POST", "/api/sim/lanes/entry-1/vehicles", False),
                ("POST", "/api/sim/central/fault", False),
                ("POST", "/api/sim/backup/fault", False), ("POST", "/api/sim/faults", True)):
            resp = await client.request(method, path, json={"plate": "A"},
                                        headers=AUTH if admin else {})
            assert "not" in (await checked(resp, 404, s.Error)).error
        status = await checked(await client.get("/api/status"), 200, s.Status)
        assert (status.lanes, status.simulation, status.sim_central, status.sim_backup) == \
            ([], None, None, None)
        health = await client.get("/healthz")
        await checked(health, health.status, s.Health)
    finally:
        await gw.stop()


async def test_the_sim_central_in_the_daemon_switches_its_fault_mode(
        tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    config = e2e_config(tmp_path, url, QUIET).replace(
        "[simulation]\nenabled = true", "[simulation]\nenabled = true\nstart_central = true")
    gw = Gateway(parse_settings(config, env={"GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}))
    await gw.start()
    try:
        client = await aiohttp_client(make_app(gw))
        for mode in ("refuse", "slow", "ok"):
            resp = await client.post("/api/sim/central/fault",
                                     json={"mode": mode, "fail_fraction": 0.25, "delay_s": 1})
            faults = await checked(resp, 200, s.SimCentralFaults)
            assert (faults.mode, faults.fail_fraction, faults.delay_s) == (mode, 0.25, 1.0)
            status = await checked(await client.get("/api/status"), 200, s.Status)
            assert status.sim_central is not None and status.sim_central.mode == mode
        resp = await client.post("/api/sim/central/fault", json={"mode": "meltdown"})
        assert "mode" in (await checked(resp, 400, s.Error)).error
    finally:
        await gw.stop()


async def test_a_refused_vehicle_counts_for_the_decision_stage(client: Client,
                                                               sim_central: Any,
                                                               gateway: Gateway) -> None:
    """A denial is a decision too, and a slow one is as slow for the driver: /metrics'
    decision histogram and /api/latency (the page's chart) count it, up to its decision
    (it has no relay and no total), beside the vehicle let through."""
    sim_central.state.blocked.add("66BAD66")
    assert (await drive(client, "entry-1", "66BAD66")).status == "left"  # turned away
    assert (await drive(client, "entry-1", "34ABC123")).status == "passed"
    await settled(client)
    latency = await checked(await client.get("/api/latency"), 200, s.Latency)
    metrics = await (await client.get("/metrics")).text()
    counts = dict(re.findall(r'parking_stage_latency_seconds_count\{lane="entry-1",'
                             r'stage="([a-z]+)"\} ([0-9.]+)', metrics))
    refused, opened = latency.vehicles
    assert refused.opened is False and opened.opened is True
    assert isinstance(refused.decision, float) and refused.decision > 0
    assert refused.relay is msgspec.UNSET and refused.total is msgspec.UNSET
    assert counts == {"frame": "2.0", "plate": "2.0", "decision": "2.0", "relay": "1.0",
                      "total": "1.0"}, counts
    # the JSON metrics (and the MQTT summaries made of them) likewise
    stages = (await gateway.metrics())["latency_ms"]
    assert {k: stages[f"entry-1.{k}"]["count"] for k in ("decision", "relay", "total")} \
        == {"decision": 2, "relay": 1, "total": 1}
