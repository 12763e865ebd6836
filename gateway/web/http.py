"""What every handler of the web API shares: the app keys, JSON replies (each encoded through
its type of gateway/web/schemas.py) and errors, the size-capped body reader, query integers
and the admin token check."""

from __future__ import annotations

import asyncio
import hmac
import re
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from gateway.web.prometheus import StageLatencies
from gateway.web.schemas import PATH_PLATE, Error, encode

if TYPE_CHECKING:
    from gateway.app import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
# the /metrics histograms, cumulative from one scrape to the next
LATENCIES: web.AppKey[StageLatencies] = web.AppKey("latencies", StageLatencies)
PLATE = re.compile(PATH_PLATE)
MAX_BODY = 16_384


def reply(data: Any, type_: Any, status: int = 200) -> web.Response:
    """``data`` as JSON through its reply type: a field the type does not describe, or a
    value of another type, raises (a 500 from the error middleware), so a reply cannot
    drift from the OpenAPI document, which is generated from the same types."""
    return web.Response(body=encode(data, type_), status=status,
                        content_type="application/json")


def error(status: int, reason: str) -> web.Response:
    return reply({"error": reason}, Error, status)


def _error_text(reason: str) -> str:
    return encode({"error": reason}, Error).decode()


async def read_body(request: web.Request, type_: type[Any]) -> Any:
    try:  # read(n) would return the first segment only: wait for all (or too much)
        raw = await request.content.readexactly(MAX_BODY + 1)
    except asyncio.IncompleteReadError as exc:
        raw = exc.partial  # the whole body, within the cap
    if len(raw) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(  # JSON like every other error of the API
            max_size=MAX_BODY, actual_size=len(raw), content_type="application/json",
            text=_error_text(f"the body is larger than {MAX_BODY} bytes"))
    try:
        return msgspec.json.decode(raw or b"{}", type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise web.HTTPBadRequest(text=_error_text(str(exc)),
                                 content_type="application/json") from None


def require_admin(request: web.Request) -> None:
    token = request.app[GATEWAY].settings.admin_token.reveal()
    given = request.headers.get("Authorization", "")
    if not token:
        raise web.HTTPUnauthorized(text=_error_text("no admin token is configured"),
                                   content_type="application/json")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise web.HTTPUnauthorized(text=_error_text("a valid admin token is required"),
                                   content_type="application/json")


def int_param(request: web.Request, name: str, default: int, high: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=_error_text(f"{name} must be an integer"),
                                 content_type="application/json") from None
    return max(0, min(value, high))


def plate_param(request: web.Request) -> str:
    """The plate of the path as the gate keeps it (upper case, no spaces or dashes); a 400
    unless it is 1 to 12 ASCII letters and digits (``PATH_PLATE``, as the document says)."""
    raw = request.match_info["plate"]
    if not PLATE.fullmatch(raw):
        raise web.HTTPBadRequest(text=_error_text("a plate is 1 to 12 letters and digits"),
                                 content_type="application/json")
    return raw.upper().replace(" ", "").replace("-", "")
