"""The aiohttp application of contracts/web-api.md."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import msgspec
from aiohttp import web

from gateway.clock import iso
from gateway.core.errors import PermanentError
from gateway.sim.backup import BACKUP_MODES
from gateway.sim.daemon_faults import DaemonFaultRequest
from gateway.sim.faults import FaultRequest
from gateway.sim.physics import BEHAVIOURS
from gateway.store import events, permits, saga_log, spaces
from gateway.web.openapi import OPENAPI
from gateway.web.page import add_page_routes
from gateway.web.prometheus import StageLatencies, render

if TYPE_CHECKING:
    from gateway.app import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
# the /metrics histograms, cumulative from one scrape to the next
LATENCIES: web.AppKey[StageLatencies] = web.AppKey("latencies", StageLatencies)
PLATE = re.compile(r"[A-Z0-9]{1,12}")
Plate = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{1,12}$")]


Behaviour = Literal["pass", "back_out", "stall", "tailgate", "trailer", "motorbike", "reverse",
                   "bumper", "stall_under_arm"]
assert set(get_args(Behaviour)) == set(BEHAVIOURS)  # one list: gateway.sim.physics


BackupMode = Literal["ok", "blackhole", "error", "garbage", "oversized", "slow", "duplicate",
                    "forge_correlation", "forge_plate"]
assert get_args(BackupMode) == BACKUP_MODES  # one list: gateway.sim.backup


class BackupFaultRequest(msgspec.Struct, forbid_unknown_fields=True):
    mode: BackupMode = "ok"
    fail_fraction: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    delay_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 2.0


class SimVehicleRequest(msgspec.Struct, forbid_unknown_fields=True):
    plate: Plate
    behaviour: Behaviour = "pass"


class ManualOpenRequest(msgspec.Struct, forbid_unknown_fields=True):
    who: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "operator"
    why: Annotated[str, msgspec.Meta(max_length=200)] = ""


class SpaceStateRequest(msgspec.Struct, forbid_unknown_fields=True):
    state: Literal["free", "out_of_service"]


TIME = Annotated[str, msgspec.Meta(max_length=40)]


class PermitRequest(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["resident", "staff", "delivery"] = "resident"
    valid_from: TIME | None = None
    valid_until: TIME | None = None
    note: Annotated[str, msgspec.Meta(max_length=200)] = ""


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(data), status=status,
                        content_type="application/json")


def _error(status: int, reason: str) -> web.Response:
    return _json({"error": reason}, status)


async def _body(request: web.Request, type_: type[Any]) -> Any:
    try:  # read(n) would return the first segment only: wait for all (or too much)
        raw = await request.content.readexactly(16_385)
    except asyncio.IncompleteReadError as exc:
        raw = exc.partial  # the whole body, within the cap
    if len(raw) > 16_384:
        raise web.HTTPRequestEntityTooLarge(  # JSON like every other error of the API
            max_size=16_384, actual_size=len(raw), content_type="application/json",
            text='{"error": "the body is larger than 16384 bytes"}')
    try:
        return msgspec.json.decode(raw or b"{}", type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise web.HTTPBadRequest(text=msgspec.json.encode({"error": str(exc)}).decode(),
                                 content_type="application/json") from None


def _admin(request: web.Request) -> None:
    token = request.app[GATEWAY].settings.admin_token.reveal()
    given = request.headers.get("Authorization", "")
    if not token:
        raise web.HTTPUnauthorized(text='{"error": "no admin token is configured"}',
                                   content_type="application/json")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise web.HTTPUnauthorized(text='{"error": "a valid admin token is required"}',
                                   content_type="application/json")


def _int(request: web.Request, name: str, default: int, high: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=f'{{"error": "{name} must be an integer"}}',
                                 content_type="application/json") from None
    return max(0, min(value, high))


async def healthz(request: web.Request) -> web.Response:
    problems = request.app[GATEWAY].health_problems()
    return _json({"healthy": not problems, "problems": problems}, 503 if problems else 200)


async def status(request: web.Request) -> web.Response:
    return _json(await request.app[GATEWAY].status())


async def prometheus(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body = render(await gw.status(), await gw.metrics(), request.app[LATENCIES],
                  {lane.id: lane.latencies for lane in gw.lanes.values()})
    return web.Response(body=body, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def openapi(request: web.Request) -> web.Response:
    return _json(OPENAPI)


async def list_events(request: web.Request) -> web.Response:
    after = _int(request, "after_seq", 0, 2**62)
    limit = _int(request, "limit", 100, 1000)
    store = request.app[GATEWAY].store
    return _json(await store.read(lambda c: events.list_after(c, after, limit)))


async def stream_events(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    after = _int(request, "after_seq", 0, 2**62)
    if "Last-Event-ID" in request.headers:
        with contextlib.suppress(ValueError):
            after = int(request.headers["Last-Event-ID"])
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache"})
    await resp.prepare(request)
    with contextlib.suppress(ConnectionResetError):  # the client went away: nothing to log
        await _follow(gw, resp, after)
    return resp


async def _follow(gw: Gateway, resp: web.StreamResponse, after: int) -> None:
    """Stream each event after ``after`` until the daemon stops. The commit count is taken
    before each read, so a commit during or after the read moves it and the wait returns at
    once; the stop moves it too (Gateway.stop and on_shutdown), so the stream ends at once."""
    if after == 0:  # a new page: start from the last few events
        latest = await gw.store.read(lambda c: c.execute("SELECT max(seq) FROM events")
                                     .fetchone()[0]) or 0
        after = max(0, int(latest) - 20)
    while not gw.stopping.is_set():
        seen = gw.commits  # before the read: a commit during or after it moves the count
        batch = await gw.store.read(partial(events.list_after, after_seq=after, limit=200))
        for event in batch:
            after = event["seq"]
            await resp.write(b"id: %d\ndata: %s\n\n" % (after, msgspec.json.encode(event)))
        if not batch and await gw.wait_for_commit(seen, 15.0) == seen \
                and not gw.stopping.is_set():
            await resp.write(b": keep-alive\n\n")  # 15 s without a commit


async def list_spaces(request: web.Request) -> web.Response:
    return _json(await request.app[GATEWAY].store.read(spaces.list_spaces))


async def list_sagas(request: web.Request) -> web.Response:
    state = request.query.get("state")
    limit = _int(request, "limit", 100, 1000)
    return _json(await request.app[GATEWAY].store.read(
        lambda c: saga_log.list_sagas(c, state, limit)))


async def get_saga(request: web.Request) -> web.Response:
    saga_id = request.match_info["saga_id"]
    saga = await request.app[GATEWAY].store.read(lambda c: saga_log.get(c, saga_id))
    return _json(saga) if saga else _error(404, "no such saga")


async def manual_open(request: web.Request) -> web.Response:
    _admin(request)
    gw = request.app[GATEWAY]
    lane = gw.lanes.get(request.match_info["lane_id"])
    if lane is None:
        return _error(404, "no such lane")
    body = await _body(request, ManualOpenRequest)
    opened = lane.manual_open(body.who, body.why)  # always possible, even while closing
    return _json({"lane_id": lane.id, "opened": opened, "state": lane.lane.state.value})


async def space_state(request: web.Request) -> web.Response:
    _admin(request)
    body = await _body(request, SpaceStateRequest)
    gw = request.app[GATEWAY]
    space_id = request.match_info["space_id"]
    try:
        await gw.set_space_state(space_id, body.state)
    except PermanentError as exc:
        return _error(exc.status or 400, str(exc))
    return _json({"space_id": space_id, "state": body.state})


def _plate(request: web.Request) -> str:
    plate = request.match_info["plate"].upper().replace(" ", "").replace("-", "")
    if not PLATE.fullmatch(plate):
        raise web.HTTPBadRequest(text='{"error": "a plate is 1 to 12 letters and digits"}',
                                 content_type="application/json")
    return plate


async def list_permits(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    return _json({"permits": await gw.store.read(permits.list_all),
                  "as_of": await gw.store.read(permits.as_of)})


async def put_permit(request: web.Request) -> web.Response:
    _admin(request)
    plate = _plate(request)
    body = await _body(request, PermitRequest)
    try:
        start, end = permits.epoch(body.valid_from), permits.epoch(body.valid_until)
    except ValueError as exc:
        return _error(400, f"valid_from/valid_until: not an RFC 3339 time ({exc})")
    if start is not None and end is not None and end <= start:
        return _error(400, "valid_until must be after valid_from")
    gw = request.app[GATEWAY]
    await gw.store.write(partial(permits.put_local, plate=plate, kind=body.kind,
                                 valid_from=body.valid_from, valid_until=body.valid_until,
                                 note=body.note, now=iso(gw.clock.wall())))
    await gw.store.record_event(gw.clock, gw.settings.gate.id, "permit_changed", {
        "license_plate": plate, "action": "set", "kind": body.kind,
        "valid_from": body.valid_from, "valid_until": body.valid_until})
    return _json({"license_plate": plate, "kind": body.kind, "valid_from": body.valid_from,
                  "valid_until": body.valid_until, "source": "local"})


async def delete_permit(request: web.Request) -> web.Response:
    _admin(request)
    plate = _plate(request)
    gw = request.app[GATEWAY]
    if not await gw.store.write(partial(permits.delete_local, plate=plate)):
        return _error(404, "no permit entered at this gate for that plate")
    await gw.store.record_event(gw.clock, gw.settings.gate.id, "permit_changed",
                                {"license_plate": plate, "action": "deleted"})
    return _json({"license_plate": plate, "deleted": True})


async def lane_plate_crop(request: web.Request) -> web.Response:
    """The plate crop of the lane's last local reading (JPEG), for the page."""
    lane = request.app[GATEWAY].lanes.get(request.match_info["lane_id"])
    if lane is None or lane.last_crop is None:
        return _error(404, "no local reading with a crop on this lane")
    return web.Response(body=lane.last_crop, content_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})


async def sim_vehicle(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    if gw.sim is None:
        return _error(404, "simulation is not enabled")
    lane_id = request.match_info["lane_id"]
    if lane_id not in gw.sim.worlds:
        return _error(404, f"no simulated lane {lane_id!r}")
    body = await _body(request, SimVehicleRequest)
    vehicle = gw.sim.add_vehicle(lane_id, body.plate, body.behaviour)
    return _json({"vehicle_id": vehicle.vehicle_id}, 202)


async def sim_central_fault(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    if gw.sim is None or gw.sim_central is None:
        return _error(404, "the simulated central service does not run in this daemon")
    body = await _body(request, FaultRequest)
    await gw.sim_faults.set(body)
    return _json(gw.sim_faults.as_json())


async def sim_backup_fault(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    if gw.sim_backup is None:
        return _error(404, "the simulated backup service does not run in this daemon")
    body = await _body(request, BackupFaultRequest)
    backup = gw.sim_backup
    backup.mode, backup.fail_fraction, backup.delay_s = body.mode, body.fail_fraction, body.delay_s
    return _json({"mode": backup.mode, "fail_fraction": backup.fail_fraction,
                  "delay_s": backup.delay_s, "requests": backup.requests})


async def sim_daemon_faults(request: web.Request) -> web.Response:
    _admin(request)
    gw = request.app[GATEWAY]
    if gw.sim_daemon_faults is None:
        return _error(404, "simulation is not enabled")
    body = await _body(request, DaemonFaultRequest)
    return _json(await gw.sim_daemon_faults.set(body, gw.store))


async def sim_world(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    if gw.sim is None:
        return _error(404, "simulation is not enabled")
    return _json(gw.sim.as_json())


async def sim_vehicle_status(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    if gw.sim is None:
        return _error(404, "simulation is not enabled")
    vehicle = gw.sim.vehicles.get(request.match_info["vehicle_id"])
    return _json(vehicle.as_json()) if vehicle else _error(404, "no such vehicle")


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException:
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        request.app.logger.exception("error serving %s", request.path)
        return _error(500, "internal error")


def make_app(gateway: Gateway) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=64 * 1024)
    app[GATEWAY] = gateway
    app[LATENCIES] = StageLatencies()
    r = app.router
    add_page_routes(app)  # "/" and the page's static files (gateway/web/page.py)
    r.add_get("/healthz", healthz)
    r.add_get("/api/status", status)
    r.add_get("/metrics", prometheus)
    r.add_get("/api/openapi.json", openapi)
    r.add_get("/api/events", list_events)
    r.add_get("/api/events/stream", stream_events)
    r.add_get("/api/spaces", list_spaces)
    r.add_get("/api/sagas", list_sagas)
    r.add_get("/api/sagas/{saga_id}", get_saga)
    r.add_post("/api/lanes/{lane_id}/open", manual_open)
    r.add_post("/api/spaces/{space_id}/state", space_state)
    r.add_get("/api/lanes/{lane_id}/plate.jpg", lane_plate_crop)
    r.add_get("/api/permits", list_permits)
    r.add_put("/api/permits/{plate}", put_permit)
    r.add_delete("/api/permits/{plate}", delete_permit)
    r.add_post("/api/sim/lanes/{lane_id}/vehicles", sim_vehicle)
    r.add_get("/api/sim/world", sim_world)
    r.add_get("/api/sim/vehicles/{vehicle_id}", sim_vehicle_status)
    r.add_post("/api/sim/central/fault", sim_central_fault)
    r.add_post("/api/sim/backup/fault", sim_backup_fault)
    r.add_post("/api/sim/faults", sim_daemon_faults)

    async def wake_streams(app: web.Application) -> None:
        # an open status page would otherwise hold a SIGTERM shutdown for 30 s
        gateway.stopping.set()
        gateway.notify_commit()

    app.on_shutdown.append(wake_streams)
    return app
