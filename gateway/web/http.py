"""What every handler of the web API shares: the app keys, JSON replies and errors, the
size-capped body reader, query integers and the admin token check."""

from __future__ import annotations

import asyncio
import hmac
import re
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from gateway.web.prometheus import StageLatencies

if TYPE_CHECKING:
    from gateway.app import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
# the /metrics histograms, cumulative from one scrape to the next
LATENCIES: web.AppKey[StageLatencies] = web.AppKey("latencies", StageLatencies)
PLATE = re.compile(r"[A-Z0-9]{1,12}")
MAX_BODY = 16_384


def reply(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(data), status=status,
                        content_type="application/json")


def error(status: int, reason: str) -> web.Response:
    return reply({"error": reason}, status)


async def read_body(request: web.Request, type_: type[Any]) -> Any:
    try:  # read(n) would return the first segment only: wait for all (or too much)
        raw = await request.content.readexactly(MAX_BODY + 1)
    except asyncio.IncompleteReadError as exc:
        raw = exc.partial  # the whole body, within the cap
    if len(raw) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(  # JSON like every other error of the API
            max_size=MAX_BODY, actual_size=len(raw), content_type="application/json",
            text='{"error": "the body is larger than 16384 bytes"}')
    try:
        return msgspec.json.decode(raw or b"{}", type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise web.HTTPBadRequest(text=msgspec.json.encode({"error": str(exc)}).decode(),
                                 content_type="application/json") from None


def require_admin(request: web.Request) -> None:
    token = request.app[GATEWAY].settings.admin_token.reveal()
    given = request.headers.get("Authorization", "")
    if not token:
        raise web.HTTPUnauthorized(text='{"error": "no admin token is configured"}',
                                   content_type="application/json")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise web.HTTPUnauthorized(text='{"error": "a valid admin token is required"}',
                                   content_type="application/json")


def int_param(request: web.Request, name: str, default: int, high: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=f'{{"error": "{name} must be an integer"}}',
                                 content_type="application/json") from None
    return max(0, min(value, high))


def plate_param(request: web.Request) -> str:
    plate = request.match_info["plate"].upper().replace(" ", "").replace("-", "")
    if not PLATE.fullmatch(plate):
        raise web.HTTPBadRequest(text='{"error": "a plate is 1 to 12 letters and digits"}',
                                 content_type="application/json")
    return plate
