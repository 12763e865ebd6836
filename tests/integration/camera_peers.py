"""Real peers for the camera tests: generated video, sources that freeze, hang or block on
a real file capture, an HTTP MJPEG server and an RTSP server that records what the client
asks for (aiohttp / asyncio on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import cv2
import numpy as np
from aiohttp import web

from hardware.camera import OpenCvSource
from hardware.camera_source import Frame
from hardware.sim import render_frame


def write_video(path: Path, frames: int, plate: str = "34ABC123", fps: float = 15,
                size: tuple[int, int] = (640, 360)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        frame = render_frame(plate, *size)
        if i % 2:  # every other frame blurred: the burst must pick a sharp one
            frame = cv2.GaussianBlur(frame, (15, 15), 0)
        writer.write(frame)
    writer.release()


class FreezingSource(OpenCvSource):
    """A real file capture that, once ``freeze`` is set, repeats its last frame (``hang``:
    blocks in read instead) until ``thaw`` is set; ``frozen`` is set at the first frozen
    read."""

    def __init__(self, uri: str, *, hang: bool = False) -> None:
        super().__init__(uri)
        self.hang = hang
        self.freeze, self.frozen, self.thaw = threading.Event(), threading.Event(), \
            threading.Event()
        self._last: Frame | None = None

    def read(self) -> Frame | None:
        if self.freeze.is_set() and not self.thaw.is_set() and self._last is not None:
            self.frozen.set()
            if self.hang:
                self.thaw.wait()
            else:
                return self._last.copy()
        self._last = super().read()
        return self._last


class BlockingSource(OpenCvSource):
    """A real file capture whose second read blocks until ``release`` is set; it records
    whether ``close`` ever ran while a read was running."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.in_read, self.release, self.closed = threading.Event(), threading.Event(), \
            threading.Event()
        self.reads = 0
        self.closed_during_read = False
        self.close_threads: list[str] = []

    def read(self) -> Frame | None:
        self.reads += 1
        self.in_read.set()
        try:
            if self.reads >= 2:
                self.release.wait()
            return super().read()
        finally:
            self.in_read.clear()

    def close(self) -> None:
        if self.in_read.is_set():
            self.closed_during_read = True
        self.close_threads.append(threading.current_thread().name)
        super().close()
        self.closed.set()


def _jpeg(i: int) -> bytes:
    frame = np.full((240, 320, 3), 60, np.uint8)
    cv2.putText(frame, f"{i:05d}", (40, 140), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    ok, buf = cv2.imencode(".jpg", frame)
    assert ok
    return bytes(buf)


@asynccontextmanager
async def mjpeg_server(fps: float) -> AsyncIterator[str]:
    """``multipart/x-mixed-replace`` JPEG frames at ``fps``, as IP cameras serve them."""

    async def video(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"})
        await response.prepare(request)
        i = 0
        try:
            while True:
                data = _jpeg(i)
                await response.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                     b"Content-Length: %d\r\n\r\n" % len(data) + data + b"\r\n")
                i += 1
                await asyncio.sleep(1 / fps)  # the camera's frame rate
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    app = web.Application()
    app.router.add_get("/video", video)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/video"
    finally:
        await runner.cleanup()


SDP = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=gate\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=video 0 RTP/AVP 26\r\na=rtpmap:26 JPEG/90000\r\na=control:track1\r\n")


@asynccontextmanager
async def rtsp_recorder() -> AsyncIterator[tuple[str, list[str]]]:
    """An RTSP server that answers OPTIONS and DESCRIBE and records each SETUP's
    ``Transport`` header, refusing it (461): what FFmpeg asks for, first and in order."""
    transports: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode().split("\r\n")
                method, url = lines[0].split(" ")[:2]
                headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                reply = f"RTSP/1.0 200 OK\r\nCSeq: {headers.get('CSeq', '0')}\r\n"
                if method == "OPTIONS":
                    reply += "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n\r\n"
                elif method == "DESCRIBE":
                    reply += (f"Content-Base: {url}/\r\nContent-Type: application/sdp\r\n"
                              f"Content-Length: {len(SDP)}\r\n\r\n{SDP}")
                else:
                    if method == "SETUP":
                        transports.append(headers.get("Transport", ""))
                    reply = reply.replace("200 OK", "461 Unsupported Transport") + "\r\n"
                writer.write(reply.encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"rtsp://127.0.0.1:{port}/stream1", transports
    finally:
        server.close()
        await server.wait_closed()
