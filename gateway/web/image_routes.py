"""``GET /api/sagas/{saga_id}/images/{name}``: a decision's camera images (``crop.jpg``, the
plate; ``frame.jpg``, the whole scene), from the image store (``gateway/store/images.py``);
``GET /api/lanes/{lane_id}/plate.jpg``: the crop a lane's tile shows (``lane_crop``).

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
import zlib
from functools import partial
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.store.images import ImageWriter, Stored
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


def crop_public(gateway: Gateway) -> bool:
    """May a viewer without the token see a crop? ``[images] public`` decides, for the
    stored crops and for the lane's last reading alike (the same plate, the same car),
    whether or not the images are kept."""
    writer: ImageWriter | None = gateway.images
    if writer is not None:
        return writer.store.public("crop")
    return gateway.settings.images.public in ("crops", "all")


def lane_crop(gateway: Gateway, lane_id: str) -> dict[str, Any] | None:
    """The crop a lane's tile shows: that of the lane's last decision (of the vehicle in the
    lane once decided), from the image store, once it is on disk; until then (or with the
    images off) the gate reader's last crop.
    ``key`` changes with the image, so the page fetches it again only then."""
    found = _lane_image(gateway, lane_id)
    if found is None:
        return None
    public = crop_public(gateway)
    if isinstance(found, Stored):
        return {"of": "decision", "url": f"/api/sagas/{found.saga_id}/images/crop.jpg",
                "key": f"{found.saga_id}:{found.etag}", "public": public}
    return {"of": "reading", "url": f"/api/lanes/{lane_id}/plate.jpg",
            "key": f"reading:{zlib.crc32(found):08x}", "public": public}


def _lane_image(gateway: Gateway, lane_id: str) -> Stored | bytes | None:
    controller = gateway.lanes.get(lane_id)
    if controller is None:
        return None
    # the vehicle in the lane once decided (its images are written at its decision), else
    # the lane's last; the reader's crop is of the vehicle in the lane once read
    saga_id = str(controller.lane.saga_id or controller.last.get("saga_id") or "")
    writer: ImageWriter | None = gateway.images
    entry = writer.store.find(saga_id, "crop.jpg") if writer is not None and saga_id else None
    return entry if entry is not None else controller.last_crop


async def lane_plate_crop(request: web.Request) -> web.Response:
    """``GET /api/lanes/{id}/plate.jpg``: the crop of the lane's tile (``lane_crop``), under
    the same token rule as the stored crops (checked before the look-up)."""
    gateway = request.app[GATEWAY]
    if not crop_public(gateway):
        require_admin(request)
    lane_id = request.match_info["lane_id"]
    found = _lane_image(gateway, lane_id)
    if isinstance(found, Stored):
        try:
            found = await asyncio.to_thread(found.path.read_bytes)
        except FileNotFoundError:  # pruned since the look-up: the reading's, if any
            controller = gateway.lanes.get(lane_id)
            found = controller.last_crop if controller is not None else None
    if found is None:
        raise web.HTTPNotFound(text='{"error": "no crop on this lane yet"}',
                               content_type="application/json")
    return web.Response(body=found, content_type="image/jpeg",
                        headers={"Cache-Control": "private, no-store",
                                 "X-Content-Type-Options": "nosniff"})


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
    """The image routes (a decision's images, a lane's last crop), and the saga view's list
    of images (``Gateway.saga_images``)."""
    gateway = app[GATEWAY]
    gateway.image_lister = partial(images_for, gateway)
    app.router.add_get("/api/sagas/{saga_id}/images/{name}", saga_image)
    app.router.add_get("/api/lanes/{lane_id}/plate.jpg", lane_plate_crop)
