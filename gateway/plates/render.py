"""Synthetic camera scenes: a plate with a given text on a car-like body, seeded.

Used by the plate tests and bench, and by the simulator for its camera frames. Everything
random comes from the ``numpy.random.Generator`` passed in, so a seed gives the same frame.
Fonts: OpenCV's Hershey fonts, and TrueType fonts of the Debian package ``fonts-dejavu-core``
drawn with Pillow (a dependency of rapidocr); without either, the Hershey fonts are used.

``render_scene(plate, rng, width=, height=, condition=)`` returns a BGR ``uint8`` frame.
``plate=None`` renders a negative: a car without a plate, with a badge, or with a camera
timestamp overlay (the conditions ``no_plate``, ``badge``, ``timestamp``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import cv2
import numpy as np

Condition = Literal["clean", "angled", "blurred", "low_light", "night_ir", "noisy", "occluded",
                    "no_plate", "badge", "timestamp"]
CONDITIONS: tuple[str, ...] = get_args(Condition)
NEGATIVE_CONDITIONS = ("no_plate", "badge", "timestamp")
POSITIVE_CONDITIONS = tuple(c for c in CONDITIONS if c not in NEGATIVE_CONDITIONS)

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")  # all three in fonts-dejavu-core
TRUETYPE_FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSerif-Bold.ttf")
HERSHEY_FONTS = {"hershey_simplex": cv2.FONT_HERSHEY_SIMPLEX,
                 "hershey_duplex": cv2.FONT_HERSHEY_DUPLEX,
                 "hershey_triplex": cv2.FONT_HERSHEY_TRIPLEX}
BADGES = ("TOYOTA", "HYBRID", "TAXI", "AUDI", "DIESEL", "4MOTION", "GTI", "CITY", "SERVICE")


def available_fonts() -> list[str]:
    """Font names render_scene can use here: Hershey always, TrueType when installed."""
    names = list(HERSHEY_FONTS)
    try:
        from PIL import ImageFont  # noqa: F401  (rapidocr depends on Pillow)
    except ImportError:
        return names
    return names + [f for f in TRUETYPE_FONTS if (FONT_DIR / f).exists()]


@dataclass(frozen=True)
class PlateStyle:
    font: str
    background: tuple[int, int, int] = (245, 245, 245)  # BGR
    band: str = ""  # the EU band's country code ("" for none)


def _text_hershey(img: np.ndarray, text: str, font: int, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    thick = max(2, (y1 - y0) // 9)
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, thick)
    scale = min((x1 - x0) / tw, (y1 - y0) / th) * 0.92
    thick = max(2, int(thick * scale * 0.8))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    org = (x0 + (x1 - x0 - tw) // 2, y0 + (y1 - y0 + th) // 2)
    cv2.putText(img, text, org, font, scale, (20, 20, 20), thick, cv2.LINE_AA)


def _text_truetype(img: np.ndarray, text: str, font: str, box: tuple[int, int, int, int]) -> None:
    from PIL import Image, ImageDraw, ImageFont

    x0, y0, x1, y1 = box
    size = y1 - y0
    face = ImageFont.truetype(str(FONT_DIR / font), size)
    left, t, r, b = face.getbbox(text)
    while size > 8 and (r - left > (x1 - x0) * 0.95 or b - t > (y1 - y0) * 0.95):
        size -= 2
        face = ImageFont.truetype(str(FONT_DIR / font), size)
        left, t, r, b = face.getbbox(text)
    pil = Image.fromarray(img[:, :, ::-1].copy())
    draw = ImageDraw.Draw(pil)
    org = (x0 + (x1 - x0 - (r - left)) // 2 - left, y0 + (y1 - y0 - (b - t)) // 2 - t)
    draw.text(org, text, font=face, fill=(20, 20, 20))
    img[:] = np.asarray(pil)[:, :, ::-1]


def render_plate(text: str, style: PlateStyle, height: int = 110) -> np.ndarray:
    """The plate alone, upright: a BGR image ``height`` high, about 4.7 times as wide."""
    width = int(height * 4.7)
    img = np.full((height, width, 3), style.background, np.uint8)
    cv2.rectangle(img, (2, 2), (width - 3, height - 3), (30, 30, 30), max(2, height // 30))
    x0 = int(height * 0.12)
    if style.band:
        bw = int(height * 0.42)
        cv2.rectangle(img, (5, 5), (5 + bw, height - 6), (150, 60, 0), -1)
        cv2.putText(img, style.band, (9, height - 16), cv2.FONT_HERSHEY_SIMPLEX,
                    height / 150, (255, 255, 255), 2, cv2.LINE_AA)
        x0 = 5 + bw + int(height * 0.1)
    box = (x0, int(height * 0.14), width - int(height * 0.12), int(height * 0.86))
    if style.font in HERSHEY_FONTS:
        _text_hershey(img, text, HERSHEY_FONTS[style.font], box)
    else:
        _text_truetype(img, text, style.font, box)
    return img


def _car(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A road, a car body with windows and lights; returns the frame and the plate centre."""
    top = rng.integers(60, 140)
    ground = np.linspace(top, top + 60, height, dtype=np.float32).astype(np.uint8)
    img = np.empty((height, width, 3), np.uint8)  # no float copy of the frame: see _noise
    img[:] = ground[:, None, None]
    colour = tuple(int(c) for c in rng.integers(20, 230, 3))
    cx = int(width * rng.uniform(0.4, 0.6))
    cw, ch = int(width * rng.uniform(0.5, 0.7)), int(height * rng.uniform(0.55, 0.7))
    x0, y0 = cx - cw // 2, int(height * 0.18)
    cv2.rectangle(img, (x0, y0 + ch // 3), (x0 + cw, y0 + ch), colour, -1)
    cv2.rectangle(img, (x0 + cw // 8, y0), (x0 + cw * 7 // 8, y0 + ch // 3), colour, -1)
    cv2.rectangle(img, (x0 + cw // 6, y0 + ch // 20), (x0 + cw * 5 // 6, y0 + ch // 3 - 5),
                  (40, 40, 40), -1)
    for lx in (x0 + cw // 10, x0 + cw * 9 // 10):
        cv2.ellipse(img, (lx, y0 + ch // 2), (cw // 14, ch // 14), 0, 0, 360, (200, 230, 250), -1)
    cv2.rectangle(img, (x0, y0 + ch - ch // 8), (x0 + cw, y0 + ch), (25, 25, 25), -1)
    return img, (cx, y0 + int(ch * 0.72))


def _place(scene: np.ndarray, patch: np.ndarray, centre: tuple[int, int], angle: float,
           yaw: float) -> tuple[int, int, int, int]:
    """Warp ``patch`` into ``scene`` rotated by ``angle`` degrees and foreshortened by
    ``yaw`` (0..0.3); returns the patch's bounding box in the scene."""
    h, w = patch.shape[:2]
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    shrink = h * yaw / 2
    corners = np.array([[0, 0], [w, shrink], [w, h - shrink], [0, h]], np.float32)
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    dst = np.hstack([corners, np.ones((4, 1), np.float32)]) @ rot.T.astype(np.float32)
    dst += np.array(centre, np.float32) - dst.mean(axis=0)
    matrix = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    size = (scene.shape[1], scene.shape[0])
    warped = cv2.warpPerspective(patch, matrix, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), matrix, size)
    scene[mask > 127] = warped[mask > 127]
    xs, ys = dst[:, 0], dst[:, 1]
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _motion_blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = int(rng.integers(5, 10))
    kernel = np.zeros((n, n), np.float32)
    kernel[n // 2, :] = 1.0 / n
    rot = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), float(rng.uniform(-20, 20)), 1)
    tilted = cv2.warpAffine(kernel, rot, (n, n))
    tilted = (tilted / max(float(tilted.sum()), 1e-6)).astype(np.float32)
    return cv2.filter2D(img, -1, tilted)


NOISE_ROWS = 64  # rows of a frame given their noise at a time


def _noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """``img`` with Gaussian noise, a band of rows at a time: the whole 720p frame's noise
    at once was ~60 MB of float temporaries, at every vehicle, in the daemon that runs the
    sim's camera. The generator draws the same numbers in the same order either way."""
    out = np.empty_like(img)
    for y in range(0, img.shape[0], NOISE_ROWS):
        band = img[y:y + NOISE_ROWS]
        noisy = band.astype(np.float32) + rng.normal(0, sigma, band.shape).astype(np.float32)
        out[y:y + NOISE_ROWS] = np.clip(noisy, 0, 255)
    return out


def _night_ir(img: np.ndarray, box: tuple[int, int, int, int] | None,
              rng: np.random.Generator) -> np.ndarray:
    """Grey, dark surroundings, a retro-reflective plate glowing under IR."""
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32) * 0.35
    if box is not None:
        x0, y0, x1, y1 = (max(0, v) for v in box)
        grey[y0:y1, x0:x1] = np.clip((grey[y0:y1, x0:x1] / 0.35 - 40) * 1.25, 0, 255)
    out = cv2.cvtColor(np.clip(grey, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    return _noise(out, rng, 6)


def _overlay_timestamp(img: np.ndarray, rng: np.random.Generator) -> None:
    stamp = (f"2026-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d} "
             f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}:{rng.integers(0, 60):02d}")
    y = int(rng.choice([30, img.shape[0] - 20]))
    cv2.putText(img, stamp, (20, y), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2,
                cv2.LINE_AA)


def render_scene(plate: str | None, rng: np.random.Generator, *, width: int = 1280,
                 height: int = 720, condition: str = "clean", font: str | None = None,
                 band: str = "", plate_width: int | None = None) -> np.ndarray:
    """A BGR frame of a car at the gate showing ``plate`` (or a negative when None)."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r} (known: {', '.join(CONDITIONS)})")
    scene, centre = _car(rng, width, height)
    box = None
    fonts = available_fonts()
    if plate is not None and condition not in NEGATIVE_CONDITIONS:
        style = PlateStyle(font or str(rng.choice(fonts)), band=band,
                           background=(245, 245, 245) if rng.random() < 0.8 else (40, 200, 250))
        patch = render_plate(plate, style)
        pw = plate_width or int(width * rng.uniform(0.17, 0.24))
        patch = cv2.resize(patch, (pw, int(pw / 4.7)), interpolation=cv2.INTER_AREA)
        angle = float(rng.uniform(-25, 25)) if condition == "angled" else float(rng.uniform(-3, 3))
        yaw = float(rng.uniform(0.1, 0.3)) if condition == "angled" else 0.0
        box = _place(scene, patch, centre, angle, yaw)
        if condition == "occluded":
            x0, y0, x1, y1 = box
            cut = int((x1 - x0) * rng.uniform(0.04, 0.1))
            side = x0 if rng.random() < 0.5 else x1 - cut
            cv2.rectangle(scene, (side, y0 - 5), (side + cut, y1 + 5), (30, 30, 30), -1)
            cv2.line(scene, (x0, y1 - 3), (x1, y1 - 3), (60, 60, 60), max(2, (y1 - y0) // 10))
    elif condition == "badge":
        patch = render_plate(str(rng.choice(BADGES)), PlateStyle(str(rng.choice(fonts)),
                             background=(160, 160, 160)), height=60)
        box = _place(scene, patch, centre, float(rng.uniform(-5, 5)), 0.0)
    elif condition == "timestamp":
        _overlay_timestamp(scene, rng)
    return _degrade(scene, condition, box, rng)


def _degrade(scene: np.ndarray, condition: str, box: tuple[int, int, int, int] | None,
             rng: np.random.Generator) -> np.ndarray:
    if condition == "blurred":
        return _noise(_motion_blur(scene, rng), rng, 3)
    if condition == "low_light":
        # per grey level, not per pixel (a float copy of the frame)
        levels = (np.arange(256, dtype=np.float32) / 255.0) ** 1.8 * rng.uniform(70, 110)
        return _noise(levels.astype(np.uint8)[scene], rng, 4)
    if condition == "night_ir":
        return _night_ir(scene, box, rng)
    if condition == "noisy":
        return _noise(scene, rng, 14)
    return _noise(scene, rng, 2)
