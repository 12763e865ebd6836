"""The read-only routes: health, status, metrics, events (and their stream), spaces,
sagas, vehicles, latencies, permits (a lane's crop is with the images: image_routes.py)."""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from gateway.ops.daily import daily_summary_handler
from gateway.store import events, permits, saga_log, spaces, vehicles
from gateway.web import schemas as s
from gateway.web.http import GATEWAY, LATENCIES, error, int_param, reply
from gateway.web.image_routes import lane_crop
from gateway.web.openapi import OPENAPI
from gateway.web.prometheus import STAGES, render

if TYPE_CHECKING:
    from gateway.app import Gateway

# A client that stops reading (a phone that went to sleep with the page open) fills the
# socket's buffer and the next write waits: after this long it is dropped, so it holds
# neither memory nor a stop.
STREAM_WRITE_TIMEOUT_S = 10.0


# encoded pages of /api/events and /api/vehicles since the last commit, by their query
EVENT_PAGES: web.AppKey[dict[Any, Any]] = web.AppKey("event_pages", dict)


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/healthz", healthz)
    r.add_get("/api/status", status)
    r.add_get("/metrics", prometheus)
    r.add_get("/api/openapi.json", openapi)
    r.add_get("/api/events", list_events)
    r.add_get("/api/events/stream", stream_events)
    r.add_get("/api/spaces", list_spaces)
    r.add_get("/api/sagas", list_sagas)
    r.add_get("/api/sagas/{saga_id}", get_saga)
    r.add_get("/api/vehicles", list_vehicles)
    r.add_get("/api/latency", latency)
    r.add_get("/api/summary/daily", daily_summary_handler)
    r.add_get("/api/permits", list_permits)


async def healthz(request: web.Request) -> web.Response:
    problems = request.app[GATEWAY].health_problems()
    return reply({"healthy": not problems, "problems": problems}, s.Health,
                 503 if problems else 200)


async def status(request: web.Request) -> web.Response:
    """The snapshot, each lane with the crop its tile shows (which image, under which token
    rule): the page's, not the telemetry's, so it is added here."""
    gw = request.app[GATEWAY]
    snapshot = await gw.status()
    lanes = [{**lane, "crop": lane_crop(gw, lane["id"])} for lane in snapshot["lanes"]]
    return reply({**snapshot, "lanes": lanes}, s.Status)


async def prometheus(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body = render(await gw.status(), await gw.metrics(), request.app[LATENCIES],
                  {lane.id: lane.latencies for lane in gw.lanes.values()},
                  {lane.id: lane.refusals for lane in gw.lanes.values()})
    return web.Response(body=body, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=msgspec.json.encode(OPENAPI), content_type="application/json")


async def _page(request: web.Request, key: Any, read: Any, type_: Any) -> web.Response:
    """A reply read from the database, kept as its encoded bytes until the next commit: the
    same page asked again meanwhile (pages, monitoring, a checker polling) costs no read."""
    gw = request.app[GATEWAY]
    cache = request.app[EVENT_PAGES]
    if cache.get("commits") != gw.commits:
        cache.clear()
        cache["commits"] = gw.commits
    body = cache.get(key)
    if body is None:
        commits = gw.commits
        body = s.encode(await gw.store.read(read), type_)
        if commits == gw.commits and cache.get("commits") == commits and len(cache) < 64:
            cache[key] = body  # nothing was committed during the read
    return web.Response(body=body, content_type="application/json")


async def list_events(request: web.Request) -> web.Response:
    after = int_param(request, "after_seq", 0, 2**62)
    limit = int_param(request, "limit", 100, 1000)
    return await _page(request, ("events", after, limit),
                       lambda c: events.list_after(c, after, limit), list[s.Event])


async def stream_events(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    after = int_param(request, "after_seq", 0, 2**62)
    if "Last-Event-ID" in request.headers:
        with contextlib.suppress(ValueError):
            after = int(request.headers["Last-Event-ID"])
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache"})
    await resp.prepare(request)
    # A write to a client that stopped reading waits; the stop must not: the stream ends
    # when the daemon stops, whatever its write is waiting for.
    follow = asyncio.ensure_future(_follow(gw, resp, after))
    stop = asyncio.ensure_future(gw.stopping.wait())
    try:
        await asyncio.wait({follow, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (follow, stop):
            task.cancel()
        try:
            await follow
        except TimeoutError:
            # it stopped reading: close the connection (its buffer goes with it); an orderly
            # end of the stream would wait on the same full buffer
            gw.streams_dropped += 1
            if request.transport is not None:
                request.transport.abort()
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client went away, or the daemon stops: nothing to log
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
            async with asyncio.timeout(STREAM_WRITE_TIMEOUT_S):
                await resp.write(b"id: %d\ndata: %s\n\n" % (after, msgspec.json.encode(event)))
        if not batch and await gw.wait_for_commit(seen, 15.0) == seen \
                and not gw.stopping.is_set():
            async with asyncio.timeout(STREAM_WRITE_TIMEOUT_S):
                await resp.write(b": keep-alive\n\n")  # 15 s without a commit


async def list_spaces(request: web.Request) -> web.Response:
    return reply(await request.app[GATEWAY].store.read(spaces.list_spaces), list[s.Space])


async def list_sagas(request: web.Request) -> web.Response:
    state = request.query.get("state")
    limit = int_param(request, "limit", 100, 1000)
    return reply(await request.app[GATEWAY].store.read(
        lambda c: saga_log.list_sagas(c, state, limit)), list[s.Saga])


async def get_saga(request: web.Request) -> web.Response:
    """One saga for the saga view: its steps with their attempts, its events (fallbacks,
    compensations, the barrier), and its images; the camera image the saga carries for the
    central service is left out (its size is given)."""
    saga_id = request.match_info["saga_id"]
    gw = request.app[GATEWAY]

    def read(conn: Any) -> dict[str, Any] | None:
        saga = saga_log.get(conn, saga_id)
        if saga is not None:
            saga["events"] = events.for_saga(conn, saga_id)
        return saga

    saga = await gw.store.read(read)
    if saga is None:
        return error(404, "no such saga")
    saga["context"] = _without_image(saga["context"])
    saga["images"] = gw.saga_images(saga_id)
    return reply(saga, s.SagaDetail)


def _without_image(context: dict[str, Any]) -> dict[str, Any]:
    image = context.get("image_jpeg_b64")
    if not isinstance(image, str):
        return context
    out = {k: v for k, v in context.items() if k != "image_jpeg_b64"}
    out["image_bytes"] = len(image) * 3 // 4
    return out


async def list_vehicles(request: web.Request) -> web.Response:
    limit = int_param(request, "limit", 50, 500)
    return await _page(request, ("vehicles", limit),
                       lambda c: {"vehicles": vehicles.recent(c, limit=limit)}, s.VehicleList)


async def latency(request: web.Request) -> web.Response:
    """The stage timings of the last vehicles (all lanes, oldest first): those let through,
    and those refused up to their decision (``opened`` false)."""
    limit = int_param(request, "limit", 100, 1000)
    gw = request.app[GATEWAY]
    rows: list[dict[str, Any]] = [
        {"lane_id": lane.id, **record, "opened": opened} for lane in gw.lanes.values()
        for opened, records in ((True, lane.latencies), (False, lane.refusals))
        for record in records]
    rows.sort(key=lambda r: float(r.get("at", 0.0)))
    return reply({"stages": [stage for stage in STAGES if stage != "total"],
                  "vehicles": rows[-limit:]}, s.Latency)


async def list_permits(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    return reply({"permits": await gw.store.read(permits.list_all),
                  "as_of": await gw.store.read(permits.as_of)}, s.PermitList)
