"""A simulated central plate service implementing contracts/central-api.md.

It keeps every record in memory, honours ``Idempotency-Key`` (a replay gets the original
answer), counts how often each key was seen, and can be told which plates are permitted or
blocked. Run it alone with ``python -m gateway.sim central --port N``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.sim.faults import Faults

Json = dict[str, Any]


@dataclass
class SimCentralState:
    permits: set[str] = field(default_factory=set)
    blocked: set[str] = field(default_factory=set)
    unknown_authorized: bool = True  # visitors may enter
    cacheable_for_s: float = 3600.0
    entries: dict[str, Json] = field(default_factory=dict)  # entry_id -> record
    exits: dict[str, Json] = field(default_factory=dict)
    by_key: dict[str, tuple[int, Json]] = field(default_factory=dict)  # key -> (status, body)
    key_hits: Counter[str] = field(default_factory=Counter)
    verify_calls: int = 0
    verify_requests: list[Json] = field(default_factory=list)
    delay_s: float = 0.0  # added to every answer (benchmarks, demos of a slow service)
    reject_plates: set[str] = field(default_factory=set)  # records refused for good (422)
    # the permit list (GET /v1/permits): plate -> (kind, valid_from, valid_until); a plate
    # in ``revoked`` is sent as deleted. ``permits`` above are the plates verify says
    # "permit" for; the list is what the gate keeps for when nothing answers.
    permit_list: dict[str, tuple[str, str | None, str | None]] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    permit_requests: list[str] = field(default_factory=list)  # the since= of each request

    def list_permits(self, since: str) -> Json:
        self.permit_requests.append(since)
        listed: dict[str, tuple[str, str | None, str | None]] = {
            p: ("resident", None, None) for p in self.permits}
        listed.update(self.permit_list)
        permits = [{"license_plate": p, "kind": k, "valid_from": f, "valid_until": u,
                    "deleted": False} for p, (k, f, u) in sorted(listed.items())
                   if p not in self.revoked]
        permits += [{"license_plate": p, "deleted": True} for p in sorted(self.revoked)]
        return {"permits": permits,
                "as_of": datetime.now(UTC).isoformat(timespec="milliseconds")}

    def decide(self, plate: str, direction: str) -> Json:
        if plate in self.blocked:
            return {"authorized": False, "reason": "blocked"}
        if plate in self.permits:
            return {"authorized": True, "reason": "permit"}
        if direction == "exit":
            return {"authorized": True, "reason": "paid"}
        return {"authorized": self.unknown_authorized,
                "reason": "visitor" if self.unknown_authorized else "unknown_vehicle"}


    # -- the operations, shared by the HTTP server and the in-process service --------
    def verify(self, body: Json) -> tuple[int, Json]:
        self.verify_calls += 1
        # what the gate sent, without the image (the last 100)
        self.verify_requests.append({k: v for k, v in body.items() if k != "image_jpeg_b64"})
        del self.verify_requests[:-100]
        plate = str(body.get("license_plate") or "").upper().replace(" ", "")
        if not plate:
            return 422, {"error": "no_plate_found"}
        decision = self.decide(plate, str(body.get("direction", "entry")))
        return 200, {"license_plate": plate, "confidence": 0.97, **decision,
                     "cacheable_for_s": self.cacheable_for_s}

    def create(self, kind: str, key: str, body: Json) -> tuple[int, Json]:
        self.key_hits[key] += 1
        if key in self.by_key:
            return 200, self.by_key[key][1]
        if str(body.get("license_plate", "")) in self.reject_plates:
            return 422, {"error": "plate_rejected"}
        record_id = f"{kind[0]}-{uuid.uuid4().hex[:12]}"
        records = self.entries if kind == "entry" else self.exits
        records[record_id] = {**body, "status": "active", "idempotency_key": key}
        reply = {f"{kind}_id": record_id}
        self.by_key[key] = (201, reply)
        return 201, reply

    def cancel(self, kind: str, key: str, record_id: str) -> tuple[int, Json]:
        self.key_hits[key] += 1
        records = self.entries if kind == "entry" else self.exits
        if record_id not in records:
            return 404, {"error": "not_found"}
        records[record_id]["status"] = "cancelled"
        return 200, {f"{kind}_id": record_id, "status": "cancelled"}


STATE = web.AppKey("sim_central_state", SimCentralState)


def _key(request: web.Request) -> str:
    key = request.headers.get("Idempotency-Key", "")
    if not key:
        raise web.HTTPBadRequest(text='{"error": "idempotency_key_required"}',
                                 content_type="application/json")
    return key


async def _body(request: web.Request) -> Json:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "invalid_json"}',
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "expected_object"}',
                                 content_type="application/json")
    return body


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _delay(request: web.Request) -> None:
    delay = request.app[STATE].delay_s
    if delay > 0:
        await asyncio.sleep(delay)


async def verify(request: web.Request) -> web.Response:
    await _delay(request)
    status, reply = request.app[STATE].verify(await _body(request))
    return web.json_response(reply, status=status)


def _create(kind: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        key = _key(request)
        await _delay(request)
        status, reply = request.app[STATE].create(kind, key, await _body(request))
        return web.json_response(reply, status=status)
    return handler


def _cancel(kind: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        key = _key(request)
        status, reply = request.app[STATE].cancel(kind, key, request.match_info["record_id"])
        return web.json_response(reply, status=status)
    return handler


async def permits(request: web.Request) -> web.Response:
    await _delay(request)
    return web.json_response(request.app[STATE].list_permits(request.query.get("since", "")))


def make_app(state: SimCentralState | None = None,
             faults: Faults | None = None) -> web.Application:
    faults = faults or Faults()
    app = web.Application(middlewares=[faults.middleware()])
    app[STATE] = state or SimCentralState()
    faults.routes(app)
    app.router.add_get("/v1/health", health)
    app.router.add_post("/v1/plates/verify", verify)
    app.router.add_post("/v1/entries", _create("entry"))
    app.router.add_post("/v1/entries/{record_id}/cancel", _cancel("entry"))
    app.router.add_post("/v1/exits", _create("exit"))
    app.router.add_post("/v1/exits/{record_id}/cancel", _cancel("exit"))
    app.router.add_get("/v1/permits", permits)
    return app
