"""The web API's JSON bodies (``gateway.web.app``): the real gateway (simulated lanes, the
simulated central service inside it) on 127.0.0.1 answers any body, content type and
token on each POST endpoint with a 2xx, or a 4xx whose body is JSON naming the error;
never a 5xx."""

from __future__ import annotations

import asyncio
import itertools
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from gateway.app import Gateway
from gateway.settings import parse_settings
from tests.fuzz.strategies import Deep, fuzz_settings, json_bytes, json_values, text

TOKEN = "fuzz-admin-token"
LANE = """
[lanes.timings]
debounce_s = 0.01
[lanes.camera]
burst = 1
width = 320
height = 240
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(data_dir: Path) -> str:
    return f"""
[gate]
id = "fuzz-gate"
data_dir = "{data_dir}"
[central]
base_urls = ["http://127.0.0.1:{free_port()}"]
deadline_s = 0.5
[backup]
enabled = false
[telemetry]
enabled = false
[web]
host = "127.0.0.1"
port = 0
[simulation]
enabled = true
start_central = true
time_scale = 4.0
[[zones]]
name = "A"
spaces = 10
[[lanes]]
id = "entry-1"
direction = "entry"
{LANE}
[[lanes]]
id = "exit-1"
direction = "exit"
{LANE}
"""


@dataclass
class Web:
    gw: Gateway
    http: aiohttp.ClientSession
    url: str
    spaces: list[str]


@pytest.fixture
async def web() -> AsyncIterator[Web]:
    with tempfile.TemporaryDirectory(prefix="fuzz-web-") as d:
        gw = Gateway(parse_settings(config(Path(d)), env={"GATEWAY_ADMIN_TOKEN": TOKEN}))
        await gw.start()
        try:
            async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=10)) as http:
                url = f"http://127.0.0.1:{gw.web_port}"
                async with http.get(url + "/api/spaces") as resp:
                    spaces = [s["space_id"] for s in await resp.json()]
                yield Web(gw, http, url, spaces)
        finally:
            await gw.stop()


@st.composite
def near(draw: st.DrawFn, valid: dict[str, Any]) -> bytes:
    """A body near a valid one (a field changed, added or removed), or any bytes at all."""
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return draw(st.binary(max_size=100))
    if kind == 1:
        return json_bytes(draw(json_values))
    if kind == 2:  # around the 16 KiB cap of a body
        return b'{"who": "' + b"x" * draw(st.integers(16_370, 16_400)) + b'"}'
    body = dict(valid)
    if kind > 4:
        key = draw(st.sampled_from(sorted(body)) | text) if body else draw(text)
        if draw(st.booleans()):
            body.pop(key, None)
        else:
            body[key] = draw(json_values)
    return json_bytes(body)


segment = st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=12)
# the admin token most of the time, so that the admin endpoints read the body
headers: st.SearchStrategy[dict[str, str]] = st.fixed_dictionaries(
    {"Authorization": st.sampled_from([f"Bearer {TOKEN}"] * 6 + ["Bearer nope", TOKEN])},
    optional={"Content-Type": st.sampled_from([
        "application/json", "text/plain", "multipart/form-data",
        "application/x-www-form-urlencoded"])}) | st.just({})


async def post(w: Web, path: str, body: bytes, hdrs: dict[str, str]) -> tuple[int, Any]:
    async with w.http.post(w.url + path, data=body, headers=hdrs) as resp:
        raw = await resp.read()
        status = resp.status
    event(f"HTTP {status}")  # --hypothesis-show-statistics
    assert status < 500, (status, raw[:300])
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise AssertionError(f"HTTP {status}: not JSON: {raw[:200]!r}") from None
    if status >= 400:
        assert isinstance(data, dict) and isinstance(data.get("error"), str), (status, data)
    else:
        assert 200 <= status < 300, status
    return status, data


@fuzz_settings(1.0, io=True)
@given(st.sampled_from(["open", "space", "vehicle"]), st.data(), headers)
@example("open", ("entry-1", b'{"who": "' + b"x" * 16_400 + b'"}'), {
    "Authorization": f"Bearer {TOKEN}"})  # 413 answered as text/plain, not JSON
@example("vehicle", ("entry-1", b'{"plate": "AB1", "x": ' + json_bytes(Deep(10_000)) + b"}"),
         {})
async def test_any_body_on_the_lane_and_space_endpoints_is_2xx_or_a_json_4xx(
        tried, web: Web, endpoint: str, data: Any, hdrs: dict[str, str]):
    tried(f"web bodies ({endpoint})")
    if isinstance(data, tuple):  # an @example
        target, body = data
    elif endpoint == "space":
        target = data.draw(st.sampled_from(web.spaces) | segment)
        body = data.draw(near({"state": data.draw(st.sampled_from(["free", "out_of_service"]))}))
    else:
        target = data.draw(st.sampled_from(["entry-1", "exit-1"]) | segment)
        body = data.draw(near({"who": "fuzz", "why": "fuzzing"} if endpoint == "open" else
                              {"plate": data.draw(st.from_regex(r"\A[A-Z0-9]{1,12}\Z")),
                               "behaviour": data.draw(st.sampled_from(["pass", "back_out"]))}))
    path = {"open": f"/api/lanes/{quote(target)}/open",
            "space": f"/api/spaces/{quote(target)}/state",
            "vehicle": f"/api/sim/lanes/{quote(target)}/vehicles"}[endpoint]
    await post(web, path, body, hdrs)


@fuzz_settings(0.5, io=True)
@given(st.data(), headers)
@example(b'{"mode": "ok", "x": ' + json_bytes(Deep(10_000)) + b"}", {})
async def test_any_body_on_the_sim_central_fault_endpoint_is_2xx_or_a_json_4xx(
        tried, web: Web, data: Any, hdrs: dict[str, str]):
    tried("web bodies (sim central fault)")
    body = data if isinstance(data, bytes) else data.draw(near({
        "mode": data.draw(st.sampled_from(["ok", "refuse", "blackhole", "error500", "garbage",
                                           "oversized", "commit_no_reply"])),
        "fail_fraction": data.draw(st.floats(0, 1)), "delay_s": data.draw(st.floats(0, 1))}))
    await post(web, "/api/sim/central/fault", body, hdrs)


async def segments(body: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    bounds = [0, *sorted(c % len(body) for c in cuts), len(body)]
    for start, end in itertools.pairwise(bounds):
        yield body[start:end]
        await asyncio.sleep(0.002)  # the network's gap between segments: no event to await


@fuzz_settings(0.2, io=True)
@given(st.from_regex(r"\A[A-Z0-9]{1,12}\Z"), st.lists(st.integers(1, 40), min_size=1, max_size=3))
@example("AB123", [5])  # was 400 "Input data was truncated": read(n) gave the first segment
async def test_a_valid_body_in_any_segments_is_accepted(tried, web: Web, plate: str,
                                                       cuts: list[int]):
    tried("web bodies (segmented)")
    body = msgspec.json.encode({"plate": plate, "behaviour": "pass"})
    async with web.http.post(web.url + "/api/sim/lanes/entry-1/vehicles",
                             data=segments(body, cuts)) as resp:
        assert resp.status == 202, await resp.text()
