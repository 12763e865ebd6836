"""``GET /api/sagas/{saga_id}/images/{name}``: a decision's camera images (``crop.jpg``, the
plate; ``frame.jpg``, the whole scene), from the image store (``gateway/store/images.py``).

Who may see what is ``[images] public``: a frame shows people and other cars, so it needs
the admin token unless ``public = "all"``; a crop needs it when ``public = "none"``. The
token is checked by ``gateway.web.http.require_admin`` (constant time, refused when none
is set).
Only names the store wrote are served: the saga id and the name are matched against the
store's own patterns and looked up in its index, never joined into a path. An image never
changes once written, so it is served with ``immutable`` caching and an ETag (``304`` on
``If-None-Match``); ``private``, since some need the token.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.store.images import ImageWriter
from gateway.web.http import GATEWAY, require_admin

if TYPE_CHECKING:
    from gateway.app import Gateway

CACHE_CONTROL = "private, max-age=86400, immutable"


def images_for(gateway: Gateway, saga_id: str) -> list[dict[str, Any]]:
    """The saga's images for its detail view (``GET /api/sagas/{id}``): name, kind, URL,
    size, and whether a viewer without the token may fetch it."""
    writer: ImageWriter | None = gateway.images
    if writer is None:
        return []
    return [{"name": e.name, "kind": e.kind, "url": f"/api/sagas/{saga_id}/images/{e.name}",
             "bytes": e.bytes, "public": writer.store.public(e.kind)}
            for e in writer.store.images(saga_id)]


def _not_found() -> web.HTTPNotFound:
    return web.HTTPNotFound(text='{"error": "no such image"}', content_type="application/json")


async def saga_image(request: web.Request) -> web.StreamResponse:
    writer = request.app[GATEWAY].images
    name = request.match_info["name"]
    kind = name.removesuffix(".jpg")
    if writer is None:
        raise _not_found()
    if not writer.store.public(kind):  # before the look-up: no token, no hint what exists
        require_admin(request)
    entry = writer.store.find(request.match_info["saga_id"], name)
    if entry is None:
        raise _not_found()
    headers = {"Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"}
    if any(tag.value in (entry.etag, "*") for tag in request.if_none_match or ()):
        response = web.Response(status=304, headers=headers)
    else:
        try:  # pruned since the look-up: gone
            body = await asyncio.to_thread(entry.path.read_bytes)
        except FileNotFoundError:
            raise _not_found() from None
        response = web.Response(body=body, content_type="image/jpeg", headers=headers)
    response.etag = entry.etag
    return response


def add_image_routes(app: web.Application) -> None:
    """The image route, and the saga view's list of images (``Gateway.saga_images``)."""
    gateway = app[GATEWAY]
    gateway.image_lister = partial(images_for, gateway)
    app.router.add_get("/api/sagas/{saga_id}/images/{name}", saga_image)
