"""Cameras with OpenCV: a grabber thread that keeps only the latest frame, reconnecting with
backoff and watched for silence; on a trigger a burst of frames, the sharpest chosen, the
plate region cropped when found, JPEG-encoded at a configured size and quality.

Sources: a USB index (``"0"``), an RTSP/HTTP URL, or a video/image file. An ANPR camera's
own reading, where the source gives one, is passed on with the frame.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from gateway.core.errors import DeviceError

Frame = np.ndarray[Any, Any]


class FrameSource(Protocol):
    """Something that yields frames; ``read`` returns ``None`` when the stream broke."""

    def open(self) -> None: ...
    def read(self) -> Frame | None: ...
    def reading(self) -> tuple[str | None, float]: ...
    def close(self) -> None: ...


class OpenCvSource:
    def __init__(self, uri: str, *, open_timeout_ms: int = 2000, read_timeout_ms: int = 2000):
        self.uri = uri
        self.open_timeout_ms = open_timeout_ms
        self.read_timeout_ms = read_timeout_ms
        self.cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        target: int | str = int(self.uri) if self.uri.isdigit() else self.uri
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.open_timeout_ms,
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.read_timeout_ms]
        cap = cv2.VideoCapture(target, cv2.CAP_ANY, params)
        if not cap.isOpened():
            cap.release()
            raise DeviceError(f"camera {self.uri!r} could not be opened")
        self.cap = cap

    def read(self) -> Frame | None:
        if self.cap is None:
            return None
        ok, frame = self.cap.read()
        return frame if ok and frame is not None else None

    def reading(self) -> tuple[str | None, float]:
        return None, 0.0  # a plain camera reads no plates

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


@dataclass
class GrabberStats:
    frames: int = 0
    reconnects: int = 0
    last_error: str = ""
    last_frame_at: float = 0.0
    connected: bool = False


class LatestFrameGrabber:
    """Reads continuously on its own thread and keeps only the newest frame (an FFmpeg
    source ignores CAP_PROP_BUFFERSIZE: without this, a trigger gets stale frames)."""

    def __init__(self, source: FrameSource, *, watchdog_s: float = 5.0,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 10.0,
                 frame_interval_s: float = 0.0,
                 on_health: Callable[[bool, str], None] | None = None) -> None:
        self.source = source
        self.watchdog_s = watchdog_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.frame_interval_s = frame_interval_s  # pace file sources like a live camera
        self.on_health = on_health or (lambda healthy, why: None)
        self.stats = GrabberStats()
        self._latest: tuple[Frame, str | None, float, float] | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera-grabber", daemon=True)
        self._healthy: bool | None = None  # unknown until the first frame or failure

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.source.close()

    @property
    def healthy(self) -> bool:
        return self.stats.connected and time.monotonic() - self.stats.last_frame_at \
            < self.watchdog_s

    def latest(self, newer_than: float = 0.0,
               timeout_s: float = 1.0) -> tuple[Frame, str | None, float, float] | None:
        """The newest frame taken after ``newer_than`` (monotonic), waiting up to
        ``timeout_s``: (frame, reading, confidence, taken_at)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._latest is None or self._latest[3] <= newer_than:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(remaining)
            return self._latest

    def _health(self, healthy: bool, why: str) -> None:
        if healthy != self._healthy:
            self._healthy = healthy
            self.on_health(healthy, why)

    def _run(self) -> None:
        delay = self.backoff_initial_s
        while not self._stop.is_set():
            try:
                self.source.open()
            except DeviceError as exc:
                self.stats.last_error = str(exc)
                self._health(False, str(exc))
                self._stop.wait(delay)
                delay = min(self.backoff_max_s, delay * 2)
                continue
            self.stats.connected = True
            started = time.monotonic()
            while not self._stop.is_set():
                frame = self.source.read()
                now = time.monotonic()
                if frame is None:
                    break
                plate, confidence = self.source.reading()
                with self._cond:
                    self._latest = (frame, plate, confidence, now)
                    self._cond.notify_all()
                self.stats.frames += 1
                self.stats.last_frame_at = now
                self._health(True, "")
                delay = self.backoff_initial_s
                if self.frame_interval_s:
                    self._stop.wait(self.frame_interval_s)
            self.stats.connected = False
            self.source.close()
            if self._stop.is_set():
                break
            self.stats.reconnects += 1
            why = "stream ended" if time.monotonic() - started > 0 else "no frames"
            self.stats.last_error = why
            self._health(False, why)
            self._stop.wait(delay)
            delay = min(self.backoff_max_s, delay * 2)


# -- the pipeline ----------------------------------------------------------------------------
def sharpness(frame: Frame) -> float:
    """Variance of the Laplacian at half size: higher is sharper."""
    small = cv2.resize(frame, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def find_plate_region(frame: Frame) -> tuple[int, int, int, int] | None:
    """A bright, plate-shaped rectangle with dark marks inside: (x, y, w, h), or None."""
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    _, bright = cv2.threshold(gray, 200, 255, cv2.THRESH_BINARY)
    contours, _ = cv2.findContours(bright, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    h_img, w_img = gray.shape[:2]
    best = None
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        if h == 0 or w * h < 0.002 * w_img * h_img:
            continue
        if not 2.0 <= w / h <= 6.5:
            continue
        inside = gray[y:y + h, x:x + w]
        dark = float((inside < 100).mean())
        if dark < 0.03:  # a blank bright patch, not a plate
            continue
        if best is None or w * h > best[2] * best[3]:
            best = (x, y, w, h)
    return best


def encode_jpeg(frame: Frame, max_width: int, quality: int) -> bytes:
    h, w = frame.shape[:2]
    if w > max_width:
        frame = cv2.resize(frame, (max_width, int(h * max_width / w)),
                           interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise DeviceError("JPEG encoding failed")
    return bytes(buf)


@dataclass
class Shot:
    jpeg: bytes
    plate: str | None
    confidence: float
    cropped: bool
    sharpness: float
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def image_b64(self) -> str:
        return base64.b64encode(self.jpeg).decode()


@dataclass(frozen=True)
class CaptureSettings:
    burst: int = 3
    frame_timeout_s: float = 1.0
    max_width: int = 1280
    jpeg_quality: int = 80
    crop_plate: bool = True


def capture(grabber: LatestFrameGrabber, s: CaptureSettings) -> Shot:
    """Blocking (run it in a thread): a burst of new frames, the sharpest, cropped and
    encoded."""
    t0 = time.monotonic()
    frames = []
    after = t0  # frames from after the trigger: the vehicle is on the loop, in view
    for _ in range(max(1, s.burst)):
        got = grabber.latest(newer_than=after, timeout_s=s.frame_timeout_s)
        if got is None:
            break
        frames.append(got)
        after = got[3]
    if not frames:
        raise DeviceError("camera gave no frame in time")
    t1 = time.monotonic()
    scored = [(sharpness(f[0]), f) for f in frames]
    score, (frame, plate, confidence, _) = max(scored, key=lambda x: x[0])
    t2 = time.monotonic()
    region = find_plate_region(frame) if s.crop_plate else None
    if region is not None:
        x, y, w, h = region
        pad = int(h * 0.3)
        frame = frame[max(0, y - pad):y + h + pad, max(0, x - pad):x + w + pad]
    jpeg = encode_jpeg(frame, s.max_width, s.jpeg_quality)
    t3 = time.monotonic()
    return Shot(jpeg, plate, confidence, region is not None, score, {
        "frames": (t1 - t0) * 1000, "select": (t2 - t1) * 1000, "encode": (t3 - t2) * 1000})
