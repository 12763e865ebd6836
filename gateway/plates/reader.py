"""The gate's own plate reader: a burst of camera frames -> one ``Reading``.

Pipeline per frame: checked and made BGR ``uint8`` (anything else is a frame error), cropped
to the lane's region of interest, downscaled to ``MAX_SIDE``, then localised — by default with
OpenCV contours proposing plate-like boxes for the recogniser only (``localise.py``: a few
ms), or with the OCR text detector (``localisation = "ocr"``: hundreds of ms per frame here)
— and every recognised text goes through the plate formats (``formats.py``). The burst's
frames are then voted on (``vote.py``). Below ``min_confidence`` the reading is unreadable.

The model is loaded once, by ``start()``, in the reader's single worker thread (onnxruntime
is not asked to share a session between threads, and the event loop never waits on it);
``start()`` never raises: a reader that cannot load reports ``fault`` and every read is an
unreadable reading saying so, so the daemon starts and decides without it. A read has a
deadline for the whole burst; a read that throws or overruns is an unreadable reading with
``error`` set, never an exception and never a plate. Reads of several lanes at once queue
for the worker, each within its own deadline; while a read that overran still occupies the
worker, further reads are refused at once ("busy") instead of queueing behind it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from gateway.os_threads import named_pool
from gateway.plates.engine import Engine, RapidEngine, packaged_model_dir
from gateway.plates.formats import PlateFormat, compile_formats, parse_plate, repaired_confidence
from gateway.plates.localise import propose
from gateway.plates.roi import Roi
from gateway.plates.slim_model import Prepared
from gateway.plates.vote import vote

if TYPE_CHECKING:
    from gateway.settings import PlateSettings

MAX_SIDE = 1280  # frames are searched at most this large (the camera's default width)
MAX_PIXELS = 100_000_000  # larger frames are refused, not resized
MIN_SIDE = 32
CROP_JPEG_QUALITY = 80


@dataclass(frozen=True)
class Reading:
    plate: str | None  # None: unreadable (below min_confidence, nothing found, fault)
    confidence: float  # 0..1
    source: str = "local"
    crop_jpeg: bytes | None = None  # the best frame's plate crop, for the page and central
    frames: int = 0  # frames read
    candidates: dict[str, float] = field(default_factory=dict)  # plate -> summed confidence
    latency_ms: float = 0.0
    error: str = ""  # why unreadable when it is a fault/timeout ("" otherwise)


class _Cancelled(Exception):
    pass


def prepare(frame: object) -> tuple[np.ndarray | None, str]:
    """A frame as a BGR uint8 image no larger than ``MAX_SIDE``, or None and why not."""
    if not isinstance(frame, np.ndarray):
        return None, f"not an image array: {type(frame).__name__}"
    if frame.dtype != np.uint8:
        return None, f"frame is {frame.dtype}, expected uint8"
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        return None, f"frame of shape {frame.shape} is not an image"
    h, w = frame.shape[:2]
    if min(h, w) < MIN_SIDE:
        return None, f"frame of {w}x{h} is empty or too small"
    if h * w > MAX_PIXELS:
        return None, f"frame of {w}x{h} is too large (over {MAX_PIXELS // 1_000_000} MP)"
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    scale = MAX_SIDE / max(h, w)
    if scale < 1.0:
        frame = cv2.resize(frame, (max(1, int(w * scale)), max(1, int(h * scale))),
                           interpolation=cv2.INTER_AREA)
    if float(frame[::8, ::8].std()) < 2.0:  # a sample is enough to tell a uniform frame
        return None, "frame is blank (uniform: lens covered, no light or no signal)"
    return frame, ""


class PlateReader:
    def __init__(self, settings: PlateSettings, *, model_dir: Path | None = None,
                 cache_dir: Path | None = None) -> None:
        self.settings = settings
        self.formats: tuple[PlateFormat, ...] = compile_formats(settings.formats)
        self.model_dir = model_dir or packaged_model_dir()
        self.cache_dir = cache_dir  # where the recogniser cut to plate characters is kept
        self._closing = threading.Event()  # ends a first start's cut (slim_model.prepare)
        self.fault = ""
        self.load_s = 0.0
        self._engine: Engine | None = None
        self._pool = named_pool(1, "plate-reader")
        self._overrun: Future[Reading] | None = None  # a read past its deadline, still running
        self._cancels: set[threading.Event] = set()

    def _load_engine(self) -> Engine:
        """The engine, built in the worker thread (tests override it)."""
        return RapidEngine(self.model_dir, self.settings.threads,
                           detector=self.settings.localisation == "ocr",
                           cache_dir=self.cache_dir, stop=self._closing)

    @property
    def model(self) -> Prepared | None:
        """Which recogniser was loaded and why (None before loading, or for an engine a
        test hands over)."""
        model = getattr(self._engine, "model", None)
        return model if isinstance(model, Prepared) else None

    @property
    def ready(self) -> bool:
        return self._engine is not None and not self.fault

    async def start(self) -> None:
        """Load the model in the worker thread. Never raises: sets ``fault`` instead."""
        if not self.settings.enabled:
            self.fault = "plate reading is disabled (plates.enabled = false)"
            return
        t0 = time.perf_counter()
        try:
            self._engine = await asyncio.wrap_future(self._pool.submit(self._load_engine))
        except Exception as exc:  # any failure to load is a reported fault, not a crash
            self.fault = f"plate reader failed to load: {type(exc).__name__}: {exc}"
        self.load_s = time.perf_counter() - t0

    async def read_burst(self, frames: list[np.ndarray], roi: Roi | None = None) -> Reading:
        t0 = time.perf_counter()

        def failed(error: str, n: int = 0) -> Reading:
            return Reading(None, 0.0, frames=n, error=error,
                           latency_ms=(time.perf_counter() - t0) * 1000)

        if self._engine is None or self.fault:
            return failed(self.fault or "plate reader not started")
        if self._overrun is not None and not self._overrun.done():
            return failed("plate reader busy: an earlier read overran its deadline and is "
                          "still running")
        if not frames:
            return failed("no frames")
        cancel = threading.Event()
        self._cancels.add(cancel)
        # lanes reading at once queue for the one worker, within their own deadlines
        job = self._pool.submit(self._read_sync, self._engine, list(frames), roi, cancel)
        try:
            reading = await asyncio.wait_for(asyncio.wrap_future(job), self.settings.deadline_s)
        except TimeoutError:
            cancel.set()  # it stops at its next frame; until then reads are refused
            self._overrun = job
            return failed(f"plate reading overran its deadline of {self.settings.deadline_s} s",
                          len(frames))
        except Exception as exc:  # the engine threw: unreadable, reported
            return failed(f"plate reader error: {type(exc).__name__}: {exc}", len(frames))
        finally:
            self._cancels.discard(cancel)
        return _with_latency(reading, (time.perf_counter() - t0) * 1000)

    def _read_sync(self, engine: Engine, frames: list[np.ndarray], roi: Roi | None,
                   cancel: threading.Event) -> Reading:
        images: list[np.ndarray] = []
        errors: list[str] = []
        for frame in frames:
            image, why = prepare(roi.crop(frame) if roi is not None and _is_image(frame)
                                 else frame)
            if image is None:
                errors.append(why)
            else:
                images.append(image)
        if not images:
            return Reading(None, 0.0, frames=0, error="; ".join(dict.fromkeys(errors)))
        per_frame: list[dict[str, float]] = []
        crops: dict[str, tuple[float, np.ndarray]] = {}
        for texts in self._texts(engine, images, cancel.is_set):
            found = self._plates(texts)
            per_frame.append({p: c for p, (c, _) in found.items()})
            for plate, (conf, crop) in found.items():
                if plate not in crops or conf > crops[plate][0]:
                    crops[plate] = (conf, crop)
        result = vote(per_frame, self.settings.min_confidence)
        best = crops.get(result.plate) if result.plate else None
        return Reading(result.plate, result.confidence, frames=len(per_frame),
                       candidates=result.candidates,
                       crop_jpeg=_jpeg(best[1]) if best is not None else None)

    def _texts(self, engine: Engine, images: list[np.ndarray],
               cancelled: Callable[[], bool]) -> list[list[tuple[str, float, np.ndarray]]]:
        """Per image, the texts recognised with their score and crop. With contours, the
        burst's proposals go to the recogniser as one batch (cheaper than one call each)."""
        out: list[list[tuple[str, float, np.ndarray]]] = []
        if self.settings.localisation == "ocr":
            for image in images:
                if cancelled():
                    raise _Cancelled
                out.append([(line.text, line.score, _box(image, line.box))
                            for line in engine.detect(image)])
            return out
        proposals: list[list[np.ndarray]] = []
        for image in images:
            if cancelled():
                raise _Cancelled
            proposals.append(propose(image))
        flat = [crop for crops in proposals for crop in crops]
        texts = iter(engine.recognise(flat) if flat else [])
        for crops in proposals:
            out.append([(*next(texts, ("", 0.0)), crop) for crop in crops])
        return out

    def _plates(self, texts: list[tuple[str, float, np.ndarray]]
                ) -> dict[str, tuple[float, np.ndarray]]:
        """plate -> (confidence, crop) among one frame's texts."""
        found: dict[str, tuple[float, np.ndarray]] = {}
        for text, score, crop in texts:
            parsed = parse_plate(text, self.formats)
            if parsed is None:
                continue
            conf = repaired_confidence(score, parsed)
            if parsed.plate not in found or conf > found[parsed.plate][0]:
                found[parsed.plate] = (conf, crop)
        return found

    def close(self) -> None:
        """Stop the worker; a read still running is abandoned (its thread ends with it)."""
        self._closing.set()
        for cancel in list(self._cancels):
            cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._engine = None


def _box(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[max(0, y0):y1, max(0, x0):x1]


def _is_image(frame: object) -> bool:
    return isinstance(frame, np.ndarray) and frame.ndim >= 2 and min(frame.shape[:2]) > 0


def _jpeg(crop: np.ndarray) -> bytes | None:
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, CROP_JPEG_QUALITY])
    return buf.tobytes() if ok else None


def _with_latency(reading: Reading, latency_ms: float) -> Reading:
    return replace(reading, latency_ms=latency_ms)
