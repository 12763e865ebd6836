"""The OpenAPI document of the gateway's web API, served at ``/api/openapi.json``. A test
holds it true: every route of the app is in it, and nothing else."""

from __future__ import annotations

from typing import Any

from gateway.sim.backup import BACKUP_MODES
from gateway.sim.physics import BEHAVIOURS

_JSON = {"application/json": {"schema": {"type": "object"}}}
_OK = {"200": {"description": "OK", "content": _JSON}}
_ADMIN: list[dict[str, list[str]]] = [{"bearer": []}]


def _op(summary: str, *, admin: bool = False, body: dict[str, Any] | None = None,
        responses: dict[str, Any] | None = None,
        params: list[str] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses or _OK}
    if admin:
        op["security"] = _ADMIN
        op["responses"] = {**op["responses"], "401": {"description": "no valid admin token"}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": body}}}
        op["responses"] = {**op["responses"], "400": {"description": "malformed body"}}
    if params:
        op["parameters"] = [{"name": p, "in": "query", "schema": {"type": "integer"}}
                            for p in params]
    return op


def _path_param(name: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Parking gate gateway", "version": "1"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/": {"get": _op("The status page (HTML)", responses={"200": {
            "description": "HTML", "content": {"text/html": {}}}})},
        "/healthz": {"get": _op("200 when healthy, 503 with the reasons", responses={
            "200": {"description": "healthy"}, "503": {"description": "problems"}})},
        "/metrics": {"get": _op("Prometheus text format", responses={"200": {
            "description": "metrics", "content": {"text/plain": {}}}})},
        "/api/openapi.json": {"get": _op("This document")},
        "/api/status": {"get": _op("The same snapshot as the MQTT state topic")},
        "/api/events": {"get": _op("Events in seq order", params=["after_seq", "limit"])},
        "/api/events/stream": {"get": _op("Server-Sent Events, one event per message",
                                          responses={"200": {"description": "stream",
                                                             "content": {
                                                                 "text/event-stream": {}}}})},
        "/api/spaces": {"get": _op("The space table")},
        "/api/sagas": {"get": _op("The saga log", params=["limit"])},
        "/api/sagas/{saga_id}": {"parameters": _path_param("saga_id"), "get": _op(
            "One saga with each step's attempts, service, timing",
            responses={**_OK, "404": {"description": "no such saga"}})},
        "/api/lanes/{lane_id}/open": {"parameters": _path_param("lane_id"), "post": _op(
            "Manual open, recorded as manual_open", admin=True,
            body={"type": "object", "properties": {"who": {"type": "string"},
                                                   "why": {"type": "string"}}},
            responses={**_OK, "404": {"description": "no such lane"}})},
        "/api/spaces/{space_id}/state": {"parameters": _path_param("space_id"), "post": _op(
            "Set a space free or out of service", admin=True,
            body={"type": "object", "required": ["state"], "properties": {
                "state": {"enum": ["free", "out_of_service"]}}},
            responses={**_OK, "404": {"description": "no such space"},
                       "409": {"description": "the space is allocated"}})},
        "/api/lanes/{lane_id}/plate.jpg": {"parameters": _path_param("lane_id"), "get": _op(
            "The plate crop of the lane's last local reading (image/jpeg)",
            responses={"200": {"description": "a JPEG", "content": {"image/jpeg": {}}},
                       "404": {"description": "no such lane, or no crop yet"}})},
        "/api/permits": {"get": _op(
            "The local permit list: the central service's (synced) and the gate's own",
            responses=_OK)},
        "/api/permits/{plate}": {
            "parameters": _path_param("plate"),
            "put": _op("Enter or change a permit at this gate", admin=True,
                       body={"type": "object", "properties": {
                           "kind": {"enum": ["resident", "staff", "delivery"]},
                           "valid_from": {"type": ["string", "null"], "format": "date-time"},
                           "valid_until": {"type": ["string", "null"], "format": "date-time"},
                           "note": {"type": "string", "maxLength": 200}}},
                       responses={**_OK, "400": {"description": "a bad plate or time"}}),
            "delete": _op("Remove a permit entered at this gate", admin=True,
                          responses={**_OK, "404": {"description": "no such local permit"}})},
        "/api/sim/lanes/{lane_id}/vehicles": {"parameters": _path_param("lane_id"), "post": _op(
            "Simulation: send a vehicle",
            body={"type": "object", "required": ["plate"], "properties": {
                "plate": {"type": "string", "pattern": "^[A-Z0-9]{1,12}$"},
                "behaviour": {"enum": list(BEHAVIOURS)}}},
            responses={"202": {"description": "accepted", "content": _JSON},
                       "404": {"description": "simulation off or no such lane"}})},
        "/api/sim/world": {"get": _op(
            "Simulation: collisions, each arm's position, the vehicles on the lanes",
            responses={**_OK, "404": {"description": "simulation off"}})},
        "/api/sim/vehicles/{vehicle_id}": {"parameters": _path_param("vehicle_id"), "get": _op(
            "Simulation: a vehicle's progress",
            responses={**_OK, "404": {"description": "no such vehicle"}})},
        "/api/sim/central/fault": {"post": _op(
            "Simulation: the simulated central service's fault mode",
            body={"type": "object", "properties": {
                "mode": {"enum": ["ok", "refuse", "blackhole", "error500", "garbage",
                                  "oversized", "slow", "commit_no_reply"]},
                "fail_fraction": {"type": "number"}, "delay_s": {"type": "number"}}},
            responses={**_OK, "404": {"description": "no simulated central service"}})},
        "/api/sim/backup/fault": {"post": _op(
            "Simulation: the simulated backup service's fault mode",
            body={"type": "object", "properties": {
                "mode": {"enum": list(BACKUP_MODES)},
                "fail_fraction": {"type": "number", "minimum": 0, "maximum": 1},
                "delay_s": {"type": "number", "minimum": 0, "maximum": 60}}},
            responses={**_OK, "404": {"description": "no simulated backup service"}})},
        "/api/sim/faults": {"post": _op(
            "Simulation: faults inside the daemon (a full disk, the wall clock's offset)",
            admin=True, body={"type": "object", "properties": {
                "disk_full": {"type": "boolean"}, "wall_offset_s": {"type": "number"},
                "wall_synced": {"type": "boolean"}}},
            responses={**_OK, "404": {"description": "simulation off"}})},
    },
}
