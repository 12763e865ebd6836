"""The plate test set: seeded synthetic scenes, in memory or written to the system temp dir.

Each vehicle is a burst of ``burst`` frames (the camera's default is 3) of one plate under one
condition; every positive condition is rendered for every format in turn, with the fonts
taken in turn (OpenCV Hershey and DejaVu TrueType), plus the negatives (no plate, a badge, a
timestamp overlay). The default set is 10 conditions x 12 vehicles x 3 frames = 360 scenes.

    python -m tests.plates.make_scenes [--seed N] [--vehicles N]   # PNGs + labels.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gateway.plates.render import (
    CONDITIONS,
    NEGATIVE_CONDITIONS,
    available_fonts,
    render_scene,
)

LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # I, O and Q are left out by most series
DIGITS = "0123456789"
FORMATS = ("TR", "DE", "NL", "GB", "FR")
# per format: the shape of the printed text, L a letter, D a digit, other characters as is
SHAPES = {
    "TR": ("DD LLL DDD", "DD L DDDD", "DD LL DDD", "DD LLL DD"),
    "DE": ("LL-LL DDDD", "L-LL DDD", "LLL-L DD"),
    "NL": ("LL-DD-LL", "DD-LLL-D", "D-LLL-DD", "LL-DDD-L"),
    "GB": ("LLDD LLL",),
    "FR": ("LL-DDD-LL",),
}


@dataclass(frozen=True)
class Vehicle:
    plate: str | None  # the normalised text a reader must return (None: a negative)
    printed: str  # as drawn, with the format's spaces and dashes
    condition: str
    fmt: str
    font: str
    frames: list[np.ndarray]


def random_plate(fmt: str, rng: np.random.Generator) -> str:
    shape = str(rng.choice(SHAPES[fmt]))
    return "".join(str(rng.choice(list(LETTERS))) if c == "L" else
                   str(rng.choice(list(DIGITS))) if c == "D" else c for c in shape)


def normalised(printed: str) -> str:
    return printed.replace(" ", "").replace("-", "")


def make_vehicles(seed: int = 2026, vehicles: int = 12, burst: int = 3,
                  conditions: tuple[str, ...] = CONDITIONS, width: int = 1280,
                  height: int = 720) -> Iterator[Vehicle]:
    rng = np.random.default_rng(seed)
    fonts = available_fonts()
    n = 0
    for condition in conditions:
        for i in range(vehicles):
            fmt = FORMATS[i % len(FORMATS)]
            font = fonts[n % len(fonts)]
            n += 1
            printed = "" if condition in NEGATIVE_CONDITIONS else random_plate(fmt, rng)
            band = fmt if i % 2 == 0 and fmt != "GB" else ""
            frames = [render_scene(printed or None, rng, width=width, height=height,
                                   condition=condition, font=font, band=band)
                      for _ in range(burst)]
            yield Vehicle(normalised(printed) or None, printed, condition, fmt, font, frames)


def plate_crops(seed: int, vehicles: int) -> list[np.ndarray]:
    """The boxes contour localisation proposes in the first frame of each vehicle's burst:
    what the recogniser is given at the gate."""
    from gateway.plates.localise import propose
    from gateway.plates.reader import prepare

    out = []
    for v in make_vehicles(seed=seed, vehicles=vehicles, burst=1):
        image, _ = prepare(v.frames[0])
        if image is not None:
            out += propose(image)
    return out


def write(out: Path, vehicles: Iterator[Vehicle]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    labels = []
    for k, v in enumerate(vehicles):
        for j, frame in enumerate(v.frames):
            name = f"{k:04d}-{j}-{v.condition}.png"
            cv2.imwrite(str(out / name), frame)
            labels.append({"file": name, "vehicle": k, "plate": v.plate, "printed": v.printed,
                           "condition": v.condition, "format": v.fmt, "font": v.font})
    (out / "labels.json").write_text(json.dumps(labels, indent=1))
    return len(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--vehicles", type=int, default=12, help="per condition")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.gettempdir()) / f"plate-scenes-{args.seed}"
    count = write(out, make_vehicles(args.seed, args.vehicles))
    print(f"{count} scenes in {out}")


if __name__ == "__main__":
    main()
