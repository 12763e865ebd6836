"""The vote across a burst: each frame's plate candidates -> one plate and a confidence.

Pure. A frame contributes, per plate, the best confidence it read that plate with. A plate's
support is the sum of its confidences over the frames that saw anything, with a frame that
saw nothing counting half (the car may have been partly out of view, but it is not evidence
for the plate either); every other plate's support counts against it. Agreement between
frames then raises the confidence (``1 - (1 - c) ** sqrt(k)`` for ``k`` agreeing frames), so
three frames agreeing at 0.85 give about 0.96, one frame alone stays at its own figure, and
two frames disagreeing cancel out. Below ``min_confidence`` the result is *unreadable*
(``plate=None``), never the runner-up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

EMPTY_FRAME_WEIGHT = 0.5


@dataclass(frozen=True)
class Vote:
    plate: str | None
    confidence: float
    candidates: dict[str, float] = field(default_factory=dict)  # plate -> summed confidence


def vote(frames: Sequence[Mapping[str, float]], min_confidence: float) -> Vote:
    """``frames``: per frame, plate -> confidence (0..1; an empty mapping: nothing read)."""
    support: dict[str, list[float]] = {}
    seen = empty = 0
    for frame in frames:
        if not frame:
            empty += 1
            continue
        seen += 1
        for plate, conf in frame.items():
            c = min(1.0, max(0.0, float(conf))) if math.isfinite(conf) else 0.0
            support.setdefault(plate, []).append(c)
    totals = {p: math.fsum(cs) for p, cs in support.items()}  # exact: frame order is moot
    candidates = {p: round(v, 4) for p, v in sorted(totals.items(), key=lambda kv: -kv[1])}
    if not totals:
        return Vote(None, 0.0, candidates)
    weight = seen + EMPTY_FRAME_WEIGHT * empty
    plate = max(sorted(totals), key=lambda p: totals[p])
    against = math.fsum(v for p, v in totals.items() if p != plate)
    base = max(0.0, (totals[plate] - against) / weight)
    k = len(support[plate])
    confidence = min(1.0, 1.0 - (1.0 - base) ** math.sqrt(k)) if base < 1.0 else 1.0
    if confidence < min_confidence or totals[plate] - against <= 0.0:
        return Vote(None, confidence, candidates)
    return Vote(plate, confidence, candidates)
