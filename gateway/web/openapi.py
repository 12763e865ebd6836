"""The OpenAPI 3.1 document of the gateway's web API, served at ``/api/openapi.json``.

Generated, not written: each route below names its request and reply types from
``gateway/web/schemas.py`` (the types the handlers decode and encode with), and the schemas
come from ``msgspec.json.schema_components``. Admin routes carry the bearer security and
their 401; a route with a body its 400 (malformed, with the reason) and 413 (over 16 KiB);
every error reply is ``{"error": str}`` (``Error``). tests/integration/test_openapi.py holds
it true: every route of the app is here and nothing else, and a schemathesis run against
the running app finds no 5xx and no reply outside its schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway import __version__
from gateway.ops.daily import DailySummary
from gateway.web import schemas as s

REF = "#/components/schemas/{name}"
JSON = "application/json"


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "integer"})


@dataclass(frozen=True)
class Route:
    """One operation: its success status and reply type (JSON) or media type, its body
    type, whether it needs the admin token, and its error statuses besides the automatic
    ones (401 for admin, 400 and 413 for a body, 400 for a query integer or a plate)."""

    method: str
    path: str
    summary: str
    reply: Any = None
    ok: int = 200
    media: tuple[str, ...] = (JSON,)
    body: type[Any] | None = None
    admin: bool = False
    token_for_some: bool = False  # the token only for some (a frame, by [images] public)
    errors: dict[int, str] = field(default_factory=dict)
    query: tuple[Query, ...] = ()


PATH_PARAMS: dict[str, dict[str, Any]] = {
    "lane_id": {"schema": {"type": "string"}, "example": "entry-1"},
    "space_id": {"schema": {"type": "string"}, "example": "A-001"},
    "saga_id": {"schema": {"type": "string"}},
    "vehicle_id": {"schema": {"type": "string"}, "example": "v1"},
    "name": {"schema": {"type": "string"}},
    "plate": {"schema": {"type": "string", "pattern": s.PATH_PLATE},
              "description": "1 to 12 letters and digits; case, spaces and dashes ignored",
              "example": "34ABC123"},
}
AFTER_SEQ = Query("after_seq", "events after this seq (below 0 reads as 0)")
LIMIT = Query("limit", "at most this many (clamped to 0..1000)")
STATIC = ("text/javascript", "text/css", "image/svg+xml", "image/png", "image/x-icon")

ROUTES: tuple[Route, ...] = (
    Route("GET", "/", "The operator's page (HTML)", media=("text/html",)),
    Route("GET", "/static/{name}", "The page's script, style and icons (cached for a year "
          "when asked for with ?v=<its version>)", media=STATIC,
          query=(Query("v", "the file's version (a content hash)", {"type": "string"}),),
          errors={304: "not modified (If-None-Match)", 404: "no such file"}),
    Route("GET", "/healthz", "200 when the daemon is healthy, 503 with the reasons", s.Health,
          errors={503: "problems (the same Health reply, healthy false)"}),
    Route("GET", "/metrics", "Prometheus text format", media=("text/plain",)),
    Route("GET", "/api/openapi.json", "This document", dict[str, Any]),
    Route("GET", "/api/status", "The gate's snapshot, the same as the MQTT state topic",
          s.Status),
    Route("GET", "/api/events", "Events in seq order", list[s.Event],
          query=(AFTER_SEQ, LIMIT)),
    Route("GET", "/api/events/stream", "Server-Sent Events, one event per message (id: its "
          "seq; Last-Event-ID resumes)", media=("text/event-stream",), query=(AFTER_SEQ,)),
    Route("GET", "/api/spaces", "The space table", list[s.Space]),
    Route("GET", "/api/sagas", "The saga log, newest first", list[s.Saga], query=(
        Query("state", "only sagas of this status", {"type": "string"}), LIMIT)),
    Route("GET", "/api/sagas/{saga_id}", "One saga with each step's attempts, service and "
          "timing, its events and its images", s.SagaDetail, errors={404: "no such saga"}),
    Route("GET", "/api/sagas/{saga_id}/images/{name}", "A decision's camera image (crop.jpg, "
          "frame.jpg); a frame needs the admin token unless [images] public = \"all\", a "
          "crop when public = \"none\"; cached (immutable, ETag)", media=("image/jpeg",),
          token_for_some=True, errors={304: "not modified (If-None-Match)",
                                       404: "no such image"}),
    Route("GET", "/api/vehicles", "The vehicles at the lanes (one per saga), newest first",
          s.VehicleList, query=(Query("limit", "at most this many (clamped to 0..500)"),)),
    Route("GET", "/api/summary/daily", "One UTC day at the gate: vehicles in and out, "
          "decisions by source, denials by reason, faults", DailySummary,
          query=(Query("day", "a UTC day, YYYY-MM-DD (default: today so far)",
                       {"type": "string", "format": "date"}),),
          errors={400: "not a date, or 9999-12-31"}),
    Route("GET", "/api/latency", "The stage timings of the last vehicles (refused ones up to "
          "their decision)",
          s.Latency, query=(LIMIT,)),
    Route("GET", "/api/admin/check", "200 when the token is valid (the page checks it)",
          s.AdminCheck, admin=True),
    Route("POST", "/api/lanes/{lane_id}/open", "Open the barrier by hand, recorded as "
          "manual_open with who and why", s.ManualOpenReply, body=s.ManualOpenRequest,
          admin=True, errors={404: "no such lane"}),
    Route("POST", "/api/lanes/{lane_id}/mode", "Close a lane to new vehicles, or open it "
          "again (refused while unsafe), recorded as lane_mode_changed", s.LaneModeReply,
          body=s.LaneModeRequest, admin=True, errors={404: "no such lane"}),
    Route("POST", "/api/spaces/{space_id}/state", "Set a space free or out of service",
          s.SpaceStateReply, body=s.SpaceStateRequest, admin=True,
          errors={404: "no such space", 409: "the space is allocated"}),
    Route("GET", "/api/lanes/{lane_id}/plate.jpg", "The plate crop the lane's tile shows: "
          "its last decision's, else the gate reader's last; needs the admin token when "
          "[images] public = \"none\"", media=("image/jpeg",), token_for_some=True,
          errors={404: "no such lane, or no crop yet"}),
    Route("GET", "/api/permits", "The local permit list: the central service's (synced) and "
          "the gate's own", s.PermitList),
    Route("PUT", "/api/permits/{plate}", "Enter or change a permit at this gate", s.PermitSet,
          body=s.PermitRequest, admin=True),
    Route("DELETE", "/api/permits/{plate}", "Remove a permit entered at this gate",
          s.PermitDeleted, body=s.AdminNote, admin=True,
          errors={404: "no permit entered at this gate"}),
    Route("POST", "/api/sim/lanes/{lane_id}/vehicles", "Simulation: send a vehicle",
          s.SimVehicleAccepted, ok=202, body=s.SimVehicleRequest,
          errors={404: "simulation off, or no such simulated lane"}),
    Route("GET", "/api/sim/world", "Simulation: collisions, each arm's position, the "
          "vehicles on the lanes", s.SimWorld, errors={404: "simulation off"}),
    Route("GET", "/api/sim/vehicles/{vehicle_id}", "Simulation: a vehicle's progress",
          s.SimVehicle, errors={404: "simulation off, or no such vehicle"}),
    Route("POST", "/api/sim/central/fault", "Simulation: the simulated central service's "
          "fault mode", s.SimCentralFaults, body=s.FaultRequest,
          errors={404: "no simulated central service in this daemon"}),
    Route("POST", "/api/sim/backup/fault", "Simulation: the simulated backup service's fault "
          "mode", s.SimBackupFaults, body=s.BackupFaultRequest,
          errors={404: "no simulated backup service in this daemon"}),
    Route("POST", "/api/sim/faults", "Simulation: faults inside the daemon (a full disk, the "
          "wall clock's offset)", s.DaemonFaults, body=s.DaemonFaultRequest, admin=True,
          errors={404: "simulation off"}),
)


# OpenAPI links: what a reply gives that another operation takes (schemathesis follows
# them, so the routes behind an id are run with real ids)
LINKS: dict[tuple[str, str], list[tuple[str, tuple[str, str], dict[str, str]]]] = {
    ("POST", "/api/sim/lanes/{lane_id}/vehicles"): [
        ("TheVehicle", ("GET", "/api/sim/vehicles/{vehicle_id}"),
         {"vehicle_id": "$response.body#/vehicle_id"})],
    ("GET", "/api/vehicles"): [
        ("TheNewestSaga", ("GET", "/api/sagas/{saga_id}"),
         {"saga_id": "$response.body#/vehicles/0/saga_id"})],
    ("GET", "/api/sagas"): [
        ("TheNewestSaga", ("GET", "/api/sagas/{saga_id}"),
         {"saga_id": "$response.body#/0/saga_id"})],
    ("GET", "/api/sagas/{saga_id}"): [
        ("ItsFirstImage", ("GET", "/api/sagas/{saga_id}/images/{name}"),
         {"saga_id": "$response.body#/saga_id", "name": "$response.body#/images/0/name"})],
    ("PUT", "/api/permits/{plate}"): [
        ("RemoveIt", ("DELETE", "/api/permits/{plate}"),
         {"plate": "$response.body#/license_plate"})],
}


# on every response, errors and streams included (gateway/web/app.py sets them)
SECURITY_HEADERS: dict[str, dict[str, Any]] = {
    name: {"description": why, "required": True, "schema": {"type": "string"}}
    for name, why in (
        ("Content-Security-Policy", "no inline script or style, nothing from elsewhere, "
                                    "no framing"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"))}


def operation_id(method: str, path: str) -> str:
    """``GET /api/sagas/{saga_id}`` -> ``get_api_sagas_saga_id``."""
    return "_".join([method.lower(), *re.findall(r"[a-z0-9]+", path.lower())]) \
        if path != "/" else f"{method.lower()}_page"


def _errors(route: Route) -> dict[int, str]:
    errors = dict(route.errors)
    if route.admin:
        errors[401] = "no valid admin token (or none configured): nothing changed"
    if route.token_for_some:
        errors[401] = "this one needs the admin token"
    if route.body is not None:
        errors[400] = "a malformed body, with the reason"
        errors[413] = "a body over 16384 bytes"
    if any(q.schema.get("type") == "integer" for q in route.query) or "{plate}" in route.path:
        errors.setdefault(400, "a malformed parameter, with the reason")
    return errors


def _parameters(route: Route) -> list[dict[str, Any]]:
    params = [{"name": name, "in": "path", "required": True, **PATH_PARAMS[name]}
              for name in PATH_PARAMS if "{" + name + "}" in route.path]
    params += [{"name": q.name, "in": "query", "required": False,
                "description": q.description, "schema": q.schema} for q in route.query]
    return params


def build() -> dict[str, Any]:
    """The document, from ``ROUTES`` and the types in ``gateway.web.schemas``."""
    types: list[Any] = [s.Error]
    for route in ROUTES:
        types += [t for t in (route.reply, route.body) if t is not None]
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    schema = {id(t): ref for t, ref in zip(types, refs, strict=True)}
    error = {JSON: {"schema": schema[id(s.Error)]}}
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        ok: dict[str, Any] = {"description": "OK" if route.ok == 200 else "Accepted",
                              "headers": SECURITY_HEADERS}
        if route.reply is not None:
            ok["content"] = {JSON: {"schema": schema[id(route.reply)]}}
        else:
            ok["content"] = {media: {} for media in route.media}
        responses: dict[str, Any] = {str(route.ok): ok}
        for status, why in sorted(_errors(route).items()):
            responses[str(status)] = {"description": why, "headers": SECURITY_HEADERS} \
                if status == 304 else {
                    "description": why, "headers": SECURITY_HEADERS,
                    "content": ok["content"] if route.path == "/healthz" else error}
        links = LINKS.get((route.method, route.path), [])
        if links:
            ok["links"] = {name: {"operationId": operation_id(*to), "parameters": params}
                           for name, to, params in links}
        op: dict[str, Any] = {"operationId": operation_id(route.method, route.path),
                              "summary": route.summary, "responses": responses}
        if params := _parameters(route):
            op["parameters"] = params
        if route.body is not None:  # no body reads as {}: needed only with required fields
            body = schema[id(route.body)]
            needed = bool(components[body["$ref"].rsplit("/", 1)[1]].get("required"))
            op["requestBody"] = {"required": needed, "content": {JSON: {"schema": body}}}
        if route.admin:
            op["security"] = [{"bearer": []}]
        elif route.token_for_some:
            op["security"] = [{}, {"bearer": []}]  # anyone, or with the token
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Parking gate gateway", "version": __version__,
                 "description": "The gate's web API (contracts/web-api.md). Admin calls take "
                                "Authorization: Bearer <token>."},
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }


OPENAPI: dict[str, Any] = build()
