"""Fault injection for the simulated services, switchable while they run.

Modes: ``ok``; ``refuse`` (the port stops accepting connections); ``blackhole`` (accepts,
never answers); ``error500``; ``garbage`` (200 with a body that is not JSON); ``oversized``
(200 with a body far over any sane cap); ``slow`` (answers after ``delay_s``);
``commit_no_reply`` (does the work, so a write is committed, then never answers: the
client's deadline passes on a write that landed). On top of any mode, ``fail_fraction`` of
the calls answer 500.

Switch it with ``POST /_sim/fault {"mode": …, "fail_fraction": …, "delay_s": …}`` on the
simulated service, or from the gateway's page when the simulator runs inside the daemon.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from aiohttp import web

Mode = Literal["ok", "refuse", "blackhole", "error500", "garbage", "oversized", "slow",
               "commit_no_reply"]
MODES: tuple[str, ...] = ("ok", "refuse", "blackhole", "error500", "garbage", "oversized",
                          "slow", "commit_no_reply")


class FaultRequest(msgspec.Struct, forbid_unknown_fields=True):
    mode: Mode = "ok"
    fail_fraction: float = 0.0
    delay_s: float = 2.0


@dataclass
class Faults:
    mode: str = "ok"
    fail_fraction: float = 0.0
    delay_s: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    injected: int = 0
    on_change: list[Callable[[str], Awaitable[None]]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "fail_fraction": self.fail_fraction,
                "delay_s": self.delay_s, "injected": self.injected}

    def __post_init__(self) -> None:
        self._released = asyncio.Event()

    def release(self) -> None:
        """Let go of every request held by ``blackhole``."""
        self._released.set()
        self._released = asyncio.Event()

    async def set(self, request: FaultRequest) -> None:
        if self.mode in ("blackhole", "commit_no_reply") and request.mode != self.mode:
            self.release()
        self.mode, self.fail_fraction, self.delay_s = (
            request.mode, min(max(request.fail_fraction, 0.0), 1.0), max(request.delay_s, 0.0))
        for hook in self.on_change:
            await hook(self.mode)

    def middleware(self) -> Any:
        @web.middleware
        async def inject(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.path.startswith("/_sim/"):
                response: web.StreamResponse = await handler(request)
                return response
            mode = self.mode
            if mode == "refuse":
                # the listener is closed; a kept-alive connection is cut as well
                self.injected += 1
                if request.transport is not None:
                    request.transport.close()
                raise web.HTTPServiceUnavailable()
            if mode == "blackhole":
                self.injected += 1
                # hold the request until the mode changes or the service stops; the
                # client gave up long before
                await self._released.wait()
                raise web.HTTPServiceUnavailable()
            if mode == "commit_no_reply":
                # the write is done (and committed) as if all were well; the answer is
                # lost: held until the mode changes, long after the client gave up
                await handler(request)
                self.injected += 1
                await self._released.wait()
                raise web.HTTPServiceUnavailable()
            if mode == "slow":
                self.injected += 1
                await asyncio.sleep(self.delay_s)
            if mode == "error500" or (self.fail_fraction
                                      and self.rng.random() < self.fail_fraction):
                self.injected += 1
                return web.json_response({"error": "injected"}, status=500)
            if mode == "garbage":
                self.injected += 1
                return web.Response(text="<html>not the JSON you wanted {", status=200,
                                    content_type="application/json")
            if mode == "oversized":
                self.injected += 1
                return web.Response(body=b'{"pad": "' + b"x" * 2_000_000 + b'"}',
                                    content_type="application/json")
            response = await handler(request)
            return response
        return inject

    def routes(self, app: web.Application) -> None:
        async def get_fault(request: web.Request) -> web.Response:
            return web.json_response(self.as_json())

        async def set_fault(request: web.Request) -> web.Response:
            try:
                body = msgspec.json.decode(await request.read(), type=FaultRequest)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            await self.set(body)
            return web.json_response(self.as_json())

        app.router.add_get("/_sim/fault", get_fault)
        app.router.add_post("/_sim/fault", set_fault)


class SimServer:
    """A simulated service on a port that can stop accepting connections ("refuse") and
    start again, on the same port."""

    def __init__(self, app: web.Application, faults: Faults, host: str, port: int) -> None:
        self.app = app
        self.faults = faults
        self.host = host
        self.port = port
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.site: web.TCPSite | None = None
        faults.on_change.append(self._mode_changed)

    async def start(self) -> None:
        await self.runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        self.site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True)
        await self.site.start()
        if self.port == 0:
            self.port = self.runner.addresses[0][1]

    async def _mode_changed(self, mode: str) -> None:
        if mode == "refuse" and self.site is not None:
            await self.site.stop()
            self.site = None
        elif mode != "refuse" and self.site is None:
            await self._listen()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        self.faults.release()
        await self.runner.cleanup()
