"""Frame sources, and when each frame was taken.

The backend is picked by the kind of source, because OpenCV's backends do not share
options: ``CAP_PROP_OPEN_TIMEOUT_MSEC`` / ``READ_TIMEOUT_MSEC`` are honoured by FFmpeg only,
and another backend given them may refuse to open (CAP_IMAGES does, here).

=====================================  ========  ========  ===============================
source                                 backend   timeouts  capture time from
=====================================  ========  ========  ===============================
``"0"``, ``"/dev/video0"``             V4L2      no        the driver's buffer timestamps
``rtsp://``, ``rtsps://``              FFmpeg    yes       the stream's timestamps (RTP)
``http://``, ``https://`` (MJPEG)      FFmpeg    yes       read timing (MJPEG has no clock:
                                                           FFmpeg numbers frames at 25 fps)
a video or image file                  FFmpeg    yes       the file's timestamps
=====================================  ========  ========  ===============================

RTSP is read over TCP (``rtsp_transport;tcp``): over UDP a lost packet smears the frame.

A frame's capture time is on ``time.monotonic()``'s clock: a source's own timestamps are
mapped onto it by ``FrameClock``, so a decoder that falls behind shows as frames whose
capture time lags their read time (the grabber drops them past ``max_frame_age_s``).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import cv2
import numpy as np

from gateway.core.errors import DeviceError

Frame = np.ndarray[Any, Any]
SourceKind = Literal["device", "rtsp", "http", "file"]
CaptureFactory = Callable[[int | str, int, Sequence[int]], cv2.VideoCapture]
FFMPEG_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


class FrameSource(Protocol):
    """Something that yields frames; ``read`` returns ``None`` when the stream broke."""

    def open(self) -> None: ...
    def read(self) -> Frame | None: ...
    def reading(self) -> tuple[str | None, float]: ...
    def close(self) -> None: ...


@runtime_checkable
class TimedSource(Protocol):
    """A source that knows when its last frame was taken (its own clock, in ms), or its
    frame period; ``None`` where it does not."""

    def timestamp_ms(self) -> float | None: ...
    def frame_period_s(self) -> float | None: ...


@dataclass(frozen=True)
class OpenPlan:
    """How a source is opened: what ``cv2.VideoCapture(target, api, params)`` is given."""

    kind: SourceKind
    target: int | str
    api: int
    params: tuple[int, ...]
    ffmpeg_options: str | None  # for OPENCV_FFMPEG_CAPTURE_OPTIONS, RTSP only
    timestamps: bool  # the backend's CAP_PROP_POS_MSEC is the capture time


def source_kind(uri: str) -> SourceKind:
    lowered = uri.lower()
    if uri.isdigit() or lowered.startswith("/dev/video"):
        return "device"
    if lowered.startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if lowered.startswith(("http://", "https://")):
        return "http"
    return "file"


def open_plan(uri: str, *, open_timeout_ms: int = 2000, read_timeout_ms: int = 2000,
              rtsp_transport: str = "tcp") -> OpenPlan:
    kind = source_kind(uri)
    if kind == "device":  # V4L2 takes no timeouts: given them, it may refuse to open
        return OpenPlan(kind, int(uri) if uri.isdigit() else uri, cv2.CAP_V4L2, (), None,
                        True)
    params = (cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_timeout_ms,
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_timeout_ms)
    options = f"rtsp_transport;{rtsp_transport}" if kind == "rtsp" else None
    return OpenPlan(kind, uri, cv2.CAP_FFMPEG, params, options, kind != "http")


def merged_options(current: str | None, wanted: str) -> str:
    """``wanted`` (``key;value``) in place of the same key in an operator's own options."""
    key = wanted.split(";", 1)[0]
    kept = [o for o in (current or "").split("|") if o and o.split(";", 1)[0] != key]
    return "|".join([*kept, wanted])


def _refs(frame: Frame) -> int:
    return sys.getrefcount(frame)


class FramePool:
    """Frame buffers the decoder writes into again once nothing else holds them.

    A new 720p frame per read, 25 times a second per lane, is 2.7 MB allocated and freed
    each time: glibc then either keeps such blocks in its heap (where a burst's frames, the
    reader's and the encoder's buffers of other sizes fragment it and the daemon's resident
    size stays high) or, with a fixed ``M_MMAP_THRESHOLD``, maps and faults in every frame
    afresh (~1.5 ms of CPU per frame here). A buffer is reused only when the pool's are the
    only references left to it: the grabber's latest frame, a burst, a reader's crop (a
    view holds its base) all keep it out of reach, so a frame handed out is never
    overwritten. Two buffers are what the grabber needs between vehicles (the latest frame,
    the next being read); while a burst holds them frames are allocated as before and let
    go: buffers kept beyond two would stay resident for nothing."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._buffers: list[Frame] = []
        # the count a buffer has when only the pool holds it, as this interpreter counts
        # (a list's item, the argument): measured, not assumed
        probe: list[Frame] = [np.empty(1, np.uint8)]
        self._unheld = _refs(probe[0])

    def _held(self, i: int) -> bool:
        return _refs(self._buffers[i]) > self._unheld  # counted as the probe was

    def free(self) -> Frame | None:
        """A buffer nothing else holds, or None."""
        for i in range(len(self._buffers)):
            if not self._held(i):
                return self._buffers[i]
        return None

    def keep(self, frame: Frame) -> None:
        """A frame the decoder allocated (none was free, or the source's size changed)."""
        if len(self._buffers) >= self.size:  # unheld buffers of another size go
            held = [self._held(i) for i in range(len(self._buffers))]
            self._buffers = [b for b, h in zip(self._buffers, held, strict=True)
                             if h or b.shape == frame.shape]
        if len(self._buffers) < self.size:
            self._buffers.append(frame)


_ENV_LOCK = threading.Lock()  # the environment is the process's: one open sets it at a time


class OpenCvSource:
    """A camera, stream or file through OpenCV, opened as ``open_plan`` says.
    ``capture_factory`` is ``cv2.VideoCapture``; a test may wrap it to see what it is
    given."""

    def __init__(self, uri: str, *, open_timeout_ms: int = 2000, read_timeout_ms: int = 2000,
                 rtsp_transport: str = "tcp",
                 capture_factory: CaptureFactory | None = None) -> None:
        self.uri = uri
        self.plan = open_plan(uri, open_timeout_ms=open_timeout_ms,
                              read_timeout_ms=read_timeout_ms, rtsp_transport=rtsp_transport)
        self._factory: CaptureFactory = capture_factory or (
            lambda target, api, params: cv2.VideoCapture(target, api, list(params)))
        self.cap: cv2.VideoCapture | None = None
        self._pool = FramePool()

    def open(self) -> None:
        plan = self.plan
        with _ENV_LOCK:
            if plan.ffmpeg_options is not None:
                # gateway/settings.py is the only *reader* of the environment; this is a
                # write, the one way to give OpenCV's FFmpeg backend its options (it reads
                # the variable at each open). Set only when it changes: other threads'
                # getenv must not race a churning setenv.
                wanted = merged_options(os.environ.get(FFMPEG_OPTIONS), plan.ffmpeg_options)
                if os.environ.get(FFMPEG_OPTIONS) != wanted:
                    os.environ[FFMPEG_OPTIONS] = wanted
            cap = self._factory(plan.target, plan.api, plan.params)
        if not cap.isOpened():
            cap.release()
            raise DeviceError(f"camera {self.uri!r} could not be opened")
        self.cap = cap

    def read(self) -> Frame | None:
        if self.cap is None:
            return None
        buffer = self._pool.free()
        ok, frame = self.cap.read(buffer) if buffer is not None else self.cap.read()
        if not ok or frame is None:
            return None
        if frame is not buffer:  # a new allocation: another size, or no buffer was free
            self._pool.keep(frame)
        return frame

    def reading(self) -> tuple[str | None, float]:
        return None, 0.0  # a plain camera reads no plates

    def timestamp_ms(self) -> float | None:
        if self.cap is None or not self.plan.timestamps:
            return None
        position = float(self.cap.get(cv2.CAP_PROP_POS_MSEC))
        return position if position >= 0 else None

    def frame_period_s(self) -> float | None:
        fps = float(self.cap.get(cv2.CAP_PROP_FPS)) if self.cap is not None else 0.0
        return 1.0 / fps if 1.0 <= fps <= 240.0 else None

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class FrameClock:
    """Capture times on ``time.monotonic()``'s clock, one source connection at a time.

    With the source's timestamps: capture = offset + timestamp, the offset being the
    smallest (read time - timestamp) seen, so the frame that arrived soonest defines "no
    lag"; it may creep forward by ``DRIFT`` of the elapsed time, for the camera's clock
    drifting from ours. Without them, from the read timing: a read that waited for its frame
    got a fresh one; a read that returned at once took it from a buffer, one frame period
    after the previous frame."""

    DRIFT = 1e-3

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._offset: float | None = None
        self._last_ts: float | None = None
        self._last_end = 0.0
        self._prev: float | None = None
        self._period: float | None = None  # learnt from reads that waited

    def stamp(self, read_start: float, read_end: float, ts_ms: float | None,
              period_s: float | None) -> float:
        if ts_ms is not None and self._last_ts is not None and ts_ms < self._last_ts - 1000:
            self.reset()  # the stream restarted its clock (a file looped, a discontinuity)
        if ts_ms is not None and (self._last_ts is None or ts_ms > self._last_ts):
            offset = read_end - ts_ms / 1000
            if self._offset is not None:
                offset = min(self._offset + self.DRIFT * (read_end - self._last_end), offset)
            self._offset, self._last_ts = offset, ts_ms
            captured = offset + ts_ms / 1000
        else:
            captured = self._estimate(read_start, read_end, period_s)
        self._prev, self._last_end = captured, read_end
        return captured

    def _estimate(self, read_start: float, read_end: float, period_s: float | None) -> float:
        period = self._period or period_s
        if period is None or self._prev is None:
            return read_end
        if read_end - read_start < period / 2:  # at once: from a backlog, after the previous
            return min(read_start, self._prev + period)
        interval = min(1.0, read_end - self._last_end)  # it waited: the source's own pace
        self._period = interval if self._period is None else 0.9 * self._period + 0.1 * interval
        return read_end
