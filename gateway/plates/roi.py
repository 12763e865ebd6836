"""A lane's region of interest: the part of the camera frame where plates appear.

Pure. Configured as ``[x0, y0, x1, y1]``: all four in 0..1 are fractions of the frame,
otherwise whole pixels. Cropping to it is the cheapest speed-up there is (fewer pixels to
search) and keeps the next lane's cars and the camera's own overlay out of the reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def roi_problem(values: Sequence[float | int]) -> str:
    """Why ``values`` is not a region of interest ("" when it is one)."""
    if len(values) != 4:
        return f"expected [x0, y0, x1, y1], got {len(values)} values"
    x0, y0, x1, y1 = values
    if any(v < 0 for v in values):
        return "coordinates must not be negative"
    fractions = all(v <= 1 for v in values)
    if not fractions and not all(float(v).is_integer() for v in values):
        return "give fractions (all four in 0..1) or whole pixels, not a mix"
    if not (x0 < x1 and y0 < y1):
        return "expected x0 < x1 and y0 < y1"
    return ""


@dataclass(frozen=True)
class Roi:
    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def parse(cls, values: Sequence[float | int]) -> Roi:
        why = roi_problem(values)
        if why:
            raise ValueError(f"not a region of interest {list(values)!r}: {why}")
        return cls(*(float(v) for v in values))

    @property
    def fractional(self) -> bool:
        return max(self.x0, self.y0, self.x1, self.y1) <= 1.0

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The box in pixels of a ``width`` x ``height`` frame, clipped to it."""
        if self.fractional:
            box = (self.x0 * width, self.y0 * height, self.x1 * width, self.y1 * height)
        else:
            box = (self.x0, self.y0, self.x1, self.y1)
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        return x0, y0, min(width, max(x0, int(box[2]))), min(height, max(y0, int(box[3])))

    def crop(self, frame: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.pixels(frame.shape[1], frame.shape[0])
        return frame[y0:y1, x0:x1]
