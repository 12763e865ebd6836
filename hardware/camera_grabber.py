"""The grabber: a thread that reads a source continuously and keeps only the newest usable
frame (an FFmpeg source ignores CAP_PROP_BUFFERSIZE: without this, a trigger gets stale
frames), reconnecting with backoff.

A usable frame is new (not the previous frame again: a frozen decoder repeats it) and fresh
(captured at most ``max_frame_age_s`` before it was read: a decoder that falls behind
delivers old scenes). A watchdog thread reports a fault when no usable frame came for
``watchdog_s`` -- a frozen stream, a read that hangs, only stale frames -- and the next
usable frame reports the recovery. Each frame's decode lag (read time - capture time) is
kept for ``GrabberStats.decode_lag_ms``.

The capture is opened, read and closed by the grabber thread only: ``stop()`` signals it
and waits (bounded); a read still running then closes the capture when it returns.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2

from gateway.core.errors import DeviceError
from gateway.os_threads import name_this_thread
from hardware.camera_source import Frame, FrameClock, FrameSource, TimedSource


@dataclass(frozen=True)
class Grabbed:
    frame: Frame
    plate: str | None  # an ANPR camera's own reading
    confidence: float
    captured_at: float  # monotonic: when the scene was taken (see FrameClock)
    read_at: float  # monotonic: when the read returned it


@dataclass
class GrabberStats:
    frames: int = 0  # usable frames
    reconnects: int = 0
    last_error: str = ""
    last_frame_at: float = 0.0  # monotonic read time of the last usable frame
    connected: bool = False
    repeated: int = 0  # the previous frame again: not used
    stale: int = 0  # older than max_frame_age_s: not used
    lags_ms: deque[float] = field(default_factory=lambda: deque(maxlen=256))

    def decode_lag_ms(self) -> dict[str, float]:
        """Read time - capture time over the last frames read: p50 and max."""
        lags = list(self.lags_ms)
        if not lags:
            return {"p50": 0.0, "max": 0.0}
        return {"p50": round(statistics.median(lags), 1), "max": round(max(lags), 1)}


def same_frame(a: Frame | None, b: Frame) -> bool:
    """``b`` is ``a`` again, pixel for pixel (a frozen decoder). The first rows are compared
    first: a live camera's frames differ there already (sensor noise, the scene), so the
    whole frame (0.2 ms at 720p, 25 times a second per lane) is compared only when they
    are the same."""
    if a is None or a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a is b:
        return True
    head = max(1, a.shape[0] // 32)
    return cv2.norm(a[:head], b[:head], cv2.NORM_INF) == 0 and \
        cv2.norm(a, b, cv2.NORM_INF) == 0


class LatestFrameGrabber:
    def __init__(self, source: FrameSource, *, watchdog_s: float = 5.0,
                 max_frame_age_s: float = 0.5, backoff_initial_s: float = 0.5,
                 backoff_max_s: float = 10.0, frame_interval_s: float = 0.0,
                 stop_timeout_s: float = 5.0,
                 on_health: Callable[[bool, str], None] | None = None,
                 name: str = "camera") -> None:
        self.source = source
        self.watchdog_s = watchdog_s
        self.max_frame_age_s = max_frame_age_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.frame_interval_s = frame_interval_s  # pace file sources like a live camera
        self.stop_timeout_s = stop_timeout_s
        self.on_health = on_health or (lambda healthy, why: None)
        self.stats = GrabberStats()
        self._latest: Grabbed | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        # "grab entry-1": the name top -H shows (each frame wakes it, an idle lane's cost)
        self._thread = threading.Thread(target=self._run, name=f"grab {name}", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name=f"camwatch {name}",
                                          daemon=True)
        self._health_lock = threading.Lock()
        self._healthy: bool | None = None  # unknown until the first frame or failure
        self._clock = FrameClock()
        self._usable_at = 0.0  # monotonic: the last usable frame, or the start
        self._previous: Frame | None = None
        self._quiet = ""  # why the last frames were not usable

    def start(self) -> None:
        self._usable_at = time.monotonic()
        self._thread.start()
        self._watchdog.start()

    def stop(self) -> None:
        """Signal the threads and wait for them, ``stop_timeout_s`` at most; the grabber
        thread closes the capture, never while its read runs."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.ident is None:
            return  # never started: nothing was opened
        self._thread.join(self.stop_timeout_s)
        self._watchdog.join(self.stop_timeout_s)
        if self._thread.is_alive():
            self.stats.last_error = "stopped during a read: the capture closes when it returns"

    @property
    def healthy(self) -> bool:
        return self.stats.connected and time.monotonic() - self._usable_at < self.watchdog_s

    def latest(self, newer_than: float = 0.0, timeout_s: float = 1.0) -> Grabbed | None:
        """The newest usable frame captured after ``newer_than`` (monotonic), waiting up to
        ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._latest is None or self._latest.captured_at <= newer_than:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(remaining)
            return self._latest

    def _health(self, healthy: bool, why: str) -> None:
        with self._health_lock:  # the grabber and the watchdog both report
            if healthy != self._healthy:
                self._healthy = healthy
                self.on_health(healthy, why)

    def _watch(self) -> None:
        name_this_thread()
        while not self._stop.wait(min(0.5, self.watchdog_s / 4)):
            quiet_s = time.monotonic() - self._usable_at
            if quiet_s >= self.watchdog_s:
                self._health(False, f"{self._quiet or 'no frame'} for {quiet_s:.1f} s")

    def _run(self) -> None:
        name_this_thread()
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
            try:
                if self._session():
                    delay = self.backoff_initial_s
            finally:
                self.stats.connected = False
                self.source.close()  # on this thread, after its last read
            if self._stop.is_set():
                break
            self.stats.reconnects += 1
            self.stats.last_error = "stream ended"
            self._health(False, "stream ended")
            self._stop.wait(delay)
            delay = min(self.backoff_max_s, delay * 2)

    def _session(self) -> bool:
        """Read until the stream breaks or the grabber stops; True if a frame came."""
        self.stats.connected = True
        self._clock.reset()
        self._previous = None
        timed = self.source if isinstance(self.source, TimedSource) else None
        got_any = False
        while not self._stop.is_set():
            started = time.monotonic()
            frame = self.source.read()
            now = time.monotonic()
            if frame is None:
                break
            got_any = True
            captured = self._clock.stamp(started, now,
                                         timed.timestamp_ms() if timed else None,
                                         timed.frame_period_s() if timed else None)
            self._take(frame, captured, now)
            if self.frame_interval_s:
                self._stop.wait(self.frame_interval_s)
        return got_any

    def _take(self, frame: Frame, captured: float, now: float) -> None:
        lag_s = now - captured
        self.stats.lags_ms.append(lag_s * 1000)
        repeated = same_frame(self._previous, frame)
        self._previous = frame
        if repeated:
            self.stats.repeated += 1
            self._quiet = "frozen: the same frame"
            return
        if lag_s > self.max_frame_age_s:
            self.stats.stale += 1
            self._quiet = f"stale: frames {lag_s * 1000:.0f} ms old"
            return
        plate, confidence = self.source.reading()
        with self._cond:
            self._latest = Grabbed(frame, plate, confidence, captured, now)
            self._cond.notify_all()
        self.stats.frames += 1
        self.stats.last_frame_at = self._usable_at = now
        self._quiet = ""
        self._health(True, "")
