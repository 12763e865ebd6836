"""The event stream (``GET /api/events/stream``): no commit's wake-up is lost, and a stop
ends every stream at once, whatever is connected."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from gateway.app import Gateway
from gateway.settings import parse_settings
from gateway.sim.central import SimCentralState
from gateway.store import events
from gateway.web import read_api
from gateway.web.app import make_app
from tests.conftest import start_central
from tests.e2e.daemon import ADMIN_TOKEN, Daemon, e2e_config, until

# how many daemon stops the stop test measures (each a daemon start: about a second)
STOP_RUNS = int(os.environ.get("GATEWAY_STOP_RUNS", "3"))


async def _sse(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The stream's events, decoded, as they arrive (keep-alive comments skipped)."""
    data: list[bytes] = []
    async for line in resp.content:
        line = line.rstrip(b"\r\n")
        if line.startswith(b"data: "):
            data.append(line[6:])
        elif not line and data:
            yield msgspec.json.decode(b"\n".join(data))
            data = []


QUIET = "[permits]\nsync = false\n"  # no periodic writes of its own


async def _quiet(gw: Gateway) -> None:
    """Until the start-up's background writes (recovery, housekeeping's first pass) are
    done, so that no commit but the test's own wakes a stream: five database round trips in
    a row without a commit."""
    quiet, last = 0, gw.store.commits
    async with asyncio.timeout(10):
        while quiet < 5:
            await gw.store.read(lambda c: None)
            quiet, last = (quiet + 1, last) if gw.store.commits == last \
                else (0, gw.store.commits)


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    central = await start_central(SimCentralState())
    with tempfile.TemporaryDirectory(prefix="web-stream-") as d:
        gw = Gateway(parse_settings(e2e_config(Path(d), central.url, QUIET)))
        await gw.start()
        try:
            await _quiet(gw)
            yield gw
        finally:
            await gw.stop()
            await central.runner.cleanup()


async def _record(gw: Gateway, n: int) -> dict[str, Any]:
    return await gw.store.record_event(gw.clock, "e2e-gate", "test_tick", {"n": n})


async def test_a_commit_between_the_read_and_the_wait_wakes_the_stream(gateway, aiohttp_client):
    """The seam: each time the stream's read comes back empty, an event is committed before
    the handler gets to wait. The handler must see that commit at once (not after its 15 s
    keep-alive, nor on the next commit)."""
    gw = gateway
    real_read, injected = gw.store.read, asyncio.Queue[int]()

    async def read_then_commit(fn: Any) -> Any:
        result = await real_read(fn)
        streaming = isinstance(fn, partial) and fn.func is events.list_after
        if streaming and not result and not injected.empty():
            await _record(gw, injected.get_nowait())  # lands after the read, before the wait
        return result

    gw.store.read = read_then_commit
    client = await aiohttp_client(make_app(gw))
    after = (await _record(gw, -1))["seq"]
    for n in range(5):  # one commit after each empty read, the next once it was streamed
        injected.put_nowait(n)
    async with client.get(f"/api/events/stream?after_seq={after}") as resp:
        stream = _sse(resp)
        for n in range(5):
            async with asyncio.timeout(2.0):
                event = await anext(stream)
            assert event["type"] == "test_tick" and event["data"] == {"n": n}


async def test_a_stop_while_the_stream_reads_ends_it_at_once(sim_central):
    """The seam: the stream's read comes back (empty) only after the stop has woken every
    waiter. The stream must still see the stop and end; the daemon's own web server is
    stopped, so ``Gateway.stop`` waits for the handler."""
    with tempfile.TemporaryDirectory(prefix="web-stream-") as d:
        gw = Gateway(parse_settings(e2e_config(Path(d), sim_central.url, QUIET)))
        await gw.start()
        stopped = False
        try:
            await _quiet(gw)
            real_read, reading = gw.store.read, asyncio.Event()

            async def read_until_stopping(fn: Any) -> Any:
                result = await real_read(fn)
                if isinstance(fn, partial) and fn.func is events.list_after and not result:
                    reading.set()
                    # the read outlasts the stop's wake-ups: Gateway.stop's, then a few
                    # loop turns later on_shutdown's (a read on a busy SD card takes longer)
                    await gw.stopping.wait()
                    for _ in range(20):
                        await asyncio.sleep(0)
                return result

            gw.store.read = read_until_stopping  # type: ignore[method-assign]
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{gw.web_port}/api/events/stream?after_seq=1000000"
                async with http.get(url) as resp:
                    assert resp.status == 200
                    async with asyncio.timeout(5):
                        await reading.wait()
                    started = time.monotonic()
                    stopped = True
                    await gw.stop()
                    took = time.monotonic() - started
            print(f"stop with a stream mid-read: {took:.2f} s")
            assert took < 1.0  # the issue: well under a second, every time
        finally:
            if not stopped:
                await gw.stop()


async def _stop_with_clients(config: Path) -> tuple[float, list[str]]:
    """Start the daemon, load the page and follow the stream while events are being
    committed, SIGTERM it: how long it took to exit, and its log."""
    daemon = Daemon(config)
    await daemon.start()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.get(daemon.url + "/") as page:
            assert page.status == 200
            await page.read()  # the page's connection stays open (keep-alive), idle
        stream = await http.get(daemon.url + "/api/events/stream")
        seen = asyncio.Event()

        async def follow() -> None:
            async for _ in _sse(stream):
                seen.set()

        follower = asyncio.create_task(follow())
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

        async def permits() -> None:  # each permit change commits an event
            n = 0
            while True:
                n += 1
                async with http.put(f"{daemon.url}/api/permits/34TST{n % 1000:03d}",
                                    headers=headers, json={}) as r:
                    await r.read()

        async def vehicles() -> None:  # sagas commit steps that are not events
            n = 0
            while True:
                n += 1
                for lane in ("entry-1", "exit-1"):
                    async with http.post(f"{daemon.url}/api/sim/lanes/{lane}/vehicles",
                                         json={"plate": f"34VEH{n % 1000:03d}"}) as r:
                        await r.read()
                await asyncio.sleep(0.05)

        async def status() -> None:  # pages refreshing: reads queue on the database thread
            while True:
                async with http.get(f"{daemon.url}/api/status") as r:
                    await r.read()

        committers = [asyncio.create_task(permits()), asyncio.create_task(vehicles()),
                      *(asyncio.create_task(status()) for _ in range(4))]
        async with asyncio.timeout(10):
            await seen.wait()
        # a second page's stream that goes away (a tab closed) while events are committed
        gone = await http.get(daemon.url + "/api/events/stream")
        await gone.content.readuntil(b"\n\n")
        gone.close()
        await asyncio.sleep(1.0)  # the streams keep up with the commits for a while
        # a page that has just connected: its stream is reading its first events
        fresh = await http.get(daemon.url + "/api/events/stream")
        started = time.monotonic()
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        code = await daemon.stop()
        took = time.monotonic() - started
        for task in (*committers, follower):
            task.cancel()
        await asyncio.gather(*committers, follower, return_exceptions=True)
        stream.close()
        fresh.close()
    assert code == 0, "\n".join(daemon.log[-30:])
    return took, daemon.log


async def test_a_stop_with_a_page_and_a_stream_connected_is_prompt(sim_central):
    with tempfile.TemporaryDirectory(prefix="web-stop-") as d:
        times: list[float] = []
        for run in range(STOP_RUNS):
            data = Path(d) / str(run)
            data.mkdir()
            config = data / "gateway.toml"
            config.write_text(e2e_config(data, sim_central.url))
            took, log = await _stop_with_clients(config)
            times.append(took)
            print(f"stop {run + 1}/{STOP_RUNS}: {took:.2f} s")
            assert not [line for line in log if "Traceback" in line], "\n".join(log[-40:])
        print("stop times (s):", " ".join(f"{t:.2f}" for t in times))
        assert max(times) < 1.0, times  # the issue: well under a second, every time


async def _stalled_stream(port: int) -> socket.socket:
    """A page that stopped reading (a phone asleep with the page open): it asks for the
    stream, then reads nothing, with a small receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    sock.sendall(b"GET /api/events/stream?after_seq=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


async def _flood(gw: Gateway, reader: aiohttp.ClientResponse, events_n: int = 400) -> None:
    """Commit events of 50 kB each (20 MB, more than the socket buffers hold) and wait until
    a reading client has them all: the stalled stream's write is then waiting."""
    blob = "x" * 50_000
    last = 0
    for n in range(events_n):
        last = (await gw.store.record_event(gw.clock, "e2e-gate", "test_blob",
                                            {"n": n, "blob": blob}))["seq"]
    async with asyncio.timeout(60):
        async for event in _sse(reader):
            if event["seq"] == last:
                return


async def test_a_stalled_stream_is_dropped_and_does_not_hold_the_others(sim_central,
                                                                        monkeypatch):
    # long enough for the reading client to keep up with the flood on a busy machine
    monkeypatch.setattr(read_api, "STREAM_WRITE_TIMEOUT_S", 3.0)
    with tempfile.TemporaryDirectory(prefix="web-stall-") as d:
        gw = Gateway(parse_settings(e2e_config(Path(d), sim_central.url, QUIET)))
        await gw.start()
        try:
            stalled = await _stalled_stream(gw.web_port)
            async with aiohttp.ClientSession() as http, http.get(
                    f"http://127.0.0.1:{gw.web_port}/api/events/stream?after_seq=1") as live:
                await _flood(gw, live)
                # the stalled page is dropped (reading it before would un-stall it) ...
                await until(lambda: gw.streams_dropped == 1, 30, "the stalled stream dropped")
                # ... and its connection closed: what was in flight, then the end
                loop = asyncio.get_running_loop()
                with contextlib.suppress(ConnectionResetError):
                    async with asyncio.timeout(10):
                        while await loop.sock_recv(stalled, 1 << 20):
                            pass
                # and the live page still follows new events
                seq = (await _record(gw, 7))["seq"]
                async with asyncio.timeout(5):
                    async for event in _sse(live):
                        if event["seq"] == seq:
                            break
            stalled.close()
        finally:
            await gw.stop()


async def test_a_stop_with_a_stalled_stream_is_prompt(sim_central, monkeypatch):
    # a write timeout longer than any stop may take: only the stop itself can end it
    monkeypatch.setattr(read_api, "STREAM_WRITE_TIMEOUT_S", 60.0)
    with tempfile.TemporaryDirectory(prefix="web-stall-") as d:
        gw = Gateway(parse_settings(e2e_config(Path(d), sim_central.url, QUIET)))
        await gw.start()
        stalled = await _stalled_stream(gw.web_port)
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{gw.web_port}/api/events/stream?after_seq=1") as live:
            await _flood(gw, live)
            started = time.monotonic()
            await gw.stop()
            took = time.monotonic() - started
        stalled.close()
    print(f"stop with a stalled stream: {took:.2f} s")
    assert took < 1.0
