"""Cameras with OpenCV: on a trigger a burst of frames taken after it, the sharpest chosen,
JPEG-encoded at a configured size and quality, with the plate region cropped when found.
What is uploaded is configured (``camera.upload``): the whole frame, the crop, or both, so a
mis-crop never loses the plate.

The public surface of the camera: sources and their backends are in ``camera_source``
(a USB index ``"0"`` or ``/dev/video*``, an RTSP/HTTP URL, or a video/image file), the
grabber thread that keeps the newest usable frame in ``camera_grabber``. An ANPR camera's
own reading, where the source gives one, is passed on with the frame.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Literal

import cv2

from gateway.core.errors import DeviceError
from hardware.camera_grabber import Grabbed, GrabberStats, LatestFrameGrabber
from hardware.camera_source import Frame, FrameSource, OpenCvSource, OpenPlan, open_plan

__all__ = ["CaptureSettings", "FrameSource", "Grabbed", "GrabberStats", "LatestFrameGrabber",
           "OpenCvSource", "OpenPlan", "Shot", "Upload", "capture", "encode_jpeg",
           "find_plate_region", "open_plan", "sharpness", "upload_mode"]

Upload = Literal["crop", "frame", "both"]


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
    """``jpeg`` (``image_b64``) is the image the lane sends, as before: the frame, or with
    ``upload = "crop"`` the crop when one was found. ``crop_jpeg`` (``crop_b64``) is the
    plate region when one was found and the upload includes it ("crop", "both")."""

    jpeg: bytes
    plate: str | None
    confidence: float
    cropped: bool  # a plate region was found
    sharpness: float
    crop_jpeg: bytes | None = None
    captured_at: float = 0.0  # monotonic capture time of the chosen frame
    timings_ms: dict[str, float] = field(default_factory=dict)
    frames: list[Frame] = field(default_factory=list, repr=False)  # the burst, for a reader

    @property
    def image_b64(self) -> str:
        return base64.b64encode(self.jpeg).decode()

    @property
    def crop_b64(self) -> str | None:
        return None if self.crop_jpeg is None else base64.b64encode(self.crop_jpeg).decode()


@dataclass(frozen=True)
class CaptureSettings:
    burst: int = 3
    frame_timeout_s: float = 1.0
    max_width: int = 1280
    jpeg_quality: int = 80
    upload: Upload = "both"


def upload_mode(upload: Upload | None, crop_plate: bool | None) -> Upload:
    """``camera.upload``; else the older ``crop_plate`` (true: "crop", false: "frame");
    else "both"."""
    if upload is not None:
        return upload
    if crop_plate is not None:
        return "crop" if crop_plate else "frame"
    return "both"


def _burst(grabber: LatestFrameGrabber, s: CaptureSettings, after: float) -> list[Grabbed]:
    """Frames captured after the trigger: the vehicle is on the loop, in view."""
    frames: list[Grabbed] = []
    for _ in range(max(1, s.burst)):
        got = grabber.latest(newer_than=after, timeout_s=s.frame_timeout_s)
        if got is None:
            break
        frames.append(got)
        after = got.captured_at
    return frames


def capture(grabber: LatestFrameGrabber, s: CaptureSettings) -> Shot:
    """Blocking (run it in a thread): a burst of new frames, the sharpest, encoded, with
    its plate region cropped as ``s.upload`` asks."""
    t0 = time.monotonic()
    frames = _burst(grabber, s, t0)
    if not frames:
        raise DeviceError("camera gave no frame in time")
    t1 = time.monotonic()
    score, best = max(((sharpness(g.frame), g) for g in frames), key=lambda x: x[0])
    t2 = time.monotonic()
    region = find_plate_region(best.frame) if s.upload != "frame" else None
    crop = None
    if region is not None:
        x, y, w, h = region
        pad = int(h * 0.3)
        crop = encode_jpeg(best.frame[max(0, y - pad):y + h + pad,
                                      max(0, x - pad):x + w + pad], s.max_width, s.jpeg_quality)
    if s.upload == "crop" and crop is not None:
        jpeg = crop
    else:
        jpeg = encode_jpeg(best.frame, s.max_width, s.jpeg_quality)
    t3 = time.monotonic()
    return Shot(jpeg, best.plate, best.confidence, region is not None, score, crop,
                best.captured_at, {"frames": (t1 - t0) * 1000, "select": (t2 - t1) * 1000,
                                   "encode": (t3 - t2) * 1000,
                                   "age": (t3 - best.captured_at) * 1000},
                [g.frame for g in frames])
