"""The vote across a burst: each frame's plate candidates -> one plate and a confidence.

Pure. A frame contributes, per plate, the best confidence it read that plate with. The
leading plate (the most summed confidence) is weighed by

- its *share* of all the evidence: its summed confidence over that plus every other plate's,
  plus half a point per frame that read nothing (the car may have been partly out of view:
  no evidence against the plate, but none for it either);
- its *mean* confidence over the frames that read it;

``c = share * mean``, and agreement then raises it: ``1 - (1 - c) ** sqrt(k)`` for ``k``
frames reading it. So three frames agreeing at 0.9 give 0.98; two at 0.97 against one other
reading at 0.78 give 0.81; two against one at equal confidence 0.76; one frame among two
empty ones 0.46. A plate with no more support than all the others together (a tie) and one
below ``min_confidence`` are *unreadable* (``plate=None``), never the runner-up.
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
    empty = 0
    for frame in frames:
        if not frame:
            empty += 1
        for plate, conf in frame.items():
            c = min(1.0, max(0.0, float(conf))) if math.isfinite(conf) else 0.0
            support.setdefault(plate, []).append(c)
    totals = {p: math.fsum(cs) for p, cs in support.items()}  # exact: frame order is moot
    candidates = {p: round(v, 4) for p, v in sorted(totals.items(), key=lambda kv: -kv[1])}
    if not totals:
        return Vote(None, 0.0, candidates)
    plate = max(sorted(totals), key=lambda p: totals[p])
    against = math.fsum(v for p, v in totals.items() if p != plate)
    evidence = totals[plate] + against + EMPTY_FRAME_WEIGHT * empty
    k = len(support[plate])
    share = totals[plate] / evidence if evidence > 0 else 0.0
    base = share * totals[plate] / k
    confidence = min(1.0, 1.0 - (1.0 - base) ** math.sqrt(k)) if base < 1.0 else 1.0
    if confidence < min_confidence or totals[plate] <= against:
        return Vote(None, confidence, candidates)
    return Vote(plate, confidence, candidates)
