"""The admin routes: each needs the token and is recorded with who and why."""

from __future__ import annotations

import re
from datetime import datetime
from functools import partial

from aiohttp import web

from gateway.clock import iso
from gateway.core.errors import PermanentError
from gateway.store import permits
from gateway.web import schemas as s
from gateway.web.http import GATEWAY, error, plate_param, read_body, reply, require_admin

# a permit's validity as the document says it (date-time): RFC 3339, offset required
RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
                     r"(Z|[+-][0-9]{2}:[0-9]{2})")


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/api/admin/check", admin_check)
    r.add_post("/api/lanes/{lane_id}/open", manual_open)
    r.add_post("/api/lanes/{lane_id}/mode", lane_mode)
    r.add_post("/api/spaces/{space_id}/state", space_state)
    r.add_put("/api/permits/{plate}", put_permit)
    r.add_delete("/api/permits/{plate}", delete_permit)


async def admin_check(request: web.Request) -> web.Response:
    """The page checks a token when it is entered (401 when it is not valid)."""
    require_admin(request)
    return reply({"ok": True}, s.AdminCheck)


async def manual_open(request: web.Request) -> web.Response:
    require_admin(request)
    gw = request.app[GATEWAY]
    lane = gw.lanes.get(request.match_info["lane_id"])
    if lane is None:
        return error(404, "no such lane")
    body = await read_body(request, s.ManualOpenRequest)
    opened = lane.manual_open(body.who, body.why)  # always possible, even while closing
    return reply({"lane_id": lane.id, "opened": opened, "state": lane.lane.state.value},
                 s.ManualOpenReply)


async def lane_mode(request: web.Request) -> web.Response:
    """Close a lane to new vehicles or open it again (refused while that is unsafe)."""
    require_admin(request)
    gw = request.app[GATEWAY]
    lane = gw.lanes.get(request.match_info["lane_id"])
    if lane is None:
        return error(404, "no such lane")
    body = await read_body(request, s.LaneModeRequest)
    changed = lane.set_mode(body.mode, body.who, body.why)
    return reply({"lane_id": lane.id, "mode": lane.lane.mode, "changed": changed,
                  "reason": "" if changed else "refused: a vehicle or the arm is in the way"},
                 s.LaneModeReply)


async def space_state(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_body(request, s.SpaceStateRequest)
    gw = request.app[GATEWAY]
    space_id = request.match_info["space_id"]
    try:
        await gw.set_space_state(space_id, body.state, body.who, body.why)
    except PermanentError as exc:
        return error(exc.status or 400, str(exc))
    return reply({"space_id": space_id, "state": body.state}, s.SpaceStateReply)


async def put_permit(request: web.Request) -> web.Response:
    require_admin(request)
    plate = plate_param(request)
    body = await read_body(request, s.PermitRequest)
    try:
        valid_from, valid_until = _rfc3339(body.valid_from), _rfc3339(body.valid_until)
        start, end = permits.epoch(valid_from), permits.epoch(valid_until)
    except ValueError as exc:
        return error(400, f"valid_from/valid_until: not an RFC 3339 time ({exc})")
    if start is not None and end is not None and end <= start:
        return error(400, "valid_until must be after valid_from")
    gw = request.app[GATEWAY]
    await gw.store.write(partial(permits.put_local, plate=plate, kind=body.kind,
                                 valid_from=valid_from, valid_until=valid_until,
                                 note=body.note, now=iso(gw.clock.wall())))
    await gw.store.record_event(gw.clock, gw.settings.gate.id, "permit_changed", {
        "license_plate": plate, "action": "set", "kind": body.kind,
        "valid_from": valid_from, "valid_until": valid_until,
        "who": body.who, "why": body.why})
    return reply({"license_plate": plate, "kind": body.kind, "valid_from": valid_from,
                  "valid_until": valid_until, "source": "local"}, s.PermitSet)


def _rfc3339(text: str | None) -> str | None:
    """An RFC 3339 time (T and Z kept upper case), or ``None``; ``ValueError`` for anything
    else, a date alone or an empty string included."""
    if text is None:
        return None
    upper = text.upper()
    if not RFC3339.fullmatch(upper):
        raise ValueError(f"{text[:40]!r} is not YYYY-MM-DDTHH:MM:SS with an offset")
    datetime.fromisoformat(upper)  # a month 13, a day 32, a year 0
    return upper


async def delete_permit(request: web.Request) -> web.Response:
    require_admin(request)
    plate = plate_param(request)
    note = await read_body(request, s.AdminNote)
    gw = request.app[GATEWAY]
    if not await gw.store.write(partial(permits.delete_local, plate=plate)):
        return error(404, "no permit entered at this gate for that plate")
    await gw.store.record_event(gw.clock, gw.settings.gate.id, "permit_changed",
                                {"license_plate": plate, "action": "deleted",
                                 "who": note.who, "why": note.why})
    return reply({"license_plate": plate, "deleted": True}, s.PermitDeleted)
