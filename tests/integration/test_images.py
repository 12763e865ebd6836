"""A decision's camera images on a running gate (issue 11, item 2): a real Gateway with the
simulated camera and lanes, real files under its data directory, real HTTP on 127.0.0.1.

The crop and the frame of each vehicle are kept beside its saga and served by
``GET /api/sagas/{id}/images/{name}`` under the token rule (a frame needs the token, a crop
does not, by default), with caching headers and 304 on the ETag; only names the store wrote
are served. The size and age bounds hold while vehicles come. A directory that cannot be
written, or a disk that hangs, never stops or holds a vehicle: the lane goes on, the fault
is counted. About 12 s in all (the first test loads the plate reader's model).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import msgspec
from aiohttp import web

from gateway.app import Gateway
from gateway.settings import Settings, parse_settings
from gateway.store import events
from gateway.store.images import INCOMING
from gateway.web.app import make_app
from gateway.web.http import GATEWAY
from gateway.web.image_routes import add_image_routes, images_for
from tests.e2e.daemon import ADMIN_TOKEN, e2e_config, until

TOKEN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DAY = 86400.0


def settings(d: Path, central: str, images: str, **kw: object) -> Settings:
    return parse_settings(e2e_config(d, central, extra=f"[images]\n{images}", **kw),
                          env={"GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN})


def patient(s: Settings) -> Settings:
    """Room for the plate reader on a loaded machine: a burst read within 4 s, the lane
    waiting 5 s for it, the simulated driver 5 s (20 s of the world's time)."""
    replace = msgspec.structs.replace
    return replace(s, plates=replace(s.plates, deadline_s=4.0),
                   simulation=replace(s.simulation, patience_s=20.0),
                   lanes=[replace(lane, timings=replace(lane.timings, capture_timeout_s=5.0))
                          for lane in s.lanes])


@asynccontextmanager
async def running(s: Settings) -> AsyncIterator[Gateway]:
    gw = Gateway(s)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def drive(gw: Gateway, lane: str, plate: str) -> str:
    """A vehicle through the lane; its saga's id once the saga finished."""
    assert gw.sim is not None
    vehicle = gw.sim.add_vehicle(lane, plate, "pass")
    try:
        last = await until(lambda: gw.lanes[lane].last.get("license_plate") == plate
                           and gw.lanes[lane].last, 15, f"{plate}'s saga on {lane}")
    except TimeoutError:  # what the lane did instead
        seen = await gw.store.read(lambda c: events.list_after(c, 0, 1000))
        raise AssertionError([(e["type"], e["data"]) for e in seen
                              if e["lane_id"] == lane][-12:]) from None
    assert last["status"] == "completed", last
    await until(lambda: vehicle.status == "passed", 5, f"{plate} through {lane}")
    return str(last["saga_id"])


def kept(gw: Gateway, saga_id: str) -> set[str]:
    assert gw.images is not None
    return {e.kind for e in gw.images.store.images(saga_id)}


async def test_a_vehicles_crop_and_frame_are_kept_and_served_by_the_token_rule(
        tmp_path, sim_central, aiohttp_client):
    s = patient(settings(tmp_path, sim_central.url, "max_mb = 50", camera="plain",
                         plates=True))
    async with running(s) as gw:
        assert gw.reader is not None and gw.images is not None
        await until(lambda: gw.reader.ready, 30, "the plate reader's model")
        saga_id = await drive(gw, "entry-1", "34ABC123")
        await until(lambda: kept(gw, saga_id) == {"crop", "frame"}, 5, "both images on disk")
        listed = images_for(gw, saga_id)
        app = web.Application()
        app[GATEWAY] = gw
        add_image_routes(app)
        assert gw.saga_images(saga_id) == listed  # the saga view's list
        client = await aiohttp_client(app)
        url = f"/api/sagas/{saga_id}/images"
        crop = await client.get(f"{url}/crop.jpg")  # public by default: no token needed
        body = await crop.read()
        frame_without = await client.get(f"{url}/frame.jpg")
        frame_wrong = await client.get(f"{url}/frame.jpg", headers={"Authorization": "Bearer x"})
        frame = await client.get(f"{url}/frame.jpg", headers=TOKEN)
        frame_body = await frame.read()
        again = await client.get(f"{url}/frame.jpg",
                                 headers={**TOKEN, "If-None-Match": frame.headers["ETag"]})
        other = await client.get(f"{url}/frame.jpg", headers={**TOKEN, "If-None-Match": '"x"'})
        on_disk = {e.kind: e.path for e in gw.images.store.images(saga_id)}
        assert on_disk["crop"].is_relative_to(tmp_path / "images")
        # names the store did not write: traversal, other names, a file planted by hand
        (on_disk["crop"].parent / "planted-crop.jpg").write_bytes(body)
        refused = [(await client.get(path, headers=TOKEN)).status for path in (
            f"{url}/..%2F..%2Fgateway.sqlite3", f"{url}/..%2Fcrop.jpg", f"{url}/crop.JPG",
            f"{url}/crop.png", "/api/sagas/..%2F..%2Fimages/images/crop.jpg",
            f"/api/sagas/{saga_id}%2F..%2F{saga_id}/images/crop.jpg",
            "/api/sagas/planted/images/crop.jpg", f"/api/sagas/{saga_id}x/images/crop.jpg")]
        local_crop = gw.lanes["entry-1"].last_crop
    assert [e["kind"] for e in listed] == ["crop", "frame"]
    assert listed == [
        {"name": "crop.jpg", "kind": "crop", "url": f"{url}/crop.jpg", "bytes": len(body),
         "public": True},
        {"name": "frame.jpg", "kind": "frame", "url": f"{url}/frame.jpg",
         "bytes": len(frame_body), "public": False}]
    assert crop.status == 200 and crop.headers["Content-Type"] == "image/jpeg"
    assert crop.headers["Cache-Control"] == "private, max-age=86400, immutable"
    assert body == local_crop and body.startswith(b"\xff\xd8")  # the gate reader's crop
    assert (frame_without.status, frame_wrong.status, frame.status) == (401, 401, 200)
    assert frame_body.startswith(b"\xff\xd8") and len(frame_body) > len(body)
    assert frame.headers["ETag"] and frame.headers["ETag"] != crop.headers["ETag"]
    assert again.status == 304 and await again.read() == b""
    assert again.headers["ETag"] == frame.headers["ETag"]
    assert again.headers["Cache-Control"] == "private, max-age=86400, immutable"
    assert other.status == 200
    assert refused == [404] * len(refused)


async def test_the_size_and_age_bounds_hold_while_vehicles_come(tmp_path, sim_central):
    # the sim's 320x240 frames are about 3.2 kB: three fit in 11 kB, four do not
    s = settings(tmp_path, sim_central.url, 'max_mb = 0.011\nkeep = "frames"')
    async with running(s) as gw:
        assert gw.images is not None and gw.sim_daemon_faults is not None
        clock = gw.sim_daemon_faults.clock  # the sim's wall clock, shifted a month back
        clock.offset_s = -31 * DAY
        month_ago = await drive(gw, "entry-1", "34AGE001")
        await until(lambda: kept(gw, month_ago) == {"frame"}, 5, "the first frame on disk")
        clock.offset_s = 0.0
        pair = await asyncio.gather(drive(gw, "entry-1", "34AGE002"),
                                    drive(gw, "exit-1", "34AGE003"))
        # the month-old frame goes by age, though all three fit the quota
        await until(lambda: all(kept(gw, saga) for saga in pair), 5, "two more frames")
        await until(lambda: not kept(gw, month_ago), 5, "the month-old frame gone by age")
        after_age = gw.images.usage()
        last = await asyncio.gather(drive(gw, "entry-1", "34AGE004"),
                                    drive(gw, "exit-1", "34AGE005"))
        # four frames do not fit: the oldest of the others goes
        await until(lambda: all(kept(gw, saga) for saga in last), 5, "the last two frames")
        usage = gw.images.usage()
        left = {saga for saga in (*pair, *last) if kept(gw, saga)}
        files = sorted(p.name for p in (tmp_path / "images").rglob("*.jpg"))
    assert after_age["files"] == 2 and after_age["pruned"] == 1
    assert usage["files"] == 3 and len(left & set(pair)) == 1
    assert usage["bytes"] <= usage["max_bytes"] == 11_000
    assert usage["pruned"] == 2 and usage["write_failures"] == 0
    assert files == sorted(f"{saga}-frame.jpg" for saga in left)  # on disk as in the index


async def test_an_unwritable_directory_never_stops_the_lane(tmp_path, sim_central):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the images' directory should be")
    s = settings(tmp_path, sim_central.url, f'dir = "{blocker / "images"}"')
    async with running(s) as gw:
        assert gw.images is not None
        saga_id = await drive(gw, "entry-1", "34RO0001")
        await until(lambda: gw.images.usage()["write_failures"] >= 3, 5,
                    "the scan and both writes counted as failing")
        usage, problem, listed = gw.images.usage(), gw.images.problem(), images_for(gw, saga_id)
        second = await drive(gw, "entry-1", "34RO0002")  # and the next vehicle too
    assert second != saga_id and listed == []
    assert usage["files"] == 0 and "NotADirectoryError" in usage["last_error"]
    assert problem.startswith("images: writes failing")


async def test_a_hung_disk_never_holds_a_vehicle(tmp_path, sim_central):
    """The writer's temp file is made a FIFO nobody reads: its open() blocks, as a write
    to a hung disk does. Vehicles on both lanes go through meanwhile; once the FIFO is
    read, that image fails (a FIFO cannot be synced), is counted, and the writer goes on."""
    s = settings(tmp_path, sim_central.url, "")
    async with running(s) as gw:
        assert gw.images is not None
        first = await drive(gw, "entry-1", "34HNG001")
        await until(lambda: kept(gw, first) == {"crop", "frame"}, 5, "the first images")
        fifo = tmp_path / "images" / INCOMING
        os.mkfifo(fifo)
        entry, exit_ = await asyncio.gather(drive(gw, "entry-1", "34HNG002"),
                                            drive(gw, "exit-1", "34HNG001"))
        held = gw.images.usage()

        def read_fifo() -> bytes:
            with open(fifo, "rb") as f:  # lets the writer's open() return
                return f.read()

        swallowed = await asyncio.to_thread(read_fifo)
        await until(lambda: gw.images.usage()["written"] == 5, 5, "the writer going on")
        usage = gw.images.usage()
        counts = sorted([len(kept(gw, entry)), len(kept(gw, exit_))])
    assert held["written"] == 2 and held["pending"] >= 1  # the vehicles did not wait
    assert swallowed.startswith(b"\xff\xd8")
    assert usage["write_failures"] == 1 and usage["last_error"] is None  # and mended
    assert counts == [1, 2]  # the image in the FIFO is lost, the three others kept
    assert not fifo.exists()


async def test_every_crop_route_obeys_the_public_setting(tmp_path, sim_central, aiohttp_client):
    """``[images] public`` for each of its values on one gate (the rule is read per
    request): "none", a crop needs the token, the lane tile's crop
    (``/api/lanes/{id}/plate.jpg``) as much as the stored one; "crops", a crop is public
    and a frame is not; "all", both are public. The lane's tile shows its last decision's
    stored crop, and says under which rule."""
    s = settings(tmp_path, sim_central.url, 'public = "none"')
    async with running(s) as gw:
        assert gw.images is not None
        saga_id = await drive(gw, "entry-1", "34PUB001")
        await until(lambda: kept(gw, saga_id) == {"crop", "frame"}, 5, "both images on disk")
        client = await aiohttp_client(make_app(gw))
        urls = {"crop": f"/api/sagas/{saga_id}/images/crop.jpg",
                "frame": f"/api/sagas/{saga_id}/images/frame.jpg",
                "tile": "/api/lanes/entry-1/plate.jpg"}
        seen: dict[str, dict[str, tuple[int, int]]] = {}
        tiles = {}
        for public in ("none", "crops", "all"):
            gw.images.store.bounds = replace(gw.images.store.bounds, public=public)
            seen[public] = {name: ((await client.get(url)).status,
                                   (await client.get(url, headers=TOKEN)).status)
                            for name, url in urls.items()}
            status = await (await client.get("/api/status")).json()
            tiles[public] = status["lanes"][0]["crop"]
        stored = gw.images.store.find(saga_id, "crop.jpg")
        assert stored is not None
        tile_body = await (await client.get(urls["tile"], headers=TOKEN)).read()
        wrong = (await client.get(urls["tile"], headers={"Authorization": "Bearer x"})).status
    assert seen["none"] == {"crop": (401, 200), "frame": (401, 200), "tile": (401, 200)}
    assert seen["crops"] == {"crop": (200, 200), "frame": (401, 200), "tile": (200, 200)}
    assert seen["all"] == {"crop": (200, 200), "frame": (200, 200), "tile": (200, 200)}
    assert wrong == 200  # "all" by then: no token asked, none checked
    assert tile_body == stored.path.read_bytes()  # the decision's crop, from the store
    assert tiles["none"] == {"of": "decision", "url": urls["crop"],
                             "key": f"{saga_id}:{stored.etag}", "public": False}
    assert tiles["crops"]["public"] is True and tiles["all"]["public"] is True
